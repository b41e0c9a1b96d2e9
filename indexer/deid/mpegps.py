"""Video in an MPEG program stream (ISO/IEC 13818-1, 11172-1): its user data blanked.

MPEG-2 video comes in a program stream (a ``.mpg`` file, as DVDs and recorders write it,
and as toolkits wrap it into DICOM), its packs beginning 00 00 01 BA. Read as a bare stream
of start codes, a user data unit would end at the next PES packet's header, and what it
holds past that header would be neither blanked nor searched. Here the payloads of the
video PES packets (stream ids E0 to EF; MPEG-2's headers and MPEG-1's) are joined into the
codec's stream, as ``demux`` does, so a unit cut by a packet's header is blanked whole.
Padding packets are searched, and so is the data of the video and data streams' PES headers
(a damaged header data length takes in payload, which demultiplexers pass over); data streams
(``demux.DATA_STREAMS``: private stream 2,
ancillary data, metadata...) have their payloads zeroed, and so have a DVD's subpictures
(private stream 1's substreams ``SUBPICTURES``: subtitles, menus' text, as pictures no search
can read) after their substream's id; audio (private stream 1's other substreams too) is
carried as it is.
"""

from __future__ import annotations

from indexer.deid.demux import (
    DATA_STREAMS,
    PADDING,
    PES_HEAD,
    PLAIN,
    PRIVATE_1,
    VIDEO_STREAMS,
    Demux,
)
from indexer.deid.video import START_CODE

PACK, END, SYSTEM = 0xBA, 0xB9, 0xBB  # a pack's header, the stream's end, a system header
FIRST_ID = END  # ids from here on are the stream's; below, the video's own start codes
PACK_START = START_CODE + bytes((PACK,))
MPEG2_PACK, MPEG1_PACK = 14, 12  # a pack header's bytes (MPEG-2's before its stuffing)
MPEG2_PES = 0x80  # the first flag byte's '10' of an MPEG-2 PES header
STUFFING = 0xFF
FIND_BYTES = 1 << 20  # searched at a time for the next packet
# private stream 1's substreams (the payload's first byte, in an MPEG-2 PES packet) of a
# DVD's subpictures; its others: AC-3, DTS and LPCM audio
SUBPICTURES = range(0x20, 0x40)


def is_program_stream(head: bytes | bytearray | memoryview) -> bool:
    """Whether video beginning with ``head`` is a program stream: a pack header first."""
    return bytes(head[:4]) == PACK_START


class PsDemux(Demux):
    """A program stream fed a buffer at a time, blanked in place (``feed``)."""

    def _synced(self, buf: bytes | bytearray | memoryview, pos: int) -> int:
        """``pos``, or the next start code of the stream's own (a pack, a packet, the end)."""
        while pos + 4 <= len(buf):
            if bytes(buf[pos : pos + 3]) == START_CODE and buf[pos + 3] >= FIRST_ID:
                return pos
            window = bytes(buf[pos + 1 : pos + 1 + FIND_BYTES])
            at = window.find(START_CODE)
            while at >= 0 and at + 3 < len(window) and window[at + 3] < FIRST_ID:
                at = window.find(START_CODE, at + 1)
            pos += 1 + at if at >= 0 else max(1, len(window) - 2)
        return min(pos, len(buf))  # bytes too few to tell: a packet's, cut, maybe

    def _length(self, b: bytes | bytearray | memoryview, at: int) -> int | None:
        if len(b) < at + PES_HEAD:
            return None
        kind = b[at + 3]
        if kind == END:
            return 4
        if kind != PACK:
            return PES_HEAD + (b[at + 4] << 8 | b[at + 5])
        if b[at + 4] >> 6 != 1:  # MPEG-1's pack header: '0010' first
            return MPEG1_PACK
        return MPEG2_PACK + (b[at + 13] & 7) if len(b) >= at + MPEG2_PACK else None

    def _packet(
        self, b: bytes | bytearray | memoryview, at: int, kept: int, *, whole: bool = True
    ) -> None:
        kind = b[at + 3] if len(b) > at + 3 else 0
        size = self._length(b, at)
        end = min(len(b), at + (size or 0))
        if kind == PADDING and whole:
            self._table(bytes(b[at + PES_HEAD : end]))
        if kind == PRIVATE_1 and size is not None:
            self._private_1(b, at, kept, end, whole=whole)
        if (kind not in VIDEO_STREAMS and kind not in DATA_STREAMS) or size is None:
            return
        plain = kind in PLAIN and at + PES_HEAD <= end
        start = at + PES_HEAD if plain else _payload_start(b, at + PES_HEAD, end)
        if start is None and kind in DATA_STREAMS and whole:  # a header that cannot be read
            start = min(end, at + PES_HEAD)
        if start is None and whole:  # a header longer than its packet (damage): searched
            start = end
        if start is None:  # its header not whole yet (cut): read with the next buffer
            return
        if not plain:  # its header data (a damaged length may take in payload)
            self._header(b, at + PES_HEAD, start)
        if kind in DATA_STREAMS:
            self._data_payload(b, kept, kind, start, end, cut=not whole)
        else:
            self._add_video(b, kept, kind, start, end, cut=not whole)

    def _private_1(
        self, b: bytes | bytearray | memoryview, at: int, kept: int, end: int, *, whole: bool
    ) -> None:
        """A packet of private stream 1 (``_packet``'s): a subpicture's zeroed after its id.

        Its substream is told by the payload's first byte (a cut packet's, once it is in
        ``b``: before it, the packet holds header bytes only). MPEG-1's packets are not a
        DVD's.
        """
        if at + PES_HEAD >= end or b[at + PES_HEAD] & 0xC0 != MPEG2_PES:
            return
        start = _payload_start(b, at + PES_HEAD, end)
        if start is not None and start < end and b[start] in SUBPICTURES:
            self._data_payload(b, kept, PRIVATE_1, start + 1, end, cut=not whole)


def _payload_start(b: bytes | bytearray | memoryview, at: int, end: int) -> int | None:
    """Where a PES packet's payload begins, its header from ``at``; None: not in ``b``.

    MPEG-2's header: two flag bytes, the header data's length, the data. MPEG-1's: stuffing
    bytes, a buffer size (two bytes, 01 first), then a PTS (five, 0010 first), a PTS and a
    DTS (ten, 0011 first) or none (0F).
    """
    if at >= end:
        return None
    if b[at] & 0xC0 == MPEG2_PES:
        return at + 3 + b[at + 2] if at + 3 <= end and at + 3 + b[at + 2] <= end else None
    while at < end and b[at] == STUFFING:
        at += 1
    if at < end and b[at] & 0xC0 == 0x40:  # noqa: PLR2004 - '01': the buffer's size
        at += 2
    if at >= end:
        return None
    marker = b[at] >> 4
    step = {2: 5, 3: 10}.get(marker, 1)
    return at + step if at + step <= end else None
