"""What the parsers of compressed frames' headers share: blanks, regions, filling them in.

A parser (``frames``, ``video``, ``mp4``, ``demux``) finds what to blank in a frame's bytes
(``Blank``: where, and the byte to fill with) and where its headers lie (``Region``), which
the leak check searches.
"""

from __future__ import annotations

import itertools
import re

Blank = tuple[int, int, bytes]  # start, end, the byte to fill with
Box = tuple[int, bytes, int, int]  # start, kind, header length, end
Region = tuple[int, int]  # start, end of a header's bytes
SPACE, ZERO = b" ", b"\x00"
UUID_BYTES = 16
NESTING = 16  # boxes nested deeper: the rest of the box is blanked unread
NOT_ZERO = re.compile(rb"[^\x00]+")


def spaces(b: bytes | bytearray | memoryview, regions: list[Region]) -> list[Blank]:
    """Blanks making each byte in ``regions`` that is not zero a space (zeros kept)."""
    return [
        (a + m.start(), a + m.end(), SPACE)
        for a, z in regions
        for m in NOT_ZERO.finditer(bytes(b[a:z]))
    ]


def fill_in(buf: bytearray | memoryview, blanks: list[Blank]) -> None:
    """Write each blank into ``buf``, in place."""
    for a, z, byte in blanks:
        z = min(z, len(buf))  # noqa: PLW2901 - never past its end: a bytearray would grow
        if z > a:
            buf[a:z] = byte * (z - a)


def filled(value: bytes | memoryview, blanks: list[Blank]) -> bytes:
    """``value`` with each blank written in (as ``fill_in`` would), made in one copy.

    The bytes between the blanks are joined straight from ``value``: a held object's
    frames are in memory twice, not three times (a ``bytearray`` filled in, then made
    ``bytes``). Blanks that overlap (a later one wins) are filled in so after all.
    """
    size = len(value)
    ordered = sorted((a, min(z, size), fill) for a, z, fill in blanks if min(z, size) > a)
    if any(z > a for (_, z, _f), (a, _, _g) in itertools.pairwise(ordered)):
        out = bytearray(value)
        fill_in(out, blanks)
        return bytes(out)
    view = memoryview(value)
    pieces: list[bytes | memoryview] = []
    at = 0
    for a, z, fill in ordered:
        pieces += (view[at:a], fill * (z - a))
        at = z
    pieces.append(view[at:])
    return b"".join(pieces)


def add(blanks: list[Blank], start: int, end: int, fill: bytes, size: int) -> None:
    """Blank ``start`` to ``end``, clipped to the fragment's ``size`` (a length may run on)."""
    end = min(end, size)
    blanks.append((min(start, end), end, fill))
