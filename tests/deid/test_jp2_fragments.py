"""A JP2 or JPEG XL file wrapped whole, in several fragments: its boxes walked across them.

A writer that wraps a JP2 file whole into a frame (DICOM allows only its bare codestream)
may split it into fragments of any (even) size. A box of XML (an owner's name, a place)
can then run past its first fragment: it is zeroed on into the next, the boxes after it
walked on, and the codestream's comments blanked, held and streamed alike.
"""

from __future__ import annotations

import io
import random
import struct

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from indexer import work
from indexer.deid import blanks, frames, j2k, jp2, verify
from indexer.deid.blanks import ZERO, Blank, Region, add
from tests.builders import streamed_copy
from tests.deid.test_frame_fragments import (
    FIRST,
    SECOND,
    TILE_COMMENTS,
    TILED,
    _applied,
    _blanked_first,
    _blanked_second,
    _cuts,
    _in_pieces,
    _joined,
    _object,
    _tiled_blanked,
    _value,
    blanked_alike,
    damaged,
)
from tests.deid.test_frames import MARK, PLAN, _box, _copy, _even, _refused, _streamed, _tiled
from tests.deid.test_mp4_jpeg import covered, fed

pytestmark = pytest.mark.usefixtures("leaks_searched_both_ways")

SIGNATURE = _box(b"jP  ", b"\r\n\x87\n")
FTYP = _box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ")
UUID = b"\xbe\x7a\xcf\xcb\x97\xa9\x42\xe8\x9c\x71\x99\x94\x91\xe3\xaf\xac"
NUMBERS = _box(b"nlst", b"\x00\x00\x00\x01")  # what is not text is kept


def _jp2_file(*, blanked: bool = False) -> bytes:
    """A JP2 file whose XML runs long, with a UUID box, labels in association boxes and a
    tiled codestream (``blanked``: as copied)."""

    def text(payload: bytes) -> bytes:
        return bytes(len(payload)) if blanked else payload

    xml = text(b"<x>" + b"\x00" * 300 + MARK + b" owner" + b"\x00" * 300 + b"</x>")
    inner = _box(b"asoc", NUMBERS + _box(b"xml ", text(b"<p>" + MARK + b" place!</p>")))
    labelled = _box(b"asoc", _box(b"lbl ", text(MARK + b" label")) + inner)
    return (
        SIGNATURE
        + FTYP
        + _box(b"xml ", xml)
        + _box(b"uuid", UUID + text(MARK + b" uuid"))
        + labelled
        + _box(b"jp2c", _tiled_blanked() if blanked else TILED)
    )


def test_a_jp2_files_boxes_cut_by_its_fragments_are_blanked_held_and_streamed(tmp_path):
    """Cut anywhere (a box's size, its kind, its text; an association box's; the
    codestream's first bytes; its tile-parts), by one or more fragments: the file as
    blanked whole, held and streamed alike; the next frame walked from its own start.
    `verify`'s search of the source finds the text the cuts part; of the copy, nothing."""
    source = _jp2_file()
    assert len(source) % 2 == 0
    want = _jp2_file(blanked=True) + _even(_blanked_second())
    whole = frames.blank(_value([source], [SECOND]))[1]
    for cut in _cuts(source, 20261212, upto=len(source)):
        value = _value(_in_pieces(source, cut), [SECOND])
        count = blanked_alike(tmp_path, value, want, [MARK + b" owner", MARK + b" label"], cut)
        assert count == whole == 8, cut  # each box and comment once, however cut


def _jxl_file(*, blanked: bool = False) -> bytes:
    """A JPEG XL file with Exif and XML boxes before its codestream (``blanked``: as copied)."""
    exif = b"\x00\x00\x00\x00II*\x00" + b"\x00" * 200 + MARK + b" camera"
    xml = MARK + b" place!"
    return (
        _box(b"JXL ", b"\r\n\x87\n")
        + _box(b"ftyp", b"jxl \x00\x00\x00\x00jxl ")
        + _box(b"Exif", bytes(len(exif)) if blanked else exif)
        + _box(b"xml ", bytes(len(xml)) if blanked else xml)
        + _box(b"jxlc", b"\xff\x0a" + b"\x12\x34" * 20)
    )


def test_a_jpeg_xl_files_boxes_cut_by_its_fragments_are_zeroed_held_and_streamed(tmp_path):
    """A JPEG XL file's Exif and XML, cut anywhere by fragments: zeroed, held and streamed
    alike; its codestream kept."""
    source = _jxl_file()
    assert len(source) % 2 == 0
    for cut in _cuts(source, 20261213, upto=len(source)):
        value = _value(_in_pieces(source, cut))
        held, _count = frames.blank(value)
        assert _joined(held) == _jxl_file(blanked=True), cut
        assert _streamed(tmp_path, value, None)[0] == held, cut
        assert MARK + b" camera" in frames.headers(value), cut


IHDR = _box(b"ihdr", struct.pack(">LLHBBBB", 8, 8, 1, 7, 7, 0, 0))  # 8 by 8, grey, 8 bits
GARBAGE = b"\x00\x00\x00\x05junk"  # a size shorter than a header: no box


def _unread_boxes(*, blanked: bool = False) -> bytes:
    """A JPX file whose boxes that no decoder reads hold text: a writer's own kind, at the
    top and in its header; a URL; MPEG-7 metadata; a binary filter's; free space; and bytes
    in its header that are no box (``blanked``: as copied)."""

    def text(payload: bytes) -> bytes:
        return bytes(len(payload)) if blanked else payload

    colour = _box(b"colr", b"\x01\x00\x00\x00\x00\x00\x10")  # enumerated: sRGB
    resolution = _box(b"res ", _box(b"resc", b"\x00\x01" * 4 + b"\x00\x00"))
    inside = IHDR + colour + resolution + _box(b"wrtr", text(MARK + b" inside"))
    header = _box(b"jp2h", inside + GARBAGE + text(MARK + b" tail!"))
    url = _box(b"url ", text(b"\x00\x00\x00\x00file:///" + MARK + b" url\x00"))
    info = _box(b"uinf", _box(b"ulst", b"\x00\x01" + UUID) + url)
    return (
        SIGNATURE
        + FTYP
        + _box(b"rreq", b"\x01\x80\x80\x00\x01\x00\x05\x40\x00\x00")
        + header
        + info
        + _box(b"mp7b", text(MARK + b" mpeg-7"))
        + _box(b"bfil", text(b"\x1f\x8b" + MARK + b" gzip"))
        + _box(b"free", text(MARK + b" free"))
        + _box(b"wrtr", text(MARK + b" writer"))
        + NUMBERS
        + _box(b"jp2c", _tiled_blanked() if blanked else TILED)
    )


def test_boxes_no_decoder_reads_are_zeroed_and_those_they_read_kept(tmp_path):
    """Only the boxes decoders read are kept (``jp2.KEPT_BOXES``); every other box's
    payload is zeroed, whatever its kind, in superboxes too, and so are the bytes in a
    superbox that are no box (after the 8 a header would take). Cut anywhere by fragments:
    held and streamed alike; `verify`'s search of the source finds the text."""
    source = _unread_boxes()
    assert len(source) % 2 == 0
    want = _unread_boxes(blanked=True)
    assert frames.blank(_value([source]))[0] == _value([want])
    assert want.count(GARBAGE) == 1  # (the header a box would take, kept and searched)
    texts = [MARK + b" writer", MARK + b" inside", MARK + b" url", MARK + b" tail!"]
    for cut in _cuts(source, 20261206, upto=len(source)):
        blanked_alike(tmp_path, _value(_in_pieces(source, cut)), want, texts, cut)


def test_a_box_to_the_files_end_is_zeroed_on_to_the_next_frame():
    """A last box of size 0 runs to the file's end: through the fragments after it, up to
    the next frame's first (which begins a file, or a JPEG, of its own)."""
    xml = b"<x>" + MARK + b" owner</x>" + b"\x00" * 40
    source = SIGNATURE + FTYP + struct.pack(">L", 0) + b"xml " + xml
    assert len(source) % 2 == 0
    cut = len(source) - 30
    value = _value(_in_pieces(source, (cut - 20, cut)), [source], [SECOND])
    held, _count = frames.blank(value)
    blanked = SIGNATURE + FTYP + struct.pack(">L", 0) + b"xml " + bytes(len(xml))
    assert _joined(held) == blanked + blanked + _even(_blanked_second())


def _old_boxes(
    b: bytes, start: int = 0, stop: int | None = None, depth: int = 0
) -> tuple[list[Blank], list[Region]]:
    """The walk of a file held whole, box by box, superboxes walked by recursion (an
    oracle); its codestream walked as far as its box goes."""
    found: list[Blank] = []
    regions: list[Region] = []
    stop = len(b) if stop is None else stop
    i = start
    while i + 8 <= stop:
        size, kind, head = int.from_bytes(b[i : i + 4], "big"), b[i + 4 : i + 8], 8
        if size == 1 and i + 16 <= stop:
            size, head = int.from_bytes(b[i + 8 : i + 16], "big"), 16
        elif size == 0:
            size = stop - i
        if size < head:
            break
        end = min(i + size, stop)
        if kind == b"jp2c" and b[i + head : i + head + 4] == b"\xff\x4f\xff\x51":
            inner, at = j2k.parse(b[:end], i + head)
            found += inner
            regions += at
        elif kind in jp2.SUPERBOXES and depth < blanks.NESTING:
            inner, at = _old_boxes(b, i + head, end, depth + 1)
            found += inner
            regions += at
        elif kind in jp2.SUPERBOXES:
            add(found, i + head, end, ZERO, len(b))
        else:
            regions.append((i, end))
            _leaf(b, kind, i + head, end, found)
        i += size
    if depth and i < stop:  # bytes in a superbox that are no box: zeroed after a header's
        _no_box(b, i, stop, found, regions)
    return found, regions


def _leaf(b: bytes, kind: bytes, start: int, end: int, found: list[Blank]) -> None:
    """A box's payload, from ``start``: a UUID box's zeroed after its UUID, and any box's
    that decoders do not read, whole."""
    if kind == b"uuid":
        add(found, start + 16, end, ZERO, len(b))
    elif kind not in jp2.KEPT_BOXES:
        add(found, start, end, ZERO, len(b))


def _no_box(b: bytes, i: int, stop: int, found: list[Blank], regions: list[Region]) -> None:
    """Bytes in a superbox, from ``i`` to its end, that are no box: searched, and zeroed
    after those a box's header would take."""
    need = 16 if int.from_bytes(b[i : i + 4], "big") == 1 else 8
    need += 4 if b[i + 4 : i + 8] == b"jp2c" else 0
    regions.append((i, stop))
    add(found, min(i + need, stop), stop, ZERO, len(b))


def _two_codestreams(*, blanked: bool = False) -> bytes:
    """A JPX file of two codestreams, each with its comments (``blanked``: as copied)."""
    tiled = _tiled_blanked() if blanked else TILED
    return SIGNATURE + FTYP + _box(b"jp2c", tiled) + _box(b"jp2c", tiled)


def test_each_codestream_a_file_holds_is_walked(tmp_path):
    """A JPX file may hold several codestreams: each one's comments are blanked, held whole
    and cut anywhere by fragments."""
    source = _two_codestreams()
    assert len(source) % 2 == 0
    assert frames.blank(_value([source]))[0] == _value([_two_codestreams(blanked=True)])
    for cut in _cuts(source, 20261216, upto=len(source)):
        want = _two_codestreams(blanked=True)
        blanked_alike(tmp_path, _value(_in_pieces(source, cut)), want, [MARK + b" third"], cut)


def test_a_jpeg_a_box_holds_at_a_fragments_start_is_the_boxs(tmp_path):
    """An Exif box holding a thumbnail (a JPEG, with its own Exif) that begins at a
    fragment's start: the box is zeroed whole, and the codestream after it walked (the
    thumbnail begins no frame of its own)."""
    thumbnail = b"\xff\xd8\xff\xe1\x00\x20Exif\x00\x00" + MARK + b"!\xff\xd9"
    exif = b"\x00\x00\x00\x00II*\x00" + MARK + b"\x00"
    source = SIGNATURE + FTYP + _box(b"Exif", exif + thumbnail) + _box(b"jp2c", TILED)
    assert len(source) % 2 == 0
    cut = source.index(thumbnail)
    assert cut % 2 == 0
    blanked = SIGNATURE + FTYP + _box(b"Exif", bytes(len(exif + thumbnail)))
    want = blanked + _box(b"jp2c", _tiled_blanked())
    blanked_alike(tmp_path, _value(_in_pieces(source, (cut,))), want, [MARK], (cut,))


def test_a_frame_after_a_codestream_box_to_the_files_end_begins_its_own_walk(tmp_path):
    """A codestream box of size 0 runs to the file's end: the next fragment that begins a
    frame (a JPEG) ends it; one that begins as a JPEG inside a codestream box of known
    size (a comment's bytes) is the box's."""
    to_end = SIGNATURE + FTYP + struct.pack(">L", 0) + b"jp2c" + TILED
    value = _value(_in_pieces(to_end, (len(to_end) - 20,)), [SECOND])
    want = SIGNATURE + FTYP + struct.pack(">L", 0) + b"jp2c" + _tiled_blanked()
    blanked_alike(tmp_path, value, want + _even(_blanked_second()), [MARK + b" third"], ())
    tiled = _tiled(b"a\xff\xd8" + MARK, b"second!!", MARK + b" third")
    sized = SIGNATURE + FTYP + _box(b"jp2c", tiled)
    cut = sized.index(b"\xff\xd8")
    assert cut % 2 == 0
    assert len(sized) % 2 == 0
    spaced = _tiled(*(b" " * n for n in (3 + len(MARK), 8, len(MARK) + 6)))
    want = SIGNATURE + FTYP + _box(b"jp2c", spaced)
    blanked_alike(tmp_path, _value(_in_pieces(sized, (cut,))), want, [MARK], (cut,))
    broken = SIGNATURE + b"\x00\x00\x00\x03bad!"  # no box: the walk ends, and the next frame
    value = _value([broken], _in_pieces(FIRST, (100, 400)))  # begins its own
    blanked_alike(tmp_path, value, broken + _blanked_first(), [MARK + b" owner"], ())


def _nested(depth: int) -> bytes:
    box = _box(b"lbl ", MARK)
    for _ in range(depth):
        box = _box(b"asoc", box)
    return SIGNATURE + box + _box(b"jp2c", TILED)


def test_a_file_walked_in_pieces_is_blanked_as_held_and_as_before():
    """Any JP2 or JPEG XL file (damaged: a size, a kind changed; cut short; a size of 8
    bytes; associations nested past the limit), held whole: the blanks of the walk frames
    made before (its codestream walked as far as its box goes), and its headers searched;
    fed in up to five pieces cut anywhere: the same blanks and header bytes (and, where a
    piece's end cut the box header a step looked at, those bytes)."""
    rng = random.Random(20261214)  # noqa: S311 - a seeded stream of test inputs
    large = struct.pack(">L", 1) + b"xml " + struct.pack(">Q", 16 + len(MARK)) + MARK
    bases = [
        _jp2_file(),
        _two_codestreams(),
        _jxl_file(),
        _nested(blanks.NESTING + 2),
        SIGNATURE + large + _box(b"uuid", UUID[:9]) + _box(b"jp2c", b"\xff\x4f"),
        _unread_boxes(),
    ]
    for _ in range(3000):
        data = damaged(rng, bases, (0, 1, 8, 0xFF), shortest=8)
        found, regions = jp2.parse(data)
        held = _applied(data, found)
        signed = data[4:8] in jp2.SIGNATURES  # as frames looked for
        old_found, old_regions = _old_boxes(data) if signed else ([], [])
        assert held == _applied(data, old_found), data
        walked = covered(regions)
        assert walked == covered(old_regions), data
        ends = sorted(rng.sample(range(len(data) + 1), min(4, len(data) + 1)))
        out, _header, fed_regions = fed(jp2.Boxes(0, len(data)), data, ends)
        assert out == held, (data, ends)
        given = covered(fed_regions)
        assert walked <= given, (data, ends)
        assert all(any(e - jp2.Boxes.HEAD <= p < e for e in ends) for p in given - walked)


def test_a_name_a_fragments_end_cuts_in_a_kept_box_is_caught(tmp_path):
    """A patient's name in a box that is kept (a colour box's ICC profile, which decoders
    read), cut in two by the fragments: the ingest refuses the object, and `verify` finds
    it in the copy."""
    name = b"PHIMARKPNZYXWVU"  # one component: the cut leaves no part of it whole
    profile = b"\x02\x00\x00" + b"\x00" * 5 + name + b"\x00"  # (an ICC profile's description)
    frame = SIGNATURE + FTYP + _box(b"colr", profile) + _box(b"jp2c", TILED)
    cut = frame.index(name) + 8
    assert cut % 2 == 0
    assert len(frame) % 2 == 0
    data = _object(_value(_in_pieces(frame, (cut,))), JPEG2000Lossless, PatientName=name.decode())
    assert b"PHIMARK" not in _refused(tmp_path, data).encode()
    values = verify.identifying_values(PLAN, work.read_dataset(data))
    leaks = verify.find_leaks(values, work.read_dataset(_copy(data)))
    assert ("(0010,0010)", "compressed frame headers (utf-8)") in [
        (leak.source_path, leak.found_in) for leak in leaks
    ]


def test_an_objects_jp2_file_in_fragments_is_blanked_held_and_streamed_alike(tmp_path, monkeypatch):
    """Through the ingest's own read, de-identification and copy: held, and streamed in
    chunks of 7 bytes, the same copy, which holds none of the file's text."""
    source = _jp2_file()
    data = _object(_value(_in_pieces(source, (200, 500, 800))), JPEG2000Lossless)
    whole, copy = streamed_copy(tmp_path, monkeypatch, data, 7, frames.Blanked)
    assert copy == whole
    assert MARK not in copy
    for comment in TILE_COMMENTS:
        assert comment not in copy
    value = pydicom.dcmread(io.BytesIO(copy)).PixelData
    assert _joined(value) == _jp2_file(blanked=True)
