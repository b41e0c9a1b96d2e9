"""Values decoded and encoded without pydicom must be exactly pydicom's (rawvalue)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import pydicom
import pytest
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from indexer import deid, extract, keys
from indexer.deid import rawvalue
from indexer.work import configure_pydicom
from tests.builders import make_instance, to_bytes
from tests.deid import kitchen_sink

configure_pydicom()


def _plain(value: object) -> object:
    """pydicom's value types (MultiValue, PersonName, UID, DSfloat) as plain Python ones."""
    if isinstance(value, list | MultiValue):
        return [_plain(v) for v in value]
    if isinstance(value, str) or type(value).__name__ == "PersonName":
        return str(value)
    return value


def _raw_elements(ds: Dataset):
    """(dataset, tag, raw element) of every element still raw, items included."""
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement):
            yield ds, tag, raw
        elif raw.VR == "SQ":
            for item in raw.value:
                yield from _raw_elements(item)


def _read(ds: Dataset) -> Dataset:
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)))


def _compare_all(ds: Dataset) -> int:
    """Decode every raw element both ways; the number decoded here."""
    charset = rawvalue.codec(ds)
    assert charset is not None
    decoded = 0
    for parent, tag, raw in list(_raw_elements(ds)):
        value = rawvalue.decode(raw, raw.VR, charset)
        if value is rawvalue.UNDECODED:
            continue
        expected = parent[tag].value
        assert _plain(value) == _plain(expected), f"{tag:08X} {raw.VR}"
        assert type(_plain(value)) is type(_plain(expected)), f"{tag:08X} {raw.VR}"
        decoded += 1
    return decoded


def test_every_kitchen_sink_value_decodes_as_pydicom_decodes_it():
    ds, _markers = kitchen_sink.build()
    # values pydicom strips or splits in its own ways, per VR
    ds.add_new(0x00091010, "LO", "padded \x00")
    ds.add_new(0x00091011, "PN", "A^B \\C^D ")
    ds.add_new(0x00091012, "AE", " AE1 \\ AE2")
    ds.add_new(0x00091013, "UL", [1, 2, 3])
    ds.add_new(0x00091014, "FD", 2.5)
    ds.add_new(0x00091015, "UR", "http://x.invalid/a  ")
    ds.add_new(0x00091016, "SH", "")
    ds.add_new(0x00091017, "UI", ["1.2.3", "1.2.34"])
    ds.add_new(0x00091018, "LT", "multi\\line\r\ntext  ")
    assert _compare_all(_read(ds)) > 400


@pytest.mark.parametrize(
    ("charset", "name"),
    [("ISO_IR 100", "Müller^Jürgen"), ("ISO_IR 192", "Ñoño^Zoë^Łukasz"), ("", "Plain^Name")],
)
def test_character_sets_decode_as_pydicom_decodes_them(charset, name):
    ds = make_instance(PatientName=name, InstitutionName=f"Klinik {name}")
    if charset:
        ds.SpecificCharacterSet = charset
    else:
        del ds.SpecificCharacterSet
    assert _compare_all(_read(ds)) > 20


def test_escape_sequences_and_odd_values_are_left_to_pydicom():
    ds = make_instance(
        SpecificCharacterSet="\\ISO 2022 IR 87",
        PatientName="Yamada^Tarou=山田^太郎=やまだ^たろう",
    )
    read = _read(ds)
    raw = read.get_item(0x00100010)
    assert rawvalue.decode(raw, "PN", rawvalue.codec(read)) is rawvalue.UNDECODED
    odd = RawDataElement(BaseTag(0x00091010), "US", 3, b"\x01\x00\x02", 0, False, True)  # noqa: FBT003
    assert rawvalue.decode(odd, "US", "latin_1") is rawvalue.UNDECODED  # not whole values
    ds = make_instance()
    ds.add_new(0x00091011, "DS", "1.5")  # numbers as text: pydicom's own types
    read = _read(ds)
    assert rawvalue.decode(read.get_item(0x00091011), "DS", "latin_1") is rawvalue.UNDECODED
    # a VR other than the one asked for, a value not bytes
    assert rawvalue.decode(read.get_item(0x00100010), "LO", "latin_1") is rawvalue.UNDECODED
    big = make_instance()
    big.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.2"
    assert rawvalue.codec(_read(big)) is None


def test_implicit_vr_values_are_decoded_once_given_their_vrs():
    """An implicit VR element has no VR as read (pydicom decodes it); given the dictionary's,
    its bytes are decoded here, to pydicom's value. Private elements but creators keep none."""
    ds = make_instance(SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Hans")
    block = ds.private_block(0x0011, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "private text")
    ds.SmallestImagePixelValue = 0  # "US or SS": pydicom settles it from other elements
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, implicit_vr=True)
    read = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    codec = rawvalue.codec(read)
    assert codec == "iso8859-1"
    name = read.get_item(0x00100010)
    assert name.VR is None
    assert rawvalue.decode(name, "PN", codec) is rawvalue.UNDECODED
    rawvalue.give_vrs(read)
    given = {tag: read.get_item(tag).VR for tag in (0x00100010, 0x00110010, 0x00111001)}
    assert given == {0x00100010: "PN", 0x00110010: "LO", 0x00111001: None}
    assert read.get_item(0x00280106).VR is None
    reference = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    for tag in (0x00100010, 0x00080060, 0x0020000D, 0x00280010, 0x00110010):
        decoded = rawvalue.decode(read.get_item(tag), read.get_item(tag).VR, codec)
        assert decoded is not rawvalue.UNDECODED
        assert decoded == reference[tag].value


def _pydicom_bytes(tag: int, vr: str, value: object) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, DataElement(tag, vr, value), ["iso8859"])
    return fp.getvalue()


def _lean_bytes(written: RawDataElement) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, written, ["iso8859"])
    return fp.getvalue()


ENCODABLE = [
    ("PN", "ANONYMIZED"),
    ("PN", "DI1234567"),
    ("UI", "2.25.1234567"),
    ("UI", "2.25.12345678"),
    ("UI", ["2.25.1", "2.25.22"]),
    ("UI", ""),
    ("DA", "19000101"),
    ("DA", ["19000101", "20200202"]),
    ("DT", "19000101000000"),
    ("TM", "000000"),
    ("TM", "1015"),
    ("CS", "ANONYMIZED"),
    ("CS", ""),
    ("AE", "ANONYMOUS"),
    ("AS", "000Y"),
    ("LO", "ANONYMIZED"),
    ("LO", ["A", "BB"]),
    ("SH", "odd"),
    ("LT", "ANONYMIZED"),
    ("ST", None),
    ("UT", "ANONYMIZED"),
    ("UC", "x"),
    ("UR", ""),
    ("US", 0),
    ("US", None),
    ("UL", 0),
    ("SS", -3),
    ("SL", 0),
    ("FL", 0.0),
    ("FD", 0.0),
    ("SV", 0),
    ("UV", 0),
    ("OB", b""),
    ("OW", b""),
]


@pytest.mark.parametrize(("vr", "value"), ENCODABLE)
def test_encoded_values_are_byte_for_byte_pydicoms(vr, value):
    written = rawvalue.encode(0x00100010, vr, value)
    assert isinstance(written, rawvalue.Written)
    assert written.length == len(written.value)
    assert _lean_bytes(written) == _pydicom_bytes(0x00100010, vr, value)


@pytest.mark.parametrize(
    ("vr", "value"),
    [
        ("PN", "Müller"),  # not ASCII: pydicom encodes it in the data set's character set
        ("DS", "0"),
        ("IS", "0"),
        ("AT", 0),
        ("US", [1, 2]),
        ("US", 70000),
        ("OB", b"\x01"),
        ("SQ", Sequence([])),
        ("LO", 5),
        ("UN", b""),
    ],
)
def test_values_outside_the_lean_cases_are_left_to_pydicom(vr, value):
    assert rawvalue.encode(0x00100010, vr, value) is None


def _pydicom_json(ds: Dataset) -> dict:
    return ds.to_json_dict(
        bulk_data_threshold=extract.BULK_THRESHOLD,
        bulk_data_element_handler=lambda e: f"copy.dcm#{e.tag:08X}",
    )


def _odd_numbers(ds: Dataset) -> Dataset:
    ds.add_new(0x00091020, "DS", ["1.5", "-2", "3e2", " 4 "])
    ds.add_new(0x00091021, "IS", ["12", "-3", "+4"])
    ds.add_new(0x00091022, "DS", "")
    ds.add_new(0x00091023, "IS", "7")
    ds.add_new(0x00091024, "OB", b"\x01\x02" * 700)  # bulk data: a URI
    ds.add_new(0x00091025, "OB", b"\x01\x02\x03\x04")  # inline
    ds.add_new(0x00091026, "PN", ["A^B=C^D=E^F", "G^H"])
    ds.add_new(0x00091027, "FL", [1.5, 2.25])
    ds.add_new(0x00091028, "AT", [0x00100010])
    return ds


@pytest.mark.parametrize(
    "build",
    [
        lambda: _odd_numbers(kitchen_sink.build()[0]),
        lambda: make_instance(SpecificCharacterSet="ISO_IR 192", PatientName="Ñoño^Zoë"),
        lambda: make_instance(SpecificCharacterSet="\\ISO 2022 IR 87", PatientName="山田^太郎"),
    ],
    ids=["kitchen-sink", "utf8", "iso2022"],
)
def test_json_header_is_pydicoms(build):
    ds = build()
    lean, reference = _read(ds), _read(ds)
    assert extract.header_json(lean, "copy.dcm") == _pydicom_json(reference)
    _assert_text_is_the_json(lambda: _read(ds))
    # and after de-identification, with the elements it wrote as bytes
    plan = deid.build_plan()
    key = keys.generate().pseudonym
    lean = deid.apply(plan, _read(ds), key).ds
    reference = deid.apply(plan, _read(ds), key).ds
    assert extract.header_json(lean, "copy.dcm") == _pydicom_json(reference)
    _assert_text_is_the_json(lambda: deid.apply(plan, _read(ds), key).ds)


def _assert_text_is_the_json(fresh: Callable[[], Dataset]) -> None:
    """The stored JSON text is json.dumps of the header: on an object no JSON was made of
    yet (kept fragments, the marking), a second time (from what is kept), and on one whose
    elements pydicom has converted since."""
    expected = json.dumps(extract.header_json(fresh(), "copy.dcm"), separators=(",", ":"))
    ds = fresh()
    assert extract.header_json_text(ds, "copy.dcm") == expected
    assert extract.header_json_text(fresh(), "copy.dcm") == expected
    assert extract.header_json_text(fresh(), "other.dcm") == expected.replace(
        "copy.dcm", "other.dcm"
    )
    extract.header_json(ds, "copy.dcm")  # converts what pydicom must convert
    assert extract.header_json_text(ds, "copy.dcm") == expected


def test_kept_fragments_follow_the_character_set():
    """The same bytes in another character set are other text: never a kept fragment."""
    texts = []
    for charset in ("ISO_IR 100", "ISO_IR 192"):
        ds = make_instance(SpecificCharacterSet=charset, PatientName="X")
        ds["PatientName"].value = "Müller"
        raw = _read(ds)
        raw._dict[0x00100010] = raw.get_item(0x00100010)._replace(value=b"M\xc3\xbcller")
        text = extract.header_json_text(raw, "copy.dcm")
        assert text == json.dumps(extract.header_json(raw, "copy.dcm"), separators=(",", ":"))
        texts.append(text)
    assert '"Alphabetic":"M\\u00c3\\u00bcller"' in texts[0]  # Latin-1: two characters
    assert '"Alphabetic":"M\\u00fcller"' in texts[1]  # UTF-8: one


def test_json_header_decodes_without_pydicom_elements():
    ds = _read(make_instance())
    extract.header_json(ds, "copy.dcm")
    still_raw = [t for t in ds.keys() if isinstance(ds.get_item(t), RawDataElement)]  # noqa: SIM118
    assert len(still_raw) > len(ds) * 0.8


@pytest.mark.parametrize(
    ("text", "expected"),
    [("12", 12), (" 7 ", 7), ("+4", 4), ("-3", -3), ("", None), ("1\\2", None), ("1.0", 1)],
)
def test_integer_columns_read_as_pydicom_reads_them(text, expected):
    ds = make_instance()
    ds.add_new(0x00200013, "IS", text)  # InstanceNumber
    raw = _read(ds)
    record = extract.index_record(
        raw, copy_name="c.dcm", sha256="0" * 64, size=1, source_id="s", run_id=1
    )
    reference = _read(ds).InstanceNumber
    assert record.instance["instance_number"] == expected
    if expected is not None:
        assert record.instance["instance_number"] == int(reference)


def test_texts_read_here_are_pydicoms_in_any_order_of_objects():
    """``text_of`` keeps single-valued texts by VR, bytes and character set: read again, or
    in another character set, they are still what pydicom's value prints; several values
    are printed by pydicom; a sequence is no text."""
    ds, _markers = kitchen_sink.build()
    ds.add_new(0x00091017, "UI", ["1.2.3", "1.2.34"])
    ds.add_new(0x00091011, "PN", "A^B \\C^D ")
    latin = _read(ds)
    ds.SpecificCharacterSet = "ISO_IR 192"
    utf8 = _read(ds)
    for top in (latin, utf8, latin):
        codec = rawvalue.codec(top)  # items: their object's (none has a set of its own)
        for parent, tag, raw in list(_raw_elements(top)):
            text = rawvalue.text_of(parent, tag, codec)
            value = parent[tag].value
            parent._dict[tag] = raw  # as read, for the next round
            printed = "" if value is None or raw.VR == "SQ" else str(value).strip()
            assert text == printed, f"{tag:08X}"  # a sequence holds no text
    assert rawvalue._text.cache_info().hits > 100
    same = rawvalue.encode(0x00081070, "LO", "Muller")._replace(value="Müller".encode())
    for charset, expected in (("ISO_IR 100", "MÃ¼ller"), ("ISO_IR 192", "Müller")):
        holder = Dataset()
        holder.SpecificCharacterSet = charset
        holder.set_original_encoding(is_implicit_vr=False, is_little_endian=True)
        holder._dict[BaseTag(0x00081070)] = same
        assert rawvalue.text_of(holder, 0x00081070, rawvalue.codec(holder)) == expected


@pytest.mark.parametrize(
    ("vr", "values"),
    [
        ("UL", [1, 2]),
        ("UL", [1, 2, 3]),
        ("SL", [-1, 2]),
        ("SL", [0, 0, 0, 0]),
        ("SL", [7]),
        ("US", [1, 2, 3]),
        ("SS", [-3]),
        ("FL", [0.5, 1.5]),
        ("FD", [2.5, -1.0, 3.0]),
        ("SV", [-(2**40), 1]),
        ("UV", [2**40]),
    ],
)
def test_numbers_of_every_count_decode_as_pydicom_decodes_them(vr, values):
    """Each number VR at its standard size: two 4-byte UL or SL values are 8 bytes, which
    is one native "l" or "L" (a vendor's private SL pair once failed to decode)."""
    ds = make_instance()
    ds.add_new(0x00431010, vr, values)
    raw = _read(ds).get_item(0x00431010)
    value = rawvalue.decode(raw, vr, rawvalue.DEFAULT)
    expected = values[0] if len(values) == 1 else values
    assert _plain(value) == expected
