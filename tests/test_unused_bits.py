"""Bits of native pixel data outside the stored ones are cleared: embedded overlays go.

Before 2004 an overlay could lie in the unused high bits of the pixel data (12 bits stored
of 16, the overlay in bit 12), described by an Overlay Plane (60xx) without Overlay Data.
The profile removes the description; the bits stayed, and a reader of them sees the
overlay's graphics and text. Now they are what a reader that ignores them sees: zeros, and
a signed sample's sign above it.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from indexer import deid, keys, work
from indexer.deid import build_plan, statement
from indexer.deid.pixels import Masked, clear_unused_bits, compile_masks
from indexer.deid.profile import UNUSED_BITS
from indexer.encode import encode
from tests.builders import in_transfer_syntax, make_instance, streamed_copy

work.configure_pydicom()
KEY = keys.generate().pseudonym
PLAN = build_plan()
SIDE = 16
TEXT = np.zeros((SIDE, SIDE), dtype=bool)
TEXT[4:6, 2:14] = True  # the overlay's "text": a bar in bit 12
TEXT[8:12, 3] = True


def _image(values: np.ndarray, *, signed: bool = False, bits: int = 12, high: int = 11, **kw):
    """An image of ``values``, in little endian (``order=">"``: big; pydicom writes pixel data
    bytes as they are given)."""
    order = kw.pop("order", "<")
    ds = make_instance(rows=SIDE, columns=SIDE)
    ds.BitsAllocated = values.dtype.itemsize * 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, high, int(signed)
    ds.PixelData = values.astype(values.dtype.newbyteorder(order)).tobytes()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def _ramp(dtype=np.uint16, top: int = 4096) -> np.ndarray:
    return (np.arange(SIDE * SIDE, dtype=np.int64).reshape(SIDE, SIDE) * 17 % top).astype(dtype)


def _embedded(values: np.ndarray, bit: int = 12) -> np.ndarray:
    return values | (TEXT.astype(values.dtype) << bit)


def _copy(data: bytes, *, in_place: bool = True) -> pydicom.Dataset:
    ds = work.read_dataset(data, pixels_in_place=in_place)
    return pydicom.dcmread(io.BytesIO(encode(deid.apply(PLAN, ds, KEY).ds).data))


def _samples(ds: pydicom.Dataset, dtype) -> np.ndarray:
    order = "<" if ds.file_meta.TransferSyntaxUID != ExplicitVRBigEndian else ">"
    return np.frombuffer(ds.PixelData, dtype=np.dtype(dtype).newbyteorder(order)).reshape(
        SIDE, SIDE
    )


@pytest.mark.parametrize("in_place", [True, False])
@pytest.mark.parametrize(
    "ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian], ids=str
)
def test_an_overlay_in_the_high_bits_is_cleared_and_the_image_kept(ts, in_place):
    image = _ramp()
    ds = _image(_embedded(image), order=">" if ts == ExplicitVRBigEndian else "<")
    ds.add_new(0x60000010, "US", SIDE)  # Overlay Rows
    ds.add_new(0x60000011, "US", SIDE)  # Overlay Columns
    ds.add_new(0x60000100, "US", 16)  # Overlay Bits Allocated
    ds.add_new(0x60000102, "US", 12)  # Overlay Bit Position: embedded in bit 12
    data = in_transfer_syntax(ds, ts)
    out = _copy(data, in_place=in_place)
    assert np.array_equal(_samples(out, np.uint16), image)
    assert not [t for t in out.keys() if t.group == 0x6000]  # noqa: SIM118 - the plane too


def test_a_signed_image_keeps_its_sign_and_loses_the_overlay():
    image = _ramp(np.int16, 4096) - 2048  # -2048 .. 2047, in 12 bits
    sign_extended = image.astype(np.int16)
    dirty = sign_extended.view(np.uint16) & 0x0FFF | (TEXT.astype(np.uint16) << 13)
    out = _copy(in_transfer_syntax(_image(dirty, signed=True), ExplicitVRLittleEndian))
    assert np.array_equal(_samples(out, np.int16), sign_extended)
    assert np.array_equal(out.pixel_array, sign_extended)


def test_clean_pixel_data_is_left_as_it_was():
    """Unsigned samples with zeros above, signed ones sign-extended: not even copied."""
    for values, signed in [(_ramp(), False), (_ramp(np.int16, 4096) - 2048, True)]:
        data = in_transfer_syntax(_image(values, signed=signed), ExplicitVRLittleEndian)
        ds = work.read_dataset(data, pixels_in_place=True)
        before = ds.get_item(0x7FE00010).value
        assert clear_unused_bits(ds) == 0
        assert ds.get_item(0x7FE00010).value is before


@pytest.mark.parametrize(
    ("dtype", "bits", "high", "kept"),
    [
        (np.uint16, 12, 15, 0xFFF0),  # stored in the top bits: the low ones cleared
        (np.uint16, 10, 11, 0x0FFC),  # in the middle
        (np.uint8, 7, 6, 0x7F),
        (np.uint32, 24, 23, 0x00FFFFFF),
    ],
)
def test_every_layout_keeps_its_stored_bits_only(dtype, bits, high, kept):
    noisy = (np.arange(SIDE * SIDE, dtype=np.uint64).reshape(SIDE, SIDE) * 2654435761).astype(dtype)
    out = _copy(in_transfer_syntax(_image(noisy, bits=bits, high=high), ExplicitVRLittleEndian))
    assert np.array_equal(_samples(out, dtype), noisy & dtype(kept))


@pytest.mark.parametrize(
    "attrs",
    [
        {"HighBit": 15, "BitsStored": 8},
        {"HighBit": 3},
        {"BitsStored": 16},
        {"PixelRepresentation": 2},
    ],
)
def test_what_the_attributes_cannot_tell_is_left_as_it_is(attrs):
    dirty = _embedded(_ramp())
    ds = _image(dirty)
    for k, v in attrs.items():
        setattr(ds, k, v)
    out = _copy(in_transfer_syntax(ds, ExplicitVRLittleEndian))
    if attrs.get("HighBit") == 15:  # a valid layout after all: bits 8 to 15
        assert np.array_equal(_samples(out, np.uint16), dirty & 0xFF00)
    else:
        assert np.array_equal(_samples(out, np.uint16), dirty)


def test_the_trace_and_the_statement_name_the_rule():
    data = in_transfer_syntax(_image(_embedded(_ramp())), ExplicitVRLittleEndian)
    steps = deid.explain(PLAN, work.read_dataset(data, pixels_in_place=True), KEY)
    cleared = [s for s in steps if s.source.startswith(UNUSED_BITS.source)]
    assert [(s.keyword, s.action, s.vr) for s in cleared] == [("PixelData", "C", "OW")]
    assert f"({int(TEXT.sum())} samples)" in cleared[0].source
    doc = statement.statement(PLAN)
    assert {"action": "C", "what": UNUSED_BITS.source} in doc["not_in_table"]


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_streamed_pixel_data_is_cleared_as_it_is_copied(tmp_path, monkeypatch, chunk):
    """Above ``STREAM_FROM`` the samples are cleared chunk by chunk (a sample cut by a
    chunk's end waits for the next): the copy is the one the object read whole gives."""
    data = in_transfer_syntax(_image(_embedded(_ramp())), ExplicitVRLittleEndian)
    whole, copy = streamed_copy(tmp_path, monkeypatch, data, chunk, Masked)
    assert copy == whole
    assert np.array_equal(_samples(pydicom.dcmread(io.BytesIO(copy)), np.uint16), _ramp())


def test_pixels_cleaned_by_a_mask_are_cleared_too():
    """Clean Pixel Data holds the pixel data converted (bytes): its bits are cleared as well."""
    masks = compile_masks(
        {
            "masks": [
                {
                    "manufacturer": "SyntheticCo",
                    "rows": SIDE,
                    "columns": SIDE,
                    "rectangles": [[0, 0, 2, 2]],
                }
            ]
        }
    )
    plan = build_plan(burned_in="clean", pixel_masks=masks)
    ds = _image(_embedded(_ramp()), Manufacturer="SyntheticCo", BurnedInAnnotation="YES")
    data = in_transfer_syntax(ds, ExplicitVRLittleEndian)
    out = deid.apply(plan, work.read_dataset(data), KEY).ds
    copy = pydicom.dcmread(io.BytesIO(encode(out).data))
    expected = _ramp()
    expected[0:2, 0:2] = 0
    assert np.array_equal(_samples(copy, np.uint16), expected)
