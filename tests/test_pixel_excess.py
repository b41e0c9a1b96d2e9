"""Native pixel data longer than its image is cut to the image's size in the copy.

A damaged Pixel Data length that runs to the end of the file takes in the elements after
it (a Data Set Trailing Padding holding text, say). Carried across as pixel data, those
bytes reached the copy unseen: the leak check does not read pixel data. The image's
attributes tell its size; the bytes past it are dropped, in every transfer syntax and when
the pixel data is streamed from its source.
"""

from __future__ import annotations

import io
import struct
import zipfile

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from indexer import deid, keys, spans, work
from indexer.deid import build_plan, statement, verify
from indexer.deid.pixels import compile_masks, cut_excess, image_size
from indexer.deid.profile import PIXEL_EXCESS
from indexer.encode import encode
from indexer.errors import SourceError
from indexer.sources import Walker
from indexer.store.files import LocalStore
from tests.builders import _element, in_transfer_syntax, make_instance, streamed_copy, to_bytes

pytestmark = pytest.mark.usefixtures("leaks_searched_both_ways")  # the pooled search too

work.configure_pydicom()
KEY = keys.generate().pseudonym
PLAN = build_plan()
MARK = b"PHIMARK-Doe^Jane-19700101"
PADDING = 0xFFFCFFFC  # Data Set Trailing Padding: after Pixel Data, the file's last element
TAGS = (0x7FE00010, PADDING)


def _image(**attrs: object) -> Dataset:
    ds = make_instance(rows=8, columns=8)  # 16-bit: 128 bytes of pixels
    ds.BitsStored, ds.HighBit = 16, 15  # every bit (read in big endian, too): none cleared
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def _with_padding(ds: Dataset) -> Dataset:
    ds.add_new(PADDING, "OB", MARK + b"\x00" * (len(MARK) % 2))
    return ds


def _swallowed(data: bytes, ts: UID) -> bytes:
    """``data`` with its Pixel Data length run on to the end of the file."""
    little = ts.is_little_endian
    tag, padding = (struct.pack("<HH" if little else ">HH", t >> 16, t & 0xFFFF) for t in TAGS)
    pos = data.rindex(tag, 0, data.rindex(padding))
    at, start = (pos + 4, pos + 8) if ts.is_implicit_VR else (pos + 8, pos + 12)
    length = struct.pack("<L" if little else ">L", len(data) - start)
    return data[:at] + length + data[at + 4 :]


def _file(ts: UID = ExplicitVRLittleEndian, ds: Dataset | None = None) -> bytes:
    ds = _with_padding(ds if ds is not None else _image())
    data = in_transfer_syntax(ds, ts) if ts != ExplicitVRLittleEndian else to_bytes(ds)
    return _swallowed(data, ts)


def _copy(data: bytes, *, in_place: bool = True, plan: deid.Plan = PLAN) -> bytes:
    ds = work.read_dataset(data, pixels_in_place=in_place)
    return encode(deid.apply(plan, ds, KEY).ds).data


def _pixels_of(data: bytes) -> bytes:
    return pydicom.dcmread(io.BytesIO(data)).PixelData


SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]


@pytest.mark.parametrize("in_place", [True, False])
@pytest.mark.parametrize("ts", SYNTAXES, ids=lambda t: t.name)
def test_the_bytes_a_run_on_length_took_in_are_not_copied(ts, in_place):
    image = _image().PixelData
    data = _file(ts)
    assert MARK in _pixels_of(data)  # what was carried across before
    copy = _copy(data, in_place=in_place)
    assert MARK not in copy
    assert _pixels_of(copy) == image  # the image itself, byte for byte
    assert copy.endswith(image)  # nothing after it


def test_a_sound_objects_copy_is_unchanged():
    data = to_bytes(_with_padding(_image()))
    ds = work.read_dataset(data, pixels_in_place=True)
    assert cut_excess(ds) == []
    assert _pixels_of(_copy(data)) == _image().PixelData


def test_the_trace_and_the_statement_name_the_rule():
    steps = deid.explain(PLAN, work.read_dataset(_file(), pixels_in_place=True), KEY)
    cut = [s for s in steps if s.source.startswith(PIXEL_EXCESS.source)]
    assert [(s.keyword, s.action) for s in cut] == [("PixelData", "C")]
    padding = 12 + len(MARK) + len(MARK) % 2  # the whole element taken in: head and value
    assert f"({padding} bytes)" in cut[0].source
    doc = statement.statement(PLAN)
    assert {"action": "C", "what": PIXEL_EXCESS.source} in doc["not_in_table"]


@pytest.mark.parametrize(
    ("attrs", "size"),
    [
        ({}, 128),
        ({"BitsAllocated": 8, "BitsStored": 8, "HighBit": 7, "Rows": 3, "Columns": 3}, 10),
        ({"BitsAllocated": 1, "BitsStored": 1, "HighBit": 0, "Rows": 10, "Columns": 10}, 14),
        ({"NumberOfFrames": 3}, 384),
        ({"SamplesPerPixel": 3, "PhotometricInterpretation": "RGB"}, 384),
        ({"SamplesPerPixel": 3, "PhotometricInterpretation": "YBR_FULL_422"}, 256),
        ({"BitsAllocated": 32}, 256),
        ({"NumberOfFrames": 0}, None),
        ({"Rows": None}, None),
        ({"SamplesPerPixel": None}, None),
        ({"Columns": [8, 8]}, None),
    ],
)
def test_the_size_the_image_attributes_give(attrs, size):
    ds = work.read_dataset(to_bytes(_image(**attrs)), pixels_in_place=True)
    assert image_size(ds) == size


def test_an_odd_image_keeps_its_padding_byte():
    attrs = {"BitsAllocated": 8, "BitsStored": 8, "HighBit": 7, "Rows": 3, "Columns": 3}
    ds = _image(**attrs)
    ds.PixelData = bytes(range(1, 10)) + b"\x00"
    copy = _copy(_file(ds=ds))
    assert MARK not in copy
    assert _pixels_of(copy) == bytes(range(1, 10)) + b"\x00"


def test_what_cannot_be_told_is_carried_whole():
    """The limit: without Rows nothing tells where the image ends, and shorter pixel data
    is no excess."""
    ds = _image()
    del ds.Rows
    assert MARK in _copy(_file(ds=ds))
    short = _image()
    short.PixelData = short.PixelData[:64]
    data = to_bytes(short)
    assert _pixels_of(_copy(data)) == short.PixelData


def test_encapsulated_frames_are_never_cut():
    ds = _image(NumberOfFrames=1)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    frames = encapsulate([b"\xff\xd8" + b"f" * 400 + b"\xff\xd9"])  # longer than 8x8x2
    ds.PixelData = frames
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    copy = _copy(buf.getvalue())
    assert _pixels_of(copy) == frames


def test_cleaned_pixels_are_cut_too():
    masks = compile_masks(
        {"masks": [{"manufacturer": "SyntheticCo", "rows": 8, "columns": 8, "rectangles": []}]}
    )
    plan = build_plan(burned_in="clean", pixel_masks=masks)
    ds = _image(Manufacturer="SyntheticCo", BurnedInAnnotation="YES")
    copy = _copy(_file(ds=ds), in_place=False, plan=plan)
    assert MARK not in copy
    assert _pixels_of(copy) == _image().PixelData


@pytest.fixture
def ctx(tmp_path):
    store = LocalStore(tmp_path / "out")
    yield work.RunContext(PLAN, keys.generate(), store, "DI", 30, 1)
    store.close()


def test_a_streamed_file_is_cut_as_it_is_copied(tmp_path, monkeypatch):
    whole, copy = streamed_copy(tmp_path, monkeypatch, _file(), 7, spans.Cut)  # cut in a chunk
    assert copy == whole
    assert MARK not in copy


def _zip_member(path):
    items = Walker(b"w" * 32, max_member_bytes=1 << 30).walk([path])
    return next(i for i in items if i.locator.endswith("!big.dcm"))


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_streamed_members_cut_bytes_are_still_checked(ctx, tmp_path, monkeypatch, method):
    """The bytes past the cut are read (not copied): a zip member damaged there is refused
    by its CRC, as it was before."""
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", method) as z:
        z.writestr("big.dcm", _file())
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    sound = work.prepare(_zip_member(path), ctx)
    assert isinstance(sound.encoded.pixels[-1], spans.Cut)
    assert MARK not in b"".join(sound.encoded.pixels[-1].chunks())
    if method == zipfile.ZIP_STORED:  # its bytes lie in the archive: damage the excess
        raw = path.read_bytes()
        at = raw.index(MARK)
        path.write_bytes(raw[:at] + b"X" + raw[at + 1 :])
        damaged = work.prepare(_zip_member(path), ctx)
        with pytest.raises(SourceError) as e:
            work.write_copy(damaged, ctx)
        assert "CRC" in str(e.value)


def test_the_leak_check_searches_pixel_data_past_the_image():
    """An output made elsewhere (or before this cut) that carries what a run-on length took
    in: `verify` searches those bytes too, and names where it found the value."""
    original = _image(PatientName="Doe^Jane^PHIMARKPN")
    values = verify.identifying_values(PLAN, work.read_dataset(to_bytes(original)))
    copy = _copy(to_bytes(original))
    name = b"Doe^Jane^PHIMARKPN"
    carried = _swallowed(copy + _element(PADDING, b"OB", name), ExplicitVRLittleEndian)
    leaks = verify.find_leaks(values, work.read_dataset(carried))
    assert [(leak.source_path, leak.found_in) for leak in leaks] == [
        ("(0010,0010)", "pixel data past the image (utf-8)")
    ]
    assert verify.find_leaks(values, work.read_dataset(copy)) == []
    assert verify.find_leaks(values, work.read_dataset(_copy(carried))) == []  # cut again
