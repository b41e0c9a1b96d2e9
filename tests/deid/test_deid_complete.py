"""The complete engine (#3): options, IOD types, character sets, burned-in text, leak check."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import itertools
import json
import re
import shutil
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset

from indexer import deid, extract, keys, rules_file, work
from indexer.deid import Option, build_plan, pseudonym, rawvalue, values, verify
from indexer.deid.burned_in import BurnedInPolicy
from indexer.deid.profile import MISREAD_BYTES, resolve
from indexer.deid.rules import compile_rules
from indexer.deid.table import Action, parse_options
from indexer.deid.values import collect as collect_values
from indexer.encode import encode
from indexer.errors import DeidError, RuleError
from indexer.records import SourceFile
from indexer.store.files import LocalStore
from indexer.work import RunContext, configure_pydicom, prepare
from tests.builders import (
    implicit_item,
    in_transfer_syntax,
    make_instance,
    to_bytes,
    with_element,
    with_implicit_element,
    with_un_sequence,
)
from tests.deid import kitchen_sink

pytestmark = pytest.mark.usefixtures("leaks_searched_both_ways")  # the pooled search too

configure_pydicom()  # as the pipeline runs: lenient, quiet reading and writing
KEY = keys.generate().pseudonym  # a new key each run: results must hold for any key
MARK = re.compile(rb"(MK\d{4}[XQ]|OVLMK|CRVMK|SRMK|FGMK|METAMK|PREAMBLEMK|KSMARK|INSTMK)")


def _tool(name: str) -> str | None:
    """A command on PATH, or installed beside this interpreter (the test extra's wheels)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.exists() else None)


def _roundtrip(ds: Dataset) -> Dataset:
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)))


def _run(plan, ds):
    """(identifying values, the copy's data set, its bytes, the values the key made)."""
    original = _roundtrip(ds)
    values = verify.identifying_values(plan, original)
    result = deid.apply(plan, original, KEY)
    data = encode(result.ds).data
    return values, result.ds, data, result.generated


OPTION_SETS = [
    (),
    ("retain-uids",),
    ("clean-descriptors", "clean-structured-content", "clean-graphics"),
    ("retain-long-modified-dates", "retain-patient-characteristics"),
    ("retain-device-identity", "retain-institution-identity", "retain-safe-private"),
]


@pytest.mark.parametrize("names", OPTION_SETS, ids=lambda n: "+".join(n) or "basic")
def test_kitchen_sink_leaks_nothing(names):
    plan = build_plan(names)
    ds, _markers = kitchen_sink.build()
    values, out, data, generated = _run(plan, ds)
    assert len(values) > 200  # the corpus really plants values everywhere
    # (a time's six digits among a pseudonym UID's, with this run's key, are chance)
    assert verify.find_leaks(values, out, generated=generated) == []
    # markers of everything the plan does not keep are gone from every byte
    kept = {m.group(0) for m in MARK.finditer(data)}
    for found in kept:
        # only values that the chosen options retain may stay
        assert names, f"basic profile kept {found!r}"
    if not names:
        assert not MARK.search(data)
    assert pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID == out.SOPInstanceUID


@pytest.mark.parametrize("names", OPTION_SETS, ids=lambda n: "+".join(n) or "basic")
def test_values_gathered_in_the_pass_equal_a_separate_walk(names):
    """The ingest gathers identifying values while it de-identifies (one pass); they must be
    exactly what a separate walk of the original lists, paths included."""
    plan = build_plan(names)
    ds, _markers = kitchen_sink.build()
    expected = verify.identifying_values(plan, _roundtrip(ds))
    found: dict[str, str] = {}
    deid.apply(plan, _roundtrip(ds), KEY, found=found)
    assert found == expected
    assert len(found) > 200


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit VR", "implicit VR"])
@pytest.mark.parametrize("names", OPTION_SETS, ids=lambda n: "+".join(n) or "basic")
def test_raw_copy_encoding_equals_pydicom(names, implicit):
    """Untouched elements are copied as read; the file is still byte for byte pydicom's."""
    ds, _markers = kitchen_sink.build()
    roundtrip = _implicit_roundtrip if implicit else _roundtrip
    out = deid.apply(build_plan(names), roundtrip(ds), KEY).ds
    assert any(out.get_item(t).is_raw for t in out.keys())  # noqa: SIM118 - tags, not elements
    buf = io.BytesIO()
    out.save_as(buf, enforce_file_format=True)
    encoded = encode(out)
    assert encoded.data == buf.getvalue()
    assert encoded.size == len(buf.getvalue())


def _lean_and_pydicom(plan, ds: Dataset) -> None:
    """De-identify ``ds`` both ways (lean values, pydicom elements): the same in every way.

    As explicit VR little endian, then as implicit VR little endian (the lean way gives its
    elements their VRs): written in each, read back.
    """
    _lean_and_pydicom_as(plan, ds, _roundtrip)
    _lean_and_pydicom_as(plan, ds, _implicit_roundtrip)


def _implicit_roundtrip(ds: Dataset) -> Dataset:
    written = in_transfer_syntax(copy.deepcopy(ds), pydicom.uid.ImplicitVRLittleEndian)
    return pydicom.dcmread(io.BytesIO(written))


def _lean_and_pydicom_as(plan, ds: Dataset, roundtrip) -> None:
    results = []
    for lean in (True, False):
        found: dict[str, str] = {}
        result = deid.apply(plan, roundtrip(ds), KEY, found=found, lean=lean)
        encoded = encode(result.ds)
        header = extract.header_json(result.ds, "copy.dcm")
        results.append((encoded.data, found, result.identities, result.patient_pseudonym, header))
    lean, reference = results
    assert lean[0] == reference[0]  # the copy, byte for byte
    assert lean[1:] == reference[1:]  # leak-check values, identities, pseudonym, JSON header
    # and the separate walk (`verify`'s): text decoded from its bytes, or by pydicom
    walks = []
    for codec in ("top", None):
        walked: dict[str, str] = {}
        collect_values(plan, roundtrip(ds), "", walked, codec)
        walks.append(walked)
    assert walks[0] == walks[1]
    assert walks[0]


@pytest.mark.parametrize("names", OPTION_SETS, ids=lambda n: "+".join(n) or "basic")
def test_lean_values_give_what_pydicom_elements_give(names):
    """The ingest reads and writes values as bytes where it can (rawvalue); the result must
    be exactly the pydicom-element way's, for every option set."""
    _lean_and_pydicom(build_plan(names), kitchen_sink.build()[0])


@pytest.mark.parametrize(
    "elements",
    [
        {"SpecificCharacterSet": "ISO_IR 192", "PatientName": "Ñoño^Zoë", "StudyID": "ÄÖ"},
        {"SpecificCharacterSet": "\\ISO 2022 IR 87", "PatientName": "Yamada=山田^太郎"},
        {"SpecificCharacterSet": None, "PatientID": "  spaced  "},
        {"PatientID": None, "AccessionNumber": None},
        {"StudyDate": "2023011", "PatientBirthDate": ["19500101", "19600101"]},
        {  # numbers no header holds: given as their bytes (UN)
            "SliceThickness": "-inf",
            "InstanceNumber": "99999999999999999999",
            "DiffusionBValue": [1.0, float("nan")],
            "FileLengthInContainer": 2**64 - 1,
        },
    ],
    ids=["utf8", "iso2022", "no-charset", "no-ids", "odd-dates", "odd-numbers"],
)
def test_lean_values_hold_across_character_sets_and_odd_values(elements):
    ds = make_instance()
    for keyword, value in elements.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    item = Dataset()  # an item with a character set of its own
    item.SpecificCharacterSet = "ISO_IR 100"
    item.PersonName = "Jürgen^Item"
    ds.ContentSequence = [item]
    _lean_and_pydicom(build_plan(), ds)


def test_lean_values_of_an_item_in_a_character_set_of_its_own():
    """Its bytes would decode in the object's Latin-1 too, into other text."""
    ds = make_instance(SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Hans")
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 192"
    item.PersonName = "Zoë^Łukasz"
    ds.ContentSequence = [item]
    _lean_and_pydicom(build_plan(), ds)


def test_lean_values_under_site_rules():
    doc = {
        "version": 1,
        "rules": [
            {"select": {"vr": "DA"}, "method": "dateshift"},
            {"select": {"keyword": "StationName"}, "method": "redact"},
            {"select": {"keyword": "OperatorsName"}, "method": "cryptohash"},
            {"select": {"keyword": "InstitutionName"}, "method": "keep"},
            {"select": {"keyword": "Manufacturer"}, "method": "substitute", "value": "ACME"},
        ],
    }
    rules_file.check(doc)
    rules = compile_rules(doc)
    _lean_and_pydicom(build_plan(rules=rules), kitchen_sink.build()[0])


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.2"])
def test_other_transfer_syntaxes_are_written_by_pydicom(syntax):
    ds = make_instance(rows=4, columns=4)
    ds.file_meta.TransferSyntaxUID = syntax
    original = pydicom.dcmread(io.BytesIO(to_bytes(ds)))
    out = deid.apply(build_plan(), original, KEY).ds
    buf = io.BytesIO()
    out.save_as(buf, enforce_file_format=True)
    assert encode(out).data == buf.getvalue()
    assert pydicom.dcmread(io.BytesIO(buf.getvalue())).file_meta.TransferSyntaxUID == syntax


def test_ingest_leak_check_finds_a_value_in_an_untouched_element():
    """The ingest's check decodes only changed elements; a kept (never decoded) element that
    repeats the patient's name is still found, in the header bytes."""
    ds = make_instance(marker="LEAKY")
    ds.Manufacturer = "Doe^LEAKY1^Q"
    found: dict[str, str] = {}
    out = deid.apply(build_plan(), _roundtrip(ds), KEY, found=found).ds
    header = encode(out).header
    assert out.get_item(0x00080070).is_raw  # untouched since it was read
    leaks = verify.find_leaks(found, out, header, changed_only=True)
    assert leaks
    assert leaks[0].found_in.startswith("header bytes")
    assert all("LEAKY" not in repr(leak) for leak in leaks)


def test_ingest_leak_check_ignores_a_value_inside_a_pseudonym_by_chance():
    """A removed value that happens to be six digits of the pseudonym Series Instance UID
    (a time, say: archives have many series, it happens) is there by chance, not a leak;
    the same value left in a kept element still is one."""
    ds = make_instance()
    chance = pseudonym.uid(KEY, ds.SeriesInstanceUID)[8:14]
    ds.OtherPatientIDs = chance  # removed by the basic profile (any digits: a valid LO)
    found: dict[str, str] = {}
    result = deid.apply(build_plan(), _roundtrip(ds), KEY, found=found)
    header = encode(result.ds).header
    assert chance in found
    assert chance.encode() in header  # inside the pseudonym UID
    assert verify.find_leaks(found, result.ds, header, changed_only=True) != []
    generated = result.generated
    assert verify.find_leaks(found, result.ds, header, changed_only=True, generated=generated) == []

    ds.Manufacturer = f"T{chance}"  # kept: the value really survives
    result = deid.apply(build_plan(), _roundtrip(ds), KEY, found=found)
    header = encode(result.ds).header
    leaks = verify.find_leaks(found, result.ds, header, changed_only=True, generated=generated)
    assert [leak.source_path for leak in leaks] == ["(0010,1000)"]


def test_ingest_leak_check_ignores_a_value_inside_a_dummy_value():
    """A removed time "1900" (19:00) inside the dummy date "19000101" written in a content
    item is chance; the same time left in a kept element is a leak."""
    ds = make_instance()
    ds.AnatomicRegionSequence[0].ContentSequence[0].Date = "20230115"  # dummied: 19000101
    ds.StudyTime = "1900"
    found: dict[str, str] = {}
    result = deid.apply(build_plan(), _roundtrip(ds), KEY, found=found)
    header = encode(result.ds).header
    assert b"19000101" in header
    assert "1900" in found
    generated = result.generated
    assert verify.find_leaks(found, result.ds, header, changed_only=True, generated=generated) == []
    ds.Manufacturer = "built 1900"  # kept
    found = {}
    result = deid.apply(build_plan(), _roundtrip(ds), KEY, found=found)
    header = encode(result.ds).header
    leaks = verify.find_leaks(
        found, result.ds, header, changed_only=True, generated=result.generated
    )
    assert [leak.source_path for leak in leaks] == ["(0008,0030)"]


def test_an_archive_de_identified_before_passes_the_leak_check_again():
    """Dummy values ("ANONYMIZED") in the input are what de-identification writes itself:
    our own output, or another tool's, de-identified again is not refused as a leak."""
    ours = encode(deid.apply(build_plan(), _roundtrip(make_instance()), KEY).ds).data
    theirs = make_instance(OperatorsName="ANONYMIZED", InstitutionName="ANONYMIZED")
    for data in (ours, to_bytes(theirs)):
        found: dict[str, str] = {}
        result = deid.apply(build_plan(), pydicom.dcmread(io.BytesIO(data)), KEY, found=found)
        header = encode(result.ds).header
        assert b"ANONYMIZED" in header  # a dummy, written again
        generated = result.generated
        assert (
            verify.find_leaks(found, result.ds, header, changed_only=True, generated=generated)
            == []
        )
    theirs.OperatorsName = "ANONYMIZED^DOE"  # a name beside the dummy: still recorded
    found = {}
    deid.apply(build_plan(), _roundtrip(theirs), KEY, found=found)
    assert "ANONYMIZED^DOE" in found
    assert "ANONYMIZED" not in found


def test_ingest_leak_check_decodes_what_de_identification_wrote():
    """A changed element is compared decoded, in place: a shifted date that came out equal
    to its original is found, though dates are never searched for in the header bytes."""
    ds = make_instance()
    plan = build_plan(["retain-long-modified-dates"])
    found: dict[str, str] = {}
    result = deid.apply(plan, _roundtrip(ds), KEY, found=found)
    out, made = result.ds, result.generated
    assert isinstance(out.get_item(0x00080020), rawvalue.Written)  # StudyDate, shifted
    assert (
        verify.find_leaks(found, out, encode(out).header, changed_only=True, generated=made) == []
    )
    out._dict[0x00080020] = rawvalue.encode(0x00080020, "DA", ds.StudyDate)  # as if not shifted
    leaks = verify.find_leaks(found, out, encode(out).header, changed_only=True)
    assert [leak.source_path for leak in leaks] == ["(0008,0020)"]


def test_retain_options_keep_what_they_name():
    plan = build_plan(["retain-device-identity"])
    ds = make_instance(DeviceSerialNumber="SER123456", StationName="STATION9")
    out = deid.apply(plan, _roundtrip(ds), KEY).ds
    assert out.DeviceSerialNumber == "SER123456"
    assert out.StationName == "STATION9"
    basic = deid.apply(build_plan(), _roundtrip(ds), KEY).ds
    assert "DeviceSerialNumber" not in basic or basic.DeviceSerialNumber != "SER123456"


def test_retain_uids_keeps_uids_and_records_code():
    ds = make_instance()
    out = deid.apply(build_plan(["RetainUIDs"]), _roundtrip(ds), KEY).ds
    assert out.SOPInstanceUID == ds.SOPInstanceUID
    assert "113110" in [i.CodeValue for i in out.DeidentificationMethodCodeSequence]


@pytest.mark.parametrize(
    ("alias", "option"),
    [
        ("RetainSafePrivate", Option.RETAIN_SAFE_PRIVATE),
        ("RetainUIDs", Option.RETAIN_UIDS),
        ("RetainDeviceIdent", Option.RETAIN_DEVICE_IDENTITY),
        ("RetainInstitutionIdent", Option.RETAIN_INSTITUTION_IDENTITY),
        ("RetainPatientChars", Option.RETAIN_PATIENT_CHARACTERISTICS),
        ("RetainLongFullDates", Option.RETAIN_LONG_FULL_DATES),
        ("RetainLongModifDates", Option.RETAIN_LONG_MODIFIED_DATES),
        ("CleanDesc", Option.CLEAN_DESCRIPTORS),
        ("CleanStructdCont", Option.CLEAN_STRUCTURED_CONTENT),
        ("CleanGraph", Option.CLEAN_GRAPHICS),
        ("retain-uids", Option.RETAIN_UIDS),
        ("clean-descriptors", Option.CLEAN_DESCRIPTORS),
    ],
)
def test_option_aliases(alias, option):
    assert parse_options([alias, "BasicProfile"]) == {option}


def test_bad_options_are_refused():
    with pytest.raises(RuleError, match="unknown"):
        build_plan(["RetainEverything"])
    with pytest.raises(RuleError, match="exclude each other"):
        build_plan(["RetainLongFullDates", "RetainLongModifDates"])


def test_every_option_combination_compiles():
    for n in range(3):
        for combo in itertools.combinations(
            [o for o in Option if o is not Option.RETAIN_LONG_FULL_DATES], n
        ):
            plan = deid.basic_plan(combo)
            assert plan.options == frozenset(combo)


@pytest.mark.parametrize(
    ("action", "vr", "attr_type", "expected"),
    [
        (Action.X_Z_D, "LO", "1", Action.DUMMY),
        (Action.X_Z_D, "LO", "2", Action.ZERO),
        (Action.X_Z_D, "LO", "3", Action.REMOVE),
        (Action.X_Z, "CS", "2C", Action.ZERO),
        (Action.X_D, "DA", "1C", Action.DUMMY),
        (Action.X_D, "DA", "2", Action.DUMMY),
        (Action.Z_D, "LO", "3", Action.ZERO),
        (Action.Z_D, "LO", "1", Action.DUMMY),
        (Action.X_Z_U, "SQ", "3", Action.UID),
        (Action.X_Z_D, "LO", None, Action.DUMMY),
        (Action.X_Z, "SQ", None, Action.ZERO),
    ],
)
def test_compound_actions_resolve_by_type(action, vr, attr_type, expected):
    assert resolve(action, vr, attr_type) is expected


def test_compound_actions_use_the_objects_iod():
    ds = make_instance(PatientSexNeutered="ALTERED")  # X/Z, Type 2C in the CT IOD
    out = deid.apply(build_plan(), _roundtrip(ds), KEY).ds
    assert out.PatientSexNeutered == ""  # emptied, not removed
    assert "InstitutionName" not in out  # X/Z/D, Type 3 in CT: removed
    unknown = make_instance(SOPClassUID="1.2.999.1")  # an IOD we do not know: safe choice
    out = deid.apply(build_plan(), _roundtrip(unknown), KEY).ds
    assert out.InstitutionName == "ANONYMIZED"


@pytest.mark.parametrize(
    ("charset", "name"),
    [
        ("ISO_IR 100", "Müller^Jürgen"),
        ("ISO_IR 192", "Ñoño^Zoë^Łukasz"),
        ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    ],
)
def test_character_sets_are_processed_never_corrupted(charset, name):
    ds = make_instance(
        SpecificCharacterSet=charset,
        PatientName=name,
        ReferringPhysicianName=name,
        InstitutionName=f"Klinik {name}",
    )
    ds.AnatomicRegionSequence[0].CodeMeaning = "Brustkorb Ä" if "100" in charset else "胸"
    original = _roundtrip(ds)
    encoded_name = to_bytes(ds)
    values = verify.identifying_values(build_plan(), original)
    out = deid.apply(build_plan(), original, KEY).ds
    data = encode(out).data
    again = pydicom.dcmread(io.BytesIO(data))
    assert str(again.PatientName) == str(out.PatientName)
    assert again.AnatomicRegionSequence[0].CodeMeaning == ds.AnatomicRegionSequence[0].CodeMeaning
    assert verify.find_leaks(values, again) == []
    for part in name.replace("=", "^").split("^"):
        for enc in ("utf-8", "latin-1", "iso2022_jp"):
            try:
                needle = part.encode(enc)
            except UnicodeEncodeError:
                continue
            if len(needle) >= 4 and needle in encoded_name:
                assert needle not in data, (part, enc)


@pytest.mark.parametrize(
    ("charset", "escape"),
    [
        ("\\ISO 2022 IR 87", b"\x1b(B"),  # ISO 2022: what follows is ASCII (as it was)
        ("ISO 2022 IR 100", b"\x1b(B"),
        ("ISO_IR 100", b"\x1b(B"),
        ("ISO_IR 192", b"\x1b(B"),
        (None, b"\x1b(B"),
        ("ISO_IR 100", b"\x1b(J"),  # JIS X 0201's Roman letters: pydicom leaves it in
        ("ISO 2022 IR 100", b"\x1b-A"),  # Latin-1's upper half, as G1
    ],
)
def test_a_name_split_by_escape_sequences_in_a_kept_text_is_a_leak(charset, escape):
    """The patient's name "Doe^Jane" in the kept Manufacturer as "Ja", ESC ( B, "ne D", ESC
    ( B, "oe": readers take escape sequences out of the text (pydicom, under whatever
    character set, those it knows; others those it does not), and show "Jane Doe scan".
    The ingest's check searched the header bytes for what it kept as read, where no "Jane"
    is: the copy went out with the name, which `verify` then found (where pydicom knew the
    escape)."""
    ds = make_instance(marker="LEAKY", PatientName="Doe^Jane")
    if charset is None:
        del ds.SpecificCharacterSet
    else:
        ds.SpecificCharacterSet = charset
    ds.add_new(0x00080070, "LO", b"Ja" + escape + b"ne D" + escape + b"oe scan")
    with warnings.catch_warnings():  # (pydicom's, on an escape it does not know)
        warnings.simplefilter("ignore")
        shown = pydicom.dcmread(io.BytesIO(to_bytes(ds))).Manufacturer
        assert rawvalue.ESCAPE_SEQUENCE.sub("", shown) == "Jane Doe scan"
        ingest, full = _leaks_both_ways(ds)
    assert [(leak.source_path, leak.found_in) for leak in ingest] == [
        ("(0010,0010)", "(0008,0070)")
    ]
    assert [leak.found_in for leak in full] == ["(0008,0070)"]
    ds.add_new(0x00080070, "LO", b"Ac" + escape + b"me scan")  # no name: kept as it is
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert _leaks_both_ways(ds) == ([], [])
        out = deid.apply(build_plan(), _roundtrip(ds), KEY).ds
        assert b"Ac" + escape + b"me scan" in encode(out).data  # kept as read


@pytest.mark.parametrize(
    ("charset", "name", "kept"),
    [
        ("ISO_IR 144", "Иванов^Пётр", "Иванов scan"),
        ("ISO_IR 101", "Łukasz^Żółw", "Łukasz scan"),
        ("ISO_IR 126", "Παπαδόπουλος^Νίκος", "Παπαδόπουλος scan"),
        ("ISO_IR 127", "محمد^علي", "محمد scan"),
        ("ISO_IR 166", "สมชาย^ใจดี", "สมชาย scan"),
        ("ISO_IR 148", "Y\u0131lmaz^A\u011fa", "Y\u0131lmaz scan"),  # (a dotless i)
    ],
)
def test_a_name_in_a_character_set_no_searched_encoding_gives_is_a_leak(charset, name, kept):
    """The patient's name in the kept Manufacturer, both in a character set whose bytes
    beyond ASCII no encoding the header bytes are searched in gives (Cyrillic, Latin-2,
    Greek, Arabic, Thai, Latin-5): the ingest's check found nothing there, and the copy went
    out with the name, which `verify` (decoding every element) then found."""
    ds = make_instance(marker="LEAKY", SpecificCharacterSet=charset, PatientName=name)
    ds.Manufacturer = kept
    ingest, full = _leaks_both_ways(ds)
    assert [(leak.source_path, leak.found_in) for leak in ingest] == [
        ("(0010,0010)", "(0008,0070)")
    ]
    assert [(leak.source_path, leak.found_in) for leak in full] == [("(0010,0010)", "(0008,0070)")]
    ds.Manufacturer = kept.replace(name.split("^")[0], "Acme")  # ASCII only: its bytes searched
    assert _leaks_both_ways(ds) == ([], [])


@pytest.mark.parametrize(
    ("name", "kept"),
    [("DOE^JANE", "Jane Doe scan"), ("Doe^Jane", "JANE DOE"), ("Smith^Mary", "seen by smith")],
)
def test_a_name_in_another_case_in_a_kept_text_is_a_leak(name, kept):
    """A reader knows the patient "DOE^JANE" in "Jane Doe scan": both checks compared values
    as written, case and all, and the copy went out with the name."""
    ds = make_instance(marker="LEAKY", PatientName=name)
    ds.Manufacturer = kept
    ingest, full = _leaks_both_ways(ds)
    assert [leak.source_path for leak in ingest] == ["(0010,0010)"]  # (the header bytes)
    assert [(leak.source_path, leak.found_in) for leak in full] == [("(0010,0010)", "(0008,0070)")]


def test_a_description_in_another_case_in_a_kept_value_is_no_leak():
    """A description is removed for what it might hold: its words in a kept code ("Scout" in
    the Scan Options "SCOUT MODE") are no leak, in another case as in its own."""
    ds = make_instance(marker="LEAKY", SeriesDescription="Scout", ScanOptions="SCOUT MODE")
    assert _leaks_both_ways(ds) == ([], [])
    ds.ScanOptions = "Scout mode"  # in its own case: as before, a leak
    ingest, full = _leaks_both_ways(ds)
    assert [leak.source_path for leak in full] == ["(0008,103E)"]
    assert [leak.source_path for leak in ingest] == ["(0008,103E)"]


def test_a_name_holding_an_escape_its_reader_left_in_is_searched_for_without_it():
    """The patient's name "Dor", ESC ( J, "ian^Jane": pydicom does not know the escape (JIS X
    0201's Roman letters) and leaves it in, another reader takes it out and shows "Dorian".
    Recorded as pydicom read it, "Dorian" in the kept Manufacturer was no leak."""
    ds = make_instance(marker="LEAKY", SpecificCharacterSet="ISO_IR 100")
    ds.add_new(0x00100010, "PN", b"Dor\x1b(Jian^Jane")
    ds.Manufacturer = "Dorian scan"
    with warnings.catch_warnings():  # (pydicom's, on an escape it does not know)
        warnings.simplefilter("ignore")
        ingest, full = _leaks_both_ways(ds)
    assert [leak.source_path for leak in ingest] == ["(0010,0010)"]
    assert [(leak.source_path, leak.found_in) for leak in full] == [("(0010,0010)", "(0008,0070)")]


@pytest.mark.parametrize(
    ("charset", "name", "kept"),
    [
        ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう", "山田太郎様の検査"),
        ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう", "やまだ スキャナ"),
        ("ISO_IR 192", "Yamada^Tarou=山田^太郎", "山田 scanner"),
        ("GB18030", "王^小明", "王小明的检查"),
        ("ISO_IR 192", "王小明", "王小明的检查"),
        ("ISO_IR 192", "홍^길동", "홍길동님 검사"),
        ("\\ISO 2022 IR 149", "홍길동", "홍길동님 검사"),
        ("ISO_IR 192", "Yamada^Tarou", "山田Tarou"),  # a Latin name beside wide letters
    ],
)
def test_a_short_east_asian_name_in_a_kept_text_is_a_leak(charset, name, kept):
    """Two ideographs, kana or Hangul syllables are a whole name (山田, 小明, 길동), and a
    name goes on into the next word unspaced ("山田太郎様"). Values under four characters
    were never recorded, and a name with a letter right after it was no word of its own:
    neither check searched for these, and the copies went out with them."""
    ds = make_instance(marker="LEAKY", SpecificCharacterSet=charset, PatientName=name)
    ds.Manufacturer = kept
    ingest, full = _leaks_both_ways(ds)
    assert [leak.source_path for leak in ingest] == ["(0010,0010)"]  # (the header bytes)
    assert [(leak.source_path, leak.found_in) for leak in full] == [("(0010,0010)", "(0008,0070)")]


def test_short_latin_values_and_names_inside_words_are_still_no_leak():
    """Two letters say nothing in Latin script ("Li"), nor a name inside a longer word
    ("MARY" in "PRIMARY"); one ideograph (王) alone likewise."""
    assert values.weight("Li") == 2
    assert values.weight("王") == 2
    assert values.weight("山田") == 4
    assert values.weight("Jürgen") == 6
    assert values.weight("ﾀﾛ") == 4  # half-width kana (JIS X 0201)
    assert verify._word_in("ﾔﾏﾀﾞ", "ﾔﾏﾀﾞﾀﾛｳ")
    assert verify._word_in("Tarou", "山田Tarou")
    assert not verify._word_in("Mary", "PRIMARY")
    assert not verify._word_in("Mary", "Maryland")
    ds = make_instance(marker="LEAKY", SpecificCharacterSet="ISO_IR 192", PatientName="王^Mary")
    ds.Manufacturer = "PRIMARY 王氏"
    assert _leaks_both_ways(ds) == ([], [])


def test_date_shift_across_midnight_keeps_intervals():
    plan = build_plan(["retain-long-modified-dates"])
    a = deid.apply(
        plan,
        _roundtrip(make_instance(1, 1, AcquisitionDateTime="20231231235900", StudyDate="20231231")),
        KEY,
    ).ds
    b = deid.apply(
        plan,
        _roundtrip(make_instance(1, 2, AcquisitionDateTime="20240101000100", StudyDate="20240101")),
        KEY,
    ).ds
    from datetime import datetime  # noqa: PLC0415

    def t(v):
        return datetime.strptime(v + "+0000", "%Y%m%d%H%M%S%z")

    assert (t(b.AcquisitionDateTime) - t(a.AcquisitionDateTime)).total_seconds() == 120
    assert a.AcquisitionDateTime != "20231231235900"


@pytest.mark.parametrize(
    ("elements", "rejected"),
    [
        ({"BurnedInAnnotation": "YES"}, True),
        ({"Modality": "US", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.6.1"}, True),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, True),
        ({"Modality": "US", "BurnedInAnnotation": "NO"}, False),
        ({}, False),
    ],
)
def test_burned_in_policy(elements, rejected):
    ds = make_instance(**elements)
    if rejected:
        with pytest.raises(DeidError, match="burned-in") as e:
            deid.apply(build_plan(), _roundtrip(ds), KEY)
        assert e.value.reason == "burned_in_annotation"
        out = deid.apply(build_plan(burned_in="allow"), _roundtrip(ds), KEY).ds
        assert out.PatientIdentityRemoved == "YES"
    else:
        deid.apply(build_plan(), _roundtrip(ds), KEY)
    assert build_plan(burned_in="allow").burned_in is BurnedInPolicy.ALLOW


def test_leak_in_a_kept_element_is_found():
    ds = make_instance(marker="LEAKY")
    ds.Manufacturer = "Doe^LEAKY1^Q"  # the patient's name typed into a kept field
    original = _roundtrip(ds)
    values = verify.identifying_values(build_plan(), original)
    out = deid.apply(build_plan(), original, KEY).ds
    leaks = verify.find_leaks(values, out)
    assert leaks[0].found_in == "(0008,0070)"
    assert all("LEAKY" not in repr(leak) for leak in leaks)


def _leaks_both_ways(ds: Dataset) -> tuple[list[verify.Leak], list[verify.Leak]]:
    """The ingest's check (in the pass, changed elements decoded) and `verify`'s (all).

    Each knows the pseudonyms, as the ingest and `verify` with the key file do: an ID of
    digits ("00000") inside one is chance (KEY is new each run).
    """
    original = _roundtrip(ds)
    values = verify.identifying_values(build_plan(), _roundtrip(ds))
    found: dict[str, str] = {}
    result = deid.apply(build_plan(), original, KEY, found=found)
    out, made = result.ds, result.generated
    ingest = verify.find_leaks(found, out, encode(out).header, changed_only=True, generated=made)
    return ingest, verify.find_leaks(values, out, generated=made)


UN_NAME = (0x00100010, b"Doe^UNMK7 ")  # an implicit VR element: a name in a UN item


def _without(ds: Dataset, tag: int) -> bytes:
    del ds[tag]
    return to_bytes(ds)


def _big_endian_with_un_sequence(ds: Dataset) -> bytes:
    """``ds`` in explicit VR big endian, with a sequence written as UN: its value is implicit
    VR little endian whatever the transfer syntax (PS3.5 6.2.2)."""
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, little_endian=False, implicit_vr=False)
    data = buf.getvalue()
    item = implicit_item(UN_NAME)
    element = struct.pack(">HH2sHI", 0x0008, 0x1115, b"UN", 0, len(item)) + item
    pos = data.index(struct.pack(">HH", 0x0010, 0x0010), 300)
    return data[:pos] + element + data[pos:]


UN_CASES = {
    "a kept sequence": lambda ds: with_element(
        to_bytes(ds), 0x00081115, b"UN", implicit_item(UN_NAME), before=0x00100010
    ),
    "a kept sequence, undefined length": lambda ds: with_un_sequence(
        to_bytes(ds), 0x00081115, implicit_item(UN_NAME, undefined=True), before=0x00100010
    ),
    "a kept sequence, big endian file": _big_endian_with_un_sequence,
    "a name the table does not list": lambda ds: with_element(
        to_bytes(ds), 0x00140104, b"UN", b"Doe^UNMK7 ", before=0x00180015
    ),
    "the patient's name": lambda ds: with_element(
        _without(ds, 0x00100010), 0x00100010, b"UN", b"Doe^UNMK7 ", before=0x00100020
    ),
}


def _copied_without(data: bytes, value: bytes) -> Dataset:
    """The copy of the object ``data``, read back, once ``value`` is found in neither it nor
    its index header (nor base64 of it), and both leak checks find nothing."""
    ingest, full = _leaks_both_ways(pydicom.dcmread(io.BytesIO(data)))
    assert (ingest, full) == ([], [])
    out = deid.apply(build_plan(), pydicom.dcmread(io.BytesIO(data)), KEY).ds
    copy_bytes = encode(out).data
    header = extract.header_json_text(out, "x.dcm")  # what PostgreSQL and MongoDB get
    for where in (copy_bytes, header.encode()):
        assert value.strip() not in where
        assert base64.b64encode(value)[:8] not in where
    return pydicom.dcmread(io.BytesIO(copy_bytes))


@pytest.mark.parametrize("case", UN_CASES)
def test_public_attributes_written_as_un_are_read_by_their_dictionary_vr(case):
    """Some systems write known attributes as UN (an implicit VR object made explicit without
    a dictionary). Such an element is read by its dictionary VR: a sequence's items are
    walked, a name is judged as a name. Kept as UN bytes, the name reached the copy, and
    base64 of it the index; the leak check did not look inside."""
    data = UN_CASES[case](make_instance(marker="LEAKY"))
    written = _copied_without(data, b"Doe^UNMK7 ")
    if "sequence" in case:
        seq = written[0x00081115]
        assert seq.VR == "SQ"
        assert len(seq.value) == 1  # kept, its item cleaned
        assert str(seq.value[0].PatientName) != "Doe^UNMK7"
    assert all(e.VR != "UN" for e in written.iterall() if not e.tag.is_private)


BYTES_CASES = {  # tag, VR, value, the element it is written before
    "the patient's name as OB": (0x00100010, b"OB", b"Doe^UNMK7 ", 0x00100020),
    "the patient's name as OW": (0x00100010, b"OW", b"Doe^UNMK7 ", 0x00100020),
    "the birth date as OB": (0x00100030, b"OB", b"19700101", 0x00100040),
    "a name the table does not list as OB": (0x00140104, b"OB", b"Doe^UNMK7 ", 0x00180015),
    "the institution as OB": (0x00080080, b"OB", b"UNMK7 Hospital", 0x00080090),
}


@pytest.mark.parametrize("case", BYTES_CASES)
def test_text_attributes_written_as_bytes_are_read_by_their_dictionary_vr(case):
    """A name or a date written as OB or OW was kept as bytes where the table keeps it by
    VR, or given a pseudonym or dummy that could not be encoded: the object was lost as
    `encode_failed`. It is read by its dictionary VR, as one written as UN is."""
    tag, vr, value, before = BYTES_CASES[case]
    ds = make_instance(marker="LEAKY")
    if tag in ds:
        del ds[tag]
    data = with_element(to_bytes(ds), tag, vr, value, before=before)
    stored_as = pydicom.dcmread(io.BytesIO(data)).get_item(tag).VR
    assert stored_as == vr.decode()
    written = _copied_without(data, value)
    if tag in written:
        written_as = written.get_item(tag).VR
        assert written_as == dictionary_VR(tag)


@pytest.mark.parametrize(
    "vr",
    [b"SL", b"US", b"FD", b"AT", b"DS", b"OB", b"UN", b"U\xc9"],
    ids=["SL", "US", "FD", "AT", "DS", "OB", "UN", "unknown"],
)
@pytest.mark.parametrize(
    ("tag", "pad"), [(0x0020000E, b"\0"), (0x00100020, b" ")], ids=["series UID", "patient ID"]
)
def test_an_identifying_attribute_under_a_damaged_vr_is_read_as_what_it_holds(tag, pad, vr):
    """A UID or an ID whose VR was damaged ("UI" became "SL"; found by the fuzz). Given a
    pseudonym, it could not be written under a VR of numbers (`encode_failed`), nor read as
    a number string (`invalid_element`), nor at all under a VR no edition defines
    (`undecodable`); one written as OB got the right pseudonym, but the vault mapped it to
    the text of its bytes' repr. Its bytes are its text: it is read by its
    dictionary VR, before anything reads it, and de-identified as a sound one is."""
    sound = make_instance(1, 1, 1, 2)
    value = str(sound[tag].value).encode()
    value += pad * (-len(value) % 8)  # whole numbers of any of these VRs
    ds = make_instance(1, 1, 1, 2)
    del ds[tag]
    before = min(e.tag for e in ds if e.tag > tag)
    data = with_element(to_bytes(ds), tag, vr, value, before=before)
    stored_as = pydicom.dcmread(io.BytesIO(data)).get_item(tag).VR
    assert stored_as == vr.decode("latin-1")
    damaged = deid.apply(build_plan(), pydicom.dcmread(io.BytesIO(data)), KEY)
    expected = deid.apply(build_plan(), pydicom.dcmread(io.BytesIO(to_bytes(sound))), KEY)
    assert set(damaged.identities) == set(expected.identities)  # the vault: the same originals
    written = pydicom.dcmread(io.BytesIO(encode(damaged.ds).data))
    written_as = written[tag].VR
    assert written_as == dictionary_VR(tag)
    assert written[tag].value == expected.ds[tag].value != sound[tag].value


@pytest.mark.parametrize("vr", [b"SL", b"FD", b"FL", b"UL", b"U\xc9"], ids=repr)
def test_a_number_under_a_number_vr_it_cannot_be_is_read_by_its_dictionary_vr(vr):
    """Bits Stored (US) whose VR was damaged into one of 4 or 8 bytes, over its 2 (found by
    the fuzz): pydicom could not read it, and the index failed the object (`index_failed`);
    under a VR no edition defines it was removed. Binary numbers of either VR are in the
    file's byte order: it is read, kept and written as the US it is."""
    ds = make_instance()
    data = to_bytes(ds)
    sound = struct.pack("<HH2sH", 0x0028, 0x0101, b"US", 2) + struct.pack("<H", ds.BitsStored)
    assert data.count(sound) == 1
    data = data.replace(sound, struct.pack("<HH2sH", 0x0028, 0x0101, vr, 2) + sound[-2:])
    out = deid.apply(build_plan(), pydicom.dcmread(io.BytesIO(data)), KEY).ds
    written = pydicom.dcmread(io.BytesIO(encode(out).data))
    written_as = written[0x00280101].VR
    assert written_as == "US"
    assert written.BitsStored == ds.BitsStored
    header = json.loads(extract.header_json_text(out, "copy.dcm"))
    assert header["00280101"] == {"vr": "US", "Value": [ds.BitsStored]}


def test_verify_reads_a_long_sequence_written_as_un_as_the_engine_does():
    """pydicom reads a UN value of 64 KiB or more as bytes, whatever its tag: `verify` reads
    it by its dictionary VR, as the engine does, so the names in its items are searched for."""
    comments = (0x00204000, b"x" * 70_000)  # makes the item, and the sequence, that long
    data = with_element(
        to_bytes(make_instance()),
        0x00081115,
        b"UN",
        implicit_item(UN_NAME, comments),
        before=0x00100010,
    )
    values = verify.identifying_values(build_plan(), pydicom.dcmread(io.BytesIO(data)))
    assert values.get("Doe^UNMK7") == "(0008,1115)[0].(0010,0010)"


def test_a_value_too_long_for_its_vr_stays_un_in_the_copy():
    """A text value over 64 KiB cannot have a 16-bit length: it is written as UN (PS3.5
    6.2.2). Read as its dictionary VR and kept, it is written as UN again, bytes unchanged."""
    value = b"\\".join([b"1.000000"] * 12000)  # DS, 108,000 bytes
    ds = make_instance()
    del ds.SliceThickness
    data = with_element(to_bytes(ds), 0x00180050, b"UN", value, before=0x0020000D)
    out = deid.apply(build_plan(), pydicom.dcmread(io.BytesIO(data)), KEY).ds
    written = pydicom.dcmread(io.BytesIO(encode(out).data))
    assert written.get_item(0x00180050).VR == "UN"
    assert written.get_item(0x00180050).value == value


def test_an_attribute_written_as_un_keeps_a_value_the_profile_keeps():
    """Read by its dictionary VR, a kept attribute written as UN is kept, now as what it is."""
    data = with_element(
        to_bytes(make_instance()), 0x00081090, b"UN", b"ACME CT 3000", before=0x00082218
    )  # in its place: after Operators' Name, before Anatomic Region Sequence
    out = deid.apply(build_plan(), pydicom.dcmread(io.BytesIO(data)), KEY).ds
    written = pydicom.dcmread(io.BytesIO(encode(out).data))
    assert written[0x00081090].VR == "LO"
    assert written.ManufacturerModelName == "ACME CT 3000"


@pytest.mark.parametrize("vr", [b"UN", b"OB"])
@pytest.mark.parametrize(
    ("tag", "good"),
    [(0x00160002, b"0.3127\\0.3290 "), (0x0016003B, b"\x01\x00")],
    ids=["text, read as its VR", "numbers, kept as bytes"],
)
def test_an_attribute_written_as_bytes_holding_no_value_of_its_vr_gets_a_dummy(vr, tag, good):
    """A damaged tag can move bytes under a kept attribute, in its place. Text and number
    strings are read by the attribute's dictionary VR: a name as Primary Chromaticities (DS)
    is no valid value of it. Binary numbers keep their VR (their byte order may be the
    file's), but their bytes must make whole numbers, as many as the attribute holds: a name
    as Scene Type (US, one value) makes five. Either gets a dummy (`verify` judges it alike);
    a valid value is kept."""
    data = to_bytes(make_instance())
    where = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    for value, action in ((b"Doe^UNMK7 ", "D"), (good, "K")):
        element = with_element(data, tag, vr, value, before=0x00180015)  # in its place
        trace: list = []
        out = deid.apply(build_plan(), pydicom.dcmread(io.BytesIO(element)), KEY, trace=trace)
        copy = encode(out.ds).data
        (step,) = [s for s in trace if s.path == where]
        assert step.action == action
        assert (value in copy) is (action == "K")
        if action == "D":
            assert step.source == MISREAD_BYTES.source


@pytest.mark.parametrize(
    ("tag", "vr"),
    [(0x00191010, "LO"), (0x00090010, "LO"), (0xC2080080, "LO"), (0x00190011, "SH")],
    ids=["private", "private creator", "not in the standard", "private, another block"],
)
def test_a_private_copy_of_a_kept_value_is_no_leak(tag, vr):
    """A private (or non-standard) element is removed for what it might hold: holding the
    whole value of an attribute the profile keeps ("SIEMENS", the Manufacturer) it holds
    nothing the copy does not, and the object is not refused for it."""
    ds = make_instance(marker="LEAKY")
    ds.Manufacturer = "SIEMENS"
    ds.add_new(tag, vr, "SIEMENS")
    assert _leaks_both_ways(ds) == ([], [])


def test_a_private_value_inside_a_kept_value_is_no_leak_but_the_patients_name_is():
    """A GE product id is the model name's first 16 characters: no leak. The patient's
    name in a kept attribute stays one, recorded from the name, whatever else holds it."""
    ds = make_instance(marker="LEAKY")
    ds.ManufacturerModelName = "LightSpeed Ultra"
    ds.add_new(0x00091004, "SH", "LightSpeed Ultr")
    ds.add_new(0x00191011, "LO", "FAMILYNAME")
    ds.Manufacturer = "FAMILYNAME"  # the patient's name typed into a kept attribute
    ds.PatientName = "FAMILYNAME^Given"
    for leaks in _leaks_both_ways(ds):
        assert {leak.source_path for leak in leaks} == {"(0010,0010)"}


def test_a_description_is_no_leak_as_a_kept_attributes_whole_value_only():
    """Study Description "Brain" as the Position Reference Indicator "Brain" (a GE MR
    series): the copy shows it there anyway. Inside a longer kept value it is still one."""
    same = make_instance(marker="LEAKY", StudyDescription="Brain")
    same.PositionReferenceIndicator = "Brain"
    assert _leaks_both_ways(same) == ([], [])
    inside = make_instance(marker="LEAKY", StudyDescription="Brain")
    inside.PositionReferenceIndicator = "Brain of Mr Who"
    for leaks in _leaks_both_ways(inside):
        assert [leak.source_path for leak in leaks] == ["(0008,1030)"]


def test_a_description_that_is_a_kept_multi_values_whole_value_is_no_leak():
    """A Derivation Description (one text) "ORIGINAL\\PRIMARY\\AXIAL" as the kept Image Type
    (three values): the copy shows it there anyway, as one value kept whole (seed 131 of
    scripts/fuzz.py: a damaged value "0.0\\0.0\\1.0", the kept Image Position's). Part of the
    list is still a leak, as a description inside a longer kept value is."""
    ds = make_instance(marker="LEAKY", DerivationDescription="ORIGINAL\\PRIMARY\\AXIAL")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert _leaks_both_ways(ds) == ([], [])
    ds.DerivationDescription = "ORIGINAL\\PRIMARY"
    for leaks in _leaks_both_ways(ds):
        assert [leak.source_path for leak in leaks] == ["(0008,2111)"]


@pytest.mark.parametrize(
    ("attribute", "path"),
    [
        ("ImageComments", "(0020,4000)"),
        ("CommentsOnRadiationDose", "(0040,0310)"),
        ("Occupation", "(0010,2180)"),
    ],
)
def test_a_comment_in_another_case_in_a_kept_code_is_no_leak(attribute, path):
    """Image Comments "Surview" beside the kept Scan Options "SURVIEW" (a Philips scout in
    fo-dicom's test files): a comment, or any attribute Clean Descriptors names, is removed
    for what it might hold, as a description is. It was searched for in any case, as a name
    is, and the object was refused. In its own case inside a longer kept value it is still a
    leak."""
    ds = make_instance(marker="LEAKY", **{attribute: "Surview"})
    ds.ScanOptions = "SURVIEW"
    assert _leaks_both_ways(ds) == ([], [])
    ds.ScanOptions = "Surview mode"
    for leaks in _leaks_both_ways(ds):
        assert [leak.source_path for leak in leaks] == [path]


def test_a_curves_code_that_is_a_kept_attributes_whole_value_is_no_leak():
    """A curve's Axis Units "DPPS" as the kept Scan Options "DPPS" (fo-dicom's test files:
    "NONE" as a kept Mask Operation): curve data (50xx) is removed whole for what it might
    hold, as a description is. It was searched for as a name is, and the object was refused.
    Inside a longer kept value it is still a leak."""
    ds = make_instance(marker="LEAKY", ScanOptions="DPPS")
    ds.add_new(0x50000030, "SH", ["DPPS", "CNTS"])
    assert _leaks_both_ways(ds) == ([], [])
    ds.ScanOptions = "DPPS MODE"
    for leaks in _leaks_both_ways(ds):
        assert [leak.source_path for leak in leaks] == ["(5000,0030)"]


def test_a_refusal_names_the_element_of_the_copy_that_holds_the_value(tmp_path):
    """The Station Name "TrueBeam1309" as the kept Radiation Machine Name (an RT image in
    fo-dicom's test files): the refusal named where the value was, (0008,1010), not the
    element of the copy that holds it, (3002,0020), which a site rule could remove. Tags
    only, never the value."""
    ds = make_instance(marker="LEAKY", StationName="TrueBeam1309")
    ds.RadiationMachineName = "TrueBeam1309"
    data = to_bytes(ds)
    configure_pydicom()
    store = LocalStore(tmp_path)
    ctx = RunContext(build_plan(), keys.generate(), store, "DI", 30, 1)
    with pytest.raises(DeidError) as refused:
        prepare(SourceFile("s1", "/a/1.dcm", len(data), lambda: data), ctx)
    store.close()
    assert refused.value.reason == "leak_detected"
    assert "(from (0008,1010) into (3002,0020))" in str(refused.value)
    assert "TrueBeam" not in str(refused.value)


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("ReferringPhysicianName", "UNKNOWN"),
        ("PatientName", "Anonymous^Unknown"),
        ("InstitutionAddress", "Unknown"),
        ("OperatorsName", "NONE"),
        ("PatientID", "0000000000"),
    ],
)
def test_a_value_that_stands_for_none_is_no_leak(attribute, value):
    """The Referring Physician's Name "UNKNOWN" beside a kept Scan Options "UNKNOWN" (fo-dicom's
    test files, as an Acquisition Contrast): a word that says there is no value, or one
    character repeated, is no one's name or ID, and the object was refused. A name beside it
    is still searched for."""
    ds = make_instance(marker="LEAKY", **{attribute: value})
    ds.ScanOptions = value.split("^")[-1]
    assert _leaks_both_ways(ds) == ([], [])
    ds.PatientName = f"{value}^Jennifer"
    ds.ScanOptions = "JENNIFER"
    for leaks in _leaks_both_ways(ds):
        assert [leak.source_path for leak in leaks] == ["(0010,0010)"]


@pytest.mark.parametrize(
    ("attribute", "value", "path"),
    [
        ("PatientID", "10008", "(0010,0020)"),
        ("StudyID", "1000", "(0020,0010)"),
        ("AccessionNumber", "0008", "(0008,0050)"),
    ],
)
def test_an_id_inside_a_uid_the_standard_defines_is_no_leak(attribute, value, path):
    """A Patient ID "10008" lies in the SOP Class UID "1.2.840.10008.5.1.4.1.1.2" and the
    transfer syntax's, as in every UID the standard defines: there by chance, as inside a
    pseudonym, and the object was refused. Anywhere else it is still a leak."""
    ds = make_instance(marker="LEAKY", **{attribute: value})
    assert ds.SOPClassUID.startswith("1.2.840.10008.")
    assert _leaks_both_ways(ds) == ([], [])
    ds.ScanOptions = f"ID {value}"
    for leaks in _leaks_both_ways(ds):
        assert [leak.source_path for leak in leaks] == [path]


@pytest.mark.parametrize(
    ("tag", "path"),
    [
        (0x00020016, "file meta (0002,0016)"),
        (0x00080055, "(0008,0055)"),
        (0x00400241, "(0040,0241)"),
    ],
    ids=["source AE title", "station AE title", "performed station AE title"],
)
def test_an_ae_title_inside_the_kept_model_name_is_no_leak(tag, path):
    """The Source AE Title "VIDIVIEW" beside the kept model name "VidiView R4" (fo-dicom's
    test files): an application entity title names a station, and is searched for as the
    Station Name is, in its own case, and not inside the kept Manufacturer or model name.
    It was searched for as a name is, and the object was refused. In any other kept value it
    is still a leak."""
    ds = make_instance(marker="LEAKY", ManufacturerModelName="VidiView R4")
    (ds.file_meta if tag >> 16 == 2 else ds).add_new(tag, "AE", "VIDIVIEW")
    assert _leaks_both_ways(ds) == ([], [])
    ds.ManufacturerModelName = "VIDIVIEW R4"
    assert _leaks_both_ways(ds) == ([], [])
    ds.ManufacturerModelName, ds.ScanOptions = "R4", "VIDIVIEW"
    for leaks in _leaks_both_ways(ds):
        assert [leak.source_path for leak in leaks] == [path]


@pytest.mark.parametrize(
    "syntax",
    [
        pydicom.uid.ExplicitVRLittleEndian,
        pydicom.uid.DeflatedExplicitVRLittleEndian,
        pydicom.uid.ExplicitVRBigEndian,
    ],
    ids=["explicit", "deflated", "big endian"],
)
def test_a_vendors_private_copy_of_a_uid_kept_by_retain_uids_is_no_leak(syntax, tmp_path):
    """Under Retain UIDs a vendor's private copy of the SOP Instance UID is in the copy
    anyway, where the option keeps it. Where pydicom writes the copy (deflated), its writer
    reads the SOP Instance UID, converting it in place, and the ingest's check took the UID
    for changed: the object was refused as a leak. Big endian likewise, where pydicom decodes
    the UIDs read for the identity map (``rawvalue.text_of``)."""
    ds = make_instance(marker="LEAKY")
    ds.add_new(0x00290010, "LO", "ACME 1.0")
    ds.add_new(0x00291010, "LO", ds.SOPInstanceUID)
    data = in_transfer_syntax(ds, syntax)
    plan = build_plan(parse_options(["retain-uids"]))
    found = verify.identifying_values(plan, pydicom.dcmread(io.BytesIO(data)))
    assert found[ds.SOPInstanceUID] == "(0029,1010)"  # searched for: removed, as private
    configure_pydicom()
    store = LocalStore(tmp_path)
    ctx = RunContext(plan, keys.generate(), store, "DI", 30, 1)
    source = SourceFile("s1", "/a/1.dcm", len(data), lambda: data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare(source, ctx)  # refused as leak_detected before
    store.close()
    copy = pydicom.dcmread(io.BytesIO(b"".join(bytes(p) for p in prepared.encoded.parts)))
    assert copy.file_meta.TransferSyntaxUID == syntax
    assert copy.SOPInstanceUID == ds.SOPInstanceUID  # kept, by the option
    assert 0x00291010 not in copy
    assert verify.find_leaks(found, copy) == []


@pytest.mark.parametrize(
    "syntax",
    [
        pydicom.uid.ExplicitVRLittleEndian,
        pydicom.uid.ImplicitVRLittleEndian,
        pydicom.uid.ExplicitVRBigEndian,
    ],
    ids=["explicit", "implicit", "big endian"],
)
def test_verify_judges_a_copy_read_back_alike_in_every_transfer_syntax(syntax):
    """`verify` reads a copy back. In implicit VR or big endian pydicom decodes its values,
    and converting them in place made those kept look changed: the description kept whole
    was reported as a leak there, never in explicit VR little endian (decoded without
    pydicom), and a second search of the same copy could differ from the first. The patient's
    name in a kept attribute is reported in every syntax, every time."""
    for kept, expected in [("Brain", []), ("FAMILYNAME", ["(0010,0010)"])]:
        ds = make_instance(marker="LEAKY", StudyDescription="Brain")
        ds.PatientName = "FAMILYNAME^Given"
        ds.PositionReferenceIndicator = kept
        data = in_transfer_syntax(ds, syntax)
        values = verify.identifying_values(build_plan(), pydicom.dcmread(io.BytesIO(data)))
        result = deid.apply(build_plan(), pydicom.dcmread(io.BytesIO(data)), KEY)
        copy = pydicom.dcmread(io.BytesIO(encode(result.ds).data))
        assert copy.file_meta.TransferSyntaxUID == syntax
        first = verify.find_leaks(values, copy, generated=result.generated)
        again = verify.find_leaks(values, copy, generated=result.generated)
        assert [leak.source_path for leak in first] == expected
        assert again == first


def test_the_vendors_name_as_the_institution_is_no_leak_elsewhere_it_is():
    """A vendor's own images: Institution Name "TOSHIBA" inside the kept Manufacturer
    "TOSHIBA_MEC", a Station Name that is the model name. The copy shows them there anyway.
    An institution's name in another kept attribute, the vendor's not, is still found."""
    ds = make_instance(marker="LEAKY", InstitutionName="TOSHIBA", StationName="LightSpeed")
    ds.Manufacturer = "TOSHIBA_MEC"
    ds.InstitutionalDepartmentName = "OFFIS"
    ds.ManufacturerModelName = "LightSpeed OFFIS"
    assert _leaks_both_ways(ds) == ([], [])
    ds.Manufacturer = "Canon"
    ds.PositionReferenceIndicator = "TOSHIBA"
    for leaks in _leaks_both_ways(ds):
        assert [leak.source_path for leak in leaks] == ["(0008,0080)"]


def test_numbers_are_no_leak():
    """A removed Patient's Weight equal to a kept number (a slice thickness) is chance."""
    ds = make_instance(marker="LEAKY")
    ds.PatientWeight = "5.000000"
    ds.SliceThickness = "5.000000"
    ds.PatientSize = "1.5"
    ds.add_new(0x00431010, "DS", "5.000000")  # private numbers alike
    assert _leaks_both_ways(ds) == ([], [])


def test_a_list_of_numbers_a_kept_list_of_numbers_holds_is_no_leak():
    """Found by scripts/fuzz.py (seeds 128, 130, 131): a removed text "0.0\\0.0\\1.0" (an
    Additional Patient History that damage gave those numbers) equal to the kept Image
    Position (Patient) refused the object: the numbers kept as read were each value, and no
    one value holds a list. Numbers in the copy anyway are chance wherever they occur, as a
    single one is (``test_numbers_are_no_leak``), inside a longer kept list too; where no
    kept number holds them, found."""
    ds = make_instance(marker="LEAKY")
    ds.AdditionalPatientHistory = "0.0\\0.0\\1.0"
    ds.Manufacturer = "scanner 0.0\\0.0\\1.0"
    assert ds.ImagePositionPatient == [0.0, 0.0, 1.0]
    assert _leaks_both_ways(ds) == ([], [])
    ds.ImagePositionPatient = ["5.0", "0.0", "1.0"]
    for leaks in _leaks_both_ways(ds):
        assert [leak.source_path for leak in leaks] == ["(0010,21B0)"]
    ds.Manufacturer = "scanner"
    ds.ImageOrientationPatient = ["1.0", "0.0", "0.0", "0.0", "0.0", "1.0"]  # inside a list
    assert _leaks_both_ways(ds) == ([], [])


def test_a_name_inside_a_longer_word_is_no_leak_a_word_of_its_own_is():
    """Mary's name is not in "PRIMARY", Gina's not in "ORIGINAL" (Image Type, in nearly
    every image); typed into a kept attribute as a word, it is found."""
    ds = make_instance(marker="LEAKY", PatientName="ROSE^MARY", OtherPatientNames="GINA")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert _leaks_both_ways(ds) == ([], [])
    ds.Manufacturer = "scanned for MARY, 2nd floor"
    for leaks in _leaks_both_ways(ds):
        assert [leak.source_path for leak in leaks] == ["(0010,0010)"]


def test_a_name_kept_whole_before_an_element_whose_tag_reads_as_a_letter_is_found():
    """In the header's bytes, a value ending in a letter is followed by the next element's
    tag: group 0072's first byte is "r". The ingest's check (which searches untouched
    elements in those bytes) took "GINA" + "r" for a longer word and missed the name that
    ``verify`` found (by the fuzz, seed 77: an age kept by an option, recorded from a
    damaged copy of it). A NUL beside the letter says it is no text."""
    ds = make_instance(marker="LEAKY", OtherPatientNames="GINA")
    ds.add_new(0x00720602, "CS", "GINA")  # Sort-by Category, kept
    ds.add_new(0x00720604, "CS", "INCREASING")  # kept: its tag follows the name
    for leaks in _leaks_both_ways(ds):
        assert [leak.source_path for leak in leaks] == ["(0010,1001)"]


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        (b"\x00JSMITH^JOHN", True),  # a big endian length (74) before it
        (b"SMITHr\x00\x04\x06", True),  # group 0072's tag after it, little endian
        (b"BLACKSMITH^JOHN", False),  # inside a longer word
        (b"SMITHSON\x00", False),  # the word goes on to the NUL padding
        (b"S\x00M\x00I\x00T\x00H\x00r\x00", False),  # UTF-16: "r" is a letter there
    ],
)
def test_a_letter_beside_a_nul_is_no_text(raw, found):
    assert bool(verify._encoded_in("SMITH", raw, ())) is found


@pytest.mark.parametrize("rule", [False, True], ids=["option", "dateshift-rule"])
def test_an_id_inside_a_shifted_date_is_chance_as_inside_a_pseudonym(rule):
    """An accession number of digits ("1217") inside a date shifted to 2022-12-17: the
    date derives from the key, as a pseudonym does, and the object was refused as a leak
    (``leak_detected``) by the ingest's check and ``verify`` alike. The number in a kept
    attribute is still found."""
    rules = rules_file.compile_rules(
        {"version": 1, "rules": [{"select": {"vr": "DA"}, "method": "dateshift"}]}
    )
    plan = build_plan((), rules=rules) if rule else build_plan((Option.RETAIN_LONG_MODIFIED_DATES,))
    ds = make_instance(marker="LEAKY")
    shifted = deid.apply(plan, _roundtrip(ds), KEY).ds.StudyDate
    assert shifted not in ("", ds.StudyDate)
    for number in (shifted[4:], shifted[:4], shifted[2:6]):
        ds.AccessionNumber = number
        found: dict[str, str] = {}
        result = deid.apply(plan, _roundtrip(ds), KEY, found=found)
        out, made = result.ds, result.generated
        assert found[number] == "(0008,0050)"
        assert (
            verify.find_leaks(found, out, encode(out).header, changed_only=True, generated=made)
            == []
        )
        values = verify.identifying_values(plan, _roundtrip(ds))
        assert verify.find_leaks(values, out, generated=made) == []
    ds.Manufacturer = f"unit {number}"  # kept: the number found there
    found = {}
    result = deid.apply(plan, _roundtrip(ds), KEY, found=found)
    leaks = verify.find_leaks(found, result.ds, changed_only=False, generated=result.generated)
    assert [leak.source_path for leak in leaks] == ["(0008,0050)"]


@pytest.mark.parametrize("first", [True, False], ids=["unknown first", "unknown last"])
def test_a_value_of_an_identifying_attribute_is_searched_for_whatever_else_holds_it(first):
    """The Operators' Name "Operator^LEAKY1", with the Institution Name "General Hospital
    LEAKY1" kept (retain-institution-identity): "LEAKY1" is a leak. A public element no
    standard defines also held "LEAKY1"; written before the Operators' Name (a damaged
    file's tags are out of order), its path was recorded first, and a value recorded only
    from such an element is no leak where a kept attribute holds it. The ingest let the copy
    through, while `verify` (which reads in tag order) found the leak (fuzz seed 85)."""
    plan = build_plan((Option.RETAIN_INSTITUTION_IDENTITY,))
    ds = make_instance(marker="LEAKY")
    assert ds.OperatorsName == "Operator^LEAKY1"
    assert ds.InstitutionName == "General Hospital LEAKY1"
    del ds.ReferringPhysicianName  # "Referrer^LEAKY1": the Operators' Name first to hold it
    unknown = 0x0008AC50  # in no edition's dictionary
    data = with_element(
        to_bytes(ds), unknown, b"PN", b"Other^LEAKY1", 0x00080020 if first else 0x00100010
    )
    original = pydicom.dcmread(io.BytesIO(data))
    tags = [int(t) for t in original._dict]  # in the file's order
    assert (tags.index(unknown) < tags.index(0x00081070)) is first
    found: dict[str, str] = {}
    result = deid.apply(plan, original, KEY, found=found)
    assert found["LEAKY1"] == "(0008,1070)"
    out = result.ds
    ingest = verify.find_leaks(found, out, encode(out).header, changed_only=True)
    values = verify.identifying_values(plan, pydicom.dcmread(io.BytesIO(data)))
    assert values["LEAKY1"] == "(0008,1070)"
    for leaks in (ingest, verify.find_leaks(values, out)):
        assert "(0008,1070)" in {leak.source_path for leak in leaks}


@pytest.mark.parametrize(
    ("strict", "lenient"),
    [
        ("(0008,1070)", "(0008,AC50)"),  # removed for what it is; a public tag no one defines
        ("(0008,1070)", "(0009,1001)"),  # a private element
        ("(0008,1070)", "(0008,1030)"),  # a description
        ("(0008,1030)", "(0009,1001)"),  # a whole kept value, or anywhere in one
        ("(0008,1070)", "@(0008,0020)"),  # a shifted date: searched for in its place only
        ("(0009,1001)", "@(0008,0020)"),
        ("preamble", "(0008,1030)"),
        ("file meta (0002,0016)", "(0009,1001)"),
    ],
)
def test_a_value_found_twice_keeps_the_path_searched_strictest(strict, lenient):
    for paths in ((strict, lenient), (lenient, strict)):
        found: dict[str, str] = {}
        for path in paths:
            values.put(found, "LEAKY1", path)
        assert found == {"LEAKY1": strict}
    found = {}
    values.put(found, "LEAKY1", "(0008,1070)")
    values.put(found, "LEAKY1", "(0010,0010)")  # as strict: the first stays
    assert found == {"LEAKY1": "(0008,1070)"}


@pytest.mark.parametrize("group", [0x7F00, 0x7F14, 0x7FDE])
def test_retired_image_data_is_removed_as_curves_and_overlays_are(group):
    """ACR-NEMA's Variable Pixel Data (7Fxx,0010), in no row of Table E.1-1, was kept: an
    image neither cleaned nor checked for burned-in text, or, with its tag damaged from
    Pixel Data's (7FE0 to 7F14, fuzz seed 95), a video whose user data names the patient,
    not blanked. Removed now, with its companions; Pixel Data itself is untouched, and a
    site rule can keep one."""
    ds = make_instance(marker="LEAKY")
    ds.add_new(group << 16 | 0x0010, "OB", b"\x00\x00\x01\x06Doe^Zqxwv recorded here\x80")
    ds.add_new(group << 16 | 0x0011, "US", 2)
    trace: list = []
    out = deid.apply(build_plan(), _roundtrip(ds), KEY, trace=trace).ds
    assert group << 16 | 0x0010 not in out
    assert group << 16 | 0x0011 not in out
    assert out.PixelData == ds.PixelData
    assert b"Zqxwv" not in encode(out).data
    why = {s.path: (s.action, s.source) for s in trace}
    assert why[f"({group:04X},0010)"][0] == "X"
    assert "retired image data" in why[f"({group:04X},0010)"][1]
    rules = rules_file.compile_rules(
        {"version": 1, "rules": [{"select": {"tag": f"({group:04X},0010)"}, "method": "keep"}]}
    )
    kept = deid.apply(build_plan((), rules=rules), _roundtrip(ds), KEY).ds
    assert kept[group << 16 | 0x0010].value == ds[group << 16 | 0x0010].value


@pytest.mark.parametrize(
    ("options", "damage"),
    [
        (("retain-long-modified-dates",), "a name as a time"),  # Clean: times kept as read
        (("retain-long-full-dates",), "a name as a time"),  # Keep
        (("clean-descriptors",), "a description under TM"),  # Clean, its VR byte damaged
    ],
)
def test_a_kept_time_that_holds_text_is_replaced(options, damage):
    """Times are kept as read wherever dates move by whole days, and never recorded for the
    leak check. A TM holding letters is no time: a description whose VR byte was damaged
    to TM (fuzz seed 89, clean-descriptors), or text written as a time. Kept as read, its
    text went into the copy. Now it gets a dummy; times, ACR-NEMA's HH:MM:SS among them,
    stay as they were."""
    plan = build_plan(options)
    ds = make_instance(marker="LEAKY")
    ds.SeriesTime = "10:15:00"
    ds.AcquisitionTime = ["101500.5", "0930"]
    data = to_bytes(ds)
    if damage == "a name as a time":
        head = struct.pack("<HH", 0x0008, 0x0030) + b"TM"
        new = b"Zqxwv^Hidden"
        at = data.index(head)
        data = data[:at] + head + struct.pack("<H", len(new)) + new + data[at + 8 + 6 :]
    else:  # Requested Procedure Description, in place, its VR byte damaged
        ds.RequestedProcedureDescription = "Zqxwv chest"
        data = to_bytes(ds)
        head = struct.pack("<HH", 0x0032, 0x1060) + b"LO"
        assert data.count(head) == 1
        data = data.replace(head, head[:4] + b"TM")
    original = pydicom.dcmread(io.BytesIO(data))
    found: dict[str, str] = {}
    out = deid.apply(plan, original, KEY, found=found).ds
    copy = encode(out).data
    assert b"Zqxwv" not in copy
    assert any("Zqxwv" in v for v in found)  # the ingest's check knows it
    values = verify.identifying_values(plan, pydicom.dcmread(io.BytesIO(data)))
    assert any("Zqxwv" in v for v in values)  # and `verify`
    if damage == "a name as a time":  # times kept as read
        assert out.SeriesTime == "10:15:00"
        assert list(out.AcquisitionTime) == ["101500.5", "0930"]
        assert out.StudyTime == "000000"  # TM's dummy


@pytest.mark.parametrize(
    "options",
    [(), ("retain-long-full-dates",), ("retain-long-modified-dates",)],
    ids=["basic", "full-dates", "modified-dates"],
)
def test_a_kept_or_shifted_date_that_holds_text_is_replaced(options, tmp_path):
    """A date or date-time holding text after the date (a name typed there, or what a
    damaged one swallowed): the profile keeps a few (an Expiration Date Time), options keep
    or shift the rest. Kept, the text went into the copy, unchecked where no other attribute
    held it ("Zqxwv"); shifted, a date-time kept it after the new date, and the shifted
    value, taken for derived from the key, hid the patient's name inside it from the ingest's
    check (`verify` found it). Now such a value gets a dummy; dates and date-times stay or
    move as they did, ACR-NEMA's YYYY.MM.DD and an offset among them."""
    plan = build_plan(options)
    ds = make_instance(marker="LEAKY", PatientName="Doe^Johnathan")
    ds.add_new(0x00080416, "DT", "20230101 call Zqxwv")  # Expiration Date Time: kept
    ds.AcquisitionDateTime = "20230101120000 Zqxwv"
    ds.add_new(0x00181202, "DT", "20230101 Johnathan")  # Date Time of Last Calibration
    ds.SeriesDate = "20230101 Zqxwv"
    ds.StudyDate = "2023.01.01"
    ds.add_new(0x00181200, "DA", "20230101")  # Date of Last Calibration
    ds.ContentDate = "20230101"
    ds.add_new(0x0018A002, "DT", "20230101120000.5+0100")  # Contribution DateTime
    data = to_bytes(ds)
    configure_pydicom()
    store = LocalStore(tmp_path)
    ctx = RunContext(plan, keys.generate(), store, "DI", 30, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare(SourceFile("s1", "/a/1.dcm", len(data), lambda: data), ctx)
    store.close()
    copy = b"".join(bytes(p) for p in prepared.encoded.parts)
    assert b"Johnathan" not in copy
    assert b"Zqxwv" not in copy
    out = pydicom.dcmread(io.BytesIO(copy))
    found = verify.identifying_values(plan, pydicom.dcmread(io.BytesIO(data)))
    assert verify.find_leaks(found, out) == []
    for tag in (0x00080416, 0x0008002A, 0x00181202, 0x00080021):  # those in the copy: dummies
        assert tag not in out or out[tag].value in ("19000101", "19000101000000", ""), tag
    assert out[0x00080416].value == "19000101000000"  # kept by every setting: DT's dummy
    if options == ("retain-long-full-dates",):
        assert (out.StudyDate, out.ContentDate) == ("2023.01.01", "20230101")
        assert out[0x0018A002].value == "20230101120000.5+0100"
    if options == ("retain-long-modified-dates",):
        assert out.ContentDate != "20230101"
        assert out[0x0018A002].value.endswith("120000.5+0100")  # the time of day and offset
        assert out[0x0018A002].value[:8] == out.ContentDate  # moved alike


def _with_raw(ds: Dataset, values: dict[str, tuple[str, str]]) -> bytes:
    """``ds`` written with each keyword's value set, then its bytes replaced by text no
    value of its VR is (pydicom refuses to set it)."""
    for keyword, (sound, _) in values.items():
        setattr(ds, keyword, sound)
    data = to_bytes(ds)
    for sound, text in values.values():
        assert data.count(sound.encode()) == 1
        assert len(sound) == len(text)
        data = data.replace(sound.encode(), text.encode())
    return data


@pytest.mark.parametrize("options", [(), ("retain-patient-characteristics",)])
def test_a_kept_number_or_age_that_holds_text_is_replaced(options):
    """A number string or an age holding text (written there, or a description whose VR
    byte was damaged): kept as read, the text went into the copy, and the leak check took
    what a kept number holds for chance, a name among it. Now it gets a dummy; numbers and
    ages, an exponent among them, stay."""
    ds = make_instance(marker="LEAKY", PatientName="Zqxwv^Johnathan")
    ds.SpacingBetweenSlices = "1.5E-01"
    data = _with_raw(
        ds,
        {
            "SliceThickness": ("5.00000", "5 Zqxwv"),
            "InstanceNumber": ("1000000", "1 Zqxwv"),
            "KVP": ("120.0", "Zqxwv"),
            "PatientAge": ("042Y 12345", "042Y Zqxwv"),
            "PatientWeight": ("70.00000", "70 Zqxwv"),
        },
    )
    plan = build_plan(options)
    found: dict[str, str] = {}
    out = deid.apply(plan, pydicom.dcmread(io.BytesIO(data)), KEY, found=found).ds
    copy = encode(out).data
    assert b"Zqxwv" not in copy
    assert (out.SliceThickness, out.InstanceNumber, out.KVP) == (0, 0, 0)  # DS's, IS's dummy
    assert out.SpacingBetweenSlices == 0.15
    if options:
        assert (out.PatientAge, out.PatientWeight) == ("000Y", 0)


@pytest.mark.parametrize("options", [(), ("retain-uids",), ("retain-uids", "retain-safe-private")])
def test_a_kept_uid_that_holds_text_gets_its_pseudonym(options):
    """A UID holding text (a name typed after it, a description whose VR byte was damaged):
    a class UID, which every setting keeps, and an instance UID, which Retain UIDs keeps,
    went into the copy as read. Now such a UID gets its keyed pseudonym, as any instance UID
    does: a reference to it still matches. Sound UIDs stay as they are kept. A UID is
    recorded whole, not in a person name's parts: "1.2.999.560." of a damaged
    "1.2.999.560.=7" is inside a sound one kept beside it, no leak. Of a UID's values, only
    those holding text are replaced: the sound one stays, as it does in an item."""
    text_uid = "1.2.826.0.1.3680043.2.1125.7 Zqxwv"
    ds = make_instance(marker="LEAKY", PatientName="Doe^Johnathan")
    ds.SeriesInstanceUID = sound_series = "1.2.999.560.77"
    sound_class = ds.SOPClassUID
    item = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.FrameOfReferenceUID = "1.2.999.560.=7"
        ds.StudyInstanceUID = text_uid
        item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1 Zqxwv"
        item.ReferencedSOPInstanceUID = text_uid
        item.add_new(0x300600C2, "UI", "1.2.999.497.77")  # Related Frame of Reference UID
        ds.add_new(0x300600C2, "UI", ["1.2.999.497.77", "Zqxwv.1"])
        ds.SourceImageSequence = [item]
        original = _roundtrip(ds)
        found: dict[str, str] = {}
        out = deid.apply(build_plan(options), _roundtrip(ds), KEY, found=found).ds
        copy = encode(out).data
        assert b"Zqxwv" not in copy
        ref = out.SourceImageSequence[0]
        assert out.StudyInstanceUID == ref.ReferencedSOPInstanceUID != text_uid
        assert ref.ReferencedSOPClassUID == pseudonym.uid(KEY, item.ReferencedSOPClassUID)
        assert out.SOPClassUID == sound_class
        assert (out.SeriesInstanceUID == sound_series) is ("retain-uids" in options)
        assert out.FrameOfReferenceUID == pseudonym.uid(KEY, "1.2.999.560.=7")
        related = [out[0x300600C2].value[0], ref[0x300600C2].value]
        if "retain-uids" in options:
            assert related == ["1.2.999.497.77"] * 2
            assert out[0x300600C2].value[1] == pseudonym.uid(KEY, "Zqxwv.1")
            assert "1.2.999.497.77" not in found
        values = verify.identifying_values(build_plan(options), original)
        assert verify.find_leaks(values, pydicom.dcmread(io.BytesIO(copy))) == []
        # the ingest's own check records the UID: had it stayed, the object was refused
        assert text_uid in found


def test_a_binary_number_read_without_its_vr_whose_bytes_fit_no_value_is_replaced(tmp_path):
    """Implicit VR: an element is read by the VR its tag names, so a name a damaged tag moved
    under a kept binary number's tag is read as numbers. Eight letters under an angle of one
    value made four, kept as read: the name went into the copy. Seven under the Acquisition
    Matrix made no whole ones: the index could not read them (``index_failed``). Now both get
    a dummy; sound numbers stay."""
    ds = make_instance(marker="LEAKY", PatientName="Doe^Johnathan")
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    data = to_bytes(ds)
    data = with_implicit_element(data, 0x00181310, b"Zqxwv^J", 0x0020000D)  # US, 4 values
    data = with_implicit_element(data, 0x00189219, b"Zqxwv^Jo", 0x0020000D)  # SS, 1 value
    configure_pydicom()
    store = LocalStore(tmp_path)
    ctx = RunContext(build_plan(), keys.generate(), store, "DI", 30, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare(SourceFile("s1", "/a/1.dcm", len(data), lambda: data), ctx)
        record = work.index(prepared, ctx).record  # index_failed before, for the matrix
    store.close()
    copy = b"".join(bytes(p) for p in prepared.encoded.parts)
    assert b"Zqxwv" not in copy
    out = pydicom.dcmread(io.BytesIO(copy))
    assert (out[0x00181310].value, out[0x00189219].value) == (0, 0)  # a number's dummy
    assert (out.Rows, out.Columns) == (ds.Rows, ds.Columns)  # sound: kept as read
    assert record is not None


def test_a_name_in_a_kept_number_string_is_found():
    """`verify` of a copy another tool made, a name in its Slice Thickness: what a kept
    number holds is chance, but text that is no number is searched as any text is."""
    original = make_instance(marker="LEAKY", PatientName="Zqxwv^Johnathan")
    original.SliceThickness = "5.0000"
    copy = encode(deid.apply(build_plan(), _roundtrip(original), KEY).ds).data
    values = verify.identifying_values(build_plan(), _roundtrip(original))
    assert verify.find_leaks(values, pydicom.dcmread(io.BytesIO(copy))) == []
    assert copy.count(b"5.0000") == 1
    copy = copy.replace(b"5.0000", b"Zqxwv ")  # what another tool wrote
    leaks = verify.find_leaks(values, pydicom.dcmread(io.BytesIO(copy)))
    assert [leak.source_path for leak in leaks] == ["(0010,0010)"]


def test_an_id_inside_letters_is_a_leak_inside_a_kept_number_not():
    """Digits need no word edge: an MRN inside "MRN12345678" is the MRN. A Device Serial
    Number "00012" inside a kept Slice Thickness "6.000120" is chance. (A zero-filled one,
    "00000", stands for none, and is not searched for: ``values.placeholder``.)"""
    ds = make_instance(marker="LEAKY", PatientID="12345678")
    ds.DeviceSerialNumber = "00012"
    ds.SliceThickness = "6.000120"
    assert _leaks_both_ways(ds) == ([], [])
    ds.Manufacturer = "MRN12345678"
    ds.ManufacturerModelName = "SN00012"
    for leaks in _leaks_both_ways(ds):
        assert [leak.source_path for leak in leaks] == ["(0010,0020)", "(0018,1000)"]


@pytest.mark.skipif(_tool("dcmdump") is None, reason="dcmtk (dcmdump) not installed")
@pytest.mark.parametrize("names", OPTION_SETS, ids=lambda n: "+".join(n) or "basic")
def test_outputs_pass_dcmdump(tmp_path, names):
    ds, _ = kitchen_sink.build()
    _values, _out, data, _made = _run(build_plan(names), ds)
    path = tmp_path / "out.dcm"
    path.write_bytes(data)
    p = subprocess.run(
        [_tool("dcmdump"), "-q", str(path)], capture_output=True, text=True, check=False
    )
    assert p.returncode == 0, p.stderr
    assert "E:" not in p.stderr


def _dciodvfy_errors(path) -> set[str]:
    exe = _tool("dciodvfy")
    p = subprocess.run([exe, "-new", str(path)], capture_output=True, text=True, check=False)
    return {
        re.sub(r"= <.*?>", "", line) for line in p.stderr.splitlines() if line.startswith("Error")
    }


@pytest.mark.skipif(_tool("dciodvfy") is None, reason="dicom3tools not installed")
@pytest.mark.parametrize("names", OPTION_SETS, ids=lambda n: "+".join(n) or "basic")
@pytest.mark.parametrize("builder", ["sample", "kitchen_sink"])
def test_outputs_gain_no_iod_errors(tmp_path, names, builder):
    ds = make_instance() if builder == "sample" else kitchen_sink.build()[0]
    src = tmp_path / "in.dcm"
    src.write_bytes(to_bytes(ds))
    _values, _out, data, _made = _run(build_plan(names), ds)
    out = tmp_path / "out.dcm"
    out.write_bytes(data)
    gained = _dciodvfy_errors(out) - _dciodvfy_errors(src)
    assert gained == set()
    dump = subprocess.run([_tool("dcdump"), str(out)], capture_output=True, text=True, check=False)
    assert dump.returncode == 0
    assert "Error" not in dump.stderr


def test_ascii_is_the_same_bytes_in_every_searched_encoding_but_utf16():
    """The header search looks for ASCII values as UTF-8 and UTF-16 only: every other
    encoding it knows writes ASCII text as the same bytes."""
    text = "".join(chr(c) for c in range(32, 127))
    for enc in verify.ENCODINGS:
        if enc != "utf-16-le":
            assert text.encode(enc) == text.encode("ascii"), enc


class _Forgetful(dict):
    """A memo that keeps nothing: every choice is made afresh (and counted)."""

    asked = 0

    def __setitem__(self, key, value):
        self.asked += 1


def _applied(plan, ds: Dataset) -> tuple[bytes, list[object], dict[str, str]]:
    trace: list[object] = []
    found: dict[str, str] = {}
    result = deid.apply(plan, _roundtrip(ds), KEY, trace=trace, found=found)
    return encode(result.ds).data, trace, found


@pytest.mark.parametrize("names", OPTION_SETS, ids=lambda n: "+".join(n) or "basic")
def test_choices_kept_in_the_plan_are_the_choices_made_afresh(names):
    """The walk keeps what it decides per public tag, VR, type and sequence mode in the plan:
    a plan used before (twice, on objects with other SOP classes) decides every element of
    the kitchen sink as a plan that keeps nothing, trace and recorded values included."""
    ds = kitchen_sink.build()[0]
    other = kitchen_sink.build()[0]
    other.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR: other attribute types
    used = build_plan(names)
    for d in (other, ds):
        _applied(used, d)
    assert len(used.memo) > 100
    fresh = build_plan(names)
    forgetful = _Forgetful()
    object.__setattr__(fresh, "memo", forgetful)
    assert _applied(used, ds) == _applied(fresh, ds)
    assert not fresh.memo
    assert forgetful.asked > 100  # every public element's choice made afresh


def test_the_plan_memo_stays_bounded(monkeypatch):
    monkeypatch.setattr(deid.engine, "MEMO_LIMIT", 10)
    plan = build_plan()
    out = _applied(plan, kitchen_sink.build()[0])
    assert 0 < len(plan.memo) <= 10
    assert out == _applied(build_plan(), kitchen_sink.build()[0])


def _everything(plan, ds: Dataset, key: bytes = KEY) -> tuple[object, ...]:
    found: dict[str, str] = {}
    result = deid.apply(plan, _roundtrip(ds), key, found=found)
    return (
        encode(result.ds).data,
        found,
        result.identities,
        result.patient_pseudonym,
        result.generated,
    )


def _key_with_the_same_offset(patient: str) -> bytes:
    """Another key that shifts this patient's dates as KEY does (only its UIDs differ)."""
    offset = pseudonym.date_offset_days(KEY, patient, 3650)
    for seed in range(1_000_000):
        key = hashlib.sha256(seed.to_bytes(4, "little")).digest()
        if key != KEY and pseudonym.date_offset_days(key, patient, 3650) == offset:
            return key
    raise AssertionError("no such key")


def _series_of_objects() -> list[tuple[object, Dataset, bytes]]:
    """Copies of one object that differ only in what outcomes depend on: the patient (date
    offset), the key, the character set the same bytes are read in, the VR the same bytes
    are written with, the plan (options, rules)."""
    other_key = _key_with_the_same_offset("PAT-ONE-1")
    shift = {"version": 1, "rules": [{"select": {"vr": "DA"}, "method": "dateshift"}]}
    rules_file.check(shift)
    plans = [
        build_plan(),
        build_plan(("retain-uids",)),
        build_plan(("retain-long-modified-dates",)),
        build_plan(rules=compile_rules(shift)),
    ]
    base = kitchen_sink.build()[0]
    out = []
    for plan in plans:
        for patient, key in (("PAT-ONE-1", KEY), ("PAT-TWO-2", KEY), ("PAT-ONE-1", other_key)):
            # the same bytes, C3 BC: "Ã¼" in Latin-1, "ü" in UTF-8
            for charset, name in (("ISO_IR 100", "MÃ¼ller^Hans"), ("ISO_IR 192", "Müller^Hans")):
                for date_vr in ("DA", "LO"):
                    ds = copy.deepcopy(base)
                    ds.PatientID = patient
                    ds.SpecificCharacterSet = charset
                    ds.OperatorsName = name
                    ds.add_new(0x00080020, date_vr, "20200101")  # Study Date, as odd writers do
                    ds.FrameOfReferenceUID = ds.StudyInstanceUID  # the same bytes, another tag
                    out.append((plan, ds, key))
    return out


def test_outcomes_repeated_across_objects_are_the_outcomes_worked_out_afresh(monkeypatch):
    """Elements as read are looked up from the objects before them: a run of objects that
    differ in patient, key, character set and plan gives, object by object, what each
    gives worked out alone (copy, recorded values, identities, derived values)."""
    objects = _series_of_objects()
    deid.engine.OUTCOMES.clear()
    repeated = [_everything(plan, ds, key) for plan, ds, key in objects]
    assert len(deid.engine.OUTCOMES) > 100
    monkeypatch.setattr(deid.engine, "OUTCOME_VALUE_LIMIT", -1)  # nothing looked up
    deid.engine.OUTCOMES.clear()
    alone = [_everything(plan, ds, key) for plan, ds, key in objects]
    assert not deid.engine.OUTCOMES
    assert repeated == alone
    assert len({r[0] for r in alone}) == len(objects)  # they do differ


def test_the_outcome_memo_stays_bounded(monkeypatch):
    monkeypatch.setattr(deid.engine, "OUTCOME_LIMIT", 10)
    deid.engine.OUTCOMES.clear()
    plan = build_plan()
    first = _everything(plan, kitchen_sink.build()[0])
    assert 0 < len(deid.engine.OUTCOMES) <= 10
    assert _everything(plan, kitchen_sink.build()[0]) == first


def test_the_leak_check_reads_written_values_alike_from_its_memory():
    """Texts of written elements are kept (they repeat from object to object): a shifted
    date equal to its original is found in every object, and the same bytes read in two
    character sets give each set's texts."""
    ds = make_instance()
    plan = build_plan(["retain-long-modified-dates"])
    found: dict[str, str] = {}
    out = deid.apply(plan, _roundtrip(ds), KEY, found=found).ds
    out._dict[0x00080020] = rawvalue.encode(0x00080020, "DA", ds.StudyDate)  # as if not shifted
    hits = verify._texts_of.cache_info().hits
    for _ in range(3):
        leaks = verify.find_leaks(found, out, encode(out).header, changed_only=True)
        assert [leak.source_path for leak in leaks] == ["(0008,0020)"]
    assert verify._texts_of.cache_info().hits >= hits + 2
    written = rawvalue.encode(0x00081070, "PN", "Muller")._replace(value="Müller".encode())
    texts = {}
    for charset in ("ISO_IR 100", "ISO_IR 192"):
        holder = Dataset()
        holder.SpecificCharacterSet = charset
        holder.set_original_encoding(is_implicit_vr=False, is_little_endian=True)
        texts[charset] = verify._lean_texts(written, rawvalue.codec(holder))
    assert texts == {"ISO_IR 100": ("MÃ¼ller",), "ISO_IR 192": ("Müller",)}
