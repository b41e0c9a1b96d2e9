"""Pixel data is carried from the source file to the copy as it is: no copy, no decoding.

The copy must be byte for byte what parsing the whole file would give, for native and
encapsulated pixel data; anything unusual (elements after Pixel Data, a truncated element)
falls back to the whole parse, and the checks that look at pixel data still see it.
"""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from indexer import deid, keys, syntaxes
from indexer.encode import PIXEL_DATA, encode
from indexer.errors import DeidError, SourceError
from indexer.work import configure_pydicom, read_dataset
from tests.builders import in_syntax, make_instance, to_bytes

configure_pydicom()
KEY = keys.generate().pseudonym
PLAN = deid.build_plan()


def _copy(data: bytes, *, in_place: bool) -> bytes:
    ds = read_dataset(data, pixels_in_place=in_place)
    return encode(deid.apply(PLAN, ds, KEY).ds).data


def _native() -> bytes:
    return to_bytes(make_instance(rows=32, columns=32))


def _encapsulated() -> bytes:
    ds = make_instance(rows=8, columns=8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8frame one\xff\xd9", b"\xff\xd8frame two!\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = 2
    return to_bytes(ds)


def _trailing() -> bytes:
    ds = make_instance(rows=8, columns=8)
    ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 8)  # Data Set Trailing Padding, after Pixel Data
    return to_bytes(ds)


@pytest.mark.parametrize("build", [_native, _encapsulated, _trailing])
def test_copy_equals_the_whole_parse(build):
    data = build()
    assert _copy(data, in_place=True) == _copy(data, in_place=False)


def test_native_pixels_are_a_view_of_the_source():
    data = _native()
    ds = read_dataset(data, pixels_in_place=True)
    raw = ds.get_item(PIXEL_DATA)
    assert isinstance(raw.value, memoryview)
    assert raw.value.obj is data  # not copied
    encoded = encode(deid.apply(PLAN, ds, KEY).ds)
    assert encoded.pixels[-1].obj is data  # written out from the source's own bytes
    again = pydicom.dcmread(pydicom.filebase.DicomBytesIO(encoded.data))
    assert again.PixelData == pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)).PixelData


def test_truncated_pixel_data_is_still_refused():
    data = _native()[:-100]
    with pytest.raises(SourceError) as e:
        read_dataset(data, pixels_in_place=True)
    assert e.value.reason == "truncated"


def test_burned_in_policy_still_sees_the_pixel_data():
    ds = make_instance(rows=8, columns=8, BurnedInAnnotation="YES")
    with pytest.raises(DeidError) as e:
        deid.apply(PLAN, read_dataset(to_bytes(ds), pixels_in_place=True), KEY)
    assert e.value.reason == "burned_in_annotation"


def test_a_transfer_syntax_newer_than_pydicom_is_carried():
    """JPEG XL (2024): pydicom 3.0 reads it as the explicit VR little endian it is, but
    would not write it; the copy keeps its transfer syntax and pixel data as they came."""
    jpeg_xl = "1.2.840.10008.1.2.4.110"
    data = in_syntax(make_instance(rows=8, columns=8), jpeg_xl)
    copy = _copy(data, in_place=True)
    assert copy == _copy(data, in_place=False)
    out = pydicom.dcmread(io.BytesIO(copy))
    assert out.file_meta.TransferSyntaxUID == jpeg_xl
    assert out.PixelData == pydicom.dcmread(io.BytesIO(data)).PixelData
    assert "PatientIdentityRemoved" in out


def test_only_the_dicom_roots_uids_are_taken_for_new_transfer_syntaxes(monkeypatch):
    assert syntaxes.known(ExplicitVRLittleEndian)
    for uid in ("1.2.3.4", "1.2.840.10008.1.2.4.110x", "1.2.840.10008.1.2.04", "", "1.2.840"):
        assert not syntaxes.known(uid), uid
    assert not syntaxes.known("1.2.840.10008.1.2." + "1." * 30 + "1")  # longer than a UID
    monkeypatch.setattr(syntaxes, "MAX_TAUGHT", len(syntaxes._TAUGHT))
    assert not syntaxes.known("1.2.840.10008.1.2.4.999")  # a process learns a few, no more
