"""A JPEG's segments before its image data, walked held or as its bytes come: text blanked.

A JPEG carries segments of its own from its start (SOI) to its first scan (SOS): a camera's
Exif (dates, serial numbers, places), XMP, IPTC captions, comments. A COM segment's payload
is made spaces; an APPn segment's is zeroed, but those decoders read (APP0 JFIF, APP2 ICC
profile, APP8 JPEG-LS colour transform and SPIFF, APP14 Adobe; and Motion JPEG format A's
APP1, tagged ``mjpg``: where a frame's second field lies). Each segment keeps its length, so
nothing of the image is decoded or changed. The walk stops at the first scan, at the end of
the image, or at bytes that are no segment; the bytes walked are the header the leak check
searches.

The walk (``Segments``) is fed the bytes as they come, a buffer at a time (a Motion JPEG
sample of a streamed MP4 file, ``mp4``): a segment a buffer's end cuts is blanked as far as
the buffer goes and on into the next; a marker cut is held until its bytes are whole. A
JPEG held whole is fed once (``parse``: a compressed frame, ``frames``).
"""

from __future__ import annotations

from indexer.deid.blanks import SPACE, ZERO, Blank, Region

JPEG = "jpeg"  # the codec of an MP4 file's Motion JPEG track (``places``)
SOI, SOS, EOI, COM = 0xD8, 0xDA, 0xD9, 0xFE  # markers (after 0xFF)
APP0, APP1, APP15 = 0xE0, 0xE1, 0xEF
READ_BY_DECODERS = frozenset({0, 2, 8, 14})  # APPn: JFIF, ICC profile, JPEG-LS, Adobe
MARKER, FILL = 4, 0xFF  # a segment's marker and length; a fill byte before a marker
# Motion JPEG format A's APP1: 4 reserved bytes (0), its tag (then its fields' offsets)
MOTION = bytes(4) + b"mjpg"
MOTION_END = MARKER + len(MOTION)  # (from the marker)


class Segments:
    """A JPEG from ``start`` to ``stop`` (where in its file), walked as its bytes come.

    ``feed`` each buffer in turn: the blanks in it, and where the header it holds ends.
    ``over``: the walk has stopped (a scan, the image's end, bytes that are no segment, the
    JPEG's end).
    """

    def __init__(self, start: int, stop: int) -> None:
        self._at = start  # where the next marker lies (first: the image's start)
        self._stop = stop
        self._first = True
        self._held = b""  # its bytes that went with earlier buffers (a marker cut)
        self._pending: Blank | None = None  # a segment blanked on into the next buffer
        self.over = False

    def feed(self, buf: bytes | bytearray | memoryview, pos: int) -> tuple[list[Blank], int]:
        """The blanks in ``buf`` (at ``pos`` in the file), and where in it the header ends.

        Both in the file's places. The header's end: as far as it has been walked (``pos``:
        it ended before).
        """
        end = pos + len(buf)
        blanks: list[Blank] = []
        header_end = pos if self.over else min(end, self._stop)
        if self._pending is not None:
            a, z, fill = self._pending
            blanks.append((max(a, pos), min(z, end), fill))
            self._pending = (end, z, fill) if z > end else None
        while not self.over and self._at < end:
            if not self._step(buf, pos, blanks):
                break
        if self.over:
            header_end = max(pos, min(header_end, self._at, self._stop))
        return [blank for blank in blanks if blank[1] > blank[0]], header_end

    def _step(self, buf: bytes | bytearray | memoryview, pos: int, blanks: list[Blank]) -> bool:
        """Walk the marker at ``_at``; whether the walk goes on in this buffer."""
        k = max(self._at - pos, 0)
        head = (self._held + bytes(buf[k : k + MOTION_END]))[: self._stop - self._at]
        least = 2 if self._first else MARKER
        need = MOTION_END if not self._first and _undecided(head) else least
        if len(head) < need and self._at + len(head) < self._stop:  # the buffer ends: held
            self._held = head
            return False
        if len(head) < least or (self._first and head[:2] != bytes((FILL, SOI))):
            self.over = True  # the JPEG ends; or it is none
            return False
        if self._first:
            self._first = False
            return self._advance(2)
        if head[0] != FILL:
            self.over = True
            return False
        marker = head[1]
        if marker == FILL:  # a fill byte
            return self._advance(1)
        length = int.from_bytes(head[2:4], "big")
        if marker in (SOS, EOI) or length < 2:  # noqa: PLR2004 - no segment is that short
            self.over = True
            return False
        blanked = _blanked(marker, head)
        if blanked is not None:
            a, z = self._at + blanked[0], min(self._at + 2 + length, self._stop)
            end = pos + len(buf)
            blanks.append((max(a, pos), min(z, end), blanked[1]))
            if z > end:
                self._pending = (end, z, blanked[1])
        return self._advance(2 + length)

    def _advance(self, by: int) -> bool:
        self._at += by
        self._held = self._held[by:]
        return not self.over


def _blanked(marker: int, head: bytes) -> tuple[int, bytes] | None:
    """Where (from the marker) a segment's payload is blanked from, and with what byte.

    None: it is kept (decoders read it). An APP1 long enough to hold Motion JPEG format A's
    tag: kept if its first bytes are ``MOTION``; else blanked from the first that differs
    (so that a walk cut in them blanks what a walk of the JPEG held does).
    """
    if marker == COM:
        return MARKER, SPACE
    if not APP0 <= marker <= APP15 or marker - APP0 in READ_BY_DECODERS:
        return None
    if not _tagged(head):
        return MARKER, ZERO
    seen = head[MARKER:MOTION_END]
    same = 0  # (``seen`` holds as many bytes as the tag at most)
    while same < len(seen) and seen[same] == MOTION[same]:
        same += 1
    return None if same == len(MOTION) else (MARKER + same, ZERO)


def _tagged(head: bytes) -> bool:
    """Whether the segment ``head`` begins is an APP1 long enough to hold a tag."""
    return head[1] == APP1 and int.from_bytes(head[2:4], "big") >= MOTION_END - 2


def _undecided(head: bytes) -> bool:
    """Whether ``head`` begins a segment (``_tagged``) whose tag is not all seen, and might be."""
    if len(head) < MARKER or not _tagged(head):
        return False
    seen = head[MARKER:MOTION_END]
    return len(seen) < len(MOTION) and MOTION.startswith(seen)


def parse(
    b: bytes | bytearray | memoryview, start: int = 0, stop: int | None = None
) -> tuple[list[Blank], list[Region]]:
    """What to blank in the JPEG held whole in ``b``, and where its header lies.

    The JPEG lies from ``start`` to ``stop`` (``b``'s end). No header: it does not begin as
    a JPEG does.
    """
    stop = len(b) if stop is None else min(stop, len(b))
    walk = Segments(start, stop)
    blanks, header_end = walk.feed(b, 0)
    return blanks, [(start, header_end)] if header_end > start else []
