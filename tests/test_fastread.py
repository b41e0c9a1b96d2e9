"""The fast reader gives what pydicom's dcmread gives, or leaves the file to dcmread.

Each file is read both ways and the data sets compared attribute by attribute (elements as
read, file meta, encodings, preamble); de-identifying either gives the same copy.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable

import pydicom
import pytest
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from indexer import deid, fastread, keys
from indexer.deid import rawvalue
from indexer.encode import encode
from indexer.errors import SourceError
from indexer.work import configure_pydicom, read_dataset
from tests.builders import implicit_item, in_transfer_syntax, make_instance, to_bytes
from tests.deid import kitchen_sink

configure_pydicom()
KEY = keys.generate().pseudonym
PLAN = deid.build_plan()


def _undefined_lengths() -> bytes:
    ds = make_instance(1, 1, 1, 2, rows=8, columns=8)
    ds.SpecificCharacterSet = "ISO_IR 100"  # items read in the data set's character set
    ds["AnatomicRegionSequence"].is_undefined_length = True  # the element's, not the list's
    for item in ds.AnatomicRegionSequence:
        item.is_undefined_length_sequence_item = True
    return to_bytes(ds)


def _charset() -> bytes:
    ds = make_instance(1, 1, 1, 3, rows=8, columns=8)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    ds.InstitutionName = "Klinikum Süd"
    return to_bytes(ds)


def _encapsulated() -> bytes:
    ds = make_instance(1, 1, 1, 4, rows=8, columns=8)
    ds.PixelData = encapsulate([b"\xff\xd8 frame \xff\xd9"])
    ds["PixelData"].VR = "OB"
    return in_transfer_syntax(ds, JPEGBaseline8Bit)


def _private_and_empty() -> bytes:
    ds = make_instance(1, 1, 1, 5, rows=8, columns=8)
    block = ds.private_block(0x0011, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "private text")
    block.add_new(0x02, "OB", b"\x01\x02")
    ds.StudyDescription = ""
    ds.add_new(0x00181000, "LO", None)
    ds.add_new(0x00280034, "IS", None)
    ds.ReferencedImageSequence = Sequence([])
    return to_bytes(ds)


def _damaged_vrs() -> bytes:
    """The character set (text in an item) and the transfer syntax under damaged VRs."""
    ds = make_instance(1, 1, 1, 11, rows=8, columns=8)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jürgen"
    ds.AnatomicRegionSequence[0].CodeMeaning = "Schädel"
    data = to_bytes(ds)
    charset = b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100"
    syntax = b"\x02\x00\x10\x00UI\x14\x001.2.840.10008.1.2.1\x00"
    assert data.count(charset) == data.count(syntax) == 1
    data = data.replace(charset, b"\x08\x00\x05\x00US" + charset[6:])
    return data.replace(syntax, b"\x02\x00\x10\x00SL" + syntax[6:])


def _implicit_with(element: bytes) -> bytes:
    """An implicit VR object with ``element``'s bytes first in its data set."""
    data = in_transfer_syntax(make_instance(1, 1, 1, 7), ImplicitVRLittleEndian)
    end = _meta_end(data)
    return data[:end] + element + data[end:]


def _implicit_undefined_value() -> bytes:
    """An implicit VR object with a private value of undefined length (no items in it)."""
    return _implicit_with(b"\x09\x00\x01\x10\xff\xff\xff\xffabcd\xfe\xff\xdd\xe0\x00\x00\x00\x00")


SIMPLE = {
    "plain": lambda: to_bytes(make_instance(1, 1, 1, 1, rows=16, columns=16)),
    "kitchen sink": lambda: to_bytes(kitchen_sink.build()[0]),
    "undefined lengths": _undefined_lengths,
    "character set": _charset,
    "encapsulated": _encapsulated,
    "private and empty": _private_and_empty,
    "no pixel data": lambda: to_bytes(_without_pixels()),
    "damaged VRs": _damaged_vrs,
    "cut inside Pixel Data": lambda: _plain()[:-200],  # read_dataset finds it cut short
}


def _as_implicit(make: Callable[[], bytes]) -> Callable[[], bytes]:
    """The same object in implicit VR little endian (the DICOM default)."""

    def made() -> bytes:
        ds = pydicom.dcmread(io.BytesIO(make()))
        return in_transfer_syntax(ds, ImplicitVRLittleEndian)

    return made


IMPLICIT = ("plain", "kitchen sink", "undefined lengths", "character set", "private and empty")
SIMPLE |= {f"implicit VR {name}": _as_implicit(SIMPLE[name]) for name in IMPLICIT}
SIMPLE["implicit VR no pixel data"] = lambda: in_transfer_syntax(
    _without_pixels(), ImplicitVRLittleEndian
)
SIMPLE["implicit VR unknown sequence"] = lambda: _implicit_with(
    b"\x09\x00\x10\x10\xff\xff\xff\xff"  # a private tag (no dictionary VR), undefined length
    + implicit_item((0x00080100, b"CODE01"))  # an item follows: pydicom reads a sequence
    + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
)
SIMPLE["implicit VR cut inside Pixel Data"] = lambda: SIMPLE["implicit VR plain"]()[:-200]
WHOLE = [name for name in SIMPLE if "cut inside Pixel Data" not in name]


def _without_pixels() -> pydicom.Dataset:
    ds = make_instance(1, 1, 1, 6)
    del ds.PixelData
    return ds


def _plain() -> bytes:
    return SIMPLE["plain"]()


# left to dcmread: each is read by pydicom whole, with whatever it makes of them
IRREGULAR = {
    "no preamble": lambda: _plain()[132:],
    # explicit VR elements under an implicit VR transfer syntax: pydicom reads them as explicit
    "implicit VR named, explicit VR written": lambda: _plain().replace(
        b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2\x00\x00", 1
    ),
    "implicit VR, a value of undefined length": _implicit_undefined_value,
    "big endian": lambda: in_transfer_syntax(make_instance(1, 1, 1, 8), ExplicitVRBigEndian),
    "deflated": lambda: in_transfer_syntax(
        make_instance(1, 1, 1, 9), DeflatedExplicitVRLittleEndian
    ),
    "cut inside an element": lambda: _plain()[: _meta_end(_plain()) + 301],
    "cut inside an element head": lambda: _plain()[: _meta_end(_plain()) + 3],
    "trailing bytes": lambda: to_bytes(_without_pixels()) + b"\x00\x00\x00",
    "unknown VR": lambda: _plain().replace(b"\x08\x00\x60\x00CS", b"\x08\x00\x60\x00ZQ", 1),
    "only file meta": lambda: to_bytes(make_instance(1, 1, 1, 10))[: _meta_end(_plain())],
    "not DICOM": lambda: b"\x00" * 128 + b"DICM" + b"hello, world",
}


def _meta_end(data: bytes) -> int:
    return 144 + int.from_bytes(data[140:144], "little")


def _elem(e: object) -> object:
    if isinstance(e, RawDataElement):
        value = bytes(e.value) if isinstance(e.value, memoryview) else e.value
        return e._replace(value=value)
    assert isinstance(e, DataElement)
    value = [_state(item) for item in e.value] if e.VR == "SQ" else e.value
    return (e.tag, e.VR, e.file_tell, e.is_undefined_length, value)


def _state(ds: pydicom.Dataset) -> dict[str, object]:
    state = {k: v for k, v in vars(ds).items() if k not in ("buffer", "_dict", "file_meta")}
    state["elements"] = [(tag, _elem(e)) for tag, e in ds._dict.items()]
    if "file_meta" in vars(ds):
        state["file_meta"] = _state(ds.file_meta)
    return state


def _dcmread(data: bytes) -> tuple[pydicom.Dataset, int]:
    fp = io.BytesIO(data)
    return pydicom.dcmread(fp, stop_before_pixels=True), fp.tell()


@pytest.mark.parametrize("name", SIMPLE)
def test_simple_files_are_read_as_dcmread_reads_them(name):
    data = SIMPLE[name]()
    fast = fastread.read(data)
    assert fast is not None, "the fast reader should take this file"
    ds, stop = fast
    expected, expected_stop = _dcmread(data)
    assert stop == expected_stop
    assert _state(ds) == _state(expected)


@pytest.mark.parametrize("name", WHOLE)
def test_the_copy_is_the_same_either_way(name):
    data = SIMPLE[name]()
    ours = encode(deid.apply(PLAN, read_dataset(data, pixels_in_place=True), KEY).ds).data
    theirs = encode(deid.apply(PLAN, read_dataset(data), KEY).ds).data
    assert ours == theirs


@pytest.mark.parametrize("name", IRREGULAR)
def test_irregular_files_are_left_to_dcmread(name):
    assert fastread.read(IRREGULAR[name]()) is None


def test_the_sequence_items_read_as_pydicom_reads_them():
    ds, _ = fastread.read(_undefined_lengths())
    expected, _ = _dcmread(_undefined_lengths())
    assert ds["AnatomicRegionSequence"].is_undefined_length  # read by pydicom's read_sequence
    seq = ds.AnatomicRegionSequence
    assert seq == expected.AnatomicRegionSequence
    assert all(item.is_undefined_length_sequence_item for item in seq)


def test_a_file_cut_inside_pixel_data_is_refused_as_truncated():
    with pytest.raises(SourceError) as e:
        read_dataset(SIMPLE["cut inside Pixel Data"](), pixels_in_place=True)
    assert e.value.reason == "truncated"


def test_damaged_headers_are_left_to_dcmread_or_read_as_it_reads_them():
    """Random damage to the header (and cuts): never an exception, never another reading."""
    rng = random.Random(5)  # noqa: S311 - reproducible damage, not secrets
    names = ("plain", "undefined lengths", "character set", "encapsulated", "implicit VR plain")
    bases = [SIMPLE[k]() for k in (*names, "implicit VR undefined lengths")]
    taken = 0
    for _ in range(400):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(128, min(len(data), 2000))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(132, len(data))]
        fast = fastread.read(bytes(data))
        if fast is None:
            continue
        taken += 1
        expected, stop = _dcmread(bytes(data))  # dcmread reads whatever the fast reader took
        assert fast[1] == stop
        assert _state(fast[0]) == _state(expected)
    assert taken > 100  # most damage to values leaves the structure readable


# Sequences: read here (items of defined length, as written by most) or by pydicom


def _convert_all(ds: pydicom.Dataset, *, fast: bool) -> None:
    """Every sequence of ``ds``, nested ones too, converted by ``fastread`` or pydicom.

    Implicit VR elements are given their VRs first, either way (as the engine gives them).
    """
    rawvalue.give_vrs(ds)
    for key in list(ds._dict):
        if ds._dict[key].VR == "SQ":
            items = fastread.sequence(ds, key) if fast else ds[key].value
            for item in items:
                _convert_all(item, fast=fast)


def _sequences_both_ways(data: bytes) -> None:
    ours, theirs = _dcmread(data)[0], _dcmread(data)[0]
    _convert_all(ours, fast=True)
    _convert_all(theirs, fast=False)
    assert _state(ours) == _state(theirs)


def _raw_sequences(ds: pydicom.Dataset) -> list[RawDataElement]:
    rawvalue.give_vrs(ds)  # (implicit VR: none had its VR)
    return [e for e in ds._dict.values() if isinstance(e, RawDataElement) and e.VR == "SQ"]


def _read_here(raw: RawDataElement, encoding: object = "iso8859") -> bool:
    try:
        items = fastread._items(raw.value, raw.value_tell, encoding, raw.is_implicit_VR)
    except Exception:  # noqa: BLE001 - irregular: fastread.sequence leaves it to pydicom
        return False
    return items is not None


def _with_item(item: pydicom.Dataset, *, private: bool = False) -> bytes:
    ds = make_instance(1, 1, 1, 11, rows=8, columns=8)
    ds.SpecificCharacterSet = "ISO_IR 100"
    if private:
        ds.private_block(0x0011, "ACME 1.0", create=True).add_new(0x10, "SQ", Sequence([item]))
    else:
        ds.ReferencedImageSequence = Sequence([item])
    return to_bytes(ds)


def _referenced(**attrs: object) -> pydicom.Dataset:
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    for name, value in attrs.items():
        setattr(item, name, value)
    return item


def _undefined_item() -> pydicom.Dataset:
    item = _referenced()
    item.is_undefined_length_sequence_item = True
    return item


# each left to pydicom: what it makes of them is not the simple reading
LEFT_TO_PYDICOM = {
    "an empty item": lambda: _with_item(pydicom.Dataset()),
    "an item with a character set of its own": lambda: _with_item(
        _referenced(SpecificCharacterSet="ISO_IR 192", ReferencedFrameNumber="1")
    ),
    "an item of undefined length": lambda: _with_item(_undefined_item()),
    "a private sequence": lambda: _with_item(_referenced(), private=True),
    "an item with an unknown VR": lambda: _with_item(_referenced()).replace(
        b"\x08\x00\x50\x11UI", b"\x08\x00\x50\x11ZQ", 1
    ),
}


@pytest.mark.parametrize("name", WHOLE)
def test_sequences_are_read_as_pydicom_reads_them(name):
    _sequences_both_ways(SIMPLE[name]())


@pytest.mark.parametrize("name", ["kitchen sink", "implicit VR kitchen sink"])
def test_the_kitchen_sink_sequences_are_read_here(name):
    """Nested items of defined length, in a character set: the fast reading, not pydicom's."""
    ds = _dcmread(SIMPLE[name]())[0]
    raws = _raw_sequences(ds)
    assert len(raws) > 3
    encoding = ds.original_character_set or ds._character_set
    assert all(_read_here(raw, encoding) for raw in raws)
    _sequences_both_ways(SIMPLE[name]())


@pytest.mark.parametrize("name", LEFT_TO_PYDICOM)
def test_unusual_sequences_are_left_to_pydicom(name):
    data = LEFT_TO_PYDICOM[name]()
    ds = _dcmread(data)[0]
    raw = ds._dict[pydicom.tag.Tag(0x00111010 if "private" in name else 0x00081140)]
    assert raw.VR == "SQ"
    if not raw.tag.is_private:
        assert not _read_here(raw)
    _sequences_both_ways(data)


def test_sequences_read_as_pydicom_reads_them_under_pydicom_hooks(monkeypatch):
    """A conversion hook of the caller's (here: counting) is honoured: pydicom converts."""
    seen = []

    def counting(raw, data, **kwargs):
        seen.append(raw.tag)
        pydicom.hooks.raw_element_value(raw, data, **kwargs)

    monkeypatch.setattr(pydicom.hooks.hooks, "raw_element_value", counting)
    ds = _dcmread(SIMPLE["kitchen sink"]())[0]
    (key, *_) = [raw.tag for raw in _raw_sequences(ds)]
    fastread.sequence(ds, key)
    assert key in seen


@pytest.mark.parametrize("name", ["kitchen sink", "implicit VR kitchen sink"])
def test_damaged_sequences_are_read_as_pydicom_reads_them(name):
    """Random damage inside sequence values: the same reading either way, or pydicom's."""
    rng = random.Random(7)  # noqa: S311 - reproducible damage, not secrets
    base = SIMPLE[name]()
    ds = _dcmread(base)[0]
    spans = [(r.value_tell, r.value_tell + r.length) for r in _raw_sequences(ds)]
    compared = 0
    for _ in range(300):
        data = bytearray(base)
        start, end = rng.choice(spans)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(start, end)] = rng.randrange(256)
        ours, theirs = _dcmread(bytes(data))[0], _dcmread(bytes(data))[0]
        try:
            _convert_all(theirs, fast=False)
        except Exception:  # noqa: BLE001 - pydicom refuses this damage
            with pytest.raises(Exception):  # noqa: B017 - and so does the fast path
                _convert_all(ours, fast=True)
            continue
        _convert_all(ours, fast=True)
        assert _state(ours) == _state(theirs)
        compared += 1
    assert compared > 100


def test_a_large_blob_is_a_view_into_the_bytes_read_not_a_copy():
    """A vendor's raw data in a private element can be hundreds of MB: a value over
    VIEW_FROM is a view into the file's bytes (as Pixel Data held in place is), equal to what
    dcmread gives. Removed, it leaves no needle for the leak check; kept (a waveform), the
    copy holds it byte for byte."""
    big = os.urandom(fastread.VIEW_FROM + 2)
    ds = make_instance(marker="BLOBMK")
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091001, "OB", big)
    ds.add_new(0x54001010, "OW", big)
    data = to_bytes(ds)
    read, _stop = fastread.read(data)
    for tag in (0x00091001, 0x54001010):
        raw = read.get_item(tag)
        assert isinstance(raw.value, memoryview)
        assert raw.value.obj is data  # no copy
        assert raw.value == pydicom.dcmread(io.BytesIO(data)).get_item(tag).value
    found: dict[str, str] = {}
    out = deid.apply(deid.build_plan(), read_dataset(data, pixels_in_place=True), KEY, found=found)
    assert not any("memory" in value for value in found)  # a view is no text
    written = pydicom.dcmread(io.BytesIO(encode(out.ds).data))
    assert 0x00091001 not in written
    assert written[0x54001010].value == big


def test_sequences_are_read_here_with_the_hooks_the_ingest_registers(monkeypatch):
    """``configure_pydicom`` registers a hook of its own: ``sequence`` still reads the items
    here (were the hooks it expects not those registered, pydicom would read every one)."""
    read_here = []
    items = fastread._items
    monkeypatch.setattr(fastread, "_items", lambda *a: read_here.append(1) or items(*a))
    ds = _dcmread(SIMPLE["plain"]())[0]
    (raw,) = _raw_sequences(ds)
    assert len(fastread.sequence(ds, raw.tag)) == 1
    assert read_here == [1]
