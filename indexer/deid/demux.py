"""Video in an MPEG-2 systems stream, demultiplexed a buffer at a time: the shared part.

A transport stream (``mpegts``) and a program stream (``mpegps``) carry their video in PES
packets, among packets of other kinds. The payloads of a video stream's packets are joined into
the codec's stream and parsed as one (``parse``, given by ``frames``); what it blanks is blanked
in the packets it lies in. The payloads of a data stream's packets (``DATA_STREAMS``: metadata,
captions) are zeroed, or searched where the stream is only read. A stream is fed a buffer at a
time (``Demux.feed``): a streamed object's fragments, or the whole of a held one. A packet cut
by a buffer's end is read whole with the next; a unit searched (``video.parse``: any but a
picture's data) is read on into the next. Bytes of an earlier buffer are never changed (they
went as they were), but are searched as they went, as are the units searched, the tables a
stream's subclass finds, and bytes that are no packet (those a buffer ends in, with the next's
after them: a value its end cuts is found).
"""

from __future__ import annotations

from itertools import accumulate

from indexer.deid import mp4
from indexer.deid.blanks import Blank, in_pieces
from indexer.deid.video import START_CODE, Resume, held_unit, parse_from

Piece = tuple[bytes | None, int, int]  # bytes of an earlier buffer (None: this one's), start, end

VIDEO_STREAMS = range(0xE0, 0xF0)  # PES stream ids of video
PRIVATE_1, PADDING = 0xBD, 0xBE
# PES streams of data, which no player needs to show the video or play its sound: private
# stream 2 (a DVD's navigation), conditional access (ECM, EMM), DSM-CC, MHEG, H.222.1's,
# ancillary data (captions, timecode), SL and FlexMux, metadata (ID3, KLV), reserved. Their
# payloads are zeroed; private stream 1 (audio, subtitles, metadata) too, but where the
# transport stream's program map table says it holds audio (``mpegts``)
DATA_STREAMS = frozenset({0xBF, *range(0xF0, 0xFD), 0xFE})
# stream ids whose PES packets have no header past their length: their payload follows it
PLAIN = frozenset({0xBC, PADDING, 0xBF, 0xF0, 0xF1, 0xF2, 0xF8, 0xFF})
PES_HEAD = 6  # start code, stream id, length
ZERO = b"\x00"
WINDOW = 1 << 20  # a stream's video bytes parsed (a data stream's searched) this much at a time
DATA_BEHIND = 4096  # a data stream's last bytes searched, searched again with its next
SEEN = 4096  # table payloads remembered as searched
PEEK = 32  # bytes enough to tell a packet's length by
AHEAD = 1024  # bytes enough to see the next two packets' starts past one cut (``feed``)


class Demux:
    """A stream fed a buffer at a time, blanked in place (``feed``); its packets' kind.

    A subclass tells where a packet begins (``_synced``), how long it is (``_length``), and
    reads it (``_packet``), handing its video bytes to ``_add_video``.
    """

    def __init__(
        self, codec: str, *, blank: bool = True, went: bytes = b"", keep: bool = True
    ) -> None:
        """``codec``: the video streams' (``video.parse_from`` reads them).

        ``blank``: change the buffers; else find the headers only (``verify``). ``went``:
        the stream's first bytes, gone already (less than a packet). Not ``keep``: the
        blanks and the header bytes found are let go as the stream is read, counted only
        (``blanked``; a held stream's: a whole one dense with text has hundreds of thousands).
        """
        self._codec, self._blank, self._keep = codec, blank, keep
        self.blanked = 0  # blanks made, in every buffer
        self._cut = went  # the packet the last buffer ended in: its bytes there
        self._cut_fed = False  # its video bytes there were parsed with the last buffer
        self._cut_unsure = False  # it may be none (``_unsure``): searched as it went, too
        self._unsure = False  # the packet ``_synced`` found past damage may be none (cut)
        self._video: dict[int, list[Piece]] = {}  # a video stream: its bytes not parsed
        self._pending: dict[int, int] = {}  # a video stream: how many bytes those are
        self._resume: dict[int, Resume] = {}  # a video stream: where its text unit's read goes on
        self._seen: set[bytes] = set()  # table payloads searched already
        self._data_new: dict[int, bytearray] = {}  # a data stream's bytes not searched (verify)
        self._data_tail: dict[int, bytes] = {}  # its last bytes searched
        self._junk = b""  # the last bytes no packet holds, if no packet came after them
        self._buf: bytearray | memoryview = bytearray()
        self._blanks: list[Blank] = []
        self._found: list[bytes] = []

    def feed(self, buf: bytearray | memoryview) -> tuple[list[Blank], list[bytes]]:
        """Blank ``buf`` in place; the blanks, and the header bytes to search (as they went)."""
        self._buf, self._blanks, self._found = buf, [], []
        pos = 0
        at = self._synced(self._cut + bytes(buf[:AHEAD]), 0) if self._cut else 0
        if self._cut_unsure:  # read as a packet, maybe none: what went is searched as it went
            self._found.append(self._junk + self._cut)
            self._cut_unsure = False
        if at:
            # the bytes the last buffer ended in (too few to tell) begin no packet, all or
            # up to one: searched as bytes no packet holds (a packet taken to begin there
            # swallowed those after it, read as none, neither blanked nor searched)
            self._junk += self._cut[:at]
            self._found.append(self._junk)
            self._cut, self._cut_fed = self._cut[at:], False
        if self._cut:
            kept = len(self._cut)
            size = self._length(self._cut + bytes(buf[:PEEK]), 0)
            size = None if size is None else max(size, kept)
            pos = len(buf) if size is None else min(size - kept, len(buf))
            joined = self._cut + bytes(buf[:pos])
            whole = size is not None and len(joined) == size
            self._packet(joined, 0, kept, whole=whole)
            if whole:
                self._cut, self._cut_fed = b"", False
            else:
                self._cut = joined
        junk, self._junk = self._junk, b""
        while pos < len(buf):
            at = self._synced(buf, pos)
            if at > pos:  # bytes no packet holds: searched as they are, after those before
                part = (junk if pos == 0 else b"") + bytes(buf[pos:at])
                self._found.append(part)
                # they may go on into the next buffer (past the bytes it ends in, too few
                # to tell a packet by)
                self._junk = part[-mp4.SEARCH_BEHIND :]
            pos = at
            size = self._length(buf, pos)
            if size is None or pos + size > len(buf):
                break
            self._packet(buf, pos, 0)
            self._junk = b""
            pos += size
        if pos < len(buf):  # a packet cut: read as far as it goes, and whole with the next
            self._cut = bytes(buf[pos:])  # as it came: its header may become a null packet's
            self._cut_unsure = self._unsure
            self._packet(buf, pos, 0, whole=False)
        self._ended()
        self._let_go()
        return self._blanks, self._found

    def _ended(self) -> None:
        """The buffer read: each stream's video parsed, and its data searched, so far."""
        for pid in list(self._video):
            self._parse_video(pid)
        for stream in list(self._data_new):
            self._search_data(stream)
        for pid, pieces in self._video.items():  # this buffer's bytes, as they went
            self._video[pid] = [
                (bytes(self._buf[a:z]), 0, z - a) if src is None else (src, a, z)
                for src, a, z in pieces
            ]

    def _synced(self, buf: bytes | bytearray | memoryview, pos: int) -> int:
        """``pos``, or where the next packet lies if none begins there (damage, padding)."""
        raise NotImplementedError

    def _length(self, b: bytes | bytearray | memoryview, at: int) -> int | None:
        """The length of the packet at ``at``; None: too few bytes to tell."""
        raise NotImplementedError

    def _packet(
        self, b: bytes | bytearray | memoryview, at: int, kept: int, *, whole: bool = True
    ) -> None:
        """The packet at ``at`` of ``b``: its first ``kept`` bytes went with the last buffer.

        ``b`` is this buffer (``kept`` 0) or a packet joined from both (its bytes from
        ``kept`` on are this buffer's, from its start). Not ``whole``: the packet is cut at
        ``b``'s end.
        """
        raise NotImplementedError

    def _add_video(
        self,
        b: bytes | bytearray | memoryview,
        kept: int,
        pid: int,
        start: int,
        end: int,
        *,
        cut: bool,
    ) -> None:
        """A video stream's bytes ``start`` to ``end`` of a packet (``_packet``'s ``b``).

        ``cut``: the packet is cut at ``b``'s end. Its video bytes there are parsed with this
        buffer (``_cut_fed``), and its joined packet's not again.
        """
        pieces = self._video.setdefault(pid, [])
        if kept > start and not self._cut_fed:
            pieces.append((bytes(b[start : min(kept, end)]), 0, min(kept, end) - start))
            self._pending[pid] = self._pending.get(pid, 0) + min(kept, end) - start
        if end > kept:
            pieces.append((None, max(start, kept) - kept, end - kept))
            self._pending[pid] = self._pending.get(pid, 0) + end - max(start, kept)
        self._cut_fed = self._cut_fed or cut
        if self._pending[pid] >= WINDOW:
            self._parse_video(pid)

    def _data_payload(
        self,
        b: bytes | bytearray | memoryview,
        kept: int,
        stream: int,
        start: int,
        end: int,
        *,
        cut: bool,
    ) -> None:
        """A data stream's payload bytes ``start`` to ``end`` (of ``_packet``'s ``b``): zeroed.

        Found, not blanked (``verify``): the stream's payloads joined, searched a window at a
        time (and at the buffer's end) after its last ``DATA_BEHIND`` bytes searched, so a
        value a packet's end cuts is found; those of a packet cut at ``b``'s end searched as
        far as they go, and again whole with the next buffer's.
        """
        if self._blank:
            self._blank_at(kept, start, end, ZERO)
            return
        new = self._data_new.setdefault(stream, bytearray())
        if cut:
            self._found.append(self._data_tail.get(stream, b"") + bytes(new) + bytes(b[start:end]))
            return
        new += b[start:end]
        if len(new) >= WINDOW:
            self._search_data(stream)

    def _search_data(self, stream: int) -> None:
        """Search a data stream's bytes not searched yet, after its last ones searched."""
        joined = self._data_tail.get(stream, b"") + bytes(self._data_new.pop(stream))
        self._found.append(joined)
        self._data_tail[stream] = joined[-DATA_BEHIND:]

    def _end_video(self, key: int) -> None:
        """A video stream's PID (or id) carries another stream now: its bytes so far parsed.

        (Dropped unparsed, damage that made a PES header another stream's would have left
        the text in up to a window of the video's bytes neither blanked nor searched.)
        """
        if key in self._video:
            self._parse_video(key)
            del self._video[key]
            self._resume.pop(key, None)

    def _header(self, b: bytes | bytearray | memoryview, data: int, payload: int) -> None:
        """Search a PES header's data (``data`` to ``payload``) as it is.

        A damaged header data length takes in payload (an SEI unit), which demultiplexers
        pass over. Not the payload after it: its units may yet be blanked (a value the
        damaged length cuts in two is not found).
        """
        if payload > data:
            self._found.append(bytes(b[data:payload]))

    def _table(self, payload: bytes) -> None:
        """Search a table's bytes (the same bytes once: tables are sent again and again)."""
        if payload not in self._seen:
            self._found.append(payload)
            if len(self._seen) < SEEN:
                self._seen.add(payload)

    def _parse_video(self, pid: int) -> None:
        """Parse a PID's video bytes so far; keep what the next must read on from.

        The unit they end in is blanked as far as it goes. If it is searched, it is kept as
        a read on from where this one left needs it (``video.held_unit``: its header, its
        bytes from there or its last ``mp4.SEARCH_BEHIND``, searched again), whatever its
        length; if its kind is not known yet, whole. Regions a read on finds lie past what
        this one read: what is kept needs no blanking.
        """
        pieces = self._video[pid]
        stream = self._joined(pieces)
        blanks, regions, again = parse_from(stream, self._codec, self._resume.pop(pid, None))
        self._blank_pieces(pieces, blanks)
        if blanks and self._blank:
            stream = self._joined(pieces)
        self._found += [stream[a:z] for a, z in regions]
        last = stream.rfind(START_CODE)
        searched = bool(regions) and regions[-1] == (last + len(START_CODE), len(stream))
        if last >= 0 and len(stream) - last <= len(START_CODE) + 1:  # its kind not known yet
            self._video[pid] = self._tail(pieces, last)
        elif searched:
            moved = None if again is None else (again[0] - last, again[1])
            held, resume = held_unit(stream[last:], self._codec, moved, mp4.SEARCH_BEHIND)
            self._video[pid] = [(held, 0, len(held))]
            if resume is not None:
                self._resume[pid] = resume
        else:  # the start of a start code, maybe
            self._video[pid] = self._tail(pieces, max(0, len(stream) - 2))
        self._pending[pid] = sum(end - start for _src, start, end in self._video[pid])
        self._let_go()

    def _let_go(self) -> None:
        """Not ``keep``: the blanks and header bytes found so far let go."""
        if not self._keep:
            self._blanks.clear()
            self._found.clear()

    def _joined(self, pieces: list[Piece]) -> bytes:
        return b"".join(bytes(self._buf[a:z]) if src is None else src[a:z] for src, a, z in pieces)

    def _blank_pieces(self, pieces: list[Piece], blanks: list[Blank]) -> None:
        """Blank the stream's bytes of each of ``blanks`` where they are this buffer's."""
        starts = list(accumulate((end - start for _src, start, end in pieces), initial=0))
        for a, z, fill in blanks:
            for i, lo, hi in in_pieces(starts, a, z):
                src, start, _end = pieces[i]
                if src is None:
                    self._blank_at(0, start + lo - starts[i], start + hi - starts[i], fill)

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
        self.blanked += 1
        if self._blank:
            self._buf[a:z] = fill * (z - a)
