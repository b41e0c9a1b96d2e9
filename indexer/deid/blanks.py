"""What the parsers of compressed frames' headers share: blanks, regions, filling them in.

A parser (``frames``, ``video``, ``mp4``, ``demux``) finds what to blank in a frame's bytes
(``Blank``: where, and the byte to fill with) and where its headers lie (``Region``), which
the leak check searches.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator

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


def filled(value: bytes | memoryview, blanks: list[Blank]) -> memoryview:
    """``value`` with each blank written in (as ``fill_in`` writes them, a later one winning).

    A read-only view of the one copy filled in: a held object's frames are in memory twice,
    not three times (made ``bytes`` again), nor with two pieces for each blank (joined into
    ``bytes`` from ``value``'s bytes between them: 300 bytes each, where a video dense with
    text has hundreds of thousands of blanks).
    """
    out = bytearray(value)
    fill_in(out, blanks)
    return memoryview(out).toreadonly()


def in_pieces(starts: list[int], a: int, z: int) -> Iterator[tuple[int, int, int]]:
    """(piece, start, end): the parts of bytes ``a`` to ``z`` of pieces joined, one a piece.

    ``starts``: where each piece begins in the joined bytes, and where the last ends (as
    ``itertools.accumulate`` of their lengths, from 0, gives them); the places given are
    the joined bytes'. The first piece is found by bisection: a window of a megabyte holds
    thousands of packets, and of blanks (each walked over every piece took seconds).
    """
    i = max(0, bisect_right(starts, a) - 1)
    while i + 1 < len(starts) and starts[i] < z:
        lo, hi = max(a, starts[i]), min(z, starts[i + 1])
        if lo < hi:
            yield i, lo, hi
        i += 1


def add(blanks: list[Blank], start: int, end: int, fill: bytes, size: int) -> None:
    """Blank ``start`` to ``end``, clipped to the fragment's ``size`` (a length may run on)."""
    end = min(end, size)
    blanks.append((min(start, end), end, fill))
