"""Encapsulated frames whose items do not fill the Pixel Data: refused, and searched whole.

The frames of a compressed object are items, each an item tag and a length, one after the
other up to the sequence delimiter. Where a damaged item tag or length breaks that walk, no
reader can tell where the frames after it lie: their headers (a JPEG comment, an SEI unit's
text) could not be blanked, nor searched, and went into the copy as read. The ingest now
refuses such an object (``bad_pixels``); `verify` searches the bytes past the damage whole,
as a copy made before holds them. So are frames under a transfer syntax of native pixel data,
or none: the syntax names a video's codec.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import (
    MPEG4HP41,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from indexer import deid, keys, work
from indexer.deid import build_plan, frames, values, verify, video
from indexer.records import Failure, SourceFile
from indexer.store.files import LocalStore
from tests.builders import in_transfer_syntax, make_instance
from tests.deid.test_frames import ADOBE, H264_HEAD, JFIF, SLICE, UUID, _jpeg, _seg, _sei

pytestmark = pytest.mark.usefixtures("leaks_searched_both_ways")

PLAN = build_plan()
MARK = "PHIMARK"
PIXEL_HEAD = b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff"
ITEM = b"\xfe\xff\x00\xe0"


def _still_frames(name: bytes) -> list[bytes]:
    """Three JPEG frames, the second's comment the patient's name."""
    plain = _jpeg(JFIF, ADOBE)
    return [plain, _jpeg(JFIF, _seg(0xFE, name)), plain]


def _video_frames(name: bytes) -> list[bytes]:
    """An H.264 stream in three fragments, the second holding an SEI unit with the name."""
    return [H264_HEAD, _sei((5, UUID + name)), b"\x00\x00\x00\x01" + SLICE]


def _encapsulated(ts: UID, frames_of: object) -> tuple[pydicom.Dataset, bytes, list[int]]:
    """The original, its file, and where each item's tag lies in it (the offset table's
    first)."""
    ds = make_instance(1, 1, 1, 1, marker=MARK, rows=8, columns=8)
    ds.PixelData = encapsulate(frames_of(str(ds.PatientName).encode()))  # type: ignore[operator]
    ds["PixelData"].VR = "OB"
    if ts == JPEGBaseline8Bit:
        ds.NumberOfFrames = 3
    data = in_transfer_syntax(ds, ts)
    start = data.index(PIXEL_HEAD) + len(PIXEL_HEAD)
    items, pos = [], start
    while data[pos : pos + 4] == ITEM:
        items.append(pos)
        pos += 8 + struct.unpack_from("<L", data, pos + 4)[0]
    assert data[pos:] == b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    return ds, data, items


def _damaged(data: bytes, items: list[int], how: str) -> bytes:
    """``data`` with its encapsulated frames' items broken ``how``."""
    out = bytearray(data)
    if how.startswith("tag "):  # an item's tag: two bytes of it damaged
        at = items[int(how[4:])]
        out[at + 1 : at + 3] = b"OB"
    elif how.startswith("length "):  # the first frame's length, by that many bytes
        length = struct.unpack_from("<L", data, items[1] + 4)[0]
        struct.pack_into("<L", out, items[1] + 4, length + int(how[7:]))
    elif how == "last past the end":
        struct.pack_into("<L", out, items[-1] + 4, 1 << 20)
    elif how == "bytes after the last":  # (before the delimiter)
        end = len(out) - 8
        out[end:end] = b"\x00" * 8
    else:
        raise ValueError(how)
    return bytes(out)


DAMAGE = [
    "tag 0",
    "tag 1",
    "tag 2",
    "tag 3",
    "length 2",
    "length -2",
    "last past the end",
    "bytes after the last",
]
SYNTAXES = {"jpeg": (JPEGBaseline8Bit, _still_frames), "h264": (MPEG4HP41, _video_frames)}


def _outcome(tmp_path: Path, data: bytes) -> tuple[Failure | object, list[Path]]:
    store = LocalStore(tmp_path / "out")
    ctx = work.RunContext(PLAN, keys.generate(), store, "DI", 30, 1)
    try:
        got = work.process_safely(SourceFile("src-1", "/a/1.dcm", len(data), lambda: data), ctx)
    finally:
        store.close()
    return got, list((tmp_path / "out").rglob("*.dcm"))


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("how", DAMAGE)
def test_frames_whose_items_do_not_fill_the_pixel_data_are_refused(tmp_path, syntax, how):
    """Damage before the frame holding the patient's name (its text then went into the
    copy), at it, and after it: refused alike, with a message that holds no value, and no
    copy written."""
    _ds, data, items = _encapsulated(*SYNTAXES[syntax])
    got, copies = _outcome(tmp_path, _damaged(data, items, how))
    assert isinstance(got, Failure), how
    assert (got.reason, got.message) == ("bad_pixels", frames.DAMAGED_ITEMS)
    assert MARK not in got.message
    assert copies == []


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_encapsulated_pixel_data_of_no_item_is_refused_as_bad_pixels(tmp_path, syntax):
    """A sequence delimiter where the offset table's item lies: the pixel data holds no
    item, and the copy could not be written ("encode_failed", pydicom's "hasn't been
    encapsulated"; fuzz seed 165). Refused as bad pixel data, saying so."""
    _ds, data, items = _encapsulated(*SYNTAXES[syntax])
    got, copies = _outcome(tmp_path, data[: items[0]] + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    assert isinstance(got, Failure)
    assert (got.reason, got.message) == ("bad_pixels", frames.NO_ITEMS)
    assert copies == []


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_sound_items_are_indexed_with_the_name_blanked(tmp_path, syntax):
    """The same objects undamaged: indexed, the frame's text blanked."""
    _ds, data, _items = _encapsulated(*SYNTAXES[syntax])
    got, copies = _outcome(tmp_path, data)
    assert not isinstance(got, Failure), got
    (copy,) = copies
    assert MARK.encode() not in copy.read_bytes()


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("how", ["tag 1", "tag 2", "length 2", "length -2"])
def test_verify_searches_the_bytes_past_damaged_items_whole(syntax, how):
    """A copy made before this check (its header de-identified, its frames as read) holds
    the name past the damage: `verify`'s search finds it there, and the header bytes it
    searches hold them."""
    ds, data, items = _encapsulated(*SYNTAXES[syntax])
    found = values.identifying_values(PLAN, ds)
    sound = work.read_dataset(data, pixels_in_place=False)
    copy = deid.apply(PLAN, sound, keys.generate().pseudonym).ds
    damaged = work.read_dataset(_damaged(data, items, how), pixels_in_place=False)
    copy.PixelData = damaged.PixelData
    name = str(ds.PatientName).encode()
    assert name in frames.headers(copy.PixelData, video.video_codec(copy))
    leaks = verify.find_leaks(found, copy)
    assert "(0010,0010)" in {leak.source_path for leak in leaks}  # (its parts: others' too)
    assert {leak.found_in.split(" (")[0] for leak in leaks} == {"compressed frame headers"}


def _under(syntax: str) -> bytes:
    """Video frames holding the patient's name under a transfer syntax of native pixel
    data, or none: the file meta's UID replaced (padded to its length), or its element's
    tag damaged."""
    ds = make_instance(1, 1, 1, 1, marker=MARK, rows=8, columns=8)
    ds.PixelData = encapsulate(_video_frames(str(ds.PatientName).encode()))
    ds["PixelData"].VR = "OB"
    data = in_transfer_syntax(ds, MPEG4HP41)
    if syntax == "none":
        assert data.count(b"\x02\x00\x10\x00UI") == 1
        return data.replace(b"\x02\x00\x10\x00UI", b"\x02\x00\x11\x00UI")
    video_uid = MPEG4HP41.encode() + b"\0"
    assert data.count(video_uid) == 1
    return data.replace(video_uid, syntax.encode().ljust(len(video_uid), b"\0"))


@pytest.mark.parametrize(
    "syntax",
    [ExplicitVRLittleEndian, ImplicitVRLittleEndian, "none"],
)
def test_frames_under_a_transfer_syntax_of_native_pixel_data_are_refused(tmp_path, syntax):
    """The syntax names no codec: the video's SEI text was neither blanked nor searched
    (an H.264 object whose transfer syntax element a damaged byte renamed)."""
    got, copies = _outcome(tmp_path, _under(syntax))
    assert isinstance(got, Failure), syntax
    assert (got.reason, got.message) == ("bad_pixels", frames.UNDER_NATIVE)
    assert copies == []


def test_verify_searches_frames_under_no_codec_whole():
    """A copy made before they were refused: its video's SEI text as read, under the syntax
    a source with none got (explicit VR little endian), which names no codec. `verify`
    searches its frames whole, and finds the name."""
    ds, data, _items = _encapsulated(MPEG4HP41, _video_frames)
    found = values.identifying_values(PLAN, ds)
    copy = deid.apply(PLAN, work.read_dataset(data), keys.generate().pseudonym).ds
    copy.PixelData = work.read_dataset(data).PixelData  # (not blanked)
    copy.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    leaks = verify.find_leaks(found, copy)
    assert "(0010,0010)" in {leak.source_path for leak in leaks}
    assert {leak.found_in.split(" (")[0] for leak in leaks} == {"compressed frame headers"}
