"""A JPEG frame in several fragments: its header's text blanked and searched across them.

DICOM lets a writer split a frame into fragments of any (even) size. A photograph's Exif
(a camera's maker notes, an owner's name, places: up to 64 KiB) can then run past its first
fragment. The segment a fragment's end cuts is blanked on into the next fragment, and the
header searched on, held and streamed alike.
"""

from __future__ import annotations

import io
import itertools
import random
from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from indexer import deid, work
from indexer.deid import frames, j2k, jpeg, verify
from indexer.deid.blanks import SPACE, ZERO, Blank, Region, add
from indexer.deid.profile import FRAME_TEXT
from indexer.errors import DeidError
from indexer.spans import FileSpan, version_of
from tests.builders import make_instance, streamed_copy
from tests.deid.test_frames import (
    ADOBE,
    COMMENT,
    EXIF,
    IMAGE,
    JFIF,
    KEY,
    MARK,
    PLAN,
    _blanked,
    _copy,
    _even,
    _jpeg,
    _refused,
    _seg,
    _streamed,
    _tiled,
)
from tests.deid.test_mp4_jpeg import covered, fed

pytestmark = pytest.mark.usefixtures("leaks_searched_both_ways")

MAKER = _seg(0xE1, b"Exif\x00\x00" + b"\x00" * 300 + MARK + b" owner" + b"\x00" * 300)
FIRST = _jpeg(JFIF, MAKER, COMMENT)
SECOND = _jpeg(ADOBE, EXIF)


def _blanked_first() -> bytes:
    return _jpeg(JFIF, _blanked(MAKER, b"\x00"), _blanked(COMMENT, b" "))


def _blanked_second() -> bytes:
    return _jpeg(ADOBE, _blanked(EXIF, b"\x00"))


def _in_pieces(frame: bytes, cuts: tuple[int, ...]) -> list[bytes]:
    """``frame`` (of even length) cut at ``cuts`` (even), each piece a fragment."""
    return [frame[a:z] for a, z in itertools.pairwise([0, *cuts, len(frame)])]


def _value(*frames_in_pieces: list[bytes]) -> bytes:
    """Encapsulated frames, each of the fragments given (an empty Basic Offset Table)."""
    return encapsulate([piece for pieces in frames_in_pieces for piece in pieces])


def _cuts(frame: bytes, seed: int, upto: int = 700) -> list[tuple[int, ...]]:
    """Every even cut of ``frame``'s first ``upto`` bytes (its header), and 40 triple cuts."""
    even = range(2, min(len(frame), upto), 2)
    rng = random.Random(seed)  # noqa: S311 - a seeded stream of test inputs
    return [(c,) for c in even] + [tuple(sorted(rng.sample(even, 3))) for _ in range(40)]


def _joined(value: bytes) -> bytes:
    return b"".join(value[a:z] for a, z in frames.fragments(value))


def blanked_alike(
    tmp_path: Path, value: bytes, want: bytes, texts: list[bytes], cut: tuple[int, ...]
) -> int:
    """Check ``value`` (frames cut at ``cut``) is blanked held and streamed alike, its
    fragments to ``want``; that `verify`'s search of it finds each of ``texts``, held and
    streamed, and of the copy nothing. How many segments were blanked."""
    held, count = frames.blank(value)
    copy, found = _streamed(tmp_path, value, None)
    assert _joined(held) == want, cut
    assert copy == held, cut
    for searched in (frames.headers(value), found):
        assert all(text in searched for text in texts), cut
    assert MARK not in frames.headers(held), cut
    assert MARK not in _streamed(tmp_path, held, None)[1], cut
    return count


def test_a_frames_header_cut_by_its_fragments_is_blanked_held_and_streamed(tmp_path):
    """Cut anywhere in its header (a segment's marker, its length, its text), by one or
    more fragments: the frame as blanked whole, held and streamed alike. `verify`'s search
    of the source finds the name the cut parts; of the copy, nothing."""
    assert len(FIRST) % 2 == 0
    for cut in _cuts(FIRST, 20261206):
        value = _value(_in_pieces(FIRST, cut), [SECOND])
        want = _blanked_first() + _even(_blanked_second())
        count = blanked_alike(tmp_path, value, want, [MARK + b" owner"], cut)
        assert count == 3, cut  # the Exif, the comment, the second frame's Exif: each once


def test_each_frame_in_fragments_is_walked_from_its_own_start():
    """Two frames, each in three fragments: the second's walk begins at its start (a
    fragment that begins a JPEG), not where the first's ended. A comment after the first
    one's scan (a fragment's end cuts it) is blanked too; its image data stays."""
    after_scan = _seg(0xFE, MARK + b"!")
    first = FIRST[:-2] + after_scan + b"\xff\xd9"  # (before the end of the image)
    assert len(first) % 2 == 0
    value = _value(_in_pieces(first, (40, len(first) - 20)), _in_pieces(SECOND, (6, 30)))
    held, _count = frames.blank(value)
    blanked = _blanked(after_scan, b" ")
    want = _blanked_first()[:-2] + blanked + b"\xff\xd9" + _even(_blanked_second())
    assert _joined(held) == want
    assert MARK not in _joined(held)
    assert _joined(held).count(IMAGE) == 2


def _object(value: bytes, ts: str = JPEGBaseline8Bit, **attrs: object) -> bytes:
    """A one-frame object whose Pixel Data is ``value`` (its frame in several fragments)."""
    ds = make_instance(rows=8, columns=8)
    ds.file_meta.TransferSyntaxUID = ts
    ds.PixelData = value
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = 1
    for k, v in attrs.items():
        setattr(ds, k, v)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_an_objects_frame_in_fragments_is_blanked_held_and_streamed_alike(tmp_path, monkeypatch):
    """Through the ingest's own read, de-identification and copy: held, and streamed in
    chunks of 7 bytes, the same copy, which holds no text of the Exif."""
    data = _object(_value(_in_pieces(FIRST, (100, 400))))
    whole, copy = streamed_copy(tmp_path, monkeypatch, data, 7, frames.Blanked)
    assert copy == whole
    assert MARK not in copy
    assert IMAGE in copy
    value = pydicom.dcmread(io.BytesIO(copy)).PixelData
    assert _joined(value) == _blanked_first()


def test_the_trace_counts_a_segment_fragments_cut_once():
    """The trace names how many segments were blanked: the Exif in three fragments is one."""
    data = _object(_value(_in_pieces(FIRST, (100, 400))))
    steps = deid.explain(PLAN, work.read_dataset(data, pixels_in_place=True), KEY)
    (step,) = [s for s in steps if s.source.startswith(FRAME_TEXT.source)]
    assert "(2 segments)" in step.source


def test_a_segment_after_a_fragment_without_blanks_is_counted_apart():
    """A comment that ends with its fragment, a fragment of the next one's marker and
    length only (nothing blanked there), then that comment's text: two segments."""
    first, second = _seg(0xFE, b"first!"), _seg(0xFE, b"second")
    frame = _jpeg(JFIF, first, second)
    at = frame.index(second)
    value = _value(_in_pieces(frame, (at, at + 4)))
    held, count = frames.blank(value)
    assert _joined(held) == _jpeg(JFIF, _blanked(first, b" "), _blanked(second, b" "))
    assert count == 2


def test_a_name_a_fragments_end_cuts_in_a_kept_segment_is_caught(tmp_path):
    """A patient's name in an ICC profile's segment (kept: decoders read it), cut in two by
    the fragments: the ingest refuses the object, and `verify` finds it in the copy."""
    name = b"PHIMARKPNZYXWVU"  # one component: the cut leaves no part of it whole
    icc = _seg(0xE2, b"ICC_PROFILE\x00\x01\x01" + name + b"\x00")
    frame = _jpeg(JFIF, icc)
    cut = frame.index(name) + 8
    assert cut % 2 == 0
    data = _object(_value(_in_pieces(frame, (cut,))), PatientName=name.decode())
    assert b"PHIMARK" not in _refused(tmp_path, data).encode()
    values = verify.identifying_values(PLAN, work.read_dataset(data))
    leaks = verify.find_leaks(values, work.read_dataset(_copy(data)))
    assert ("(0010,0010)", "compressed frame headers (utf-8)") in [
        (leak.source_path, leak.found_in) for leak in leaks
    ]


def test_a_name_a_fragments_end_cuts_is_caught_as_the_frame_streams(tmp_path):
    """Streamed, the header's bytes before a fragment's end are searched again with the
    next fragment's: a name cut in two there stops the copy."""
    name = b"PHIMARKPNZYXWVU"  # one component: the cut leaves no part of it whole
    frame = _jpeg(JFIF, _seg(0xE2, b"ICC_PROFILE\x00\x01\x01" + name + b"\x00"))
    value = _value(_in_pieces(frame, (frame.index(name) + 8,)))
    assert (frame.index(name) + 8) % 2 == 0
    path = tmp_path / "frames"
    path.write_bytes(value)
    span = FileSpan(path, 0, len(value), version_of(path.stat()))
    found = frames.Blanked(span, 0, len(value), check=lambda b: "(0010,0010)" * (name in b))
    with pytest.raises(DeidError, match=r"header \(from \(0010,0010\)\)"):
        b"".join(found.chunks())
    plain = frames.Blanked(span, 0, len(value), check=lambda _b: None)
    assert b"".join(plain.chunks()) == value  # nothing else stops it


def test_damaged_frames_in_fragments_are_blanked_held_and_streamed_alike(tmp_path):
    """Damaged JPEGs (a length, a marker changed; cut short), each frame in up to four
    fragments cut at random: held and streamed give the same copy, and only zeros and
    spaces are written."""
    rng = random.Random(20261208)  # noqa: S311 - a seeded stream of test inputs
    bases = [FIRST, SECOND, _jpeg(JFIF, EXIF, MAKER), b"\xff\xd8\xff\xff" + FIRST[2:]]
    for _ in range(300):
        pieces = []
        for _frame in range(rng.randrange(1, 4)):
            frame = bytearray(rng.choice(bases))
            for _ in range(rng.randrange(3)):
                frame[rng.randrange(len(frame))] = rng.choice((0, 1, 0xFF, rng.randrange(256)))
            frame = frame[: rng.randrange(2, len(frame) + 1)]
            cuts = sorted({rng.randrange(1, len(frame)) for _ in range(rng.randrange(4))})
            pieces.append(_in_pieces(bytes(frame), tuple(cuts)))
        value = _value(*pieces)
        held, _count = frames.blank(value)
        copy, _found = _streamed(tmp_path, value, None)
        assert copy == held
        assert len(held) == len(value)
        assert all(n in (o, 0, 0x20) for o, n in zip(value, held, strict=True))


TILE_COMMENTS = (MARK + b" first", b"second!", MARK + b" third")  # (a codestream of even length)
TILED = _tiled(*TILE_COMMENTS)


def _tiled_blanked() -> bytes:
    """``TILED`` with its comments (Latin text) made spaces."""
    return _tiled(*(b" " * len(comment) for comment in TILE_COMMENTS))


def test_a_codestreams_tile_parts_in_fragments_are_blanked_held_and_streamed(tmp_path):
    """A JPEG 2000 frame in fragments cut anywhere (in a tile-part's SOT, its length, a
    comment's Rcme, its text; between tile-parts): each tile-part's comment blanked, held
    and streamed alike; `verify`'s search finds the comments in the source, and none in the
    copy."""
    assert len(TILED) % 2 == 0
    for cut in _cuts(TILED, 20261209):
        value = _value(_in_pieces(TILED, cut), [FIRST])
        want = _tiled_blanked() + _blanked_first()
        blanked_alike(tmp_path, value, want, [MARK + b" first", MARK + b" third"], cut)


def _old_j2k(b: bytes, at: int) -> tuple[list[Blank], list[Region]]:
    """The walk of a codestream held whole as frames did it before ``j2k`` (an oracle)."""
    blanks: list[Blank] = []
    regions: list[Region] = []

    def segments(i: int) -> int:
        first = i
        while i + 4 <= len(b) and b[i] == 0xFF:
            marker = b[i + 1]
            if marker in (0x93, 0xD9) or (marker == 0x90 and i != first):
                break
            length = int.from_bytes(b[i + 2 : i + 4], "big")
            if length < 2:
                break
            if marker == 0x64 and length >= 4:
                add(
                    blanks,
                    i + 6,
                    i + 2 + length,
                    SPACE if b[i + 4 : i + 6] == b"\x00\x01" else ZERO,
                    len(b),
                )
            i += 2 + length
        return min(i, len(b))

    i = segments(at + 2)
    regions.append((at, i))
    while i + 12 <= len(b) and b[i] == 0xFF and b[i + 1] == 0x90:
        tile_part = int.from_bytes(b[i + 6 : i + 10], "big")
        end = segments(i)
        regions.append((i, end))
        if tile_part == 0 or i + tile_part <= end:
            break
        i += tile_part
    return blanks, regions


def damaged(
    rng: random.Random, bases: list[bytes], values: tuple[int, ...], *, shortest: int
) -> bytes:
    """One of ``bases`` with up to two bytes changed (to one of ``values``, or any), cut
    short (to ``shortest`` bytes at least)."""
    data = bytearray(rng.choice(bases))
    for _ in range(rng.randrange(3)):
        data[rng.randrange(len(data))] = rng.choice((*values, rng.randrange(256)))
    return bytes(data[: rng.randrange(shortest, len(data) + 1)])


def _applied(data: bytes, blanks: list[Blank]) -> bytes:
    out = bytearray(data)
    for a, z, fill in blanks:
        out[a:z] = fill * max(0, z - a)
    return bytes(out)


def test_a_codestream_walked_in_pieces_is_blanked_as_held_and_as_before():
    """Any codestream (damaged: a length, a Psot, a marker changed; cut short), held whole:
    the blanks of the walk frames made before, and its headers, and more (all from damage
    to where its tile-part ends, or the codestream: searched since rules version 36); fed
    in up to five pieces
    cut anywhere: the same blanks, and the same header bytes (and, where a piece's end cut
    the marker a header ended at, that marker's bytes)."""
    rng = random.Random(20261210)  # noqa: S311 - a seeded stream of test inputs
    bases = [TILED, _tiled(b"", MARK), _tiled(MARK, image=b"")]
    for _ in range(3000):
        data = damaged(rng, bases, (0, 1, 0xFF, 0x90), shortest=4)
        blanks, regions = j2k.parse(data)
        held = _applied(data, blanks)
        if data[:2] == b"\xff\x4f":  # a codestream's start (SOC), as frames looked for
            old_blanks, old_regions = _old_j2k(data, 0)
            assert held == _applied(data, old_blanks), data
            then, now = covered([(a, z) for a, z in old_regions if z > a]), covered(regions)
            assert then <= now, data
        else:
            assert (blanks, regions) == ([], []), data
        ends = sorted(rng.sample(range(len(data) + 1), min(4, len(data) + 1)))
        out, _header, fed_regions = fed(j2k.Codestream(0, len(data)), data, ends)
        assert out == held, (data, ends)
        # every byte of the headers held, and no more but a marker a piece's end cut (the
        # bytes a step looks at, before the piece's end)
        walked, given = covered(regions), covered(fed_regions)
        assert walked <= given, (data, ends)
        extra = given - walked
        assert all(any(e - j2k.TILE_PART <= p < e for e in ends) for p in extra), (data, ends)


def test_a_fragment_of_tile_data_that_begins_as_a_codestream_does_not_restart_the_walk():
    """Tile data may hold any byte below 0x90 after FF: a fragment of it that begins with
    SOC (FF4F, but not SOC and SIZ, which would begin a frame) is no new codestream while
    the walk goes on; the next tile-part's comment, in a later fragment, is blanked."""
    image = b"\x12\x34" * 10 + b"\xff\x4f\x00\x01" + b"\x12\x34" * 10
    tiled = _tiled(b"first", MARK + b" second", image=image)
    assert len(tiled) % 2 == 0
    cut = tiled.index(b"\xff\x4f\x00\x01")
    value = _value(_in_pieces(tiled, (cut, cut + 30)))
    held, _count = frames.blank(value)
    spaced = _tiled(b" " * 5, b" " * len(MARK + b" second"), image=image)
    assert _joined(held) == spaced


def test_headers_apart_are_not_searched_as_one(tmp_path):
    """A fragment that begins with a tile-part's header, after one whose headers ended
    before its end (in tile data): its header is searched alone, not after the last
    fragment's (bytes apart are never joined); one that goes on from the last fragment's
    header is searched after it."""
    second = TILED.index(b"\xff\x90", TILED.index(b"\xff\x90") + 2)  # the second tile-part
    assert second % 2 == 0
    main_cut = TILED.index(b"\xff\x51") + 10  # in the main header (SIZ)
    value = _value(_in_pieces(TILED, (main_cut, second)))
    path = tmp_path / "frames"
    path.write_bytes(value)
    span = FileSpan(path, 0, len(value), version_of(path.stat()))
    searched: list[bytes] = []
    blanked = frames.Blanked(span, 0, len(value), check=lambda b: searched.append(b) or "")
    b"".join(blanked.chunks())
    assert len(searched) == 3
    assert searched[0] == TILED[:main_cut]
    assert searched[1].startswith(TILED[:main_cut])  # the main header, on from the first
    assert searched[2].startswith(b"\xff\x90")  # the second tile-part's: alone


# a phone's trailer after the image's end: a motion photo's MP4 file (its place), a maker's
TRAILER = b"\x00\x00\x00\x18ftypmp42" + b"\xa9xyz+48.8577+002.2950/" + MARK + b" SEFT"
SCANS = (  # a progressive JPEG's second scan, after tables and a comment between scans
    _seg(0xC4, b"\x10\x00" + bytes(16))
    + _seg(0xFE, b"\xff\xd9 " + MARK + b" between scans")  # (0xFF 0xD9 in a payload: no end)
    + _seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    + b"\x12\xff\x00\x34\xff\xd3\x56\xff\x01\xff\x7f" * 4  # stuffed, restart, JPEG-LS bytes
)


def _with_scans(*, blanked: bool = False) -> bytes:
    """``FIRST`` with a second scan, and a trailer after its end (``blanked``: as copied)."""
    head = _blanked_first()[:-2] if blanked else FIRST[:-2]
    if blanked:
        at = SCANS.index(b"\xff\xfe")
        length = int.from_bytes(SCANS[at + 2 : at + 4], "big")
        scans = SCANS[: at + 4] + b" " * (length - 2) + SCANS[at + 2 + length :]
    else:
        scans = SCANS
    trailer = bytes(len(TRAILER)) if blanked else TRAILER
    return head + scans + b"\xff\xd9" + trailer


def test_what_follows_a_jpegs_end_is_zeroed_and_a_comment_between_scans_blanked(tmp_path):
    """A phone's trailer after the image's end (a motion photo's MP4 file: its place) is
    zeroed, and a comment between scans blanked (its bytes 0xFF 0xD9 are no end: its
    length is walked over); the scans' data (stuffed bytes, restart markers, bytes JPEG-LS
    stuffs) stays. Cut anywhere by fragments, held and streamed alike; `verify` finds the
    trailer's text in the source, and none in the copy."""
    source = _with_scans()
    assert len(source) % 2 == 0
    for cut in _cuts(source, 20261211, upto=len(source)):
        value = _value(_in_pieces(source, cut), [SECOND])
        want = _with_scans(blanked=True) + _even(_blanked_second())
        blanked_alike(tmp_path, value, want, [MARK + b" SEFT"], cut)


def test_a_jpeg_with_scans_and_a_trailer_cut_at_any_byte_is_walked_as_held():
    """Fed in two pieces cut at any byte (between a marker's 0xFF and its code after a
    scan, say): the blanks of the JPEG held whole, and every byte of its headers and its
    trailer searched (and no more but a marker the cut cut)."""
    data = _with_scans()
    blanks, regions = jpeg.parse(data)
    held = bytearray(data)
    for a, z, fill in blanks:
        held[a:z] = fill * (z - a)
    assert bytes(held) == _with_scans(blanked=True)
    for cut in range(len(data) + 1):
        out, _header, fed_regions = fed(jpeg.Segments(0, len(data)), data, [cut])
        assert out == bytes(held), cut
        walked, given = covered(regions), covered(fed_regions)
        assert walked <= given, cut
        assert all(cut - jpeg.MOTION_END <= p < cut for p in given - walked), cut
