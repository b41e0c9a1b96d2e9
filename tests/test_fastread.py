"""The fast reader gives what pydicom's dcmread gives, or leaves the file to dcmread.

Each file is read both ways and the data sets compared attribute by attribute (elements as
read, file meta, encodings, preamble); de-identifying either gives the same copy.
"""

from __future__ import annotations

import io
import random

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
from indexer.encode import encode
from indexer.errors import SourceError
from indexer.work import configure_pydicom, read_dataset
from tests.builders import make_instance, to_bytes
from tests.deid import kitchen_sink

configure_pydicom()
KEY = keys.generate().pseudonym
PLAN = deid.build_plan()


def _save(ds: pydicom.Dataset, ts: pydicom.uid.UID) -> bytes:
    ds.file_meta.TransferSyntaxUID = ts
    buf = io.BytesIO()
    ds.save_as(
        buf,
        enforce_file_format=True,
        little_endian=ts.is_little_endian,
        implicit_vr=ts.is_implicit_VR,
    )
    return buf.getvalue()


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
    return _save(ds, JPEGBaseline8Bit)


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


SIMPLE = {
    "plain": lambda: to_bytes(make_instance(1, 1, 1, 1, rows=16, columns=16)),
    "kitchen sink": lambda: to_bytes(kitchen_sink.build()[0]),
    "undefined lengths": _undefined_lengths,
    "character set": _charset,
    "encapsulated": _encapsulated,
    "private and empty": _private_and_empty,
    "no pixel data": lambda: to_bytes(_without_pixels()),
    "cut inside Pixel Data": lambda: _plain()[:-200],  # read_dataset finds it cut short
}
WHOLE = [name for name in SIMPLE if name != "cut inside Pixel Data"]


def _without_pixels() -> pydicom.Dataset:
    ds = make_instance(1, 1, 1, 6)
    del ds.PixelData
    return ds


def _plain() -> bytes:
    return SIMPLE["plain"]()


# left to dcmread: each is read by pydicom whole, with whatever it makes of them
IRREGULAR = {
    "no preamble": lambda: _plain()[132:],
    "implicit VR": lambda: _save(make_instance(1, 1, 1, 7), ImplicitVRLittleEndian),
    "big endian": lambda: _save(make_instance(1, 1, 1, 8), ExplicitVRBigEndian),
    "deflated": lambda: _save(make_instance(1, 1, 1, 9), DeflatedExplicitVRLittleEndian),
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
    bases = [SIMPLE[k]() for k in ("plain", "undefined lengths", "character set", "encapsulated")]
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
