"""Video streams of start codes (MPEG-2, H.264 and HEVC): their user data found and blanked.

The transfer syntax names the codec (``video_codec``). The units after start codes (00 00 01)
are walked (``units``); MPEG-2 user data and the user data SEI messages of H.264 and HEVC
(registered: captions; unregistered: an encoder's settings, a recorder's text, after their
UUID), messages with text among their fields (HEVC's overlay names, region labels), and
messages of a payload type the codec does not define (no decoder reads them), have each
byte that is not zero made a space, so that no start code and no escape byte changes
(``parse``); those that other messages nest are found by reading the nesting ones'
headers. Every unit that is no coded picture data under a sound header is searched whole,
as a header is (``picture``). Containers come to this as a stream: ``mp4`` its tracks'
samples, ``demux`` its PES packets' payloads.
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
MPEG2_SLICES = range(0x01, 0xB0)  # start code values of slices: a picture's coded data
H264_SEI, HEVC_SEI = 6, (39, 40)  # NAL unit types (HEVC: prefix and suffix SEI)
# NAL unit types of coded slices (H.264: of a picture, an auxiliary one, an extension; HEVC:
# every type below 32, reserved ones too); FORBIDDEN: the bit set in no sound unit's header
H264_SLICES = frozenset({1, 2, 3, 4, 5, 19, 20, 21})
HEVC_SLICES = range(32)
FORBIDDEN = 0x80
TEMPORAL_ID = 0x07  # of an HEVC header's second byte: the temporal id plus 1, never 0
# SEI payload types: user data registered (ITU-T T.35: captions), unregistered (UUID, text)
SEI_REGISTERED, SEI_UNREGISTERED = 4, 5
HEVC_REGIONAL_NESTING = 157  # its messages each after the regions they apply to
# messages with text among their fields, or messages they hold unread, blanked whole in
# either codec (the family's payload types share one meaning): HEVC's overlay information
# (its overlays' and their elements' names, their language) and annotated regions (their
# labels); H.274's envelope of messages, neural-network post-filter (its URIs, its network)
# and processing order nesting
SEI_TEXT = frozenset({166, 202, 208, 210, 214})
# the payload types each codec defines (H.264 to its 2021 edition, H.265 to its 2021 one,
# and H.274's that both may carry, up to 214): a message of any other type, which no
# decoder reads (it skips a reserved one), is blanked whole
SEI_DEFINED = {
    H264: frozenset({*range(55), 56, 137, 142, 144, *range(147, 157), 181, *range(200, 215)}),
    HEVC: frozenset(
        {*range(7), 9, *range(15, 18), 19, 22, 23, 45, 47, 56}
        | {*range(128, 169), *range(176, 182), *range(200, 215)}
    ),
}
FIND_BYTES = 1 << 20  # a memoryview (a fragment mapped from disk) is searched this much at a time
# an SEI unit's read, where it stands: what is open there, the outermost first. Each frame:
# MESSAGES read up to a payload byte (None: the unit's stop bit), the type of the message
# nesting them (None: the unit's own); or a message's bytes up to one, KEPT or BLANKED
MESSAGES, KEPT, BLANKED = 0, 1, 2
Frame = tuple[int, int | None, int | None]
UNIT: tuple[Frame, ...] = ((MESSAGES, None, None),)
# where a read of a unit cut short goes on from (a byte of it), and the frames open there
# (their stops counted from it)
Resume = tuple[int, tuple[Frame, ...]]
MOST_FF = 1 << 20  # bytes of 255 in an SEI message's type or size: a number of over 267 MB


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
    b: bytes | bytearray | memoryview, codec: str, resume: Resume | None = None
) -> tuple[list[Blank], list[Region], Resume | None]:
    """As ``parse``; the SEI unit ``resume`` lies in read on from there (``sei_user_data``).

    Also where a read of more of the last SEI unit's bytes goes on from (None: none read).
    """
    blanks: list[Blank] = []
    regions: list[Region] = []
    again = None
    for start, end in units(b):
        if start >= end:  # a start code at the very end, or two in a row
            continue
        again = None
        if codec == MPEG2 and b[start] == MPEG2_USER_DATA:
            blanks += spaces(b, [(start + 1, end)])
        elif codec != MPEG2 and (header := sei_header(codec, b[start])):
            at = resume if resume is not None and start <= resume[0] <= end else None
            found, again = sei_user_data_from(b, start + header, end, codec, at)
            blanks += spaces(b, found)
        elif picture(codec, b[start], b[start + 1] if start + 1 < end else 1):
            continue
        regions.append((start, end))
    return blanks, regions, again


def searched(b: bytes | bytearray | memoryview, codec: str) -> bool:
    """Whether the last unit in ``b`` is one ``parse`` searches: any but a picture's data."""
    start = -1
    for start, end in units(b):  # noqa: B007 - the last one
        pass
    if not 0 <= start < len(b):
        return False
    return not picture(codec, b[start], b[start + 1] if start + 1 < len(b) else 1)


def picture(codec: str, first: int, second: int = 1) -> bool:
    """Whether a unit whose first byte is ``first`` is a coded picture's data.

    Not searched as a header is: only for values too long to lie there by chance, as all of
    the frames' bytes are (``frames.data_in``).

    An MPEG-2 slice; an H.264 or HEVC coded slice whose forbidden bit is not set, and in
    HEVC whose temporal id plus 1 (``second``, its header's second byte, where known) is not
    0. Any other unit is searched whole, as a header is: a parameter set, a delimiter, a
    type reserved or unspecified, or a unit whose header is damaged, all of which decoders
    pass over. So is the text of an SEI unit whose start code is damaged, which the unit
    before it holds.
    """
    if codec == MPEG2:
        return first in MPEG2_SLICES
    if first & FORBIDDEN:
        return False
    if codec == H264:
        return first & 0x1F in H264_SLICES
    return (first >> 1) & 0x3F in HEVC_SLICES and second & TEMPORAL_ID != 0


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
    b: bytes | bytearray | memoryview,
    start: int,
    end: int,
    codec: str,
    resume: Resume | None = None,
) -> tuple[list[Region], Resume]:
    """As ``sei_user_data``, read on from ``resume``, where a read of fewer of its bytes left.

    A unit cut short (by a fragment's end) is read on with more of its bytes: ``resume`` is
    a byte of the unit, and the frames open there (``_user_data``); what lies before it was
    read, and went. So each byte is read once; only a header the bytes cut (a message's type
    and size, bounded by ``MOST_FF``; a nesting header, by ``MOST_NESTED``) is read again
    from its message's start. (Read from a message's start each time, one message of
    megabytes, or a nesting message of many, cut by many fragments took time quadratic in
    its size.) The escape bytes from it on are those a read from ``start`` finds: the two
    bytes before it, read with it, hold the zeros of one at it. Also where a read of more
    of the unit's bytes goes on from.
    """
    at, frames = resume if resume is not None and resume[0] >= start else (start, UNIT)
    begin = max(start, at - 2)
    raw = bytes(b[begin:end])
    pieces: list[bytes] = []
    moved: list[int] = []  # each escape byte's: where the payload byte after it lies
    i = 0
    while (escape := raw.find(b"\x00\x00\x03", i)) >= 0:
        pieces.append(raw[i : escape + 2])
        moved.append(escape + 2 - len(moved))
        i = escape + 3
    pieces.append(raw[i:])
    found, mark, left = _user_data(b"".join(pieces), codec, at - begin, frames)
    regions = [region for a, z in found for region in _in_unit(begin, a, z, moved)]
    return regions, (begin + mark + bisect.bisect_right(moved, mark), left)


def trimmed(
    held: bytes, first: int, resume: Resume | None, behind: int
) -> tuple[bytes, Resume | None]:
    """A unit cut short, as a read of more of its bytes needs it held.

    ``held``: its bytes from before its header, its payload from ``first``. Kept: those up
    to ``first``; then from the two before ``resume`` (where a read goes on; None: its
    end), or its last ``behind`` bytes (searched again), whichever come first. Those
    between are dropped, and ``resume`` moved with the rest: a unit of megabytes that many
    fragments cut is held in kilobytes, not copied whole with each.
    """
    at = len(held) if resume is None else resume[0]
    keep = max(first, min(at - 2, len(held) - behind))
    if keep == first:
        return held, resume
    went = keep - first
    return held[:first] + held[keep:], None if resume is None else (at - went, resume[1])


def held_unit(
    held: bytes, codec: str, resume: Resume | None, behind: int
) -> tuple[bytes, Resume | None]:
    """A unit searched that a buffer's end cut, from its start code, as a read on needs it.

    Its start code and header, then its bytes from where ``resume`` says an SEI unit's read
    goes on (None: another unit's), or its last ``behind`` (``trimmed``). Its kind must be
    known (its header's first byte).
    """
    return trimmed(held, len(START_CODE) + header_bytes(codec), resume, behind)


def header_bytes(codec: str) -> int:
    """How many bytes a unit's header takes: HEVC's two, H.264's one (MPEG-2's start code)."""
    return 2 if codec == HEVC else 1


def _user_data(
    payload: bytes, codec: str, at: int, frames: tuple[Frame, ...]
) -> tuple[list[Region], int, tuple[Frame, ...]]:
    """Where, in an SEI unit's payload bytes, user data lies, in messages others nest too.

    Read from payload byte ``at`` in ``frames`` (the outermost first, their stops counted
    from ``at``). The unit's messages are read to its stop bit; a message that nests others
    (``NESTING``, by payload type) has its header read, then its messages, before the
    unit's next one. A message with text among its fields, or of a type the codec does not
    define (``unread_type``), is user data whole. Read to where the bytes end, or to a
    header they cut (read again from its message's start with more of them): also where
    that is, and the frames open there.
    """
    found: list[Region] = []
    # the stop bit's byte (zeros after it): a message from there on would hold nothing
    ends = len(payload.rstrip(b"\x00")) - 1
    size = len(payload)
    open_ = [(what, None if stop is None else at + stop, kind) for what, stop, kind in frames]
    i = at
    while True:
        what, stop, kind = open_[-1]
        if what != MESSAGES:  # a message's bytes: passed, or blanked
            z = size if stop is None else min(stop, size)
            if what == BLANKED and z > i:
                found.append((i, z))
            if stop is None or stop > size:
                i = size
                break
            open_.pop()
            i = stop
        elif i >= (ends if stop is None else stop):  # its messages read (the unit's: so far)
            if stop is None:
                break
            open_.pop()
            i = stop
        elif i >= size or (after := _message(payload, i, (stop, kind), codec, found, open_)) < 0:
            break
        else:
            i = after
    return found, i, tuple((w, None if s is None else s - i, k) for w, s, k in open_)


def _message(
    payload: bytes,
    i: int,
    frame: tuple[int | None, int | None],
    codec: str,
    found: list[Region],
    open_: list[Frame],
) -> int:
    """Read the message at payload byte ``i``: where reading goes on; -1: its header is cut.

    ``frame``: the stop and nesting type (None, None: the unit's own) of the messages it is
    among. User data is added to ``found``; the bytes of one past the payload's end are
    left to a frame pushed on ``open_``, as are a nesting message's messages. A message
    that does not fit in what nests it (its size, or the region list before it in a
    regional nesting) and what follows it there are unreadable: blanked from where that is
    known; so is a message whose type or size no stream holds (``MOST_FF``), from its first
    byte past what may be read of it, and what follows it.
    """
    stop, kind = frame
    if kind == HEVC_REGIONAL_NESTING and stop is not None:  # its regions: a count, indices
        if i + 1 + payload[i] > stop:
            open_[-1] = (BLANKED, stop, None)
            return i + 1
        i += 1 + payload[i]
    what, i = _sei_number(payload, i)
    size, i = _sei_number(payload, i) if what >= 0 else (0, i)
    if what < 0 or size < 0:
        open_[-1] = (BLANKED, stop, None)
        return i
    if i >= len(payload):  # its header cut short
        return -1
    end = i + size
    if stop is not None and kind is not None and end > stop:
        open_[-1] = (BLANKED, stop, None)
        return i
    if what in (SEI_REGISTERED, SEI_UNREGISTERED) or unread_type(codec, what):
        first = min(i + (UUID_BYTES if what == SEI_UNREGISTERED else 0), end)
        if end <= len(payload):
            found.append((first, end))
            return end
        open_ += [(BLANKED, end, None), (KEPT, first, None)]
        return i
    if (header := NESTING.get(codec, {}).get(what)) is not None:
        return _nested(payload, (i, end), what, header, open_)
    if end > len(payload):
        open_.append((KEPT, end, None))
        return i
    return end


def unread_type(codec: str, what: int) -> bool:
    """Whether an SEI message of payload type ``what`` is blanked whole in ``codec``.

    One with text among its fields (``SEI_TEXT``), or of a type the codec does not define
    (``SEI_DEFINED``).
    """
    return what in SEI_TEXT or what not in SEI_DEFINED[codec]


def _nested(
    payload: bytes,
    message: tuple[int, int],
    kind: int,
    header: Callable[[_Bits], None],
    open_: list[Frame],
) -> int:
    """The ``kind`` message whose payload is at ``message`` (its first byte, its end) nests others.

    Its ``header`` is read, and its messages pushed on ``open_``: where they begin. A header
    that cannot be read (``_Bad``) has the message blanked from the byte its reading stopped
    in: no read of fewer of its bytes got that far, so a unit read as it comes is blanked
    as one read whole. One the payload's end cuts: -1, read again from the message's start
    with more of its bytes.
    """
    first, end = message
    bits = _Bits(payload, first, end)
    try:
        header(bits)
    except _Bad:
        open_.append((BLANKED, end, None))
        return bits.stopped()
    except _Short:
        return -1
    open_.append((MESSAGES, end, kind))
    return bits.after()


class _Short(Exception):  # noqa: N818 - not an error: where a header's bits run out
    """A nesting message's header read past the bytes there are (so far)."""


class _Bad(_Short):
    """A nesting message's header that cannot be read.

    It runs past the message's end, or holds a number no stream holds: an Exp-Golomb number
    of more than 32 bits, or a count over ``MOST_NESTED`` (read on, a crafted header would
    take a loop a step a bit, millions of steps, with each read). Each is known at the bit
    it is read at, whatever bytes come after it.
    """


MOST_NESTED = 1024  # operation points, tile sets: HEVC allows 1,024 operation points


class _Bits:
    """A nesting message's header, read as H.264 and HEVC read one: ``u(n)``, ``ue(v)``."""

    def __init__(self, payload: bytes, start: int, end: int) -> None:
        """The header from payload byte ``start``, in a message ending at ``end``."""
        self._bytes, self._at, self._end = payload, start * 8, end * 8
        self._size = len(payload) * 8

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
        """Pass ``count`` bits: _Bad past the message's end, _Short past the payload's."""
        if self._at + count > self._end:
            raise _Bad
        if self._at + count > self._size:
            raise _Short
        self._at += count

    def stopped(self) -> int:
        """The byte the read has come to (its next bit's)."""
        return self._at >> 3

    def after(self) -> int:
        """The byte after the header: its bits read, to the next whole byte."""
        return (self._at + 7) >> 3


def _svc(bits: _Bits) -> None:
    """H.264's ``scalable_nesting`` (SVC): the layers it applies to, by their ids."""
    if not bits.u(1):  # all_layer_representations_in_au_flag
        bits.skip(7 * bits.count() + 3)  # dependency and quality ids; a temporal id


def _mvc(bits: _Bits) -> None:
    """H.264's ``mvc_scalable_nesting``: the views it applies to, by their ids."""
    if bits.u(1):  # operation_point_flag: view ids, then a temporal id
        bits.skip(10 * bits.count() + 3)
    elif not bits.u(1):  # all_view_components_in_au_flag
        bits.skip(10 * bits.count())


def _mvcd(bits: _Bits) -> None:
    """H.264's ``mvcd_scalable_nesting``: as MVC's, a flag or two with each view."""
    if bits.u(1):  # operation_point_flag
        texture_only = bits.u(1)
        bits.skip((10 if texture_only else 12) * bits.count() + 3)
    elif not bits.u(1):  # all_view_components_in_au_flag
        bits.skip(11 * bits.count())


def _hevc_scalable(bits: _Bits) -> None:
    """HEVC's ``scalable_nesting``: the operation points or the layers it applies to."""
    bits.skip(1)  # bitstream_subset_flag
    if bits.u(1):  # nesting_op_flag: each point's highest temporal id and index
        for _ in range(bits.u(1), bits.count()):
            bits.skip(3)
            bits.ue()
    elif not bits.u(1):  # all_layers_flag
        bits.skip(3)
        bits.skip(6 * bits.count())


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
    """An SEI message's payload type or size (bytes of 255 summed, then the last), and after.

    -1 for more than ``MOST_FF`` bytes of 255, a number no stream holds, and where its
    bytes past those begin: a read cut short in it would begin at its start each time.
    """
    run = 0
    if payload[i : i + 1] == b"\xff":
        chunk = payload[i : i + MOST_FF + 1]
        run = len(chunk) - len(chunk.lstrip(b"\xff"))
        if run > MOST_FF:  # from its first byte past them: no read goes further
            return -1, i + MOST_FF
        i += run
    return (0xFF * run + payload[i], i + 1) if i < len(payload) else (0xFF * run, i)


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
