"""Text in the headers of compressed frames: JPEG segments, JPEG 2000 comments, JP2 boxes, video.

A frame compressed as JPEG carries segments of its own before its image data: a camera's Exif
(dates, serial numbers, places), XMP, IPTC captions, comments. A device that wrapped such a
JPEG into DICOM (a photograph, an endoscope's capture) carries them into the object, under
the Pixel Data element that no attribute rule reaches. Their payloads are blanked in place,
each segment keeping its length, so nothing of the image is decoded or changed:

- JPEG (baseline, extended, lossless, JPEG-LS): COM, and APPn but those decoders read
  (APP0 JFIF, APP2 ICC profile, APP8 JPEG-LS colour transform and SPIFF, APP14 Adobe,
  Motion JPEG format A's APP1), before the first scan and between scans; and what follows
  the image's end (a phone's trailer), zeroed (``jpeg``);
- JPEG 2000: COM in the main header and in tile-part headers (``j2k``);
- a JP2 file wrapped whole (which DICOM does not allow, but writers do), or a JPEG XL file
  (not its bare codestream, which holds no text): every box that no decoder reads (XML,
  UUID, rights, JPX labels, Exif, JUMBF, Brotli-compressed boxes, JPEG reconstruction data,
  a writer's own), in superboxes too, and the comments of the codestream it holds (``jp2``);
- a JPEG, JPEG 2000, JP2 or JPEG XL frame in several fragments: walked across them
  (``_Stills``);
- video (MPEG-2, H.264, HEVC; known by the transfer syntax; ``video``): MPEG-2 user data,
  and the user data SEI messages of H.264 and HEVC, each byte that is not zero made a space.
  Fragments may cut the stream anywhere: frames held in memory are parsed as one stream,
  and streamed ones a fragment at a time, the unit a fragment ends in read on into the next
  (``_VideoPass``). An MP4 file wrapped whole (``mp4``) has its metadata zeroed, the user
  data SEI messages of its H.264 and HEVC tracks blanked, its Motion JPEG samples' segments
  blanked as a JPEG frame's, its text and metadata tracks' samples zeroed, and its media
  data that no sample places zeroed; streamed,
  its first fragment as a file, and the boxes and samples after it as they come
  (``mp4.Mp4Walk``), a movie box at its end read ahead (``_samples_ahead``). A transport
  stream (``mpegts``) has the user data in its video PES packets blanked, its service information
  (service names, events, the recording's time) made null packets, its adaptation fields'
  private data and its data streams' payloads (metadata, captions, teletext) zeroed; a
  program stream (``mpegps``) has the user data in its video PES packets blanked, a unit cut
  by a packet's header blanked whole, and its data streams zeroed; held or streamed
  (``demux``). Other containers are not known.

What stays (the segments decoders read, and every header's other segments) is searched by the
leak check (``headers``), and all the frames' bytes, pictures too, for the values too long to
lie in a picture's data by chance (``data_in``, ``verify.DATA_MIN``): text that damage moved
there, whatever the walk took it for. The frames of an object of ``spans.STREAM_FROM`` bytes or
more are blanked and searched as they are streamed into the copy, a fragment at a time
(``Blanked``), as those held are before: a value found there stops the copy.
"""

from __future__ import annotations

import bisect
import mmap
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate, islice
from typing import BinaryIO

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import (
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    UncompressedTransferSyntaxes,
)

from indexer import spans
from indexer.deid import j2k, jp2, jpeg, mp4, video
from indexer.deid.blanks import Blank, Region, fill_in, filled, in_pieces
from indexer.deid.demux import Demux
from indexer.deid.mpegps import PsDemux, is_program_stream
from indexer.deid.mpegts import PACKETS_SEEN, TS_HEAD, TsDemux, packet_size
from indexer.deid.pixels import PIXEL_DATA, undefined_length
from indexer.deid.places import FAR, Places
from indexer.errors import DeidError, StoreError, os_reason
from indexer.spans import Span

ITEM = b"\xfe\xff\x00\xe0"
JPEG_START = b"\xff\xd8"  # SOI
J2K_START = j2k.START


def _items(value: bytes | memoryview) -> Iterator[tuple[int, int]]:
    """(where its value starts, its length) of each item of ``value``, while items lie there."""
    pos = 0
    while pos + 8 <= len(value) and value[pos : pos + 4] == ITEM:
        length = int.from_bytes(value[pos + 4 : pos + 8], "little")
        yield pos + 8, length
        pos += 8 + length


def fragments(value: bytes | memoryview) -> Iterator[Region]:
    """(start, end) in ``value`` of each fragment after the Basic Offset Table's item."""
    for start, length in islice(_items(value), 1, None):
        yield start, min(start + length, len(value))


def items_end(value: bytes | memoryview) -> int:
    """Where the items of ``value`` (encapsulated frames) end: its length where they fill it.

    Short of it where an item's tag is damaged (what follows is no item), past it where a
    damaged length runs the last item on past the value's end (``fragments`` stops at both).
    """
    end = 0
    for start, length in _items(value):
        end = start + length
    return end


# transfer syntaxes of native pixel data (pydicom's uncompressed ones): never items
NATIVE = frozenset(UncompressedTransferSyntaxes)
# transfer syntaxes whose frames each begin as a JPEG (FF D8) or a JPEG 2000 codestream or
# JP2 file does: pixel data whose first fragment begins as none is damage (``_Stills``)
STRICT = frozenset(JPEGTransferSyntaxes + JPEGLSTransferSyntaxes + JPEG2000TransferSyntaxes)
UNDER_NATIVE = (
    "encapsulated pixel data under a transfer syntax of native pixel data, or none (a "
    "damaged, missing or wrong transfer syntax UID): what its frames are (a video's codec) "
    "cannot be told, nor their headers read"
)
NO_ITEMS = (
    "encapsulated pixel data that holds no item, not even its offset table (damage): it "
    "cannot be written"
)
DAMAGED_ITEMS = (
    "encapsulated pixel data whose items do not fill it (a damaged item tag or length): "
    "the frames past the damage can be neither read nor checked for text"
)


def parse(
    frag: bytes | bytearray | memoryview, codec: str | None = None
) -> tuple[list[Blank], list[Region]]:
    """What to blank in one fragment, and where its headers lie (nothing: no frame start).

    ``codec``: the video codec the transfer syntax names (``video.video_codec``), if one.
    """
    if codec is not None:
        return video.parse(frag, codec)
    if frag[:2] == JPEG_START:
        return jpeg.parse(frag)
    if frag[:4] == J2K_START:
        return j2k.parse(frag)
    if bytes(frag[4:8]) in jp2.SIGNATURES:
        return jp2.parse(frag)
    return [], []


def blank(value: bytes | memoryview, codec: str | None = None) -> tuple[bytes | memoryview, int]:
    """``value`` (encapsulated frames) with the text of their headers blanked; how many.

    ``value`` itself where nothing is to be blanked (not copied); else a copy (a read-only
    view of the buffer it was blanked in). Video (``codec``) is parsed as one stream, its
    fragments joined (``_blank_video``); other frames a fragment at a time, a frame's
    headers walked on across its fragments (``_Stills``).
    """
    if codec is not None:
        return _blank_video(value, codec)
    todo, count = _still_blanks(value)
    return (filled(value, todo), count) if todo else (value, 0)


def _still_blanks(value: bytes | memoryview) -> tuple[list[Blank], int]:
    """What to blank in frames that are no video, in ``value``'s places; how many segments.

    A segment that fragments' ends cut is counted once (where any of its parts is not
    blank already): its part at a fragment's start, after one blanked to the last
    fragment's end, goes on with it.
    """
    view, stills = memoryview(value), _Stills()
    todo: list[Blank] = []
    count = 0
    ran_on = counted = False  # the last blank ran to its fragment's end; its segment counted
    for start, end in fragments(value):
        frag = view[start:end]
        on, ran_on = ran_on, False
        for a, z, fill in sorted(stills.parse(frag)[0]):
            counted = counted and a == 0 and on  # (only the first blank can lie at 0)
            ran_on = z >= len(frag)
            if z > a and bytes(frag[a:z]) != fill * (z - a):
                todo.append((start + a, start + z, fill))
                count += not counted
                counted = True
    return todo, count


def _to_blank(frag: bytes | bytearray | memoryview, codec: str | None = None) -> list[Blank]:
    """What ``parse`` would blank in ``frag`` that is not blank already."""
    return _not_blank(frag, parse(frag, codec)[0])


def _not_blank(frag: bytes | bytearray | memoryview, blanks: list[Blank]) -> list[Blank]:
    """Those of ``blanks`` that are not blank already in ``frag``."""
    return [(a, z, fill) for a, z, fill in blanks if z > a and bytes(frag[a:z]) != fill * (z - a)]


class _Stills:
    """Frames that are no video, a fragment at a time: each parsed as ``parse`` parses it.

    But a frame may lie in several fragments: a JPEG's header, a JPEG 2000 codestream's
    headers (a tile-part's may lie in any fragment), or a JP2 or JPEG XL file's boxes, are
    walked on from one fragment into the next (``jpeg.Segments``, ``j2k.Codestream``,
    ``jp2.Boxes``): a segment or box a fragment's end cuts is blanked on, and a header
    searched on. A fragment that begins a JPEG, a codestream or a file begins a walk of its
    own (one too short to tell, after a walk that ended, a codestream's or a file's); but
    inside a file's box, only one that begins another file does (the codestream a box
    holds, or a thumbnail, may begin at a fragment's start). One after a walk that ended
    (image data; or another kind) is parsed alone. Under a transfer syntax whose frames each
    begin as a JPEG or JPEG 2000 does (``strict``), fragments before the first that begins
    a walk are damage (a frame's first bytes changed: no decoder reads it): searched whole,
    nothing blanked.
    """

    def __init__(self, *, strict: bool = False) -> None:
        """``strict``: the first fragment must begin a frame (``STRICT``), else is searched."""
        self._walk: jpeg.Walk | None = None
        self._pos = 0  # where the next fragment lies in what is walked
        self._open = False  # the last fragment's headers ran to its end
        self._strict = strict

    def parse(self, frag: bytes | bytearray | memoryview) -> tuple[list[Blank], list[Region], bool]:
        """What to blank in ``frag``, where its headers lie; whether they go on.

        They go on from the last fragment's where its end cut a header.
        """
        begun = self._begun(frag)
        if begun is not None:
            self._walk, self._pos, self._open = begun, 0, False
        walk = self._walk
        if walk is None and self._strict:  # damage: searched whole, up to a frame's start
            on, self._open = self._open, True
            return [], [(0, len(frag))], on
        if walk is None or walk.over:  # (a walk begun here is not)
            return (*parse(frag), False)
        at = self._pos
        blanks, regions = walk.feed(frag, at)
        on = self._open and bool(regions) and regions[0][0] == at
        self._pos += len(frag)
        self._open = bool(regions) and regions[-1][1] == self._pos
        return (
            [(a - at, z - at, fill) for a, z, fill in blanks],
            [(a - at, z - at) for a, z in regions],
            on,
        )

    def _begun(self, frag: bytes | bytearray | memoryview) -> jpeg.Walk | None:
        """The walk ``frag`` begins, if it begins a frame.

        Or, after a walk that ended, one too short to tell that may begin a codestream or a
        file. Not a JPEG or a codestream a file's box holds (``jp2.Boxes.holds``).
        """
        idle = self._walk is None or self._walk.over
        if jp2.begins(frag, idle=idle):
            return jp2.Boxes(0, FAR)
        if isinstance(self._walk, jp2.Boxes) and self._walk.holds(self._pos):
            return None  # (a box's bytes: its codestream's, a thumbnail in its Exif)
        if frag[:2] == JPEG_START:
            return jpeg.Segments(0, FAR)
        if frag[:4] == J2K_START or (idle and J2K_START.startswith(bytes(frag[:4])) and frag):
            return j2k.Codestream(0, FAR)
        return None


def _joined_stream(value: bytes | memoryview, places: list[Region]) -> bytearray | memoryview:
    """The fragments of ``value`` (each at its place) as one stream.

    One fragment (as most video is) is not copied: a view of ``value``.
    """
    view = memoryview(value)
    if len(places) == 1:
        return view[places[0][0] : places[0][1]]
    return bytearray().join(view[a:z] for a, z in places)


def _head(value: bytes | memoryview, places: list[Region], size: int) -> bytes:
    """The first ``size`` bytes of the fragments of ``value`` joined (``_joined_stream``)."""
    view, head = memoryview(value), bytearray()
    for a, z in places:
        if len(head) >= size:
            break
        head += view[a : min(z, a + size - len(head))]
    return bytes(head)


def _in_value(stream_blanks: list[Blank], places: list[Region]) -> list[Blank]:
    """Blanks of the joined stream as blanks of the pieces of ``value`` they lie in."""
    starts = list(accumulate((z - a for a, z in places), initial=0))
    return [
        (places[i][0] + lo - starts[i], places[i][0] + hi - starts[i], fill)
        for a, z, fill in stream_blanks
        for i, lo, hi in in_pieces(starts, a, z)
    ]


def _blank_video(value: bytes | memoryview, codec: str) -> tuple[bytes | memoryview, int]:
    """``blank`` for video: its fragments parsed as one stream; how many units blanked.

    A unit the fragments cut is counted once. A transport or program stream is blanked in
    place, in the copy (in several fragments: in their bytes joined, then copied back into
    it), so a held object's frames are in memory twice, as with any other stream
    (``filled``), and its blanks are not kept, nor placed anew: a stream dense with text
    has hundreds of thousands.
    """
    places = list(fragments(value))
    if demux := _demux(_head(value, places, PACKETS_SEEN), codec, keep=False):
        copy = bytearray(value)
        view = memoryview(copy)
        stream = _joined_stream(view, places)  # one fragment: a view of the copy
        demux.feed(stream)
        count = demux.blanked
        if not count:
            return value, 0
        if isinstance(stream, bytearray):  # several fragments: the stream copied back
            at = 0
            for a, z in places:
                view[a:z] = stream[at : at + z - a]
                at += z - a
        return view.toreadonly(), count
    stream = _joined_stream(value, places)
    if video.byte_stream(stream):
        found = _to_blank(stream, codec)
    elif mp4.is_mp4(stream):
        found = _not_blank(stream, mp4.parse(stream)[0])
    else:
        return value, 0
    return (filled(value, _in_value(found, places)), len(found)) if found else (value, 0)


def _demux(
    head: bytes | bytearray | memoryview,
    codec: str,
    *,
    blank: bool = True,
    went: bytes = b"",
    keep: bool = True,
) -> Demux | None:
    """A demultiplexer for the video ``head`` begins, if a transport or program stream.

    Its video is parsed as ``codec``'s stream. ``went``: the stream's first bytes, gone
    already (``head`` begins with them). ``blank``, ``keep``: as ``Demux``'s.
    """
    if size := packet_size(head):
        return TsDemux(codec, size, blank=blank, went=went, keep=keep)
    if is_program_stream(head):
        return PsDemux(codec, blank=blank, went=went, keep=keep)
    return None


HELD_BYTES = 32 << 20  # a streamed fragment up to this is held in memory; a larger one on disk
JOIN_BYTES = 1 << 20  # streamed video's fragments smaller than this are read joined, up to it


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
    strict: bool = False  # frames that must begin as their syntax's do (``STRICT``)
    # searches all the frames' bytes as copied, pictures too, for long values
    # (``verify.frame_data_check``): where a value found came from; one found stops the copy
    data_check: Callable[[bytes], str | None] | None = field(
        default=None, repr=False, compare=False
    )

    def chunks(self) -> Iterator[bytes]:
        """The frames' bytes, blanked, a chunk (or a fragment) at a time."""
        if self.codec is not None:
            video_pass = _VideoPass(self.codec, self.check, span=self.whole)
            copied = _through(self.whole, video_pass, join=JOIN_BYTES)
        else:
            copied = _through(self.whole, _StillPass(self.check, strict=self.strict))
        return copied if self.data_check is None else _data_searched(copied, self.data_check)


def _data_searched(
    chunks: Iterator[bytes], check: Callable[[bytes], str | None]
) -> Iterator[bytes]:
    """``chunks`` as they come, searched by ``check`` in windows (``_Window``) as they pass.

    The last window is searched after the last chunk is given: a value found there stops the
    copy as one found before does (a copy is stored once all its bytes are written).
    """
    window = _Window()
    for chunk in chunks:
        yield chunk
        if (data := window.add(chunk)) is not None:
            _refuse_in_data(check, data)
    if (data := window.rest()) is not None:
        _refuse_in_data(check, data)


def _refuse_in_data(check: Callable[[bytes], str | None], data: bytes) -> None:
    if source := check(data):
        raise DeidError(
            "an identifying value survived de-identification in a compressed frame's data "
            f"(from {source}); not written",
            reason="leak_detected",
        )


class _Window:
    """Pieces of a stream, given out in windows of ``spans.CHUNK_BYTES`` or more.

    Each window (the last may be less) begins with the last ``mp4.SEARCH_BEHIND`` bytes of the
    one before it: a value that a window's end cuts is whole in the next.
    """

    def __init__(self) -> None:
        self._behind = b""
        self._held: list[bytes] = []
        self._size = 0

    def add(self, piece: bytes | memoryview) -> bytes | None:
        """Take ``piece``; the window it completes, if it does."""
        self._held.append(bytes(piece))
        self._size += len(piece)
        return self.rest() if self._size >= spans.CHUNK_BYTES else None

    def rest(self) -> bytes | None:
        """The window of the pieces taken since the last (None: none was)."""
        if not self._held:
            return None
        data = self._behind + b"".join(self._held)
        self._behind, self._held, self._size = data[-mp4.SEARCH_BEHIND :], [], 0
        return data


def data_in(ds: Dataset, *, streamed: bool = False) -> Iterator[bytes]:
    """All the bytes of the compressed frames of ``ds``, pictures too, in windows (``_Window``).

    What the leak check searches for long values (``verify.DATA_MIN``). Frames that are a span
    of their source (a large object's) are read for them only where ``streamed``.
    """
    found = _frames_of(ds)
    if found is None:
        return
    value = found[1]
    if isinstance(value, Span):
        if not streamed:
            return
        pieces: Iterator[bytes | memoryview] = value.chunks()
    else:
        view = memoryview(value)
        pieces = (
            view[at : at + spans.CHUNK_BYTES] for at in range(0, len(view), spans.CHUNK_BYTES)
        )
    window = _Window()
    for piece in pieces:
        if (data := window.add(piece)) is not None:
            yield data
    if (data := window.rest()) is not None:
        yield data


def streamed_headers(frames: Span, codec: str | None = None, *, strict: bool = False) -> bytes:
    """The header bytes of every frame in the span ``frames``, as ``headers`` gives them."""
    parts: list[bytes] = []
    each: Callable[[bytearray | memoryview], None] = (
        _VideoPass(codec, found=parts, span=frames)
        if codec is not None
        else _StillPass(found=parts, strict=strict)
    )
    for _chunk in _through(frames, each, join=JOIN_BYTES if codec is not None else 0):
        pass
    return b"".join(parts)


class _VideoPass:
    """Video streamed a fragment at a time (``_through``), blanked and searched as it passes.

    Fragments may cut the stream anywhere. A unit searched (``video.searched``) that the last
    fragment ended in is read on into this one, from where its read left (``_resume``), as is a
    start code cut in two (the last fragment's last two bytes). Of the unit, ``_tail`` keeps its
    start code and header, and its bytes from there (two before, for an escape byte's zeros), or
    from its last ``mp4.SEARCH_BEHIND``, whichever come first (``video.trimmed``). The parse of
    those joined to this fragment blanks what lies in this fragment; the last fragment's part
    was blanked as far as it went, and searched with it: what is searched again is its last
    ``mp4.SEARCH_BEHIND`` bytes (a value the fragment's end cuts). A fragment larger than
    ``HELD_BYTES`` (mapped from disk) is read as fragments of that size, a transport, program or
    MP4 stream's too.
    """

    def __init__(
        self,
        codec: str,
        check: Callable[[bytes], str | None] | None = None,
        found: list[bytes] | None = None,
        *,
        span: Span | None = None,
    ) -> None:
        """Blank, and search with ``check``; or (``found``) collect the header bytes only.

        ``span``: the frames streamed, read ahead where an MP4 file's movie box is at its
        end (``_samples_ahead``).
        """
        self._codec, self._check, self._found, self._span = codec, check, found, span
        self._blank = found is None
        self._tail = b""
        self._resume: video.Resume | None = None  # where in ``_tail`` its SEI unit's read goes on
        self._stream: bool | None = None  # a byte stream (``video.byte_stream``): its start says
        self._lead = 0  # zero bytes it starts with, while only those came
        self._demux: Demux | None = None  # a transport or program stream's, where one
        self._mp4: mp4.Mp4Walk | None = None  # an MP4 file's, where one
        self._went = b""  # the bytes of first fragments too short to tell a stream by

    def __call__(self, frag: bytearray | memoryview) -> None:
        """Blank ``frag`` in place and search its units, the one it goes on with first."""
        if self._stream is None and not self._known(frag):
            return
        if self._mp4 is not None:
            for found in self._mp4.pieces(frag):  # (a fragment over ``HELD_BYTES``: windowed)
                self._search_all(found)
            return
        if len(frag) <= HELD_BYTES:
            self._window(frag)
            return
        with memoryview(frag) as view:  # mapped from disk: read as fragments of that size
            for at in range(0, len(view), HELD_BYTES):
                with view[at : at + HELD_BYTES] as window:
                    self._window(window)

    def _window(self, frag: bytearray | memoryview) -> None:
        """A transport or program stream's ``frag`` demultiplexed, or a byte stream's read.

        Video that is neither (``headers``: damage before its first start code, which
        decoders pass over) is searched whole, after the last fragment's last bytes.
        """
        if self._demux is not None:
            self._search_all(self._demux.feed(frag)[1])
        elif self._stream:
            self._units(frag)
        else:
            data = self._tail + self._went + bytes(frag)
            self._search(data, [(0, len(data))])
            self._tail, self._went = data[-mp4.SEARCH_BEHIND :], b""

    def _units(self, frag: bytearray | memoryview) -> None:
        """Blank a byte stream's ``frag`` and search its units, the one it goes on with first."""
        first = next(video.start_codes(frag), len(frag))
        joined = None
        cut = len(self._tail)
        again = None
        # (a start code in a long tail lies at its start: not searched for in all of it)
        head = self._tail[:8] if len(self._tail) > 8 else self._tail + bytes(frag[:2])  # noqa: PLR2004
        if 0 <= head.find(video.START_CODE) < cut:
            joined = bytearray(self._tail + bytes(frag[:first]))
            blanks, regions, again = video.parse_from(joined, self._codec, self._resume)
            for a, z, fill in blanks if self._blank else ():
                a = max(a, cut)  # noqa: PLW2901 - the last fragment's part went as it was
                if z > a:
                    frag[a - cut : z - cut] = fill * (z - a)
                    joined[a:z] = fill * (z - a)
            since = max(0, cut - mp4.SEARCH_BEHIND)  # the part that went: searched with it
            self._search(joined, [(max(a, since), z) for a, z in regions if z > since])
        blanks, regions, last = video.parse_from(frag, self._codec)
        fill_in(frag, blanks if self._blank else [])
        self._search(frag, regions)
        self._tail, self._resume = self._next_tail(frag, joined, first, (again, last))

    def _known(self, frag: bytearray | memoryview) -> bool:
        """Whether the video is known by now (with ``frag``) to be a byte stream or not.

        Zeros only, or fewer bytes than a transport stream is known by: not yet.
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
        if not self._lead:  # a transport stream is known by its first packets' sync bytes
            first = self._went + bytes(frag[:PACKETS_SEEN])
            self._demux = _demux(first, self._codec, blank=self._blank, went=self._went)
        self._stream = not self._demux and video.byte_stream(bytes(min(self._lead, 2)) + head)
        if not self._stream and not self._lead and mp4.is_mp4(head):
            ahead = _samples_ahead(self._span, len(frag)) if self._span is not None else None
            self._mp4 = mp4.Mp4Walk(HELD_BYTES, blank=self._blank, ahead=ahead)
        return True

    def _search_all(self, found: list[bytes]) -> None:
        data = b"".join(found)
        self._search(data, [(0, len(data))] if data else [])

    def _search(self, b: bytes | bytearray | memoryview, regions: list[Region]) -> None:
        if self._found is not None:
            self._found.append(_joined(b, regions))
        if self._check is not None:
            _refuse_found(self._check, b, regions)

    def _next_tail(
        self,
        frag: bytearray | memoryview,
        joined: bytearray | None,
        first: int,
        resumes: tuple[video.Resume | None, video.Resume | None],
    ) -> tuple[bytes, video.Resume | None]:
        """The unit searched that ``frag`` ends in, from its start code, as a read on needs it.

        Its bytes up to its payload, then those a read on from where the reads of ``joined``
        and ``frag`` left it (``resumes``) and a search of its last ``mp4.SEARCH_BEHIND``
        need (``video.held_unit``). Else (none) ``frag``'s last two bytes: the start of a
        start code, maybe. Also where its read goes on from.
        """
        if first < len(frag):
            source, resume = frag, resumes[1]
        elif joined is not None and len(joined) - len(self._tail) == len(frag):
            source, resume = joined, resumes[0]  # the unit goes on through all of this
        else:
            return bytes(frag[-2:]), None
        start = len(video.START_CODE)
        for start, _end in video.units(source):  # noqa: B007 - the last one
            pass
        lead = start - len(video.START_CODE)
        held = bytes(source[lead:])
        if len(held) <= len(video.START_CODE) + 1:  # its kind not known yet
            return held, None
        if not video.searched(held, self._codec):
            return bytes(frag[-2:]), None
        moved = None if resume is None else (resume[0] - lead, resume[1])
        return video.held_unit(held, self._codec, moved, mp4.SEARCH_BEHIND)


def _samples_ahead(frames: Span, first: int) -> Places:
    """The samples a movie box at the end of an MP4 file in ``frames`` places, read ahead.

    ``first``: the first fragment's length (``mp4.samples_ahead``). Where ``frames`` may be
    read so (``Span.random_access``); else none. The fragments' items are walked by their
    headers as the file's bytes are asked for (``_Items``), ``AHEAD_ITEMS`` at most, so a
    compressed archive's member is read forward, once.
    """
    with frames.random_access() as read:
        head = read(0, 8) if read is not None else b""
        if read is None or len(head) < 8 or head[:4] != ITEM:  # noqa: PLR2004
            return Places.none()
        return mp4.samples_ahead(_Items(read, head).file_bytes, first, HELD_BYTES)


class _Items:
    """The MP4 file in a span's fragments: its bytes read from where the fragments lie.

    The fragments' items are walked by their headers as far as the bytes asked for reach,
    so a reader asked for bytes further on each time reads its span forward.
    """

    def __init__(self, read: spans.Reader, table: bytes) -> None:
        """``table``: the Basic Offset Table's item header, at the span's start."""
        self._read = read
        self._at = 8 + int.from_bytes(table[4:8], "little")  # the next item header
        self._offsets: list[int] = []  # each fragment's, in the file
        self._places: list[tuple[int, int]] = []  # each fragment's: (where in the span, length)
        self._end = 0  # of the fragments walked, in the file
        self._done = False

    def file_bytes(self, start: int, n: int) -> bytes:
        """The file's ``n`` bytes from ``start`` (fewer where the fragments end)."""
        got = bytearray()
        i = max(0, bisect.bisect_right(self._offsets, start) - 1)
        while len(got) < n:
            if i == len(self._places) and not self._next():
                break
            offset, (where, length) = self._offsets[i], self._places[i]
            lo, hi = max(start, offset), min(start + n, offset + length)
            if lo < hi:
                got += self._read(where + lo - offset, hi - lo)
            i += 1
        return bytes(got)

    def _next(self) -> bool:
        """Walk the next fragment's item header; False at the end (or damage, or the limit)."""
        if self._done or len(self._places) >= AHEAD_ITEMS:
            return False
        head = self._read(self._at, 8)
        if len(head) < 8 or head[:4] != ITEM:  # noqa: PLR2004 - the delimiter, or damage
            self._done = True
            return False
        length = int.from_bytes(head[4:8], "little")
        self._offsets.append(self._end)
        self._places.append((self._at + 8, length))
        self._end, self._at = self._end + length, self._at + 8 + length
        return True


AHEAD_ITEMS = 1 << 16  # a streamed MP4 file's fragments walked ahead for its movie box


def _through(
    frames: Span, each: Callable[[bytearray | memoryview], None], *, join: int = 0
) -> Iterator[bytes]:
    """The bytes of ``frames``, each fragment held whole and given to ``each`` as it passes.

    ``each`` may change the fragment in place, or raise to stop the stream. ``join`` (video,
    whose fragments may cut its stream anywhere): fragments smaller than that are given to
    ``each`` joined, up to that many bytes (``_joined_fragments``), so that a stream in tiny
    fragments is read as one in large ones (each fragment's read searched the 64 KiB before
    it again: a megabyte in fragments of 2 bytes took about a minute).
    """
    reader = _Reader(frames.chunks())
    first = True
    group: list[tuple[bytes, bytearray]] = []  # small fragments: (item header, bytes)
    grouped = 0
    while True:
        head = reader.read(8)
        if len(head) < 8 or head[:4] != ITEM:  # noqa: PLR2004 - the delimiter, or damage
            yield from _joined_fragments(group, each)
            yield head
            yield from reader.rest()
            return
        length = int.from_bytes(head[4:8], "little")
        if first:  # the Basic Offset Table
            first = False
            yield head
            yield from reader.pieces(length)
            continue
        if length < join:
            frag = bytearray(reader.read(length))
            group.append((head, frag))
            grouped += len(frag)
            if grouped >= join:
                yield from _joined_fragments(group, each)
                grouped = 0
            continue
        yield from _joined_fragments(group, each)
        grouped = 0
        yield head
        yield from _held_fragment(reader, length, each)


def _joined_fragments(
    group: list[tuple[bytes, bytearray]], each: Callable[[bytearray | memoryview], None]
) -> Iterator[bytes]:
    """The fragments ``group`` holds (item header, bytes), given to ``each`` joined; emptied."""
    if not group:
        return
    joined = bytearray().join(frag for _head, frag in group)
    each(joined)
    at = 0
    for head, frag in group:
        yield head
        yield bytes(joined[at : at + len(frag)])
        at += len(frag)
    group.clear()


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


class _StillPass:
    """Frames that are no video, streamed a fragment at a time (``_through``), blanked.

    Each is blanked and searched as it passes (``_Stills``). What stays of a fragment's
    headers is searched by ``check`` (or added to ``found``: ``verify``'s walk), after the
    last ``mp4.SEARCH_BEHIND`` bytes of the last fragment's where they go on from them (a
    value a fragment's end cuts).
    """

    def __init__(
        self,
        check: Callable[[bytes], str | None] | None = None,
        found: list[bytes] | None = None,
        *,
        strict: bool = False,
    ) -> None:
        """``found``: the header bytes to search are added there, and nothing is blanked.

        ``strict``: as ``_Stills``'.
        """
        self._check, self._found = check, found
        self._stills = _Stills(strict=strict)
        self._behind = b""

    def __call__(self, frag: bytearray | memoryview) -> None:
        """Blank ``frag``'s header text in place, then search what stays of its headers."""
        blanks, regions, on = self._stills.parse(frag)
        if self._found is not None:
            self._found.append(_joined(frag, regions))
            return
        fill_in(frag, blanks)
        if self._check is None:
            return
        header = (self._behind if on else b"") + _joined(frag, regions)
        _refuse_found(self._check, header, [(0, len(header))] if regions else [])
        self._behind = header[-mp4.SEARCH_BEHIND :]


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


def headers(value: bytes | memoryview, codec: str | None = None, *, strict: bool = False) -> bytes:
    """The header bytes of every frame in ``value``: what the leak check searches.

    ``strict``: frames that are no video must begin as their transfer syntax's do
    (``STRICT``): a first fragment that begins as none is searched whole, as are those
    after it up to one that does (``_Stills``).

    Bytes past where its items stop (``items_end``: a damaged item's tag) are no frame's a
    reader can tell: searched whole. So is video that is no stream of start codes, nor a
    transport, program or MP4 stream (damage before its first start code: decoders pass
    over it, and read the units after it).
    """
    found = _headers(value, codec, strict=strict)
    end = items_end(value)
    return found + bytes(value[end:]) if end < len(value) else found


def _headers(value: bytes | memoryview, codec: str | None, *, strict: bool = False) -> bytes:
    if codec is not None:
        stream = _joined_stream(value, list(fragments(value)))
        if demux := _demux(stream, codec, blank=False):
            return b"".join(demux.feed(memoryview(stream))[1])
        if video.byte_stream(stream):
            return _joined(stream, parse(stream, codec)[1])
        return _joined(stream, mp4.parse(stream)[1]) if mp4.is_mp4(stream) else bytes(stream)
    stills = _Stills(strict=strict)
    return b"".join(
        _joined(frag, stills.parse(frag)[1])
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
    codec = video.video_codec(ds)
    if _no_codec_named(ds):
        raise DeidError(UNDER_NATIVE, reason="bad_pixels")
    if not isinstance(value, Span) and not value:  # (a delimiter where its first item lies)
        raise DeidError(NO_ITEMS, reason="bad_pixels")
    if not isinstance(value, Span) and items_end(value) != len(value):
        raise DeidError(DAMAGED_ITEMS, reason="bad_pixels")  # (a span's were read whole)
    if isinstance(value, Span):
        new: bytes | memoryview | Span = Blanked(
            value, value.start, value.end, codec, strict=_strict(ds)
        )
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
    ``streamed``; else they give none. Held frames under a transfer syntax that names no
    codec (``UNDER_NATIVE``: a copy made before it was refused) are searched whole; so are
    those of a JPEG or JPEG 2000 syntax up to the first fragment that begins a frame
    (``STRICT``).
    """
    found = _frames_of(ds)
    if found is None:
        return b""
    codec = video.video_codec(ds)
    if isinstance(found[1], Span):
        return streamed_headers(found[1], codec, strict=_strict(ds)) if streamed else b""
    if _no_codec_named(ds):
        return bytes(found[1])
    return headers(found[1], codec, strict=_strict(ds))


def _no_codec_named(ds: Dataset) -> bool:
    """Whether the transfer syntax of ``ds`` is one of native pixel data, or none."""
    syntax = _syntax(ds)
    return syntax is None or syntax in NATIVE


def _strict(ds: Dataset) -> bool:
    """Whether the frames of ``ds`` must begin as a JPEG or JPEG 2000 does (``STRICT``)."""
    return _syntax(ds) in STRICT


def _syntax(ds: Dataset) -> str | None:
    """The transfer syntax UID of ``ds``, if its file meta names one."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return None if syntax is None else str(syntax)
