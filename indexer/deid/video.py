"""Video streams of start codes (MPEG-2, H.264 and HEVC): their user data found and blanked.

The transfer syntax names the codec (``video_codec``). The units after start codes (00 00 01)
are walked (``units``); MPEG-2 user data and the user data SEI messages of H.264 and HEVC
(registered: captions; unregistered: an encoder's settings, a recorder's text, after their
UUID) have each byte that is not zero made a space, so that no start code and no escape byte
changes (``parse``). Containers come to this as a stream: ``mp4`` its tracks' samples,
``demux`` its PES packets' payloads.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from pydicom.dataset import Dataset

from indexer.deid.blanks import UUID_BYTES, Blank, Region, spaces

# video, by transfer syntax: the units after start codes (00 00 01) hold the headers
MPEG2, H264, HEVC = "mpeg2", "h264", "hevc"
_VIDEO_ROOT = "1.2.840.10008.1.2.4."
VIDEO = {
    **{f"{_VIDEO_ROOT}{n}{tail}": MPEG2 for n in (100, 101) for tail in ("", ".1")},
    **{f"{_VIDEO_ROOT}{n}{tail}": H264 for n in range(102, 107) for tail in ("", ".1")},
    **{f"{_VIDEO_ROOT}{n}": HEVC for n in (107, 108)},
}
START_CODE = b"\x00\x00\x01"
MPEG2_USER_DATA = 0xB2
H264_SEI, HEVC_SEI = 6, (39, 40)  # NAL unit types (HEVC: prefix and suffix SEI)
# SEI payload types: user data registered (ITU-T T.35: captions), unregistered (UUID, text)
SEI_REGISTERED, SEI_UNREGISTERED = 4, 5
FIND_BYTES = 1 << 20  # a memoryview (a fragment mapped from disk) is searched this much at a time


def video_codec(ds: Dataset) -> str | None:
    """MPEG2, H264 or HEVC where the transfer syntax of ``ds`` is a video one, else None."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return VIDEO.get(str(ts)) if ts is not None else None


def parse(b: bytes | bytearray | memoryview, codec: str) -> tuple[list[Blank], list[Region]]:
    """MPEG-2 user data, or H.264 and HEVC user data SEI messages; the units holding them."""
    blanks: list[Blank] = []
    regions: list[Region] = []
    for start, end in units(b):
        if start >= end:  # a start code at the very end, or two in a row
            continue
        if codec == MPEG2:
            if b[start] == MPEG2_USER_DATA:
                blanks += spaces(b, [(start + 1, end)])
                regions.append((start, end))
            continue
        if header := sei_header(codec, b[start]):
            blanks += spaces(b, sei_user_data(b, start + header, end))
            regions.append((start, end))
    return blanks, regions


def sei_header(codec: str, first: int) -> int:
    """The length of an SEI NAL unit's header, by the unit's first byte; 0: another unit."""
    if codec == H264:
        return 1 if first & 0x1F == H264_SEI else 0
    return 2 if (first >> 1) & 0x3F in HEVC_SEI else 0


def units(b: bytes | bytearray | memoryview) -> Iterator[Region]:
    """(start, end) of each unit after a start code: its first byte on, to the next one."""
    starts = start_codes(b)
    at = next(starts, -1)
    while at >= 0:
        start = at + len(START_CODE)
        at = next(starts, -1)
        yield start, len(b) if at < 0 else at


def start_codes(b: bytes | bytearray | memoryview) -> Iterator[int]:
    """Where each start code lies, in order (two never overlap: a code's third byte is 01).

    A memoryview (a fragment mapped from disk) is read once, a window at a time, the windows
    overlapping by a start code less one byte.
    """
    if not isinstance(b, memoryview):
        at = b.find(START_CODE)
        while at >= 0:
            yield at
            at = b.find(START_CODE, at + len(START_CODE))
        return
    for base in range(0, len(b), FIND_BYTES):
        window = bytes(b[base : base + FIND_BYTES + len(START_CODE) - 1])
        at = window.find(START_CODE)
        while 0 <= at < FIND_BYTES:  # one starting further on is the next window's
            yield base + at
            at = window.find(START_CODE, at + len(START_CODE))


def sei_user_data(b: bytes | bytearray | memoryview, start: int, end: int) -> list[Region]:
    """Where, in the NAL unit's bytes ``start`` to ``end``, its user data payloads lie.

    Read as the payload bytes (RBSP): an emulation prevention byte (03 after 00 00) is no
    payload byte. Each region is given in the unit's own bytes, split at those.
    """
    raw = bytes(b[start:end])
    pieces: list[bytes] = []
    moved: list[int] = []  # each escape byte's: where the payload byte after it lies
    at = 0
    while (escape := raw.find(b"\x00\x00\x03", at)) >= 0:
        pieces.append(raw[at : escape + 2])
        moved.append(escape + 2 - len(moved))
        at = escape + 3
    pieces.append(raw[at:])
    payload = b"".join(pieces)
    found: list[Region] = []
    i, n = 0, len(payload)
    # the stop bit's byte (zeros after it): a message from there on would hold nothing
    last = len(payload.rstrip(b"\x00")) - 1
    while i < last:
        kind, i = _sei_number(payload, i)
        size, i = _sei_number(payload, i)
        first = i + (UUID_BYTES if kind == SEI_UNREGISTERED else 0)
        if kind in (SEI_REGISTERED, SEI_UNREGISTERED):
            found += _in_unit(start, first, min(i + size, n), moved)
        i += size
    return found


def _in_unit(start: int, a: int, z: int, moved: list[int]) -> list[Region]:
    """Payload bytes ``a`` to ``z``, where they lie in the unit at ``start``.

    Split at its escape bytes (``moved``: where the payload byte after each lies, ascending).
    """
    found: list[Region] = []
    k = bisect.bisect_right(moved, a)  # escape bytes before payload byte a
    while a < z:
        stop = min(moved[k] if k < len(moved) else z, z)
        found.append((start + a + k, start + stop + k))
        a, k = stop, k + 1
    return found


def _sei_number(payload: bytes, i: int) -> tuple[int, int]:
    """An SEI message's payload type or size (bytes of 255 summed, then the last), and after."""
    value = 0
    while i < len(payload) and payload[i] == 0xFF:  # noqa: PLR2004
        value += 0xFF
        i += 1
    return (value + payload[i], i + 1) if i < len(payload) else (value, i)


def byte_stream(head: bytes | bytearray | memoryview) -> bool:
    """Whether video beginning with ``head`` is a stream of start codes and units.

    As H.264 and HEVC (Annex B) and MPEG-2 video are: zero bytes, then 01. Video wrapped in a
    container is not (an MP4 file's boxes, a transport stream's packets): a start code's
    bytes there are chance (a box's size), and its units' bytes are not the stream's.
    """
    first = bytes(head[:64])
    zeros = len(first) - len(first.lstrip(b"\x00"))
    return zeros >= 2 and first[zeros : zeros + 1] == b"\x01"  # noqa: PLR2004 - 00 00 01
