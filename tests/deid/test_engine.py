"""The Basic Profile engine on single objects (pure: no database)."""

from __future__ import annotations

import io
import struct

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.valuerep import PersonName

from indexer import deid, keys
from indexer.deid import Option, build_plan, pseudonym, values
from indexer.deid.engine import uid_values
from indexer.deid.profile import (
    OUT_OF_PLACE,
    OUT_OF_PLACE_INVALID,
    compile_plan,
    damaged_text,
    not_allowed,
    out_of_place,
)
from indexer.deid.rules import compile_rules
from indexer.deid.table import load_table
from indexer.work import read_dataset
from tests.builders import (
    in_transfer_syntax,
    make_instance,
    to_bytes,
    with_element,
    with_implicit_element,
)
from tests.deid import kitchen_sink

MARK = "PHIMARK7"


@pytest.fixture(scope="module")
def basic_plan():
    return deid.basic_plan()


@pytest.fixture(scope="module")
def key():
    return keys.generate().pseudonym


def _json(ds: Dataset) -> str:
    return ds.to_json()


@pytest.mark.parametrize(
    "keyword",
    [
        "PatientName",
        "PatientID",
        "AccessionNumber",
        "ReferringPhysicianName",
        "OperatorsName",
        "InstitutionName",
        "StudyDescription",
        "SeriesDescription",
        "OtherPatientIDs",
        "PatientComments",
        "StudyID",
    ],
)
def test_basic_profile_removes_marker(keyword, basic_plan, key):
    ds = make_instance(**{keyword: MARK})
    out = deid.apply(basic_plan, ds, key).ds
    assert MARK not in _json(out)


def test_nested_and_private_values_are_cleaned(basic_plan, key):
    ds = make_instance(marker=MARK)
    out = deid.apply(basic_plan, ds, key).ds
    text = _json(out)
    assert MARK not in text
    assert not any(e.tag.is_private for e in out.iterall())
    region = out.AnatomicRegionSequence[0]
    assert region.CodeMeaning == "Chest"  # kept, non-identifying
    assert region.ReferringPhysicianName == ""
    assert region.ContentSequence[0].PersonName != f"Deeper^{MARK}1"


def test_every_instance_uid_is_replaced_consistently(basic_plan, key):
    a = make_instance(1, 1, 1, 1)
    b = make_instance(1, 1, 1, 2)
    originals = set(uid_values(a)) | set(uid_values(b))
    out_a = deid.apply(basic_plan, a, key).ds
    out_b = deid.apply(basic_plan, b, key).ds
    assert out_a.StudyInstanceUID == out_b.StudyInstanceUID
    assert out_a.SeriesInstanceUID == out_b.SeriesInstanceUID
    assert out_b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == out_a.SOPInstanceUID
    assert out_a.file_meta.MediaStorageSOPInstanceUID == out_a.SOPInstanceUID
    for u in uid_values(out_a) + uid_values(out_b):
        assert u.startswith(("2.25.", "1.2.840.10008.")), u
        assert len(u) <= 64
    kept = {u for u in originals if u.startswith("1.2.840.10008.")}  # SOP classes
    assert (set(uid_values(out_a)) | set(uid_values(out_b))) & originals == kept


def test_same_key_same_pseudonyms_other_key_other_pseudonyms(basic_plan, key):
    first = deid.apply(basic_plan, make_instance(), key).ds
    again = deid.apply(basic_plan, make_instance(), key).ds
    other = deid.apply(basic_plan, make_instance(), keys.generate().pseudonym).ds
    assert to_bytes(first) == to_bytes(again)
    assert first.PatientID == again.PatientID != other.PatientID
    assert first.StudyInstanceUID != other.StudyInstanceUID


def test_file_meta_and_preamble_rewritten(basic_plan, key):
    ds = pydicom.dcmread(__import__("io").BytesIO(to_bytes(make_instance(marker=MARK))))
    out = deid.apply(basic_plan, ds, key).ds
    assert out.preamble == b"\x00" * 128
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert MARK.encode() not in to_bytes(out)


def test_deidentification_is_recorded(basic_plan, key):
    out = deid.apply(basic_plan, make_instance(), key).ds
    assert out.PatientIdentityRemoved == "YES"
    codes = [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100"]
    assert out.LongitudinalTemporalInformationModified == "REMOVED"


def test_identities_map_back_to_originals(basic_plan, key):
    ds = make_instance(marker=MARK)
    orig = {
        kw: str(ds.get(kw))
        for kw in (
            "PatientID",
            "PatientName",
            "StudyInstanceUID",
            "SOPInstanceUID",
            "AccessionNumber",
        )
    }
    result = deid.apply(basic_plan, ds, key)
    got = {i.kind: (i.pseudonym, i.original) for i in result.identities}
    assert got["patient_id"] == (result.ds.PatientID, orig["PatientID"])
    assert got["patient_name"][1] == orig["PatientName"]
    assert got["study_uid"] == (result.ds.StudyInstanceUID, orig["StudyInstanceUID"])
    assert got["sop_uid"] == (result.ds.SOPInstanceUID, orig["SOPInstanceUID"])
    assert got["accession_number"] == (result.ds.AccessionNumber, orig["AccessionNumber"])
    assert len(result.ds.AccessionNumber) <= 16


@pytest.mark.parametrize("missing", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
def test_missing_uid_is_a_clear_error(basic_plan, key, missing):
    ds = make_instance(marker=MARK)
    delattr(ds, missing)
    with pytest.raises(deid.engine.DeidError, match=f"missing {missing}") as e:
        deid.apply(basic_plan, ds, key)
    assert MARK not in str(e.value)


def test_overlays_and_curves_removed(basic_plan, key):
    ds = make_instance()
    ds.add_new(0x60003000, "OW", b"\x01\x02" * 8)
    ds.add_new(0x60004000, "LT", MARK)
    ds.add_new(0x50000000 | 0x3000, "OW", b"\x00\x01" * 4)
    out = deid.apply(basic_plan, ds, key).ds
    assert 0x60003000 not in out
    assert 0x60004000 not in out
    assert 0x50003000 not in out


def test_unlisted_person_name_is_emptied(basic_plan, key):
    ds = make_instance()
    item = Dataset()
    item.VerifyingObserverName = MARK  # listed; and an unlisted PN next to it
    item.add_new(0x0040A075, "PN", MARK)
    ds.add_new(0x00081111, "SQ", Sequence([item]))
    out = deid.apply(basic_plan, ds, key).ds
    assert MARK not in _json(out)


def test_date_shift_option_keeps_intervals(key):
    plan = compile_plan(load_table(), [Option.RETAIN_LONG_MODIFIED_DATES])
    a = deid.apply(plan, make_instance(1, 1, StudyDate="20230115"), key).ds
    b = deid.apply(plan, make_instance(1, 2, StudyDate="20230301"), key).ds
    import datetime as dt  # noqa: PLC0415

    def d(s):
        return dt.date(int(s[:4]), int(s[4:6]), int(s[6:8]))

    assert d(b.StudyDate) - d(a.StudyDate) == dt.timedelta(days=45)
    assert a.StudyDate != "20230115"
    assert a.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [i.CodeValue for i in a.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107"]


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "pydicom"])
def test_a_date_the_shift_takes_out_of_the_calendar_goes_empty(lean, key):
    """00010101 (.NET's smallest date, which some writers put for none) shifted back by any
    patient's offset leaves year 1: it goes empty, as a value that is no date does, and the
    object is de-identified (it failed as an element that cannot be read). 00111231 shifts
    to a date of year 2 to 11 whatever the offset (at most 3,650 days), written in four
    digits (``strftime`` wrote year 5 as 5, not 0005)."""
    plan = compile_plan(load_table(), [Option.RETAIN_LONG_MODIFIED_DATES])
    ds = make_instance(
        1,
        1,
        StudyDate="00010101",
        SeriesDate="00111231",
        ContentDate="20230230",  # no such day
        InstanceCreationDate="20230115",
    )
    ds.CalibrationDate = ["00010101", "20230101"]
    out = deid.apply(plan, pydicom.dcmread(io.BytesIO(to_bytes(ds))), key, lean=lean).ds
    assert out.StudyDate == ""
    assert out.ContentDate == ""
    assert len(out.SeriesDate) == 8
    assert "00020101" < out.SeriesDate < "00111231"
    assert out.InstanceCreationDate not in ("", "20230115")
    assert out.CalibrationDate[0] == ""
    assert out.CalibrationDate[1] < "20230101"


def test_pseudonym_shapes():
    k = b"k" * 32
    assert pseudonym.uid(k, "1.2.3") == pseudonym.uid(k, "1.2.3")
    assert pseudonym.uid(k, "1.2.3").startswith("2.25.")
    ident = pseudonym.ident(k, "accession_number", "A1", "DI", 16)
    assert len(ident) == 16
    assert ident.startswith("DI-")
    assert -3650 <= pseudonym.date_offset_days(k, "p", 3650) <= -1


def test_a_public_tag_no_standard_defines_is_removed(basic_plan, key):
    """An even-group element in no data dictionary (a writer's own, or a damaged tag) holds
    who knows what: removed, top level and nested, whatever its VR. Repeating groups
    (overlays, curves) and dictionary elements not in Table E.1-1 are not affected."""
    ds = make_instance()
    ds.add_new(0xC2080080, "UN", f"Deep Hospital {MARK} ".encode())
    ds.add_new(0x00431099, "LO", "odd group: private")  # for contrast, private
    item = ds.AnatomicRegionSequence[0]  # a kept sequence
    item.add_new(0xFF2000FF, "LO", MARK)
    code = item.CodeValue
    ds.SliceThickness = "1.5"  # in the dictionary, not in Table E.1-1: kept
    trace: list = []
    out = deid.apply(basic_plan, ds, key, trace=trace).ds
    assert 0xC2080080 not in out
    assert 0xFF2000FF not in out.AnatomicRegionSequence[0]
    assert out.AnatomicRegionSequence[0].CodeValue == code
    assert out.SliceThickness == "1.5"
    assert MARK not in _json(out)
    assert MARK.encode() not in to_bytes(out)
    why = {step.path: step.source for step in trace}
    assert why["(C208,0080)"] == "not a standard attribute (in no data dictionary): removed"


@pytest.mark.parametrize(
    "tag",
    [0xFFFEE000, 0x00001030, 0x00020016],
    ids=["item", "command: move originator AE", "file meta: source AE"],
)
def test_a_tag_of_no_data_set_inside_one_is_removed(basic_plan, key, tag):
    """A damaged or mis-written file holds an item, command or file meta tag among its
    attributes: whatever it holds is no attribute's value, and goes."""
    data = with_element(to_bytes(make_instance()), tag, b"LO", b"Dr " + MARK.encode(), 0x00200010)
    ds = pydicom.dcmread(io.BytesIO(data))
    assert tag in ds
    out = deid.apply(basic_plan, ds, key).ds
    assert tag not in out
    assert MARK.encode() not in to_bytes(out)


def test_the_standards_own_uids_are_not_recorded_for_the_leak_check():
    """A removed element holding a transfer syntax or SOP class UID (the standard's root)
    identifies no one; a vendor's or an instance's UID is recorded."""
    found: dict[str, str] = {}
    for uid in ("1.2.840.10008.1.2.1", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.113619.2.55.3"):
        values.add(found, uid, "(0002,0010)")
    assert list(found) == ["1.2.840.113619.2.55.3"]


def _with_elements(ds: Dataset, *elements: tuple[int, bytes, bytes]) -> Dataset:
    """``ds`` written, then read with raw elements (tag, VR, value) before Study Instance UID."""
    data = to_bytes(ds)
    for tag, vr, value in elements:  # ascending: each goes right before the same element
        data = with_element(data, tag, vr, value, 0x0020000D)
    return pydicom.dcmread(io.BytesIO(data))


def test_a_kept_attribute_written_as_free_text_of_another_vr_is_treated_as_identifying(
    basic_plan, key
):
    """A damaged tag can name a kept attribute while its value is another's: a name under
    Image Type (CS), KVP (DS), a code sequence or Distance Object to Table Top (FL). The text
    VR the attribute never has gives it away: replaced by a dummy, valid whatever its type."""
    name = f"Doe^{MARK}".encode()
    ds = _with_elements(
        make_instance(),
        (0x00080008, b"SH", name),  # Image Type: CS, Type 1 in a CT image
        (0x00180060, b"LO", name),  # KVP: DS, Type 2
        (0x00181210, b"SH", b"B30f"),  # Convolution Kernel: SH, as the dictionary has it
        (0x00189346, b"CS", f"DOE {MARK}".encode()),  # CTDI Phantom Type Code Sequence
        (0x00189403, b"ST", name),  # Distance Object to Table Top: FL
    )
    found = deid.values.identifying_values(basic_plan, ds)  # what `verify` looks for
    assert found.get(f"Doe^{MARK}") == values.DAMAGED + "(0008,0008)"
    trace: list = []
    out = deid.apply(basic_plan, ds, key, trace=trace).ds
    for tag in (0x00080008, 0x00180060, 0x00189346, 0x00189403):
        assert out[tag].value not in ("", None)  # a dummy
    assert out.ConvolutionKernel == "B30f"
    assert MARK.encode() not in to_bytes(out)
    why = {step.path: (step.action, step.source) for step in trace}
    for path in ("(0018,9346)", "(0018,9403)"):
        assert why[path][0] == "D"
        assert why[path][1].startswith("kept, but written as text")
    assert why["(0018,1210)"] == ("K", "not in Table E.1-1: kept")
    rule = {"name": "keep kvp", "select": {"keyword": "KVP"}, "method": "keep"}
    kept = build_plan(rules=compile_rules({"rules": [rule]}))
    again = _with_elements(make_instance(), (0x00180060, b"LO", b"120 kV"))
    assert deid.apply(kept, again, key).ds.KVP == "120 kV"  # a site rule decides first


@pytest.mark.parametrize(
    ("tag", "vr", "value"),
    [
        (0x00181210, b"SH", b"B30f"),  # Convolution Kernel
        (0x00185100, b"CS", b"HFS "),  # Patient Position
        (0x0008001A, b"UI", b"1.2.840.10008.5.1.4.1.1.20"),  # Related General SOP Class
    ],
    ids=["free text", "code string", "a class UID"],
)
def test_a_kept_text_value_that_swallowed_elements_is_treated_as_identifying(
    basic_plan, key, tag, vr, value
):
    """A length that runs on makes a kept text value swallow the elements after it, a name
    among them; the NULs and control codes no character set has give it away. Padding with
    NULs does not."""
    bad = value + b"\x10\x00\x10\x00PN\x0c\x00Doe^" + MARK.encode()
    padded = value + b"\x00\x00"
    assert damaged_text(vr.decode(), bad)
    assert not damaged_text(vr.decode(), padded)
    assert damaged_text(vr.decode(), bad.decode("latin-1"))  # as pydicom decodes it
    assert damaged_text("PN", PersonName("Doe\x00^X"))
    assert not damaged_text("PN", PersonName("A^B"))
    data = to_bytes(make_instance())
    before = 0x00080020 if tag < 0x00080020 else 0x0020000D
    ds = pydicom.dcmread(io.BytesIO(with_element(data, tag, vr, bad, before)))
    found = deid.values.identifying_values(basic_plan, ds)
    where = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    assert any(MARK in text and where in path for text, path in found.items())  # `verify` too
    trace: list = []
    out = deid.apply(basic_plan, ds, key, trace=trace).ds
    assert MARK.encode() not in to_bytes(out)
    (step,) = [s for s in trace if s.path == where]
    assert step.source.startswith("a kept or cleaned text value holding control codes")
    good = pydicom.dcmread(io.BytesIO(with_element(data, tag, vr, padded, before)))
    assert deid.apply(basic_plan, good, key).ds[tag].value == value.decode().strip()


def _read(data: bytes, reader: str) -> Dataset:
    if reader == "dcmread":
        return pydicom.dcmread(io.BytesIO(data))
    return read_dataset(data, pixels_in_place=True)  # sliced from the bytes (fastread)


@pytest.mark.parametrize("reader", ["dcmread", "fastread"])
@pytest.mark.parametrize(
    ("tag", "before", "why"),
    [
        (0x00081090, 0x0020000D, "out of order"),  # Manufacturer's Model Name, after Group 18
        (0x00080070, 0x00080080, "a twin right after its first"),  # Manufacturer, twice
        (0x00080070, 0x0020000D, "a twin further on"),
    ],
)
def test_a_kept_value_read_out_of_its_place_is_treated_as_identifying(
    basic_plan, key, reader, tag, before, why
):
    """A damaged tag can name a kept attribute of the very VR its own has (a name under
    Manufacturer's Model Name, both LO). Its place gives it away: out of ascending order, or
    where an element went missing, as a later one of the same tag took its place as read."""
    data = to_bytes(make_instance())
    name = f"Doe^{MARK}".encode()
    damaged = with_element(data, tag, b"LO", name, before)
    ds = _read(damaged, reader)
    assert tag in out_of_place(ds)
    assert ds[tag].value == f"Doe^{MARK}", why  # read as that attribute
    where = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    found = deid.values.identifying_values(basic_plan, _read(damaged, reader))  # as verify does
    assert found.get(f"Doe^{MARK}") == values.DAMAGED + where
    trace: list = []
    out = deid.apply(basic_plan, _read(damaged, reader), key, trace=trace).ds
    assert MARK.encode() not in to_bytes(out)
    assert out[tag].value not in ("", None)  # a dummy keeps the object valid
    (step,) = [s for s in trace if s.path == where]
    assert (step.action, step.source) == ("D", OUT_OF_PLACE.source)
    # in its place, the same element is kept as read; a made data set has no places
    sound = with_element(data, 0x00081090, b"LO", b"CT 3000", before=0x00082218)
    assert deid.apply(basic_plan, _read(sound, reader), key).ds.ManufacturerModelName == "CT 3000"
    assert not out_of_place(make_instance())


@pytest.mark.parametrize(
    ("tag", "before", "neighbour", "number", "read"),
    [
        # Conversion Type (CS) before Modality (CS)
        (0x00080064, 0x00080060, "CT", b"WSD ", "WSD"),
        # Spacing Between Slices (DS) before Slice Thickness (DS)
        (0x00180088, 0x00180050, 1.0, b"2.5 ", 2.5),
        # Planar Configuration (US, one value) before Samples per Pixel (US)
        (0x00280006, 0x00280002, 1, b"\x01\x00", 1),
        # Pupil Size (FD, one value) before Samples per Pixel: 12 bytes hold no whole FD
        (0x00460044, 0x00280002, 1, struct.pack("<d", 2.5), 2.5),
    ],
    ids=["a code string", "a number string", "a binary number", "no whole number"],
)
def test_a_name_read_as_a_code_or_number_out_of_its_place_is_treated_as_identifying(
    basic_plan, key, tag, before, neighbour, number, read
):
    """Implicit VR gives an element the VR of the attribute its tag names: a damaged tag
    naming a kept code or number has a name read as that code or number. Out of its place and
    no value its VR or attribute allows, it gets a dummy; its sound neighbour, and a valid
    value out of place, stay."""
    data = in_transfer_syntax(make_instance(), pydicom.uid.ImplicitVRLittleEndian)
    damaged = with_implicit_element(data, tag, f"Doe^{MARK}".encode(), before)
    ds = pydicom.dcmread(io.BytesIO(damaged))
    assert {tag, before} <= out_of_place(ds)
    trace: list = []
    out = deid.apply(basic_plan, ds, key, trace=trace, found={}).ds  # recorded: not decoded
    assert MARK.encode() not in to_bytes(out)
    where = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    (step,) = [s for s in trace if s.path == where]
    assert (step.action, step.source) == ("D", OUT_OF_PLACE_INVALID.source)
    assert out[tag].value in ("ANONYMIZED", "0", 0)  # a dummy keeps the object valid
    assert out[before].value == neighbour
    valid = pydicom.dcmread(io.BytesIO(with_implicit_element(data, tag, number, before)))
    assert tag in out_of_place(valid)
    assert deid.apply(basic_plan, valid, key).ds[tag].value == read


@pytest.mark.parametrize("reader", ["dcmread", "fastread"])
def test_bytes_under_a_sequence_attributes_tag_are_read_as_a_sequence_in_place_or_not(
    basic_plan, key, reader
):
    """A damaged tag can name a kept attribute of another VR than its own: bytes under
    Frame Usefulness Group Sequence's tag (SQ). Out of place, the VR gave it away (a dummy);
    in place, nothing did, and the bytes were kept. Bytes under a sequence attribute's tag
    are now read as the sequence they make, or none: out of place or in place, nothing of
    them stays."""
    tag = 0x00340009
    data = to_bytes(make_instance())
    for before in (0x0020000D, 0x7FE00010):  # out of place, in place
        damaged = with_element(data, tag, b"OB", f"ID {MARK} ".encode(), before=before)
        ds = _read(damaged, reader)
        assert (tag in out_of_place(ds)) is (before == 0x0020000D)
        trace: list = []
        out = deid.apply(basic_plan, ds, key, trace=trace).ds
        assert MARK.encode() not in to_bytes(out)
        (step,) = [s for s in trace if s.path == "(0034,0009)"]
        assert step.vr == "SQ"


@pytest.mark.parametrize(
    ("tag", "vr", "value", "invalid"),
    [
        (0x00180050, "DS", b" -2.5E3\\.5\\1.\\", False),  # values, padding, an empty one
        (0x00180050, "DS", b"N/A ", True),
        (0x00180050, "DS", b"1,5 ", True),  # a decimal comma: no DS either
        (0x00200013, "IS", b"12 \\-3", False),
        (0x00200013, "IS", b"1.5 ", True),
        (0x00280010, "US", b"\x10\x00", False),  # Rows: one value
        (0x00280010, "US", b"\x10\x00" * 2, True),
        (0x00280010, "US", b"\x10", True),  # no whole value
        (0x00200032, "DS", b"1\\2", False),  # a number string's multiplicity is not judged
        (0x00280034, "IS", b"1\\1", False),
        (0x00181310, "US", b"\x00\x00" * 4, False),  # Acquisition Matrix: four values
        (0x00181310, "US", b"\x00\x00" * 3, True),
        (0x00280009, "AT", b"\x00\x00" * 3, True),  # Frame Increment Pointer: no whole value
        (0x00280009, "AT", b"\x00\x00" * 6, False),  # three: any number
        (0x00460044, "FD", b"\x00" * 16, True),  # Pupil Size: one value, not two
        (0x00220032, "FL", b"\x00" * 16, False),  # Reference Coordinates: pairs (2-2n)
        (0x00220032, "FL", b"\x00" * 12, True),
        (0x00080309, "UL", b"\x00" * 12, False),  # Private Data Element VM: 1-3
        (0x00080309, "UL", b"\x00" * 16, True),
        (0x00081162, "UL", b"\x00" * 24, False),  # Calculated Frame List: triplets (3-3n)
        (0x00081162, "UL", b"\x00" * 8, True),
        (0x00289000, "FL", b"\x00" * 8, False),  # in no dictionary: its VM is unknown
        (0x00080070, "LO", b"Doe^X", False),  # free text: any text is valid
        (0x00080060, "CS", b"CT", False),
        (0x00080060, "CS", b"val X ", True),  # lower case
        (0x0008001A, "UI", b"1.2.840.10008.5.1.4.1.1.2\x00", False),
        (0x0008001A, "UI", b"val MK0001X ", True),
        (0x00280010, "US", 16, False),  # converted already: not judged
    ],
)
def test_a_value_is_judged_by_its_vr_and_its_attributes_multiplicity(tag, vr, value, invalid):
    assert not_allowed(tag, vr, value) is invalid


def _places(d: Dataset) -> list[int]:
    """Every element of ``d`` and its items found out of place."""
    found = sorted(out_of_place(d))
    for elem in d:
        if elem.VR == "SQ":
            for item in elem.value:
                found += _places(item)
    return found


@pytest.mark.parametrize(
    "syntax",
    [
        pydicom.uid.ExplicitVRLittleEndian,
        pydicom.uid.ImplicitVRLittleEndian,
        pydicom.uid.ExplicitVRBigEndian,
        pydicom.uid.DeflatedExplicitVRLittleEndian,
    ],
)
def test_no_element_of_a_sound_object_is_out_of_place(syntax):
    """Every attribute of the table, private ones, sequences of defined and undefined length,
    64-bit numbers, in each transfer syntax, by both readers: nothing found out of place."""
    sink, _markers = kitchen_sink.build()
    data = in_transfer_syntax(sink, syntax)
    assert _places(pydicom.dcmread(io.BytesIO(data))) == []
    assert _places(read_dataset(data, pixels_in_place=True)) == []
    undefined = make_instance()
    undefined.FileOffsetInContainer = 7  # UV and SV: 32-bit lengths, as OB's
    undefined.add_new(0x00720082, "SV", -3)  # Selector SV Value
    undefined["AnatomicRegionSequence"].is_undefined_length = True
    for item in undefined.AnatomicRegionSequence:
        item.is_undefined_length_sequence_item = True
    assert _places(read_dataset(to_bytes(undefined), pixels_in_place=True)) == []
