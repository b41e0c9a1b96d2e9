"""Text in the headers of compressed frames: JPEG segments, JPEG 2000 comments, JP2 boxes, video.

A frame compressed as JPEG carries segments of its own before its image data: a camera's Exif
(dates, serial numbers, places), XMP, IPTC captions, comments. A device that wrapped such a
JPEG into DICOM (a photograph, an endoscope's capture) carries them into the object, under
the Pixel Data element that no attribute rule reaches. Their payloads are blanked in place,
each segment keeping its length, so nothing of the image is decoded or changed:

- JPEG (baseline, extended, lossless, JPEG-LS): COM, and APPn but those decoders read
  (APP0 JFIF, APP2 ICC profile, APP8 JPEG-LS colour transform and SPIFF, APP14 Adobe);
- JPEG 2000: COM in the main header and in tile-part headers;
- a JP2 file wrapped whole (which DICOM does not allow, but writers do): XML, UUID and
  intellectual property boxes, JPX labels and XML inside association boxes, and the
  comments of the codestream it holds;
- a JPEG XL file wrapped whole (not its bare codestream, which holds no text): Exif, XML,
  JUMBF and Brotli-compressed boxes;
- video (MPEG-2, H.264, HEVC; known by the transfer syntax): MPEG-2 user data, and the user
  data SEI messages of H.264 and HEVC (registered: captions; unregistered: an encoder's
  settings, a recorder's text), each byte that is not zero made a space, so that no start
  code and no escape byte changes (an unregistered message keeps its UUID). Fragments may
  cut the stream anywhere: frames held in memory are parsed as one stream, and streamed
  ones a fragment at a time, the unit a fragment ends in read on into the next
  (``_VideoPass``). An MP4 file wrapped whole (which DICOM does not allow, but writers do)
  has its metadata zeroed (``_mp4``: titles, comments, places, XMP, free space, the times
  of its movie, tracks and media) and the user data SEI messages of its H.264 and HEVC
  tracks blanked; streamed, as far as its first fragment holds it (most often all of it).
  A transport stream (``mpegts``) has the user data in its video PES packets blanked, its
  service information (service names, events, the recording's time) made null packets, and
  its adaptation fields' private data zeroed; a program stream (``mpegps``) has the user
  data in its video PES packets blanked, a unit cut by a packet's header blanked whole;
  held or streamed (``demux``). Other containers are not known.

What stays (the segments decoders read, and every header's other segments) is searched by
the leak check (``headers``). The frames of an object of ``spans.STREAM_FROM`` bytes or more
are blanked and searched as they are streamed into the copy, a fragment at a time
(``Blanked``), as those held are before: a value found there stops the copy.
"""

from __future__ import annotations

import functools
import mmap
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from indexer import spans
from indexer.deid.demux import Demux
from indexer.deid.mpegps import PsDemux, is_program_stream
from indexer.deid.mpegts import TS_HEAD, TsDemux, packet_size
from indexer.deid.pixels import PIXEL_DATA, undefined_length
from indexer.errors import DeidError, StoreError, os_reason
from indexer.spans import Span

ITEM = b"\xfe\xff\x00\xe0"
SOI, SOS, EOI, COM = 0xD8, 0xDA, 0xD9, 0xFE  # JPEG markers (after 0xFF)
APP0, APP15 = 0xE0, 0xEF
READ_BY_DECODERS = frozenset({0, 2, 8, 14})  # APPn: JFIF, ICC profile, JPEG-LS, Adobe
J2K_START = b"\xff\x4f\xff\x51"  # SOC, then SIZ
J2K_COM, J2K_SOT, J2K_SOD, J2K_EOC = 0x64, 0x90, 0x93, 0xD9
BOX_SIGNATURES = frozenset({b"jP  ", b"JXL "})  # a JP2 file's first box, a JPEG XL file's
# XML, rights, labels (JP2, JPX); Exif, XML, JUMBF and Brotli-compressed ones (JPEG XL)
TEXT_BOXES = frozenset({b"xml ", b"jp2i", b"lbl ", b"Exif", b"jumb", b"brob"})
JP2_UUID, JP2_CODESTREAM = b"uuid", b"jp2c"
ASSOCIATION = b"asoc"  # a JPX superbox: labels, XML and further associations inside
ASSOCIATION_DEPTH = 16  # nested deeper: the rest of the box is blanked unread
UUID_BYTES = 16
SPACE, ZERO = b" ", b"\x00"

Blank = tuple[int, int, bytes]  # start, end, the byte to fill with
Box = tuple[int, bytes, int, int]  # start, kind, header length, end
Region = tuple[int, int]  # start, end of a header's bytes

# video, by transfer syntax: the units after start codes (00 00 01) hold the headers
MPEG2, H264, HEVC = "mpeg2", "h264", "hevc"
_VIDEO_ROOT = "1.2.840.10008.1.2.4."
VIDEO = {
    **{f"{_VIDEO_ROOT}{n}{tail}": MPEG2 for n in (100, 101) for tail in ("", ".1")},
    **{f"{_VIDEO_ROOT}{n}{tail}": H264 for n in range(102, 107) for tail in ("", ".1")},
    **{f"{_VIDEO_ROOT}{n}": HEVC for n in (107, 108)},
}
START_CODE = b"\x00\x00\x01"
MPEG2_USER_DATA = 0xB2
H264_SEI, HEVC_SEI = 6, (39, 40)  # NAL unit types (HEVC: prefix and suffix SEI)
# SEI payload types: user data registered (ITU-T T.35: captions), unregistered (UUID, text)
SEI_REGISTERED, SEI_UNREGISTERED = 4, 5
SEI_TRAILING = 0x80  # rbsp_trailing_bits: the stop bit
_NOT_ZERO = re.compile(rb"[^\x00]+")
# MP4 (ISO base media) files wrapped whole, which writers put under the video UIDs
MP4_FIRST, MP4_MEDIA_DATA, MP4_HANDLER, MP4_DATA = b"ftyp", b"mdat", b"hdlr", b"data"
MP4_HANDLER_NAME = 24  # a handler box's name, after version, flags, type and reserved bytes
MP4_CONTAINERS = frozenset(
    {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"moof", b"traf"}
)
MP4_TIMES = frozenset({b"mvhd", b"tkhd", b"mdhd"})  # creation and modification times
MP4_TEXT = frozenset({b"udta", b"meta", b"free", b"skip"})  # user data, metadata, free space
MP4_MOVIE, MP4_TRACK = b"moov", b"trak"
MP4_SAMPLES = 1 << 20  # samples of a track looked at: 9.7 hours at 30 a second
# sample entries of H.264 and HEVC: (codec, decoder configuration, its NAL length's byte)
MP4_VIDEO = {
    **dict.fromkeys((b"avc1", b"avc3"), (H264, b"avcC", 4)),
    **dict.fromkeys((b"hvc1", b"hev1"), (HEVC, b"hvcC", 21)),
}
FIND_BYTES = 1 << 20  # a memoryview (a fragment mapped from disk) is searched this much at a time


def fragments(value: bytes | memoryview) -> Iterator[Region]:
    """(start, end) in ``value`` of each fragment after the Basic Offset Table's item."""
    pos, first = 0, True
    while pos + 8 <= len(value) and value[pos : pos + 4] == ITEM:
        length = int.from_bytes(value[pos + 4 : pos + 8], "little")
        start = pos + 8
        if not first:
            yield start, min(start + length, len(value))
        first = False
        pos = start + length


def video_codec(ds: Dataset) -> str | None:
    """MPEG2, H264 or HEVC where the transfer syntax of ``ds`` is a video one, else None."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return VIDEO.get(str(ts)) if ts is not None else None


def parse(
    frag: bytes | bytearray | memoryview, codec: str | None = None
) -> tuple[list[Blank], list[Region]]:
    """What to blank in one fragment, and where its headers lie (nothing: no frame start).

    ``codec``: the video codec the transfer syntax names (``video_codec``), if one.
    """
    if codec is not None:
        return _video(frag, codec)
    if frag[:2] == bytes((0xFF, SOI)):
        return _jpeg(frag)
    if frag[:4] == J2K_START:
        return _j2k(frag, 0)
    if bytes(frag[4:8]) in BOX_SIGNATURES:
        return _boxes(frag)
    return [], []


def _jpeg(b: bytes | bytearray | memoryview) -> tuple[list[Blank], list[Region]]:
    """JPEG's segments from SOI up to SOS: the entropy-coded data after it is never read."""
    blanks: list[Blank] = []
    i = 2
    while i + 4 <= len(b) and b[i] == 0xFF:  # noqa: PLR2004
        marker = b[i + 1]
        if marker == 0xFF:  # noqa: PLR2004 - a fill byte
            i += 1
            continue
        if marker in (SOS, EOI):
            break
        length = int.from_bytes(b[i + 2 : i + 4], "big")
        if length < 2:  # noqa: PLR2004 - damaged: no segment is that short
            break
        if marker == COM:
            _add(blanks, i + 4, i + 2 + length, SPACE, len(b))
        elif APP0 <= marker <= APP15 and marker - APP0 not in READ_BY_DECODERS:
            _add(blanks, i + 4, i + 2 + length, ZERO, len(b))
        i += 2 + length
    return blanks, [(0, min(i, len(b)))]


def _j2k(b: bytes | bytearray | memoryview, at: int) -> tuple[list[Blank], list[Region]]:
    """A JPEG 2000 codestream at ``at``: its main header, and each tile-part's header."""
    blanks: list[Blank] = []
    regions: list[Region] = []
    i = _j2k_segments(b, at + 2, blanks)  # after SOC
    regions.append((at, i))
    while i + 12 <= len(b) and b[i] == 0xFF and b[i + 1] == J2K_SOT:  # noqa: PLR2004
        tile_part = int.from_bytes(b[i + 6 : i + 10], "big")  # Psot: its length, or 0: the rest
        end = _j2k_segments(b, i, blanks)
        regions.append((i, end))
        if tile_part == 0 or i + tile_part <= end:
            break
        i += tile_part
    return blanks, regions


def _j2k_segments(b: bytes | bytearray | memoryview, i: int, blanks: list[Blank]) -> int:
    """Marker segments from ``i`` up to a tile-part (SOT, past the first), SOD or EOC."""
    first = i
    while i + 4 <= len(b) and b[i] == 0xFF:  # noqa: PLR2004
        marker = b[i + 1]
        if marker in (J2K_SOD, J2K_EOC) or (marker == J2K_SOT and i != first):
            break
        length = int.from_bytes(b[i + 2 : i + 4], "big")
        if length < 2:  # noqa: PLR2004
            break
        if marker == J2K_COM and length >= 4:  # noqa: PLR2004 - Lcom, Rcme, then the comment
            text = b[i + 4 : i + 6] == b"\x00\x01"  # Rcme 1: Latin text
            _add(blanks, i + 6, i + 2 + length, SPACE if text else ZERO, len(b))
        i += 2 + length
    return min(i, len(b))


def _boxes(
    b: bytes | bytearray | memoryview, start: int = 0, stop: int | None = None, depth: int = 0
) -> tuple[list[Blank], list[Region]]:
    """A JP2 or JPEG XL file's boxes from ``start`` to ``stop``; a JPEG 2000 codestream parsed.

    An association box (JPX) is walked into: it holds labels and XML of its own.
    """
    blanks: list[Blank] = []
    regions: list[Region] = []
    stop = len(b) if stop is None else stop
    for i, kind, head, box_end in _box_list(b, start, stop):
        end = min(box_end, stop)
        if kind == JP2_CODESTREAM and b[i + head : i + head + 4] == J2K_START:
            inner, at = _j2k(b, i + head)
            blanks += inner
            regions += at
        elif kind == ASSOCIATION and depth < ASSOCIATION_DEPTH:
            inner, at = _boxes(b, i + head, end, depth + 1)
            blanks += inner
            regions += at
        elif kind == ASSOCIATION:
            _add(blanks, i + head, end, ZERO, len(b))
        else:
            regions.append((i, end))
            if kind in TEXT_BOXES:
                _add(blanks, i + head, end, ZERO, len(b))
            elif kind == JP2_UUID:
                _add(blanks, i + head + UUID_BYTES, end, ZERO, len(b))
    return blanks, regions


def _video(b: bytes | bytearray | memoryview, codec: str) -> tuple[list[Blank], list[Region]]:
    """MPEG-2 user data, or H.264 and HEVC user data SEI messages; the units holding them."""
    blanks: list[Blank] = []
    regions: list[Region] = []
    for start, end in _units(b):
        if start >= end:  # a start code at the very end, or two in a row
            continue
        if codec == MPEG2:
            if b[start] == MPEG2_USER_DATA:
                blanks += _spaces(b, [(start + 1, end)])
                regions.append((start, end))
            continue
        if header := _sei_header(codec, b[start]):
            blanks += _spaces(b, _sei_user_data(b, start + header, end))
            regions.append((start, end))
    return blanks, regions


def _sei_header(codec: str, first: int) -> int:
    """The length of an SEI NAL unit's header, by the unit's first byte; 0: another unit."""
    if codec == H264:
        return 1 if first & 0x1F == H264_SEI else 0
    return 2 if (first >> 1) & 0x3F in HEVC_SEI else 0


def _units(b: bytes | bytearray | memoryview) -> Iterator[Region]:
    """(start, end) of each unit after a start code: its first byte on, to the next one."""
    starts = _start_codes(b)
    at = next(starts, -1)
    while at >= 0:
        start = at + len(START_CODE)
        at = next(starts, -1)
        yield start, len(b) if at < 0 else at


def _start_codes(b: bytes | bytearray | memoryview) -> Iterator[int]:
    """Where each start code lies, in order (two never overlap: a code's third byte is 01).

    A memoryview (a fragment mapped from disk) is read once, a window at a time, the windows
    overlapping by a start code less one byte.
    """
    if not isinstance(b, memoryview):
        at = b.find(START_CODE)
        while at >= 0:
            yield at
            at = b.find(START_CODE, at + len(START_CODE))
        return
    for base in range(0, len(b), FIND_BYTES):
        window = bytes(b[base : base + FIND_BYTES + len(START_CODE) - 1])
        at = window.find(START_CODE)
        while 0 <= at < FIND_BYTES:  # one starting further on is the next window's
            yield base + at
            at = window.find(START_CODE, at + len(START_CODE))


def _sei_user_data(b: bytes | bytearray | memoryview, start: int, end: int) -> list[Region]:
    """Where, in the NAL unit's bytes ``start`` to ``end``, its user data payloads lie.

    Read as the payload bytes (RBSP): an emulation prevention byte (03 after 00 00) is no
    payload byte. Each region is given in the unit's own bytes, split at those.
    """
    raw = bytes(b[start:end])
    places: list[int] = []  # the unit's index of each payload byte
    payload = bytearray()
    at = 0
    while (escape := raw.find(b"\x00\x00\x03", at)) >= 0:
        places += range(at, escape + 2)
        payload += raw[at : escape + 2]
        at = escape + 3
    places += range(at, len(raw))
    payload += raw[at:]
    found: list[Region] = []
    i, n = 0, len(payload)
    while i < n and not (payload[i] == SEI_TRAILING and not payload[i + 1 :].strip(b"\x00")):
        kind, i = _sei_number(payload, i)
        size, i = _sei_number(payload, i)
        first = i + (UUID_BYTES if kind == SEI_UNREGISTERED else 0)
        if kind in (SEI_REGISTERED, SEI_UNREGISTERED):
            found += _runs([start + places[j] for j in range(first, min(i + size, n))])
        i += size
    return found


def _sei_number(payload: bytearray, i: int) -> tuple[int, int]:
    """An SEI message's payload type or size (bytes of 255 summed, then the last), and after."""
    value = 0
    while i < len(payload) and payload[i] == 0xFF:  # noqa: PLR2004
        value += 0xFF
        i += 1
    return (value + payload[i], i + 1) if i < len(payload) else (value, i)


def _runs(places: list[int]) -> list[Region]:
    """``places`` (ascending) as runs of consecutive ones."""
    runs: list[Region] = []
    for p in places:
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return runs


def _spaces(b: bytes | bytearray | memoryview, regions: list[Region]) -> list[Blank]:
    """Blanks making each byte in ``regions`` that is not zero a space (zeros kept)."""
    return [
        (a + m.start(), a + m.end(), SPACE)
        for a, z in regions
        for m in _NOT_ZERO.finditer(bytes(b[a:z]))
    ]


def _fill(buf: bytearray | memoryview, blanks: list[Blank]) -> None:
    """Write each blank into ``buf``, in place."""
    for a, z, fill in blanks:
        if z > a:
            buf[a:z] = fill * (z - a)


def _add(blanks: list[Blank], start: int, end: int, fill: bytes, size: int) -> None:
    """Blank ``start`` to ``end``, clipped to the fragment's ``size`` (a length may run on)."""
    end = min(end, size)
    blanks.append((min(start, end), end, fill))


def blank(value: bytes | memoryview, codec: str | None = None) -> tuple[bytes | memoryview, int]:
    """``value`` (encapsulated frames) with the text of their headers blanked; how many.

    ``value`` itself where nothing is to be blanked (not copied). Video (``codec``) is
    parsed as one stream, its fragments joined.
    """
    if codec is not None:
        todo = _stream_blanks(value, codec)
    else:
        view = memoryview(value)
        todo = [
            (start + a, start + z, fill)
            for start, end in fragments(value)
            for a, z, fill in _to_blank(view[start:end])
        ]
    if not todo:
        return value, 0
    out = bytearray(value)
    _fill(out, todo)
    return bytes(out), len(todo)


def _to_blank(frag: bytes | bytearray | memoryview, codec: str | None = None) -> list[Blank]:
    """What ``parse`` would blank in ``frag`` that is not blank already."""
    return [
        (a, z, fill)
        for a, z, fill in parse(frag, codec)[0]
        if z > a and bytes(frag[a:z]) != fill * (z - a)
    ]


def _joined_stream(value: bytes | memoryview) -> tuple[bytes | memoryview, list[Region]]:
    """The fragments of ``value`` as one stream; where each lies in ``value``.

    One fragment (as most video is) is not copied.
    """
    places = list(fragments(value))
    view = memoryview(value)
    if len(places) == 1:
        return view[places[0][0] : places[0][1]], places
    return b"".join(view[a:z] for a, z in places), places


def _in_value(stream_regions: list[Region], places: list[Region]) -> Iterator[Region]:
    """Regions of the joined stream as the pieces of ``value`` they lie in."""
    for a, z in stream_regions:
        offset = 0
        for start, end in places:
            lo, hi = max(a, offset), min(z, offset + end - start)
            if lo < hi:
                yield start + lo - offset, start + hi - offset
            offset += end - start


def byte_stream(head: bytes | bytearray | memoryview) -> bool:
    """Whether video beginning with ``head`` is a stream of start codes and units.

    As H.264 and HEVC (Annex B) and MPEG-2 video are: zero bytes, then 01. Video wrapped in a
    container is not (an MP4 file's boxes, a transport stream's packets): a start code's
    bytes there are chance (a box's size), and its units' bytes are not the stream's.
    """
    first = bytes(head[:64])
    zeros = len(first) - len(first.lstrip(b"\x00"))
    return zeros >= 2 and first[zeros : zeros + 1] == b"\x01"  # noqa: PLR2004 - 00 00 01


def _stream_blanks(value: bytes | memoryview, codec: str) -> list[Blank]:
    """What to blank in video frames, parsed as one stream, in ``value``'s own places."""
    stream, places = _joined_stream(value)
    if demux := _demux(stream, codec):
        found = demux.feed(bytearray(stream))[0]
    elif byte_stream(stream):
        found = _to_blank(stream, codec)
    elif is_mp4(stream):
        found = [(a, z, f) for a, z, f in _mp4(stream)[0] if bytes(stream[a:z]) != f * (z - a)]
    else:
        return []
    return [(a, z, fill) for sa, sz, fill in found for a, z in _in_value([(sa, sz)], places)]


def _demux(
    head: bytes | bytearray | memoryview, codec: str, *, blank: bool = True, went: bytes = b""
) -> Demux | None:
    """A demultiplexer for the video ``head`` begins, if a transport or program stream.

    Its video is parsed as ``codec``'s stream. ``went``: the stream's first bytes, gone
    already (``head`` begins with them).
    """
    parse = functools.partial(_video, codec=codec)
    if size := packet_size(head):
        return TsDemux(parse, size, HELD_BYTES, blank=blank, went=went)
    if is_program_stream(head):
        return PsDemux(parse, HELD_BYTES, blank=blank, went=went)
    return None


def is_mp4(head: bytes | bytearray | memoryview) -> bool:
    """Whether video beginning with ``head`` is an MP4 (ISO base media) file: ``ftyp`` first."""
    return bytes(head[4:8]) == MP4_FIRST


def _mp4(b: bytes | bytearray | memoryview) -> tuple[list[Blank], list[Region]]:
    """An MP4 file's metadata blanked: what its boxes hold but the media data.

    User data and metadata (titles, comments, places, devices; the items' values), UUID
    boxes after their UUID, free space, and the creation and modification times of the
    movie, its tracks and their media are zeroed; box headers stay. Of the media data
    (``mdat``) only the samples of H.264 and HEVC tracks are read, as their sample tables
    place them, for their user data SEI messages (``_sample_sei``). Every box but the media
    data, and the SEI messages, are searched by the leak check.
    """
    blanks: list[Blank] = []
    regions: list[Region] = []
    for at, kind, head, end in _box_list(b, 0, len(b)):
        if kind != MP4_MEDIA_DATA:
            regions.append((at, min(end, len(b))))
            _mp4_box(b, kind, at + head, min(end, len(b)), blanks, 0)
        if kind == MP4_MOVIE:
            for codec, samples in _video_tracks(b, at + head, min(end, len(b))):
                for start, stop, size in samples:
                    _sample_sei(b, codec, size, start, min(stop, len(b)), blanks, regions)
    return blanks, regions


def _child(
    b: bytes | bytearray | memoryview, start: int, end: int, *path: bytes
) -> tuple[int, int] | None:
    """(start, end) of the payload of the box at ``path`` below ``start`` to ``end``."""
    for kind in path:
        found = next(
            ((a + h, min(z, end)) for a, k, h, z in _box_list(b, start, end) if k == kind), None
        )
        if found is None:
            return None
        start, end = found
    return start, end


def _video_tracks(
    b: bytes | bytearray | memoryview, start: int, end: int
) -> Iterator[tuple[str, list[tuple[int, int, int]]]]:
    """Each H.264 or HEVC track of the movie: its codec, and where its NAL units lie.

    The units its configuration declares, and its samples, each with its units' length size.
    """
    for at, kind, head, stop in _box_list(b, start, end):
        if kind != MP4_TRACK:
            continue
        table = _child(b, at + head, min(stop, end), b"mdia", b"minf", b"stbl")
        if table is None:
            continue
        entries = _child(b, *table, b"stsd")
        if entries is None or entries[1] - entries[0] < 8:  # noqa: PLR2004 - version, count
            continue
        entry = _box_list(b, entries[0] + 8, entries[1])[:1]
        if not entry or entry[0][1] not in MP4_VIDEO:
            continue
        codec, config_kind, at_byte = MP4_VIDEO[entry[0][1]]
        # a visual sample entry's fixed fields (78 bytes), then its boxes: the decoder config
        config = _child(
            b, entry[0][0] + entry[0][2] + 78, min(entry[0][3], entries[1]), config_kind
        )
        if config is None or config[0] + at_byte >= config[1]:
            continue
        size = (b[config[0] + at_byte] & 3) + 1  # lengthSizeMinusOne
        declared = [(a, z, 2) for a, z in _declared(b, codec, *config)]
        yield codec, [*declared, *((a, z, size) for a, z in _samples(b, *table))]


def _declared(b: bytes | bytearray | memoryview, codec: str, start: int, end: int) -> list[Region]:
    """Where the NAL units an HEVC decoder configuration declares lie, each from its length.

    An encoder's SEI messages are put there too (x265's settings).
    """
    if codec != HEVC or start + 23 > end:  # the record's fixed part, then its count of arrays
        return []
    places: list[Region] = []
    at = start + 23
    for _ in range(b[start + 22]):  # numOfArrays: (type, count, then each unit with its length)
        if at + 3 > end:
            break
        count, at = int.from_bytes(b[at + 1 : at + 3], "big"), at + 3
        for _ in range(count):
            if at + 2 > end:
                return places
            stop = min(at + 2 + int.from_bytes(b[at : at + 2], "big"), end)
            places.append((at, stop))
            at = stop
    return places


def _samples(b: bytes | bytearray | memoryview, start: int, end: int) -> list[Region]:
    """Where each sample of a track lies, from its sample table (``stbl``'s payload).

    At most ``MP4_SAMPLES`` of them (a table may claim any count).
    """
    sizes_box, chunks_box = _child(b, start, end, b"stsz"), _child(b, start, end, b"stsc")
    offsets_box, wide = _child(b, start, end, b"stco"), 4
    if offsets_box is None:
        offsets_box, wide = _child(b, start, end, b"co64"), 8
    if sizes_box is None or chunks_box is None or offsets_box is None:
        return []
    fixed, count, *table = [*_numbers(b, *sizes_box, 4, skip=4), 0, 0]  # after version, flags
    count = min(count, MP4_SAMPLES, MP4_SAMPLES if fixed else len(table) - 2)
    runs = _numbers(b, *chunks_box, 4, skip=8)  # (first chunk, samples a chunk, entry) each
    firsts, per_chunk = runs[0::3], runs[1::3]
    places: list[Region] = []
    run = -1
    for chunk, offset in enumerate(_numbers(b, *offsets_box, wide, skip=8), start=1):
        while run + 1 < min(len(firsts), len(per_chunk)) and firsts[run + 1] <= chunk:
            run += 1
        if run < 0:
            break
        at = offset
        for _ in range(min(per_chunk[run], count - len(places))):
            size = fixed or table[len(places)]
            places.append((at, at + size))
            at += size
        if len(places) >= count:
            break
    return places


def _numbers(
    b: bytes | bytearray | memoryview, start: int, end: int, wide: int, *, skip: int
) -> list[int]:
    """The big-endian numbers of ``wide`` bytes from ``start`` + ``skip`` to ``end``."""
    return [
        int.from_bytes(b[i : i + wide], "big") for i in range(start + skip, end - wide + 1, wide)
    ]


def _sample_sei(
    b: bytes | bytearray | memoryview,
    codec: str,
    size: int,
    start: int,
    end: int,
    blanks: list[Blank],
    regions: list[Region],
) -> None:
    """A sample's NAL units (each after its length): user data SEI blanked, SEI searched."""
    at = start
    while at + size < end:
        stop = min(at + size + int.from_bytes(b[at : at + size], "big"), end)
        first = at + size
        if header := _sei_header(codec, b[first]):
            blanks += _spaces(b, _sei_user_data(b, first + header, stop))
            regions.append((first, stop))
        at = stop


def _mp4_box(
    b: bytes | bytearray | memoryview,
    kind: bytes,
    start: int,
    end: int,
    blanks: list[Blank],
    depth: int,
) -> None:
    """Blank what the box ``kind`` holds from ``start`` to ``end`` (its payload)."""
    if kind in MP4_CONTAINERS and depth < ASSOCIATION_DEPTH:
        for at, inner, head, stop in _box_list(b, start, end):
            _mp4_box(b, inner, at + head, min(stop, end), blanks, depth + 1)
    elif kind in MP4_TIMES and start < end:
        times = 16 if b[start] == 1 else 8  # version 1: two 64-bit times, else 32-bit ones
        _add(blanks, start + 4, start + 4 + times, ZERO, end)
    elif kind == JP2_UUID:
        _add(blanks, start + UUID_BYTES, end, ZERO, end)
    elif kind in MP4_TEXT:
        _mp4_text(b, start, end, blanks, depth)


def _mp4_text(
    b: bytes | bytearray | memoryview, start: int, end: int, blanks: list[Blank], depth: int
) -> None:
    """Zero the values under user data or metadata, its boxes' headers and handler kept.

    A payload that is boxes (a metadata box's, after its version in ISO files; an item
    list's; an item's) is walked into; any other is zeroed: a text, a place, a value.
    """
    for skip in (4, 0):  # ISO's metadata box has a version and flags first; QuickTime's not
        boxes = _boxes_whole(b, start + skip, end) if depth < ASSOCIATION_DEPTH else None
        if boxes is not None and end - start > skip:
            for at, kind, head, stop in boxes:
                if kind == MP4_HANDLER:
                    _add(blanks, at + head + MP4_HANDLER_NAME, stop, ZERO, stop)
                elif kind == MP4_DATA:
                    _add(blanks, at + head + 8, stop, ZERO, stop)  # after its type and locale
                else:
                    _mp4_text(b, at + head, stop, blanks, depth + 1)
            return
    _add(blanks, start, end, ZERO, end)


def _box_list(
    b: bytes | bytearray | memoryview, start: int, end: int, *, to_end: bool = True
) -> list[Box]:
    """(start, kind, header length, end) of the ISO boxes (JP2, JPEG XL, MP4) from ``start``.

    An end is as the box's size says: past ``end`` where that runs on. A size of 0 is a box
    to the end (``to_end``), or no box.
    """
    found: list[Box] = []
    i = start
    while i + 8 <= end:
        size, kind, head = int.from_bytes(b[i : i + 4], "big"), bytes(b[i + 4 : i + 8]), 8
        if size == 1 and i + 16 <= end:
            size, head = int.from_bytes(b[i + 8 : i + 16], "big"), 16
        elif size == 0 and to_end:
            size = end - i
        if size < head:
            break
        found.append((i, kind, head, i + size))
        i += size
    return found


def _boxes_whole(b: bytes | bytearray | memoryview, start: int, end: int) -> list[Box] | None:
    """The boxes from ``start`` to ``end`` if those bytes are boxes end to end, else None."""
    boxes = _box_list(b, start, end, to_end=False)  # (in a box: a value's zeros, rather)
    if not boxes or boxes[-1][3] != end:
        return None
    return boxes


HELD_BYTES = 32 << 20  # a streamed fragment up to this is held in memory; a larger one on disk


@dataclass(frozen=True, slots=True)
class Blanked(Span):
    """Streamed encapsulated frames (``whole``), their headers' text blanked as copied.

    One fragment is held at a time, whole, and blanked as ``blank`` blanks it: a JPEG 2000
    tile-part's header or a JP2 box can lie anywhere in it. A fragment larger than
    ``HELD_BYTES`` is held in a temporary file with no name, mapped into memory.
    """

    whole: Span
    start: int
    end: int
    codec: str | None = None  # video: parsed as a stream (``_VideoPass``)
    # searches the header bytes that stay (``verify.frame_header_check``): where a value
    # found came from; one found stops the copy (a DeidError)
    check: Callable[[bytes], str | None] | None = field(default=None, repr=False, compare=False)

    def chunks(self) -> Iterator[bytes]:
        """The frames' bytes, blanked, a chunk (or a fragment) at a time."""
        if self.codec is not None:
            return _through(self.whole, _VideoPass(self.codec, self.check))
        return _through(self.whole, lambda frag: _blank_and_check(frag, self.check))


def streamed_headers(frames: Span, codec: str | None = None) -> bytes:
    """The header bytes of every frame in the span ``frames``, as ``headers`` gives them."""
    parts: list[bytes] = []
    each: Callable[[bytearray | memoryview], None] = (
        _VideoPass(codec, found=parts)
        if codec is not None
        else lambda frag: parts.append(_joined(frag, parse(frag)[1]))
    )
    for _chunk in _through(frames, each):
        pass
    return b"".join(parts)


class _VideoPass:
    """Video streamed a fragment at a time (``_through``), blanked and searched as it passes.

    Fragments may cut the stream anywhere. A unit holding text that the last fragment ended
    in is read on into this one, from its start code (kept as ``_tail``), as is a start code
    cut in two (the last fragment's last two bytes, kept otherwise). The parse of those
    joined bytes blanks what lies in this fragment, up to ``HELD_BYTES`` of it; the last
    fragment's part was blanked as far as it went.
    """

    def __init__(
        self,
        codec: str,
        check: Callable[[bytes], str | None] | None = None,
        found: list[bytes] | None = None,
    ) -> None:
        """Blank, and search with ``check``; or (``found``) collect the header bytes only."""
        self._codec, self._check, self._found = codec, check, found
        self._blank = found is None
        self._tail = b""
        self._stream: bool | None = None  # a byte stream (``byte_stream``): its start says
        self._lead = 0  # zero bytes it starts with, while only those came
        self._demux: Demux | None = None  # a transport or program stream's, where one
        self._went = b""  # the bytes of first fragments too short to tell a stream by

    def __call__(self, frag: bytearray | memoryview) -> None:
        """Blank ``frag`` in place and search its units, the one it goes on with first."""
        if self._stream is None and not self._known(frag):
            return
        if self._demux is not None:
            data = b"".join(self._demux.feed(frag)[1])
            self._search(data, [(0, len(data))] if data else [])
            return
        if not self._stream:
            return
        first = next(_start_codes(frag), len(frag))
        joined = None
        cut = len(self._tail)
        if 0 <= (self._tail + bytes(frag[:2])).find(START_CODE) < cut:
            joined = bytearray(self._tail + bytes(frag[: min(first, HELD_BYTES)]))
            blanks, regions = parse(joined, self._codec)
            for a, z, fill in blanks if self._blank else ():
                a = max(a, cut)  # noqa: PLW2901 - the last fragment's part went as it was
                if z > a:
                    frag[a - cut : z - cut] = fill * (z - a)
                    joined[a:z] = fill * (z - a)
            self._search(joined, regions)
        blanks, regions = parse(frag, self._codec)
        _fill(frag, blanks if self._blank else [])
        self._search(frag, regions)
        self._tail = self._next_tail(frag, joined, first)

    def _known(self, frag: bytearray | memoryview) -> bool:
        """Whether the video is known by now (with ``frag``) to be a byte stream or not.

        Zeros only, or fewer bytes than a transport stream is known by: not yet. An MP4
        file is blanked here, as far as its first fragment holds it.
        """
        head = bytes(frag[:64])
        lead = len(head) - len(head.lstrip(b"\x00"))
        if lead == len(frag):  # zeros so far: the stream's first fragment is not over
            self._lead += lead
            self._tail = (self._tail + head)[-2:]
            return False
        if not self._lead and len(self._went) + len(frag) < TS_HEAD and (self._went or lead == 0):
            self._went += bytes(frag)  # too few bytes to know a transport stream by
            return False
        if not self._lead:
            self._demux = _demux(self._went + head, self._codec, blank=self._blank, went=self._went)
        self._stream = not self._demux and byte_stream(bytes(min(self._lead, 2)) + head)
        if not self._stream and not self._lead and is_mp4(head):
            self._whole_mp4(frag)
        return True

    def _whole_mp4(self, frag: bytearray | memoryview) -> None:
        """An MP4 file's first fragment (most often the whole file), blanked as held ones."""
        blanks, regions = _mp4(frag)
        _fill(frag, blanks if self._blank else [])
        self._search(frag, regions)

    def _search(self, b: bytes | bytearray | memoryview, regions: list[Region]) -> None:
        if self._found is not None:
            self._found.append(_joined(b, regions))
        if self._check is not None:
            _refuse_found(self._check, b, regions)

    def _next_tail(
        self, frag: bytearray | memoryview, joined: bytearray | None, first: int
    ) -> bytes:
        """The unit holding text that ``frag`` ends in, from its start code.

        Else (none, or over ``HELD_BYTES``) its last two bytes: the start of a start code,
        maybe.
        """
        held = b""
        if first < len(frag):
            start = first
            for start, _end in _units(frag):  # noqa: B007 - the last one
                pass
            held = bytes(frag[start - len(START_CODE) :])
        elif joined is not None and len(joined) - len(self._tail) == len(frag):
            held = bytes(joined)  # the unit goes on through the whole of this fragment
        if held and len(held) <= len(START_CODE) + 1:  # its kind not known yet
            return held
        if held and len(held) <= HELD_BYTES:
            regions = parse(held, self._codec)[1]
            if regions and regions[-1][1] == len(held):
                return held
        return bytes(frag[-2:])


def _through(frames: Span, each: Callable[[bytearray | memoryview], None]) -> Iterator[bytes]:
    """The bytes of ``frames``, each fragment held whole and given to ``each`` as it passes.

    ``each`` may change the fragment in place, or raise to stop the stream.
    """
    reader = _Reader(frames.chunks())
    first = True
    while True:
        head = reader.read(8)
        yield head
        if len(head) < 8 or head[:4] != ITEM:  # noqa: PLR2004 - the delimiter, or damage
            yield from reader.rest()
            return
        length = int.from_bytes(head[4:8], "little")
        if first:  # the Basic Offset Table
            first = False
            yield from reader.pieces(length)
            continue
        yield from _held_fragment(reader, length, each)


def _held_fragment(
    reader: _Reader, length: int, each: Callable[[bytearray | memoryview], None]
) -> Iterator[bytes]:
    """The next fragment of ``length`` bytes (fewer where the stream ends), given to ``each``."""
    if length <= HELD_BYTES:
        held = bytearray()
        for piece in reader.pieces(length):
            held += piece
        each(held)
        yield bytes(held)
        return
    f, size = _on_disk(reader, length)
    with f:
        if not size:
            return
        with mmap.mmap(f.fileno(), size) as mapped, memoryview(mapped) as view:
            each(view)
            for at in range(0, size, spans.CHUNK_BYTES):
                yield bytes(view[at : at + spans.CHUNK_BYTES])


def _blank_and_check(
    frag: bytearray | memoryview, check: Callable[[bytes], str | None] | None
) -> None:
    """Blank ``frag``'s header text in place, then search what stays of its headers."""
    blanks, regions = parse(frag)
    _fill(frag, blanks)
    if check is not None:
        _refuse_found(check, frag, regions)


def _refuse_found(
    check: Callable[[bytes], str | None], b: bytes | bytearray | memoryview, regions: list[Region]
) -> None:
    """Raise where ``check`` finds a value in the header bytes ``regions`` of ``b``."""
    if regions and (source := check(_joined(b, regions))):
        raise DeidError(
            "an identifying value survived de-identification in a compressed frame's "
            f"header (from {source}); not written",
            reason="leak_detected",
        )


def _on_disk(reader: _Reader, length: int) -> tuple[BinaryIO, int]:
    """The next ``length`` bytes in a temporary file with no name; how many there were."""
    problem = "cannot hold a large frame in a temporary file"
    try:
        f = tempfile.TemporaryFile()  # noqa: SIM115 - the caller closes it
    except OSError as e:
        raise StoreError(f"{problem} ({os_reason(e)})") from None
    try:
        size = sum(f.write(piece) for piece in reader.pieces(length))
        f.flush()
    except BaseException as e:
        f.close()
        if isinstance(e, OSError):
            raise StoreError(f"{problem} ({os_reason(e)})") from None
        raise
    return f, size


class _Reader:
    """Reads a stream of chunks by the byte count (a chunk's remainder kept, not copied)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buf, self._pos = chunks, b"", 0

    def _more(self) -> bool:
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        self._buf, self._pos = self._buf[self._pos :] + chunk, 0
        return True

    def read(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end of the stream)."""
        while len(self._buf) - self._pos < n and self._more():
            pass
        out = self._buf[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def pieces(self, n: int) -> Iterator[bytes]:
        """The next ``n`` bytes, as they come (fewer at the end of the stream)."""
        while n > 0 and (self._pos < len(self._buf) or self._more()):
            piece = self._buf[self._pos : self._pos + n]
            self._pos += len(piece)
            n -= len(piece)
            yield piece

    def rest(self) -> Iterator[bytes]:
        """All the bytes left."""
        yield self._buf[self._pos :]
        yield from self._chunks


def headers(value: bytes | memoryview, codec: str | None = None) -> bytes:
    """The header bytes of every frame in ``value``: what the leak check searches."""
    if codec is not None:
        stream, _places = _joined_stream(value)
        if demux := _demux(stream, codec, blank=False):
            return b"".join(demux.feed(memoryview(stream))[1])
        if byte_stream(stream):
            return _joined(stream, parse(stream, codec)[1])
        return _joined(stream, _mp4(stream)[1]) if is_mp4(stream) else b""
    return b"".join(
        _joined(frag, parse(frag)[1])
        for frag in (memoryview(value)[start:end] for start, end in fragments(value))
    )


def _joined(frag: bytes | bytearray | memoryview, regions: list[Region]) -> bytes:
    return b"".join(bytes(frag[a:z]) for a, z in regions)


def _frames_of(ds: Dataset) -> tuple[object, bytes | memoryview | Span] | None:
    """The stored Pixel Data element of ``ds`` and its value, if encapsulated."""
    stored = ds._dict.get(BaseTag(PIXEL_DATA))  # noqa: SLF001 - as read, not converted
    if stored is None or not undefined_length(stored):
        return None
    value = stored.value
    return (stored, value) if isinstance(value, bytes | memoryview | Span) else None


def blank_in(ds: Dataset) -> int | None:
    """Blank the text in the headers of the frames of ``ds`` (``blank``); how many segments.

    None: the frames are streamed from their source, and blanked as they are copied.
    """
    found = _frames_of(ds)
    if found is None:
        return 0
    stored, value = found
    codec = video_codec(ds)
    if isinstance(value, Span):
        new: bytes | memoryview | Span = Blanked(value, value.start, value.end, codec)
        count = None
    else:
        new, count = blank(value, codec)
    if new is not value:
        if isinstance(stored, RawDataElement):
            ds._dict[BaseTag(PIXEL_DATA)] = stored._replace(value=new)  # type: ignore[arg-type]  # noqa: SLF001
        else:
            stored.value = new  # type: ignore[attr-defined]
    return count


def headers_in(ds: Dataset, *, streamed: bool = False) -> bytes:
    """The header bytes of the frames of ``ds`` (``headers``).

    Frames that are a span of their source (a large object's) are read for them only where
    ``streamed``; else they give none.
    """
    found = _frames_of(ds)
    if found is None:
        return b""
    codec = video_codec(ds)
    if isinstance(found[1], Span):
        return streamed_headers(found[1], codec) if streamed else b""
    return headers(found[1], codec)
