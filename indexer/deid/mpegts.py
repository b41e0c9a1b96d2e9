"""Video in an MPEG-2 transport stream (ISO/IEC 13818-1): its text blanked, its headers found.

DICOM carries H.264 and HEVC video in a transport stream (or an MP4 file), and recorders
write MPEG-2 video in one too. The text of such a stream lies in three places:

- the video itself: user data SEI messages and MPEG-2 user data, in the payloads of the
  video PES packets (stream ids E0 to EF). Those payloads are joined, a PID at a time, into
  the codec's stream and parsed as one (``parse``, given by ``frames``); what it blanks is
  blanked in the packets it lies in;
- service information: DVB's service and network names, events, and the date and time of
  the recording (PIDs 10 to 1F), and ATSC's (PID 1FFB). Those packets become null packets
  (PID 1FFF), their bytes after the header zeroed, so no table is left with a wrong CRC;
- the private data of adaptation fields, zeroed.

The sections that stay (program association and program map tables, and any other table on
a PID of its own), the units holding user data, and bytes that are no packet (damage: the
next packet is the next sync byte with another a packet on) are searched by the leak check.
Audio and other PES streams are carried as they are, and not searched.

A stream is fed a buffer at a time (``TsDemux.feed``): a streamed object's fragments, or
the whole of a held one. A packet cut by a buffer's end is read whole with the next; a unit
holding text is read on into the next. Bytes of an earlier buffer are never changed (they
went as they were), but are searched as they went.
"""

from __future__ import annotations

from collections.abc import Callable

Blank = tuple[int, int, bytes]  # start, end, the byte to fill with
Region = tuple[int, int]  # start, end
Piece = tuple[bytes | None, int, int]  # bytes of an earlier buffer (None: this one's), start, end
Parse = Callable[[bytes], tuple[list[Blank], list[Region]]]

SYNC = 0x47
SYNC_BYTE = bytes((SYNC,))
PACKET_SIZES = (188, 192, 204)  # plain; after a 4-byte time code (Blu-ray's M2TS); with FEC
TIME_CODE = 4  # the bytes before each packet's sync byte in a 192-byte one
HEADER = 4
NULL_PID = 0x1FFF
SERVICE_INFO = frozenset(range(0x10, 0x20)) | {0x1FFB}  # DVB SI; ATSC PSIP
VIDEO_STREAMS = range(0xE0, 0xF0)  # PES stream ids of video
PES_HEADER = 9  # start code, stream id, length, two flag bytes, the header data's length
START_CODE = b"\x00\x00\x01"
PCR, OPCR, SPLICE, PRIVATE = 0x10, 0x08, 0x04, 0x02  # adaptation field flags
CLOCK = 6  # a PCR's or OPCR's bytes
WINDOW = 1 << 20  # a PID's video bytes parsed this much at a time
ZERO = b"\x00"
SEEN = 4096  # table payloads remembered as searched


TS_HEAD = TIME_CODE + HEADER  # the bytes a transport stream is known by (``packet_size``)


def packet_size(head: bytes | bytearray | memoryview) -> int:
    """The packet size of the transport stream ``head`` begins, or 0: not one.

    A sync byte first, and at the start of most of the next three packets (as many as
    ``head`` holds; damage may have taken one). After a time code (192-byte packets), two
    at least: an H.264 stream may begin with a parameter set whose fifth byte is a sync
    byte's value.
    """
    best, score = 0, 0
    for size in PACKET_SIZES:
        lead = TIME_CODE if size == PACKET_SIZES[1] else 0
        if len(head) < lead + HEADER or head[lead] != SYNC:
            continue
        hits = sum(head[i] == SYNC for i in range(lead, min(len(head), lead + 4 * size), size))
        if hits > score and (hits > 1 or not lead):
            best, score = size, hits
    return best


class TsDemux:
    """A transport stream fed a buffer at a time, blanked in place (``feed``)."""

    def __init__(
        self, parse: Parse, size: int, held: int, *, blank: bool = True, went: bytes = b""
    ) -> None:
        """``parse``: the codec's stream; ``held``: a text unit is read on this far at most.

        ``blank``: change the buffers; else find the headers only (``verify``). ``went``:
        the stream's first bytes, gone already (less than a packet).
        """
        self._parse, self._size, self._held, self._blank = parse, size, held, blank
        self._lead = TIME_CODE if size == PACKET_SIZES[1] else 0
        self._cut = went  # the packet the last buffer ended in: its bytes there
        self._cut_fed = False  # its video bytes there were parsed with the last buffer
        self._video: dict[int, list[Piece]] = {}  # video PID: its stream's bytes not parsed
        self._pending: dict[int, int] = {}  # video PID: how many bytes those are
        self._other: set[int] = set()  # PIDs of other PES streams: audio, data
        self._tables: set[int] = set()  # PIDs of sections: searched
        self._seen: set[bytes] = set()  # table payloads searched already
        self._buf: bytearray | memoryview = bytearray()
        self._blanks: list[Blank] = []
        self._found: list[bytes] = []

    def feed(self, buf: bytearray | memoryview) -> tuple[list[Blank], list[bytes]]:
        """Blank ``buf`` in place; the blanks, and the header bytes to search (as they went)."""
        self._buf, self._blanks, self._found = buf, [], []
        pos = 0
        if self._cut:
            kept = len(self._cut)
            pos = min(self._size - kept, len(buf))
            joined = self._cut + bytes(buf[:pos])
            self._packet(joined, 0, kept, whole=len(joined) == self._size)
            if len(joined) == self._size:
                self._cut, self._cut_fed = b"", False
            else:
                self._cut = joined
        while pos < len(buf):
            at = self._synced(buf, pos)
            if at > pos:  # bytes no packet holds: searched as they are
                self._found.append(bytes(buf[pos:at]))
            pos = at
            if pos + self._size > len(buf):
                break
            self._packet(buf, pos, 0)
            pos += self._size
        if pos < len(buf):  # a packet cut: read as far as it goes, and whole with the next
            self._cut = bytes(buf[pos:])  # as it came: its header may become a null packet's
            self._packet(buf, pos, 0, whole=False)
        for pid in list(self._video):
            self._parse_video(pid)
        for pid, pieces in self._video.items():  # this buffer's bytes, as they went
            self._video[pid] = [
                (bytes(buf[a:z]), 0, z - a) if src is None else (src, a, z) for src, a, z in pieces
            ]
        return self._blanks, self._found

    def _synced(self, buf: bytearray | memoryview, pos: int) -> int:
        """``pos``, or where the next packet lies if none begins there (damage, padding).

        A packet begins at a sync byte with another a packet on (or the buffer's end).
        """
        size, lead = self._size, self._lead
        while pos + lead < len(buf):
            after = pos + lead + size
            if buf[pos + lead] == SYNC and (after >= len(buf) or buf[after] == SYNC):
                return pos
            at = bytes(buf[pos + lead + 1 : pos + lead + 1 + WINDOW]).find(SYNC_BYTE)
            pos += WINDOW if at < 0 else 1 + at
        return min(pos, len(buf))  # bytes too few to tell: a packet's, cut, maybe

    def _packet(
        self, b: bytes | bytearray | memoryview, at: int, kept: int, *, whole: bool = True
    ) -> None:
        """The packet at ``at`` of ``b``: its first ``kept`` bytes went with the last buffer.

        ``b`` is this buffer (``kept`` 0) or a packet joined from both (its bytes from
        ``kept`` on are this buffer's, from its start). Not ``whole``: the packet is cut at
        ``b``'s end.
        """
        end = min(at + self._size, len(b))
        at += self._lead
        if end - at < HEADER or b[at] != SYNC:
            if whole:  # no packet (a joined one, out of step): searched as it is
                self._found.append(bytes(b[at - self._lead : end]))
            return
        pid = (b[at + 1] & 0x1F) << 8 | b[at + 2]
        if pid in SERVICE_INFO and self._blank:
            self._blank_at(kept, at + 1, at + 2, b"\x1f")  # PID 1FFF, flags off
            self._blank_at(kept, at + 2, at + 3, b"\xff")
            self._blank_at(kept, at + HEADER, end, ZERO)
            return
        if pid == NULL_PID:
            return
        start = at + HEADER
        if b[at + 3] & 0x20 and start < end:  # an adaptation field
            start = min(end, start + 1 + b[start])
            self._private(b, kept, at + HEADER, start)
        if not b[at + 3] & 0x10 or start >= end:  # no payload
            return
        if pid in SERVICE_INFO:  # finding only: searched as it is
            if whole:
                self._table(bytes(b[start:end]))
            return
        self._payload(b, kept, pid, start, end, unit_start=bool(b[at + 1] & 0x40), cut=not whole)

    def _private(self, b: bytes | bytearray | memoryview, kept: int, at: int, end: int) -> None:
        """Zero the private data of the adaptation field from ``at`` (its length) to ``end``."""
        if end - at < 2:  # noqa: PLR2004 - its length and its flags
            return
        flags, p = b[at + 1], at + 2
        p += CLOCK * (bool(flags & PCR) + bool(flags & OPCR)) + bool(flags & SPLICE)
        if flags & PRIVATE and p < end:
            if self._blank:
                self._blank_at(kept, p + 1, min(end, p + 1 + b[p]), ZERO)
            else:
                self._table(bytes(b[p + 1 : min(end, p + 1 + b[p])]))

    def _payload(
        self,
        b: bytes | bytearray | memoryview,
        kept: int,
        pid: int,
        start: int,
        end: int,
        *,
        unit_start: bool,
        cut: bool = False,
    ) -> None:
        """A packet's payload: a video stream's bytes, a table's, or another stream's.

        ``cut``: the packet is cut at ``b``'s end. Its video bytes there are parsed with this
        buffer (``_cut_fed``), and its joined packet's not again.
        """
        if unit_start:
            if cut and (end - start < PES_HEADER or start + PES_HEADER + b[start + 8] > end):
                return  # its PES header is not whole yet: read with the next buffer
            if bytes(b[start : start + 3]) != START_CODE:
                self._tables.add(pid)
            elif start + PES_HEADER <= end and b[start + 3] in VIDEO_STREAMS:
                self._video.setdefault(pid, [])
                start = min(end, start + PES_HEADER + b[start + PES_HEADER - 1])
            else:
                self._other.add(pid)
                self._video.pop(pid, None)
        if pid in self._video:
            pieces = self._video[pid]
            if kept > start and not self._cut_fed:
                pieces.append((bytes(b[start : min(kept, end)]), 0, min(kept, end) - start))
                self._pending[pid] = self._pending.get(pid, 0) + min(kept, end) - start
            if end > kept:
                pieces.append((None, max(start, kept) - kept, end - kept))
                self._pending[pid] = self._pending.get(pid, 0) + end - max(start, kept)
            self._cut_fed = self._cut_fed or cut
            if self._pending[pid] >= WINDOW:
                self._parse_video(pid)
        elif pid in self._tables and not cut:
            self._table(bytes(b[start:end]))

    def _table(self, payload: bytes) -> None:
        """Search a table's bytes (the same bytes once: tables are sent again and again)."""
        if payload not in self._seen:
            self._found.append(payload)
            if len(self._seen) < SEEN:
                self._seen.add(payload)

    def _parse_video(self, pid: int) -> None:
        """Parse a PID's video bytes so far; keep what the next must read on from.

        The unit they end in is blanked as far as it goes, and kept to be read again with
        what follows if it holds text (or its kind is not known yet).
        """
        pieces = self._video[pid]
        stream = self._joined(pieces)
        blanks, regions = self._parse(stream)
        for a, z, fill in blanks:
            self._blank_pieces(pieces, a, z, fill)
        if blanks and self._blank:
            stream = self._joined(pieces)
        self._found += [stream[a:z] for a, z in regions]
        keep = len(stream) - 2  # the start of a start code, maybe
        last = stream.rfind(START_CODE)
        text = bool(regions) and regions[-1] == (last + len(START_CODE), len(stream))
        unknown = len(stream) - last <= len(START_CODE) + 1
        if last >= 0 and (text or unknown) and len(stream) - last <= self._held:
            keep = last
        self._video[pid] = self._tail(pieces, max(0, keep))
        self._pending[pid] = len(stream) - max(0, keep)

    def _joined(self, pieces: list[Piece]) -> bytes:
        return b"".join(bytes(self._buf[a:z]) if src is None else src[a:z] for src, a, z in pieces)

    def _blank_pieces(self, pieces: list[Piece], a: int, z: int, fill: bytes) -> None:
        """Blank the stream's bytes ``a`` to ``z`` where they are this buffer's."""
        offset = 0
        for src, start, end in pieces:
            lo, hi = max(a, offset), min(z, offset + end - start)
            if lo < hi and src is None:
                self._blank_at(0, start + lo - offset, start + hi - offset, fill)
            offset += end - start

    @staticmethod
    def _tail(pieces: list[Piece], keep: int) -> list[Piece]:
        """The pieces from the stream's byte ``keep`` on."""
        out: list[Piece] = []
        offset = 0
        for src, start, end in pieces:
            if offset + end - start > keep:
                out.append((src, start + max(0, keep - offset), end))
            offset += end - start
        return out

    def _blank_at(self, kept: int, a: int, z: int, fill: bytes) -> None:
        """Fill a packet's bytes ``a`` to ``z`` where they are this buffer's (from ``kept`` on)."""
        a, z = max(a, kept) - kept, z - kept
        if z <= a or bytes(self._buf[a:z]) == fill * (z - a):
            return
        self._blanks.append((a, z, fill))
        if self._blank:
            self._buf[a:z] = fill * (z - a)
