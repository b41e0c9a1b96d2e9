"""Text in the headers of compressed frames: JPEG segments, JPEG 2000 comments, JP2 boxes.

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
  JUMBF and Brotli-compressed boxes.

What stays (the segments decoders read, and every header's other segments) is searched by
the leak check (``headers``). The frames of an object of ``spans.STREAM_FROM`` bytes or more
are blanked and searched as they are streamed into the copy, a fragment at a time
(``Blanked``), as those held are before: a value found there stops the copy.
"""

from __future__ import annotations

import mmap
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from indexer import spans
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
Region = tuple[int, int]  # start, end of a header's bytes


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


def parse(frag: bytes | bytearray | memoryview) -> tuple[list[Blank], list[Region]]:
    """What to blank in one fragment, and where its headers lie (nothing: no frame start)."""
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
    b: bytes | bytearray | memoryview, i: int = 0, stop: int | None = None, depth: int = 0
) -> tuple[list[Blank], list[Region]]:
    """A JP2 or JPEG XL file's boxes from ``i`` to ``stop``; a JPEG 2000 codestream box parsed.

    An association box (JPX) is walked into: it holds labels and XML of its own.
    """
    blanks: list[Blank] = []
    regions: list[Region] = []
    stop = len(b) if stop is None else stop
    while i + 8 <= stop:
        length, kind, head = int.from_bytes(b[i : i + 4], "big"), bytes(b[i + 4 : i + 8]), 8
        if length == 1:  # an extended length follows
            length, head = int.from_bytes(b[i + 8 : i + 16], "big"), 16
        elif length == 0:  # to the end
            length = stop - i
        if length < head:
            break
        end = min(i + length, stop)
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
        i = end
    return blanks, regions


def _add(blanks: list[Blank], start: int, end: int, fill: bytes, size: int) -> None:
    """Blank ``start`` to ``end``, clipped to the fragment's ``size`` (a length may run on)."""
    end = min(end, size)
    blanks.append((min(start, end), end, fill))


def blank(value: bytes | memoryview) -> tuple[bytes | memoryview, int]:
    """``value`` (encapsulated frames) with the text of their headers blanked; how many.

    ``value`` itself where nothing is to be blanked (not copied).
    """
    out: bytearray | None = None
    count = 0
    for start, end in fragments(value):
        frag = memoryview(value)[start:end]
        for a, z, fill in _to_blank(frag):
            if out is None:
                out = bytearray(value)
            out[start + a : start + z] = fill * (z - a)
            count += 1
    return (bytes(out), count) if out is not None else (value, 0)


def _to_blank(frag: bytes | bytearray | memoryview) -> list[Blank]:
    """What ``parse`` would blank in ``frag`` that is not blank already."""
    return [
        (a, z, fill)
        for a, z, fill in parse(frag)[0]
        if z > a and bytes(frag[a:z]) != fill * (z - a)
    ]


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
    # searches the header bytes that stay (``verify.frame_header_check``): where a value
    # found came from; one found stops the copy (a DeidError)
    check: Callable[[bytes], str | None] | None = field(default=None, repr=False, compare=False)

    def chunks(self) -> Iterator[bytes]:
        """The frames' bytes, blanked, a chunk (or a fragment) at a time."""
        return _through(self.whole, lambda frag: _blank_and_check(frag, self.check))


def streamed_headers(frames: Span) -> bytes:
    """The header bytes of every frame in the span ``frames``, as ``headers`` gives them."""
    parts: list[bytes] = []
    for _chunk in _through(frames, lambda frag: parts.append(_joined(frag, parse(frag)[1]))):
        pass
    return b"".join(parts)


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
    for a, z, fill in blanks:
        if z > a:
            frag[a:z] = fill * (z - a)
    if check is not None and regions and (source := check(_joined(frag, regions))):
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


def headers(value: bytes | memoryview) -> bytes:
    """The header bytes of every frame in ``value``: what the leak check searches."""
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
    if isinstance(value, Span):
        new: bytes | memoryview | Span = Blanked(value, value.start, value.end)
        count = None
    else:
        new, count = blank(value)
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
    if isinstance(found[1], Span):
        return streamed_headers(found[1]) if streamed else b""
    return headers(found[1])
