"""Video streams of start codes (MPEG-2, H.264 and HEVC): their user data found and blanked.

The transfer syntax names the codec (``video_codec``). The units after start codes (00 00 01)
are walked (``units``); MPEG-2 user data and the user data SEI messages of H.264 and HEVC
(registered: captions; unregistered: an encoder's settings, a recorder's text, after their
UUID), and HEVC's messages with text among their fields (overlay names, region labels), have
each byte that is not zero made a space, so that no start code and no escape byte changes
(``parse``); those that other messages nest are found by reading the nesting ones'
headers. Containers come to this as a stream: ``mp4`` its tracks' samples, ``demux`` its PES
packets' payloads.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

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
HEVC_REGIONAL_NESTING = 157  # its messages each after the regions they apply to
# messages with text among their fields, blanked whole: HEVC's overlay information (its
# overlays' and their elements' names, their language) and annotated regions (their labels)
SEI_TEXT = {HEVC: frozenset({166, 202})}
FIND_BYTES = 1 << 20  # a memoryview (a fragment mapped from disk) is searched this much at a time
_Messages = tuple[int, int, int | None]  # first byte, end; the nesting message's type, or None


def video_codec(ds: Dataset) -> str | None:
    """MPEG2, H264 or HEVC where the transfer syntax of ``ds`` is a video one, else None."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return VIDEO.get(str(ts)) if ts is not None else None


def parse(b: bytes | bytearray | memoryview, codec: str) -> tuple[list[Blank], list[Region]]:
    """MPEG-2 user data, or H.264 and HEVC user data SEI messages; the units holding them."""
    blanks, regions, _again = parse_from(b, codec)
    return blanks, regions


def parse_from(
    b: bytes | bytearray | memoryview, codec: str, resume: int = 0
) -> tuple[list[Blank], list[Region], int]:
    """As ``parse``; the SEI unit ``resume`` lies in read from there (``sei_user_data``).

    Also where a parse of more of the last SEI unit's bytes may resume (0: none).
    """
    blanks: list[Blank] = []
    regions: list[Region] = []
    again = 0
    for start, end in units(b):
        if start >= end:  # a start code at the very end, or two in a row
            continue
        if codec == MPEG2:
            if b[start] == MPEG2_USER_DATA:
                blanks += spaces(b, [(start + 1, end)])
                regions.append((start, end))
            continue
        if header := sei_header(codec, b[start]):
            at = resume if start <= resume < end else 0
            found, again = sei_user_data_from(b, start + header, end, codec, at)
            blanks += spaces(b, found)
            regions.append((start, end))
    return blanks, regions, again


def holds_text(b: bytes | bytearray | memoryview, codec: str) -> bool:
    """Whether the last unit in ``b`` is one ``parse`` reads: MPEG-2 user data, or SEI."""
    start = -1
    for start, end in units(b):  # noqa: B007 - the last one
        pass
    if start < 0 or start >= len(b):
        return False
    if codec == MPEG2:
        return b[start] == MPEG2_USER_DATA
    return bool(sei_header(codec, b[start]))


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


def sei_user_data(
    b: bytes | bytearray | memoryview, start: int, end: int, codec: str
) -> list[Region]:
    """Where, in the NAL unit's bytes ``start`` to ``end``, its user data payloads lie.

    Read as the payload bytes (RBSP): an emulation prevention byte (03 after 00 00) is no
    payload byte. Each region is given in the unit's own bytes, split at those.
    """
    return sei_user_data_from(b, start, end, codec)[0]


def sei_user_data_from(
    b: bytes | bytearray | memoryview, start: int, end: int, codec: str, resume: int = 0
) -> tuple[list[Region], int]:
    """As ``sei_user_data``, its messages read from ``resume`` on, if past ``start``.

    A unit cut short (by a fragment's end) is read again with more of its bytes; ``resume``
    is where the last read gave (the first byte of the last message of the unit's own that
    it began to read), so each read reads what it had not, and one message again: read
    whole each time, a unit of tiny messages cut by many fragments took time quadratic in
    its size. What lies before it was read, and went. The escape bytes from it on are those
    a read from ``start`` finds: no escape byte's zeros lie before it, but in the two bytes
    before it, read with it (``resume`` is a payload byte, never an escape byte).
    """
    begin = max(start, resume - 2)
    raw = bytes(b[begin:end])
    pieces: list[bytes] = []
    moved: list[int] = []  # each escape byte's: where the payload byte after it lies
    at = 0
    while (escape := raw.find(b"\x00\x00\x03", at)) >= 0:
        pieces.append(raw[at : escape + 2])
        moved.append(escape + 2 - len(moved))
        at = escape + 3
    pieces.append(raw[at:])
    found, mark = _user_data(b"".join(pieces), codec, max(resume, start) - begin)
    regions = [region for a, z in found for region in _in_unit(begin, a, z, moved)]
    return regions, begin + mark + bisect.bisect_right(moved, mark)


def _user_data(payload: bytes, codec: str, at: int = 0) -> tuple[list[Region], int]:
    """Where, in an SEI unit's payload bytes, user data lies, in messages others nest too.

    The unit's messages are read to its stop bit; a message that nests others (``NESTING``,
    by payload type) has its header read, then its messages, before the unit's next one. A
    message with text among its fields (``SEI_TEXT``) is user data whole. Read from payload
    byte ``at`` (a message's first); also where the last message of the unit's own that
    was begun begins.
    """
    nesting, text = NESTING.get(codec, {}), SEI_TEXT.get(codec, frozenset())
    found: list[Region] = []
    # the stop bit's byte (zeros after it): a message from there on would hold nothing
    todo: list[_Messages] = [(at, len(payload.rstrip(b"\x00")) - 1, None)]
    mark = at
    while todo:
        i, stop, kind = todo.pop()
        while i < min(stop, len(payload)):
            mark = i if kind is None else mark
            i, nested = _message(payload, i, stop, kind, found)
            if nested is None:
                continue
            what, first, end = nested
            if what in (SEI_REGISTERED, SEI_UNREGISTERED) or what in text:
                found.append((min(first, len(payload)), min(end, len(payload))))
            elif what in nesting:
                todo.append((end, stop, kind))  # the messages after it, once it is read
                todo += _nested(payload, first, end, what, nesting[what], found)
                break
    return found, mark


def _message(
    payload: bytes, i: int, stop: int, kind: int | None, found: list[Region]
) -> tuple[int, tuple[int, int, int] | None]:
    """The message at payload byte ``i``: where the next begins; its type, first byte, end.

    ``kind``: the type of the message nesting it (None: the unit's own). A nested message
    that does not fit in what nests it (its size, or the region list before it in a
    regional nesting), and what follows it there, are unreadable: added to ``found``
    whole, to be blanked. None for the message: nothing more to read before ``stop``.
    """
    if kind == HEVC_REGIONAL_NESTING:  # the regions it applies to: their count, their indices
        if i + 1 + payload[i] > stop:
            found.append((i + 1, min(stop, len(payload))))
            return stop, None
        i += 1 + payload[i]
    what, i = _sei_number(payload, i)
    size, i = _sei_number(payload, i)
    if i >= len(payload):  # its header cut short: nothing of it to read
        return stop, None
    if kind is not None and i + size > stop:
        found.append((i, min(stop, len(payload))))
        return stop, None
    first = i + (UUID_BYTES if what == SEI_UNREGISTERED else 0)
    return i + size, (what, first, i + size)


def _nested(
    payload: bytes,
    start: int,
    end: int,
    kind: int,
    header: Callable[[_Bits], None],
    found: list[Region],
) -> list[_Messages]:
    """The messages that the ``kind`` message from payload byte ``start`` to ``end`` nests.

    Its ``header`` is read first, and they begin at the byte after it. A header that runs
    past ``end`` cannot be read: the message is added to ``found`` whole. One the unit's
    end cuts is read no further.
    """
    bits = _Bits(payload, start, min(end, len(payload)))
    try:
        header(bits)
    except _Bad:
        found.append((start, min(end, len(payload))))
        return []
    except _Short:
        if end <= len(payload):
            found.append((start, end))
        return []
    return [(bits.after(), end, kind)]


class _Short(Exception):  # noqa: N818 - not an error: where a header's bits run out
    """A nesting message's header read past its end."""


class _Bad(_Short):
    """A nesting message's header with a number no stream holds (it cannot be read).

    An Exp-Golomb number of more than 32 bits, or a count over ``MOST_NESTED``: read on, a
    crafted header would take a loop a step a bit, millions of steps, with each read.
    """


MOST_NESTED = 1024  # operation points, tile sets: HEVC allows 1,024 operation points


class _Bits:
    """A nesting message's header, read as H.264 and HEVC read one: ``u(n)``, ``ue(v)``."""

    def __init__(self, payload: bytes, start: int, end: int) -> None:
        self._bytes, self._at, self._end = payload, start * 8, end * 8

    def u(self, count: int) -> int:
        """The next ``count`` bits, as an unsigned number."""
        first = self._at >> 3
        self.skip(count)
        stop = (self._at + 7) >> 3
        word = int.from_bytes(self._bytes[first:stop], "big")
        return (word >> ((stop << 3) - self._at)) & ((1 << count) - 1)

    def ue(self) -> int:
        """The next Exp-Golomb number: zeros, a one, as many bits as there were zeros."""
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:  # noqa: PLR2004 - the standards' numbers have 32 bits at most
                raise _Bad
        return (1 << zeros) - 1 + self.u(zeros)

    def count(self) -> int:
        """A count written less one (``ue(v)``), up to ``MOST_NESTED``."""
        if (count := self.ue() + 1) > MOST_NESTED:
            raise _Bad
        return count

    def skip(self, count: int) -> None:
        """Pass ``count`` bits; _Short where the header has fewer."""
        if self._at + count > self._end:
            raise _Short
        self._at += count

    def after(self) -> int:
        """The byte after the header: its bits read, to the next whole byte."""
        return (self._at + 7) >> 3


def _svc(bits: _Bits) -> None:
    """H.264's ``scalable_nesting`` (SVC): the layers it applies to, by their ids."""
    if not bits.u(1):  # all_layer_representations_in_au_flag
        bits.skip(7 * (bits.ue() + 1) + 3)  # dependency and quality ids; a temporal id


def _mvc(bits: _Bits) -> None:
    """H.264's ``mvc_scalable_nesting``: the views it applies to, by their ids."""
    if bits.u(1):  # operation_point_flag: view ids, then a temporal id
        bits.skip(10 * (bits.ue() + 1) + 3)
    elif not bits.u(1):  # all_view_components_in_au_flag
        bits.skip(10 * (bits.ue() + 1))


def _mvcd(bits: _Bits) -> None:
    """H.264's ``mvcd_scalable_nesting``: as MVC's, a flag or two with each view."""
    if bits.u(1):  # operation_point_flag
        texture_only = bits.u(1)
        bits.skip((10 if texture_only else 12) * (bits.ue() + 1) + 3)
    elif not bits.u(1):  # all_view_components_in_au_flag
        bits.skip(11 * (bits.ue() + 1))


def _hevc_scalable(bits: _Bits) -> None:
    """HEVC's ``scalable_nesting``: the operation points or the layers it applies to."""
    bits.skip(1)  # bitstream_subset_flag
    if bits.u(1):  # nesting_op_flag: each point's highest temporal id and index
        for _ in range(bits.u(1), bits.count()):
            bits.skip(3)
            bits.ue()
    elif not bits.u(1):  # all_layers_flag
        bits.skip(3)
        bits.skip(6 * (bits.ue() + 1))


def _hevc_regional(bits: _Bits) -> None:
    """HEVC's ``regional_nesting``: an id, rectangles, the messages' count (read to the end)."""
    bits.skip(16)
    bits.skip(72 * bits.u(8) + 8)


def _hevc_mcts(bits: _Bits) -> None:
    """HEVC's ``mcts_extraction_info_nesting``: the tile sets it applies to; a count."""
    if not bits.u(1):  # all_mcts_flag
        for _ in range(bits.count()):
            bits.ue()
    bits.ue()  # the messages' count (read to the end)


def _hevc_bsp(bits: _Bits) -> None:
    """HEVC's ``bsp_nesting`` (multi-layer): three indices, the messages' count."""
    for _ in range(4):
        bits.ue()


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


# SEI messages that nest others, by payload type: how each one's header is read
NESTING: dict[str, dict[int, Callable[[_Bits], None]]] = {
    H264: {30: _svc, 37: _mvc, 48: _mvcd},
    HEVC: {
        133: _hevc_scalable,
        HEVC_REGIONAL_NESTING: _hevc_regional,
        159: _hevc_mcts,
        162: _hevc_bsp,
    },
}
