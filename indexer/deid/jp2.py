"""A JP2 or JPEG XL file's boxes, walked held or as they come: all that decoders do not read zeroed.

A writer may wrap a JP2 file whole into a frame (DICOM allows only the bare codestream), or
a JPEG XL file. Its boxes may carry text: XML, UUID and intellectual property boxes, JPX
labels, URLs and MPEG-7 metadata; JPEG XL's Exif, XML, JUMBF and Brotli-compressed boxes, and
its JPEG reconstruction data (a recompressed JPEG's comments and application segments, Brotli
compressed); a box of a kind no standard names. Only the boxes decoders read are kept
(``KEPT_BOXES``): every other box's payload is zeroed (a UUID box's after its UUID), each
box keeping its size. Superboxes (``SUPERBOXES``: JP2's header, JPX's associations and
layers) are walked into, ``NESTING`` deep; bytes in one that are no box are zeroed after
those a box's header would take (``Boxes._level_ends``). The codestream a JP2 file holds
has its headers' comments blanked (``j2k``). Every other kept box (the codestream box but
its headers) is what the leak check searches.

The walk (``Boxes``) is fed the bytes as they come (``jpeg.Walk``): a file in several
fragments (``frames``), a box running on from one into the next, blanked on; the
codestream walked on across them. A file held whole is fed once (``parse``).
"""

from __future__ import annotations

from indexer.deid.blanks import NESTING, UUID_BYTES, ZERO, Blank, Region
from indexer.deid.j2k import START as J2K_START
from indexer.deid.j2k import Codestream
from indexer.deid.jpeg import Walk
from indexer.deid.mp4 import box_size

SIGNATURES = frozenset({b"jP  ", b"JXL "})  # a JP2 file's first box, a JPEG XL file's
SIGNATURE_HEADS = tuple(b"\x00\x00\x00\x0c" + kind for kind in sorted(SIGNATURES))  # (12 bytes)
# the boxes that decoders read, kept (and searched); the superboxes they lie in are
# ``SUPERBOXES``. JP2 (ISO/IEC 15444-1 Annex I): the signature, file type, image header, bit
# depths, colour, palette, component mapping and definition, capture and display
# resolution, codestream, UUID list
KEPT_BOXES = frozenset(
    {
        *(b"jP  ", b"ftyp", b"ihdr", b"bpcc", b"colr", b"pclr", b"cmap", b"cdef"),
        *(b"resc", b"resd", b"jp2c", b"ulst"),
        # JPX (15444-2 Annex M): reader requirements, fragment lists, cross-references, media
        # data, opacity, registration, composition instructions, number lists, regions of
        # interest, signatures, desired reproductions' outputs, pixel formats
        *(b"rreq", b"flst", b"cref", b"mdat", b"opct", b"creg", b"copt", b"inst", b"nlst"),
        *(b"roid", b"chck", b"gtso", b"pxfm"),
        # JPEG XL (18181-2): the signature, level, codestream, partial codestream, frame index,
        # gain map. Not its reconstruction data (``jbrd``): it holds the comments and application
        # segments of a recompressed JPEG, Brotli compressed (a copy decodes, but no longer
        # gives the JPEG back bit for bit)
        *(b"JXL ", b"jxll", b"jxlc", b"jxlp", b"jxli", b"jhgm"),
    }
)
# boxes of boxes, walked into: JP2's header, resolution and UUID info; JPX's fragment tables,
# data references, codestream and compositing layer headers, colour groups, composition,
# associations (labels, XML and further associations inside), desired reproductions
SUPERBOXES = frozenset(
    {
        *(b"jp2h", b"res ", b"uinf", b"ftbl", b"dtbl", b"jpch", b"jplh", b"cgrp", b"comp"),
        *(b"asoc", b"drep"),
    }
)
UUID, CODESTREAM = b"uuid", b"jp2c"
BOX_HEAD, LARGE_HEAD = 8, 16  # a box's size and kind; then a size of 8 bytes (size 1)


class Boxes(Walk):
    """A JP2 or JPEG XL file's boxes, walked as they come, box by box.

    A box's size of 0 runs it to the end of what holds it (the file, ``stop``; a
    superbox). A box that runs past what holds it ends that: the walk goes on after the
    superbox, or stops. ``over``: bytes that are no box at the file's level, or a first box
    that is no signature (``SIGNATURES``).
    """

    HEAD = LARGE_HEAD + len(J2K_START)

    def __init__(self, start: int, stop: int) -> None:
        super().__init__(start, stop)
        self._ends: list[int] = []  # where each superbox walked into ends
        self._inner: Codestream | None = None  # a codestream box's walk
        self._inner_end = 0  # where the codestream box ends (in what holds it)
        self._after = 0  # where the box after it lies, as its size says
        self._found: tuple[list[Blank], list[Region]] = ([], [])  # codestreams', this buffer
        self._first = True

    def feed(
        self, buf: bytes | bytearray | memoryview, pos: int
    ) -> tuple[list[Blank], list[Region]]:
        """As ``Walk.feed``; the blanks and headers of the codestream a box holds too."""
        blanks, regions = super().feed(buf, pos)
        inner_blanks, inner_regions = self._found
        self._found = ([], [])
        return blanks + inner_blanks, sorted(regions + inner_regions)

    def _skip(self, buf: bytes | bytearray | memoryview, pos: int) -> bool:
        """A codestream box's bytes in ``buf`` given to its walk; whether a box follows in it."""
        if self._inner is None:
            return True
        blanks, regions = self._inner.feed(buf, pos)  # (a buffer may hold several)
        self._found[0].extend(blanks)
        self._found[1].extend(regions)
        end = pos + len(buf)
        if self._inner_end > end:  # the box goes on into the next buffer
            return False
        self._inner = None
        self._next(self._after)
        return self._at < end

    def _need(self, head: bytes) -> int:
        large = int.from_bytes(head[:4], "big") == 1
        header = LARGE_HEAD if large else BOX_HEAD
        return header + len(J2K_START) if head[4:8] == CODESTREAM else header

    def _step(self, head: bytes, span: Region, blanks: list[Blank]) -> bool:
        level = self._ends[-1] if self._ends else self._stop
        head = head[: level - self._at]
        box = _box(head, level - self._at)
        if box is None:
            return self._level_ends(head, span, blanks)
        size, kind, at = box
        if self._first and kind not in SIGNATURES:
            return self._end()
        self._first = False
        after = self._at + size
        end = min(after, level)
        if kind == CODESTREAM and head[at : at + len(J2K_START)] == J2K_START:
            self._close()
            self._advance(at)
            self._inner = Codestream(self._at, end, held=self._held)
            self._held, self._inner_end, self._after = b"", end, after
            return True
        if kind in SUPERBOXES:
            self._close()
            if len(self._ends) < NESTING:
                self._ends.append(end)
                return self._advance(at)
            self._blank(self._at + at, end, ZERO, span, blanks)  # nested too deep: unread
            return self._next(after)
        if self._header is None:
            self._header = self._at
        if kind == UUID:
            self._blank(self._at + at + UUID_BYTES, end, ZERO, span, blanks)
        elif kind not in KEPT_BOXES:
            self._blank(self._at + at, end, ZERO, span, blanks)
        return self._next(after)

    def holds(self, pos: int) -> bool:
        """Whether the file surely goes on at ``pos`` (where a fragment begins).

        It does in a box whose size runs past it (the codestream box too), and in a box's
        header cut before it; not in a box that runs to the file's end (size 0), which a
        fragment that begins another frame ends.
        """
        if self.over:
            return False
        if self._inner is not None:
            return pos < self._inner_end < self._stop
        return self._at < pos or pos < self._at < self._stop  # (a header cut; in a box)

    def _level_ends(self, head: bytes, span: Region, blanks: list[Blank]) -> bool:
        """No box here (``head``: its first bytes): the superbox holding it ends, or all does.

        The bytes left in the superbox, which no reader reads, are searched, and zeroed
        after those a box's header would take (kept: a buffer's end may have cut them, and
        the buffer before is gone). ``span``: where the buffer lies (blanks to ``blanks``).
        """
        if not self._ends:
            return self._end()
        if self._header is None:
            self._header = self._at
        end = self._ends.pop()
        self._blank(self._at + min(self._need(head), len(head)), end, ZERO, span, blanks)
        return self._next(end)

    def _next(self, after: int) -> bool:
        """On to the box after one (at ``after``), or where that ends what holds it."""
        while self._ends and after >= self._ends[-1]:
            after = self._ends.pop()
        return self._advance(after - self._at)


def _box(head: bytes, room: int) -> tuple[int, bytes, int] | None:
    """The size, kind and header length of the box ``head`` begins; None: no box.

    ``room``: the bytes left in what holds it (a size of 0: all of them).
    """
    size, at = box_size(head, room)
    return None if size is None or size < at else (size, head[4:8], at)


def begins(frag: bytes | bytearray | memoryview, *, idle: bool) -> bool:
    """Whether ``frag`` begins a JP2 or JPEG XL file: its signature box.

    Or (``idle``: no walk going on) too few bytes to tell, that may begin one.
    """
    if bytes(frag[4:8]) in SIGNATURES:
        return True
    short = 0 < len(frag) < BOX_HEAD
    return idle and short and any(head.startswith(bytes(frag)) for head in SIGNATURE_HEADS)


def parse(b: bytes | bytearray | memoryview) -> tuple[list[Blank], list[Region]]:
    """What to blank in the JP2 or JPEG XL file held whole in ``b``; where its boxes lie."""
    return Boxes(0, len(b)).feed(b, 0)
