"""What the parsers of compressed frames' headers share: blanks, regions, filling them in.

A parser (``frames``, ``video``, ``mp4``, ``demux``) finds what to blank in a frame's bytes
(``Blank``: where, and the byte to fill with) and where its headers lie (``Region``), which
the leak check searches.
"""

from __future__ import annotations

import re

Blank = tuple[int, int, bytes]  # start, end, the byte to fill with
Box = tuple[int, bytes, int, int]  # start, kind, header length, end
Region = tuple[int, int]  # start, end of a header's bytes
SPACE, ZERO = b" ", b"\x00"
UUID_BYTES = 16
NESTING = 16  # boxes nested deeper: the rest of the box is blanked unread
NOT_ZERO = re.compile(rb"[^\x00]+")


def runs(places: list[int]) -> list[Region]:
    """``places`` (ascending) as runs of consecutive ones."""
    out: list[Region] = []
    for p in places:
        if out and out[-1][1] == p:
            out[-1] = (out[-1][0], p + 1)
        else:
            out.append((p, p + 1))
    return out


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


def add(blanks: list[Blank], start: int, end: int, fill: bytes, size: int) -> None:
    """Blank ``start`` to ``end``, clipped to the fragment's ``size`` (a length may run on)."""
    end = min(end, size)
    blanks.append((min(start, end), end, fill))
