"""Motion JPEG in an MP4 file: each sample's text segments blanked, held and streamed.

A camera or an endoscope's recorder may store video as Motion JPEG: each sample a JPEG of
its own, which may carry a camera's Exif (dates, serial numbers, places), XMP, comments.
They lie in the media data, which no box rule reaches. Each sample's segments are blanked
as a compressed frame's are (``jpeg``), and its header searched.
"""

from __future__ import annotations

import itertools
import random

import pytest
from pydicom import uid
from pydicom.encaps import encapsulate

from indexer.deid import frames, jpeg, mp4, video
from indexer.deid.blanks import Region
from indexer.deid.places import Places
from tests.builders import streamed_copy
from tests.deid.test_frames import (
    ADOBE,
    COMMENT,
    EXIF,
    IMAGE,
    JFIF,
    MARK,
    XMP,
    _blanked,
    _box,
    _copy,
    _even,
    _frames_of,
    _jpeg,
    _object,
    _seg,
)
from tests.deid.test_mp4_tracks import Track, _file, only_blanks_written, streamed_as_held
from tests.deid.test_units_searched import found_and_refused

pytestmark = pytest.mark.usefixtures("leaks_searched_both_ways", "fragments_as_they_come")

QUANT = _seg(0xDB, b"\x00" + bytes(range(64)))  # a quantisation table: kept
# Motion JPEG format A's APP1: reserved, its tag, then where the second field lies: kept
MOTION_A = _seg(0xE1, bytes(4) + b"mjpg" + bytes(32))
BIG_EXIF = _seg(0xE1, b"Exif\x00\x00" + (MARK + b" ") * 40)  # cut by many buffers
ENTRY = bytes(6) + b"\x00\x01" + bytes(70)  # a visual sample entry's fixed fields
NOT_A_JPEG = b"no one's text, no JPEG's start"  # (kept, and searched whole: damage)


def _samples(*, blanked: bool = False) -> list[list[bytes]]:
    """Chunks of JPEG samples: text segments (blanked: as a copy holds them), fill bytes
    before a marker, a tagged APP1 (kept), a sample that is no JPEG, one cut short."""

    def text(seg: bytes, fill: bytes) -> bytes:
        return _blanked(seg, fill) if blanked else seg

    first = _jpeg(JFIF, text(EXIF, b"\x00"), QUANT, text(COMMENT, b" "))
    second = b"\xff\xd8\xff\xff" + _jpeg(text(XMP, b"\x00"), MOTION_A, ADOBE)[2:]
    third = _jpeg(text(BIG_EXIF, b"\x00"), QUANT, text(COMMENT, b" "))
    short = _jpeg(JFIF, text(EXIF, b"\x00"))[: len(JFIF) + 14]  # ends in the Exif
    return [[first, second], [third, NOT_A_JPEG], [short]]


def _jpeg_tracks(*, blanked: bool = False) -> list[Track]:
    """A Motion JPEG video track, a Motion JPEG format A one, and an image sequence's."""
    samples = _samples(blanked=blanked)
    return [
        (b"vide", _box(b"jpeg", ENTRY), samples),
        (b"vide", _box(b"mjpa", ENTRY), samples[:1]),
        (b"pict", _box(b"jpeg", ENTRY), samples[1:]),
    ]


def _mjpeg(*, blanked: bool = False, faststart: bool = False) -> bytes:
    return _file(faststart=faststart, tracks=_jpeg_tracks(blanked=blanked))


@pytest.mark.parametrize("faststart", [False, True])
def test_held_motion_jpeg_samples_have_their_text_segments_blanked(faststart):
    """Exif, XMP and comments blanked; JFIF, Adobe, a quantisation table, the tagged APP1
    and the image data kept; a sample that is no JPEG kept as it is."""
    (frame,) = _frames_of(_copy(_object(_mjpeg(faststart=faststart), ts=uid.MPEG4HP41)))
    assert frame == _even(_mjpeg(blanked=True, faststart=faststart))
    assert MARK not in frame
    assert frame.count(NOT_A_JPEG) == 2  # in two tracks
    assert frame.count(IMAGE) == 6  # three JPEGs in the video track, two, one
    assert frame.count(MOTION_A) == 2  # the second JPEG, in two tracks


@pytest.mark.parametrize("faststart", [False, True])
def test_streamed_motion_jpeg_cut_anywhere_is_blanked_as_held(tmp_path, faststart):
    """A file in fragments cut anywhere (in a segment's marker or length, in the long Exif,
    in a tagged APP1's tag): the held copy. `verify`'s walk finds the Exif in the source,
    and in the copy none."""
    source, blanked = _mjpeg(faststart=faststart), _mjpeg(blanked=True, faststart=faststart)
    streamed_as_held(tmp_path, source, blanked, MARK + b" " + MARK, 20261206)


def test_a_samples_headers_apart_are_not_searched_as_one():
    """A streamed Motion JPEG sample's header before its scan and the comment after it are
    searched apart (the scan's data lies between); a header a buffer's end cuts is searched
    on with the bytes before the cut."""
    sample = _jpeg(COMMENT)[:-2] + _seg(0xFE, b"after the scan") + b"\xff\xd9"
    for cut in (len(sample), 10):
        walk = mp4._Samples(blank=False)
        walk.expect(Places.of([(0, len(sample), jpeg.JPEG, 0)]))
        found = walk.feed(bytearray(sample[:cut]), 0) + walk.feed(bytearray(sample[cut:]), cut)
        assert not any(MARK in part and b"after the scan" in part for part in found), cut
        assert any(MARK in part for part in found), cut
        assert any(b"after the scan" in part for part in found), cut
    assert any(part.startswith(sample[:10]) and MARK in part for part in found)


def test_verify_searches_the_headers_of_motion_jpeg_samples():
    """Another tool's copy that kept a sample's Exif: the leak check's header bytes hold it
    (and the headers only, not the image data; a sample that is no JPEG whole)."""
    source = _mjpeg()
    assert MARK in frames.headers(encapsulate([source]), video.H264)
    found = frames.headers(encapsulate([_mjpeg(blanked=True)]), video.H264)
    assert MARK not in found
    assert IMAGE not in found
    assert found.count(NOT_A_JPEG) == 2  # in two tracks


@pytest.mark.parametrize("damage", [b"\xdd\xd8", b"\xff\x55"], ids=["first byte", "second"])
def test_a_sample_that_does_not_begin_as_a_jpeg_is_searched_whole(tmp_path, damage):
    """A sample whose start (SOI) is damaged, or that its table places amiss: the walk
    read it as no JPEG, and its Exif went into the copy, neither blanked nor searched. It
    is searched whole, held and streamed cut anywhere: the object is refused."""
    sample = damage + _jpeg(JFIF, EXIF)[2:]
    source = _file(tracks=[(b"vide", _box(b"jpeg", ENTRY), [[sample]])])
    found_and_refused(tmp_path, source, video.H264, MARK)


def fed(walk: jpeg.Walk, data: bytes, ends: list[int]) -> tuple[bytes, bytes, list[Region]]:
    """``data`` blanked by ``walk`` fed it in pieces that end at ``ends``; the header bytes
    it gave, joined; where they lie."""
    out = bytearray(data)
    header = b""
    found: list[Region] = []
    for a, z in itertools.pairwise([0, *ends, len(data)]):
        blanks, regions = walk.feed(out[a:z], a)
        assert all(a <= x <= y <= z for x, y, _fill in blanks)
        assert all(a <= x < y <= z for x, y in regions)
        for x, y, fill in blanks:
            out[x:y] = fill * (y - x)
        header += b"".join(bytes(out[x:y]) for x, y in regions)
        found += regions
    return bytes(out), header, found


def test_a_jpeg_walked_in_pieces_is_blanked_as_held():
    """Any JPEG (damaged ones too: a length changed, a marker lost, cut short; scans, a
    comment between them, a trailer after its end), fed in up to five pieces cut anywhere,
    even one byte long: the same blanks as the JPEG held whole, and its header bytes (and
    no more but a marker a piece's end cut: the bytes a step looks at)."""
    rng = random.Random(20261206)  # noqa: S311 - a seeded stream of test inputs
    scans = _seg(0xFE, b"\xff\xd9" + MARK) + _seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    scans += b"\x12\xff\x00\xff\xd3\xff\x01\xff\xff\xff\x7f\x34"
    bases = [
        _jpeg(JFIF, EXIF, QUANT, COMMENT),
        b"\xff\xd8\xff\xff" + _jpeg(XMP, MOTION_A, ADOBE)[2:],
        _jpeg(BIG_EXIF, _seg(0xE1, b"short"), _seg(0xE1, bytes(4) + b"mj")),
        _jpeg(JFIF, EXIF)[:-2] + scans + b"\xff\xd9" + MARK + b" trailer",
    ]
    for _ in range(3000):
        data = bytearray(b"\x00" * rng.randrange(3) + rng.choice(bases))
        for _ in range(rng.randrange(3)):
            data[rng.randrange(len(data))] = rng.choice((0, 1, 0xFF, 0xD9, rng.randrange(256)))
        data = data[: rng.randrange(1, len(data) + 1)]
        start = rng.randrange(min(3, len(data) + 1))
        stop = rng.randrange(start, len(data) + 1)
        held = bytearray(data)
        blanks, regions = jpeg.parse(data, start, stop)
        for x, y, fill in blanks:
            held[x:y] = fill * (y - x)
        ends = sorted(rng.sample(range(len(data) + 1), min(4, len(data) + 1)))
        out, _header, fed_regions = fed(jpeg.Segments(start, stop), bytes(data), ends)
        assert out == bytes(held), (data, ends)
        walked, given = covered(regions), covered(fed_regions)
        assert walked <= given, (data, ends)
        extra = given - walked
        assert all(any(e - jpeg.MOTION_END <= p < e for e in ends) for p in extra), (data, ends)


def covered(regions: list[Region]) -> set[int]:
    """The places ``regions`` cover."""
    return {p for a, z in regions for p in range(a, z)}


def test_only_motion_jpeg_format_as_app1_is_kept():
    """An APP1 that begins with format A's reserved bytes and tag is kept; one whose first
    bytes begin the tag but then differ is zeroed from the first that differs; an Exif
    whole. Fed in two pieces cut at any byte: the same."""
    near = _seg(0xE1, bytes(4) + b"mjpX" + MARK)
    data = _jpeg(MOTION_A, near, EXIF)
    want = _jpeg(MOTION_A, near[:11] + bytes(len(near) - 11), _blanked(EXIF, b"\x00"))
    for cut in range(len(data) + 1):
        assert fed(jpeg.Segments(0, len(data)), data, [cut])[0] == want, cut


def test_a_jpegs_segments_are_blanked_within_it():
    """A sample's walk never blanks past its end, nor before its start."""
    data = b"\xff" * 3 + _jpeg(EXIF, COMMENT) + EXIF
    start, stop = 3, 3 + 2 + len(EXIF) + 10  # it ends in the comment
    blanks, regions = jpeg.parse(data, start, stop)
    assert blanks == [(3 + 6, 3 + 2 + len(EXIF), b"\x00"), (3 + 2 + len(EXIF) + 4, stop, b" ")]
    assert regions == [(3, stop)]
    assert jpeg.parse(data, 0, len(data)) == ([], [(0, len(data))])  # no JPEG's start at 0


def test_damaged_motion_jpeg_files_never_raise():
    """Damaged bytes anywhere, cut anywhere, held and walked in pieces: nothing raises, and
    only zeros and spaces are written."""
    only_blanks_written([_mjpeg(), _mjpeg(faststart=True)], 1000, 20261207)


def test_an_objects_motion_jpeg_is_blanked_held_and_streamed_alike(tmp_path, monkeypatch):
    """Through the ingest's own read, de-identification and copy, held and streamed in
    chunks of 7 bytes (the movie box at the end, read ahead): the same copy, no Exif text."""
    data = _object(_mjpeg(), ts=uid.MPEG4HP41)
    whole, copy = streamed_copy(tmp_path, monkeypatch, data, 7, frames.Blanked)
    assert copy == whole
    assert MARK + b" " + MARK not in copy
    assert copy.count(IMAGE) == 6
