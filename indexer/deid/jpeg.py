"""A JPEG's segments and what follows its end, walked held or as its bytes come: text blanked.

A JPEG carries segments of its own from its start (SOI) to its first scan (SOS), and may
between scans: a camera's Exif (dates, serial numbers, places), XMP, IPTC captions,
comments. A COM segment's payload is made spaces; an APPn segment's is zeroed, but those
decoders read (APP0 JFIF, APP2 ICC profile, APP8 JPEG-LS colour transform and SPIFF, APP14
Adobe; and Motion JPEG format A's APP1, tagged ``mjpg``: where a frame's second field
lies). Each segment keeps its length, so nothing of the image is decoded or changed: a
scan's data is passed over to the next marker. After the image's end (EOI) a phone may
have put a trailer (a motion photo's MP4 file, a second picture, a maker's data), which no
decoder of the image reads: it is zeroed. The walk stops at bytes that are no segment, and
all after them is searched; the headers walked, and the trailer, are what the leak check
searches.

The walk (``Segments``) is fed the bytes as they come, a buffer at a time (a Motion JPEG
sample of a streamed MP4 file, ``mp4``; a frame in several fragments, ``frames``): a
segment a buffer's end cuts is blanked as far as the buffer goes and on into the next; a
marker cut is held until its bytes are whole. A JPEG held whole is fed once (``parse``).
The machinery is ``Walk``'s, which a JPEG 2000 codestream's walk shares (``j2k``).
"""

from __future__ import annotations

import re

from indexer.deid.blanks import SPACE, ZERO, Blank, Region

JPEG = "jpeg"  # the codec of an MP4 file's Motion JPEG track (``places``)
SOI, SOS, EOI, COM = 0xD8, 0xDA, 0xD9, 0xFE  # markers (after 0xFF)
APP0, APP1, APP15 = 0xE0, 0xE1, 0xEF
READ_BY_DECODERS = frozenset({0, 2, 8, 14})  # APPn: JFIF, ICC profile, JPEG-LS, Adobe
MARKER, FILL = 4, 0xFF  # a segment's marker and length; a fill byte before a marker
RST0, RST7 = 0xD0, 0xD7  # restart markers, in a scan's data
# a marker in a scan's data: 0xFF then neither 0 (a stuffed byte) nor a restart marker, nor
# below 0x80 (JPEG-LS stuffs a bit), nor 0xFF (a fill byte: the marker follows)
SCAN_MARKER = re.compile(rb"\xff[\x80-\xcf\xd8-\xfe]")
# Motion JPEG format A's APP1: 4 reserved bytes (0), its tag (then its fields' offsets)
MOTION = bytes(4) + b"mjpg"
MOTION_END = MARKER + len(MOTION)  # (from the marker)


class Walk:
    """Marker segments (a JPEG's, a JPEG 2000 codestream's) walked as their bytes come.

    They lie from ``start`` to ``stop`` (where in their file). ``feed`` each buffer in
    turn: the blanks in it, and where in it the headers lie. A step (``_step``) looks at up
    to ``HEAD`` bytes from where the next marker lies; where a buffer's end cuts those it
    needs (``_need``), they are held, and the step taken with the next buffer's. A segment
    blanked past a buffer's end is blanked on into the next. ``over``: the walk has stopped.
    """

    HEAD = MARKER

    def __init__(self, start: int, stop: int, *, held: bytes = b"") -> None:
        """``held``: the walk's first bytes, where they went with earlier buffers."""
        self._at = start  # where the next marker lies
        self._stop = stop
        self._held = held  # its bytes that went with earlier buffers (a marker cut)
        self._pending: Blank | None = None  # a segment blanked on into the next buffer
        self._header: int | None = start  # where the header being walked began (None: none)
        self._closed: list[Region] = []  # the headers that ended, since the last buffer
        self.over = False

    def feed(
        self, buf: bytes | bytearray | memoryview, pos: int
    ) -> tuple[list[Blank], list[Region]]:
        """The blanks in ``buf`` (at ``pos`` in the file), and where in it headers lie.

        Both in the file's places. A header is as far as it has been walked: to the
        buffer's end where it goes on; so are bytes the buffer's end cuts that may begin
        one.
        """
        end = pos + len(buf)
        blanks: list[Blank] = []
        if self._pending is not None:
            a, z, fill = self._pending
            blanks.append((max(a, pos), min(z, end), fill))
            self._pending = (max(a, end), z, fill) if z > end else None
        cut = False  # the buffer ends in what the next step needs
        while not self.over and self._at < end:
            if not self._skip(buf, pos):  # the buffer ends in bytes the walk passes over
                cut = bool(self._held)  # (in a marker's first byte, maybe)
                break
            k = max(self._at - pos, 0)
            head = (self._held + bytes(buf[k : k + self.HEAD]))[: self._stop - self._at]
            cut = len(head) < self._need(head) and self._at + len(head) < self._stop
            if cut:
                self._held = head
                break
            if not self._step(head, (pos, end), blanks):
                break
        regions = [*self._closed]
        self._closed = []
        if self._header is not None:
            regions.append((self._header, min(end, self._stop)))
        elif cut:  # bytes that may begin a header: searched as one (what went is not again)
            regions.append((self._at, end))
        return (
            [blank for blank in blanks if blank[1] > blank[0]],
            [(max(a, pos), min(z, end)) for a, z in regions if min(z, end) > max(a, pos)],
        )

    def _skip(self, buf: bytes | bytearray | memoryview, pos: int) -> bool:  # noqa: ARG002
        """Pass over the bytes before the next marker; whether one lies in ``buf``.

        ``buf`` lies at ``pos``. A walk's own may have such bytes (a scan's data).
        """
        return True

    def _need(self, head: bytes) -> int:  # noqa: ARG002 - a walk's own may look at it
        """The bytes the step at ``_at`` needs, of those it may look at (``head``)."""
        return MARKER

    def _step(self, head: bytes, span: Region, blanks: list[Blank]) -> bool:
        """Walk the marker at ``_at``, from its first bytes ``head``; whether to go on.

        ``head``: as many as the step needs, or fewer where the walk's end is near.
        ``span``: where the buffer lies (its blanks go to ``blanks``).
        """
        raise NotImplementedError

    def _blank(self, a: int, z: int, fill: bytes, span: Region, blanks: list[Blank]) -> None:
        """Blank ``a`` to ``z`` (up to the walk's end): in the buffer, and in those after."""
        z = min(z, self._stop)
        blanks.append((max(a, span[0]), min(z, span[1]), fill))
        if z > span[1]:
            self._pending = (max(a, span[1]), z, fill)

    def _close(self) -> None:
        """The header being walked ends where the next marker lies."""
        if self._header is not None:
            self._closed.append((self._header, min(self._at, self._stop)))
            self._header = None

    def _end(self) -> bool:
        """The walk stops here (the header being walked ends here)."""
        self._close()
        self.over = True
        return False

    def _damaged(self) -> bool:
        """Bytes that are no segment where one begins (damage): the rest searched whole.

        Which bytes after them are segments is not told here (a damaged length would
        mislead a walk on): nothing more is blanked, and all from here to the walk's end
        (a frame's: up to the next frame's fragment) is searched as a header is. A value
        found there refuses the object.
        """
        self._close()
        self._header, self._at = self._at, self._stop
        return False

    def _advance(self, by: int) -> bool:
        self._at += by
        self._held = self._held[by:]
        return True


class Segments(Walk):
    """A JPEG's segments, and what lies after its end, walked as they come.

    From its start (SOI), segment by segment; a scan's data (after SOS) is passed over to
    the next marker (``SCAN_MARKER``: in the data, 0xFF is followed only by 0 or a restart
    marker, and in JPEG-LS by a byte below 0x80), and the segments between scans walked as
    those before the first. At the image's end (EOI), what follows (a phone's trailer: a
    motion photo's MP4 file, a second picture, a maker's data) is zeroed to the JPEG's end
    (a frame's: its fragments up to the next frame's), and searched. Bytes that are no
    segment where one begins (damage) end the walk, and all after them is searched
    (``_damaged``): a decoder passes over such bytes to the next marker, and reads the
    segments after it (libjpeg: "extraneous bytes before marker"), a comment holding a name
    too; an Exif's own 0xFF bytes would mislead a walk on. So is one that does not begin as
    a JPEG does (a Motion JPEG sample damaged, or placed amiss). ``over``: the JPEG's end
    reached in a scan.
    """

    HEAD = MOTION_END

    def __init__(self, start: int, stop: int) -> None:
        super().__init__(start, stop)
        self._first = True
        self._scan = False  # in a scan's data

    def _skip(self, buf: bytes | bytearray | memoryview, pos: int) -> bool:
        if not self._scan:
            return True
        end = pos + len(buf)
        if self._held and self._at < pos:  # a 0xFF the last buffer ended in
            if len(buf) > 0 and _is_marker(buf[0]):
                return self._marker()
            self._at, self._held = pos, b""
        found = SCAN_MARKER.search(buf, self._at - pos, min(len(buf), self._stop - pos))
        if found is not None:
            self._at = pos + found.start()
            return self._marker()
        if self._stop <= end:  # the JPEG ends in the scan
            self._at = self._stop
            self._end()
            return False
        last = len(buf) > 0 and buf[-1] == FILL  # a marker's first byte, maybe
        self._at, self._held = (end - 1, b"\xff") if last else (end, b"")
        return False

    def _marker(self) -> bool:
        """A marker after a scan's data: the segments from it walked."""
        self._scan, self._header = False, self._at
        return True

    def _need(self, head: bytes) -> int:
        if self._first:
            return 2
        return MOTION_END if _undecided(head) else MARKER

    def _step(self, head: bytes, span: Region, blanks: list[Blank]) -> bool:
        if self._first:
            if head[:2] != bytes((FILL, SOI)):
                return self._damaged()  # no JPEG: a Motion JPEG sample, damaged
            self._first = False
            return self._advance(2)
        if len(head) < 2 or head[0] != FILL:  # noqa: PLR2004 - the JPEG ends; damage
            return self._damaged()
        marker = head[1]
        if marker == FILL:  # a fill byte
            return self._advance(1)
        if marker == EOI:  # what follows is zeroed (and searched) to the JPEG's end
            self._close()
            self._header = self._at + 2
            self._blank(self._at + 2, self._stop, ZERO, span, blanks)
            self._at = self._stop
            return False
        length = int.from_bytes(head[2:4], "big")
        if len(head) < MARKER or length < 2:  # noqa: PLR2004 - no segment is that short
            return self._damaged()
        if marker == SOS:  # its data passed over to the next marker
            self._close()
            self._scan = True
            return self._advance(2 + length)
        blanked = _blanked(marker, head)
        if blanked is not None:
            at, fill = blanked
            self._blank(self._at + at, self._at + 2 + length, fill, span, blanks)
        return self._advance(2 + length)


def _is_marker(byte: int) -> bool:
    """Whether 0xFF then ``byte`` is a marker in a scan's data (not 0, a restart, fill)."""
    return 0x80 <= byte < FILL and not RST0 <= byte <= RST7  # noqa: PLR2004


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
    return Segments(start, stop).feed(b, 0)
