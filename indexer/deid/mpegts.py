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
- the private data of adaptation fields, zeroed; the bytes past their fields are stuffing
  (0xFF), searched where any is not (a damaged length takes in the payload after it); so
  are null packets' bytes (a damaged PID makes a video packet one).

The sections that stay (program association and program map tables, and any other table on
a PID of its own), the units holding user data, and bytes that are no packet (damage: the
next packet is the next sync byte with another a packet or two on) are searched by the leak
check.
Data streams have their PES payloads zeroed (``demux.DATA_STREAMS``: metadata, ancillary
data, private stream 2...; and private stream 1 but where a program map table names it
audio: AC-3, E-AC-3, AC-4, DTS, LPCM, TrueHD, Opus, SMPTE 302M; ``audio_pids``). Private
stream 1 holds metadata, KLV, teletext, subtitles, VBI captions, or a writer's own data as
well, so a stream that no table names audio (before the first table, or with none) is
zeroed. Audio and other PES streams are carried as they are, and not searched.

A stream is fed a buffer at a time (``demux.Demux.feed``).
"""

from __future__ import annotations

from indexer.deid.demux import (
    DATA_STREAMS,
    PES_HEAD,
    PLAIN,
    PRIVATE_1,
    VIDEO_STREAMS,
    ZERO,
    Demux,
)
from indexer.deid.video import START_CODE

SYNC = 0x47
SYNC_BYTE = bytes((SYNC,))
FIND_BYTES = 1 << 20  # searched at a time for the next sync byte
PACKET_SIZES = (188, 192, 204)  # plain; after a 4-byte time code (Blu-ray's M2TS); with FEC
TIME_CODE = 4  # the bytes before each packet's sync byte in a 192-byte one
HEADER = 4
NULL_PID = 0x1FFF
SERVICE_INFO = frozenset(range(0x10, 0x20)) | {0x1FFB}  # DVB SI; ATSC PSIP
PES_HEADER = 9  # start code, stream id, length, two flag bytes, the header data's length
# the lowest PES stream id (a program stream map's): a unit of a lower one (damage) is no
# packet that a demultiplexer reads, and is zeroed as a data stream's
LOWEST_STREAM = 0xBC
PCR, OPCR, SPLICE, PRIVATE = 0x10, 0x08, 0x04, 0x02  # adaptation field flags
CLOCK = 6  # a PCR's or OPCR's bytes
PMT_TABLE = 2  # a program map table's table id
SECTION_HEAD = 3  # table id, then the flags and the section's length (12 bits)
PMT_STREAMS = 12  # a program map table's bytes before its program descriptors' length's end
CRC = 4
PRIVATE_PES = 0x06  # stream type: private data in PES packets; its descriptors tell what
REGISTRATION = 0x05  # a descriptor naming the format by four letters
# stream types of audio in private stream 1: Blu-ray's LPCM, AC-3, DTS, TrueHD, E-AC-3,
# DTS-HD (high resolution, master), secondary E-AC-3 and DTS-HD; ATSC's AC-3 and E-AC-3
AUDIO_TYPES = frozenset({0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0xA1, 0xA2})
# descriptors of private PES streams that hold audio: DVB's AC-3, E-AC-3, DTS, AAC; ATSC's
# AC-3 and E-AC-3 audio descriptors
AUDIO_DESCRIPTORS = frozenset({0x6A, 0x7A, 0x7B, 0x7C, 0x81, 0xCC})
EXTENSION = 0x7F  # DVB's extension descriptor: the tag of what it holds first
AUDIO_EXTENSIONS = frozenset({0x0E, 0x15, 0x21})  # DTS-HD, AC-4, DTS-UHD
# registered formats of audio: AC-3, E-AC-3, AC-4, DTS (three frame sizes), SMPTE 302M,
# Opus, Dolby TrueHD
AUDIO_FORMATS = frozenset(
    {b"AC-3", b"EAC3", b"AC-4", b"DTS1", b"DTS2", b"DTS3", b"BSSD", b"Opus", b"mlpa"}
)


TS_HEAD = TIME_CODE + HEADER  # the bytes a transport stream is known by (``packet_size``)
PACKETS_SEEN = TIME_CODE + 4 * PACKET_SIZES[-1]  # the bytes ``packet_size`` looks at, at most


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


class TsDemux(Demux):
    """A transport stream fed a buffer at a time, blanked in place (``feed``)."""

    def __init__(
        self, codec: str, size: int, *, blank: bool = True, went: bytes = b"", keep: bool = True
    ) -> None:
        """As ``Demux``'s; ``size``: the stream's packet size (``packet_size``)."""
        super().__init__(codec, blank=blank, went=went, keep=keep)
        self._size = size
        self._lead = TIME_CODE if size == PACKET_SIZES[1] else 0
        self._tables: set[int] = set()  # PIDs of sections: searched
        self._data_pids: set[int] = set()  # PIDs of data streams: zeroed (``demux.DATA_STREAMS``)
        self._audio: set[int] = set()  # PIDs a program map table says hold audio (``audio_pids``)
        self._sections: dict[int, bytearray] = {}  # a table PID: the section it is in, so far

    def _length(self, b: bytes | bytearray | memoryview, at: int) -> int | None:  # noqa: ARG002
        return self._size

    def _synced(self, buf: bytes | bytearray | memoryview, pos: int) -> int:
        """``pos``, or where the next packet lies if none begins there (damage, padding).

        A packet begins at a sync byte with another a packet on, or two packets on: a packet
        whose next one's sync byte is damaged is still read as one (it was taken for bytes
        no packet holds, and searched only: its text not blanked, a service packet not made
        a null one). Where the buffer ends first, which cannot tell (``_followed``), a packet
        at ``pos`` (where the last one ended) is taken to begin there; one found past damage
        only if the buffer's end cuts it (checked with the next buffer's bytes,
        ``Demux.feed``; what of it went is searched then too, ``_unsure``): a chance sync
        byte in damage, read as a packet, would take the next packet's header into it, read
        as neither.
        """
        size, lead = self._size, self._lead
        at_pos, self._unsure = True, False
        while pos + lead < len(buf):
            after = pos + lead + size
            if buf[pos + lead] == SYNC and self._followed(buf, after, at_pos=at_pos):
                self._unsure = not at_pos and after > len(buf)
                return pos
            at = bytes(buf[pos + lead + 1 : pos + lead + 1 + FIND_BYTES]).find(SYNC_BYTE)
            pos += FIND_BYTES if at < 0 else 1 + at
            at_pos = False
        return min(pos, len(buf))  # bytes too few to tell: a packet's, cut, maybe

    def _followed(self, buf: bytes | bytearray | memoryview, after: int, *, at_pos: bool) -> bool:
        """Whether a packet ending at ``after`` has a sync byte there or a packet on.

        Where ``buf`` ends first: ``at_pos`` (the packet lies where the last one ended), or
        the packet is cut by the end.
        """
        if after >= len(buf):
            return at_pos or after > len(buf)
        if buf[after] == SYNC:
            return True
        if after + self._size >= len(buf):
            return at_pos
        return buf[after + self._size] == SYNC

    def _packet(
        self, b: bytes | bytearray | memoryview, at: int, kept: int, *, whole: bool = True
    ) -> None:
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
        if pid == NULL_PID:  # dropped by demultiplexers: searched unless all 0xFF or all zeros
            rest = bytes(b[at + HEADER : end])
            if rest.strip(b"\xff") and rest.strip(ZERO):
                self._found.append(rest)
            return
        start = at + HEADER
        if b[at + 3] & 0x20 and start < end:  # an adaptation field
            start = min(end, start + 1 + b[start])
            self._adaptation(b, kept, at + HEADER, start)
        if not b[at + 3] & 0x10 or start >= end:  # no payload
            return
        if pid in SERVICE_INFO:  # finding only: searched as it is
            if whole:
                self._table(bytes(b[start:end]))
            return
        self._payload(b, kept, pid, start, end, unit_start=bool(b[at + 1] & 0x40), cut=not whole)

    def _adaptation(self, b: bytes | bytearray | memoryview, kept: int, at: int, end: int) -> None:
        """The adaptation field from ``at`` (its length) to ``end``: its private data zeroed.

        The bytes past its fields (an extension's few, then stuffing: 0xFF) are searched
        where any is not 0xFF: a damaged length takes in the payload after it (a PES
        header, a title), which demultiplexers pass over as stuffing.
        """
        if end - at < 2:  # noqa: PLR2004 - its length and its flags
            return
        flags, p = b[at + 1], at + 2
        p += CLOCK * (bool(flags & PCR) + bool(flags & OPCR)) + bool(flags & SPLICE)
        if flags & PRIVATE and p < end:
            stop = min(end, p + 1 + b[p])
            if self._blank:
                self._blank_at(kept, p + 1, stop, ZERO)
            else:
                self._table(bytes(b[p + 1 : stop]))
            p = stop
        rest = bytes(b[p:end])
        if rest.strip(b"\xff"):
            self._found.append(rest)

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
        """A packet's payload: a video stream's bytes, a data stream's, a table's, another's."""
        if unit_start:
            if cut and _header_cut(b, start, end):
                return  # its PES header is not whole yet: read with the next buffer
            start = self._unit(b, pid, start, end)
        if pid in self._video:
            self._add_video(b, kept, pid, start, end, cut=cut)
        elif pid in self._data_pids:
            self._data_payload(b, kept, pid, start, end, cut=cut)
        elif pid in self._tables and not cut:
            payload = bytes(b[start:end])
            self._table(payload)
            self._section(pid, payload, unit_start=unit_start)

    def _unit(self, b: bytes | bytearray | memoryview, pid: int, start: int, end: int) -> int:
        """The kind of stream a unit's first packet says ``pid`` is; where its payload begins.

        A section's (a table's), or a PES packet's after its header: video, data (zeroed),
        or another's. A unit of a stream id no PES packet has (``LOWEST_STREAM``) is data.
        """
        self._data_pids.discard(pid)
        if bytes(b[start : start + 3]) != START_CODE:
            self._tables.add(pid)
            return start
        stream = b[start + 3] if end - start > len(START_CODE) else -1
        if start + PES_HEADER <= end and stream in VIDEO_STREAMS:
            self._video.setdefault(pid, [])
            return self._header_data(b, start, end)
        self._end_video(pid)
        if (
            stream in DATA_STREAMS
            or stream < LOWEST_STREAM
            or (stream == PRIVATE_1 and pid not in self._audio)
        ):
            self._data_pids.add(pid)
            if stream in PLAIN or end - start < PES_HEADER:  # (a header cut: zeroed too)
                return min(end, start + PES_HEAD)
            return self._header_data(b, start, end)
        return start  # another stream's: audio (private stream 1 named as audio too)

    def _header_data(self, b: bytes | bytearray | memoryview, start: int, end: int) -> int:
        """Where the payload of the PES packet at ``start`` begins; its header data searched.

        As it is (``Demux._header``): a damaged length may take in payload.
        """
        payload = min(end, start + PES_HEADER + b[start + PES_HEADER - 1])
        self._header(b, start + PES_HEADER, payload)
        return payload

    def _section(self, pid: int, payload: bytes, *, unit_start: bool) -> None:
        """A table's packet: a program map table's section gathered, read whole (``_audio``).

        Those of other tables are dropped at their table id. A section begins after its
        unit's pointer field; its length is 12 bits, so at most 4 kB is held a table PID.
        """
        if unit_start:
            self._sections[pid] = bytearray(payload[1 + payload[0] :] if payload else b"")
        elif pid in self._sections:
            self._sections[pid] += payload
        else:
            return
        section = self._sections[pid]
        if not section or section[0] != PMT_TABLE:
            del self._sections[pid]
        elif len(section) >= SECTION_HEAD:
            length = SECTION_HEAD + ((section[1] & 0x0F) << 8 | section[2])
            if len(section) >= length:
                del self._sections[pid]
                self._audio |= audio_pids(bytes(section[:length]))


def _header_cut(b: bytes | bytearray | memoryview, start: int, end: int) -> bool:
    """Whether a unit's first payload, ``start`` to ``end``, is cut in its PES header.

    (Or in a section's first bytes: a section is read from a whole packet only.) A header
    is its start code, stream id and length, and but for ``PLAIN`` streams' its flags,
    and its data's length and data.
    """
    if end - start <= PES_HEAD:
        return True
    if bytes(b[start : start + 3]) == START_CODE and b[start + 3] in PLAIN:
        return False
    return end - start < PES_HEADER or start + PES_HEADER + b[start + 8] > end


def audio_pids(section: bytes) -> set[int]:
    """The PIDs of private PES streams a program map table's section says hold audio.

    Those of an audio stream type (``AUDIO_TYPES``), and private data whose descriptors
    name an audio codec or format. The section is read as far as it is whole; a stream's
    entry that runs past it is not read.
    """
    found: set[int] = set()
    if len(section) < PMT_STREAMS:
        return found
    at = PMT_STREAMS + ((section[10] & 0x0F) << 8 | section[11])
    end = len(section) - CRC
    while at + 5 <= end:
        kind, pid = section[at], (section[at + 1] & 0x1F) << 8 | section[at + 2]
        size = (section[at + 3] & 0x0F) << 8 | section[at + 4]
        descriptors = section[at + 5 : min(end, at + 5 + size)]
        if kind in AUDIO_TYPES or (kind == PRIVATE_PES and _names_audio(descriptors)):
            found.add(pid)
        at += 5 + size
    return found


def _names_audio(descriptors: bytes) -> bool:
    """Whether a stream's descriptors name audio.

    A codec's descriptor (``AUDIO_DESCRIPTORS``, ``AUDIO_EXTENSIONS``), or a format's
    registration (``AUDIO_FORMATS``).
    """
    at = 0
    while at + 2 <= len(descriptors):
        tag, size = descriptors[at], descriptors[at + 1]
        body = descriptors[at + 2 : at + 2 + size]
        if (
            tag in AUDIO_DESCRIPTORS
            or (tag == REGISTRATION and body[:4] in AUDIO_FORMATS)
            or (tag == EXTENSION and body[:1] and body[0] in AUDIO_EXTENSIONS)
        ):
            return True
        at += 2 + size
    return False
