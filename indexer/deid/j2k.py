"""A JPEG 2000 codestream's headers, walked held or as its bytes come: comments blanked.

A codestream holds headers between its data: the main header, after its start (SOC), and
a tile-part header after each tile-part's start (SOT), up to its data (SOD). Each may hold
comments (COM): an encoder's name, or any text a writer put there. A comment's payload is
made spaces where it is Latin text (Rcme 1), else zeroed, keeping its length, so nothing of
the image is decoded or changed. The walk goes from each tile-part to the next by the
length its SOT gives (Psot), over the data between, and stops at the last tile-part (Psot
0), or at the codestream's end (EOC); the headers walked are what the leak check searches.
Bytes that are no marker segment where one begins (damage: no 0xFF, a length below 2) are
searched from there as a header is, to where the tile-part's length ends it (the walk goes
on there), or in the main header (or the last tile-part, of no length) to the
codestream's end, as they are where no tile-part lies where the last one's length ends (a
comment after them went into the copy, neither blanked nor searched): nothing more is
blanked.

The walk (``Codestream``) is fed the bytes as they come (``jpeg.Walk``): a frame in several
fragments (``frames``), its tile-parts' headers anywhere in them. A codestream held whole
is fed once (``parse``).
"""

from __future__ import annotations

from indexer.deid.blanks import SPACE, ZERO, Blank, Region
from indexer.deid.jpeg import FILL, MARKER, Walk

SOC, COM, SOT, SOD, EOC = 0x4F, 0x64, 0x90, 0x93, 0xD9  # markers (after 0xFF)
START = b"\xff\x4f\xff\x51"  # a codestream's first bytes: SOC, then SIZ
COMMENT = MARKER + 2  # a comment's marker, length and Rcme (its kind: 1, Latin text)
LATIN = b"\x00\x01"
TILE_PART = 12  # SOT's marker, length (10), tile, Psot (the tile-part's length), part, parts
PSOT = slice(6, 10)
SOC_BYTES, MAIN, NEXT, TILE = range(4)  # where the walk is: SOC; a header; between tile-parts


class Codestream(Walk):
    """A JPEG 2000 codestream's main header and tile-part headers, walked as they come.

    ``over``: the last tile-part's header ended, or the codestream's. Bytes that are no
    marker segment (or no tile-part) where one was to be are searched from there: to where
    their tile-part ends (``_header_ends``), or to the codestream's end (``_damaged``).
    """

    HEAD = TILE_PART

    def __init__(self, start: int, stop: int, *, held: bytes = b"") -> None:
        super().__init__(start, stop, held=held)
        self._phase = SOC_BYTES
        self._tile = start  # where the tile-part being walked began
        self._length = 0  # its Psot

    def _need(self, head: bytes) -> int:
        if self._phase == SOC_BYTES:
            return 2
        if self._phase == NEXT:
            return TILE_PART
        comment = len(head) >= MARKER and head[1] == COM
        return COMMENT if comment and int.from_bytes(head[2:4], "big") >= MARKER else MARKER

    def _step(self, head: bytes, span: Region, blanks: list[Blank]) -> bool:
        if self._phase == SOC_BYTES:
            if head[:2] != bytes((FILL, SOC)):
                return self._end()  # no codestream
            self._phase = MAIN
            return self._advance(2)
        if self._phase == NEXT:
            return self._tile_part(head)
        if len(head) < 2 or head[0] != FILL:  # noqa: PLR2004 - a marker's bytes
            return self._header_ends(damaged=True)
        marker, length = head[1], int.from_bytes(head[2:4], "big")
        first = self._phase == TILE and self._at == self._tile  # its own SOT
        if marker in (SOD, EOC) or (marker == SOT and not first):
            return self._header_ends()
        if len(head) < MARKER or length < 2:  # noqa: PLR2004 - cut short, or no segment
            return self._header_ends(damaged=True)
        if marker == COM and length >= MARKER:  # Lcom, Rcme, then the comment
            fill = SPACE if head[MARKER:COMMENT] == LATIN else ZERO
            self._blank(self._at + COMMENT, self._at + 2 + length, fill, span, blanks)
        return self._advance(2 + length)

    def _tile_part(self, head: bytes) -> bool:
        """The next tile-part's header walked; at the codestream's end, the walk's."""
        self._close()  # (bytes searched since damage in the last tile-part's header)
        if head[:2] == bytes((FILL, EOC)):
            return self._end()
        if len(head) < TILE_PART or head[:2] != bytes((FILL, SOT)):
            return self._damaged()  # no tile-part where the last one's length ends
        self._phase, self._tile, self._header = TILE, self._at, self._at
        self._length = int.from_bytes(head[PSOT], "big")
        return True

    def _header_ends(self, *, damaged: bool = False) -> bool:
        """The header being walked ends here: the next tile-part is looked for.

        After the main header, here; after a tile-part's, where its length ends it (none:
        the last tile-part, Psot 0). A length that ends within its header is damage.
        ``damaged``: bytes that are no marker segment end it. In a tile-part's header, all
        from them to where its length ends it is searched too, and the walk goes on from
        there; else all to the codestream's end (``_damaged``).
        """
        if damaged and (self._phase != TILE or not self._length):
            return self._damaged()
        if not damaged:
            self._close()
        if self._phase == TILE:
            if not self._length:
                self.over = True
                return False
            if self._tile + self._length <= self._at:
                return self._damaged()
            self._advance(self._tile + self._length - self._at)
        self._phase = NEXT
        return True


def parse(b: bytes | bytearray | memoryview, start: int = 0) -> tuple[list[Blank], list[Region]]:
    """What to blank in the codestream held whole in ``b`` from ``start``; its headers."""
    return Codestream(start, len(b)).feed(b, 0)
