"""Video in a transport stream: its SEI text and service names blanked, its packets kept.

DICOM carries H.264 and HEVC (and recorders MPEG-2) video in an MPEG-2 transport stream.
Each packet's header stays where it was, and only the text in its payload changes: user data
SEI messages in the video, the service information (a service's name, events, the
recording's date and time), the adaptation fields' private data.
"""

from __future__ import annotations

import itertools
import random
import struct

import pytest
from pydicom import uid
from pydicom.encaps import encapsulate

from indexer.deid import demux, frames, mp4, mpegts, video
from indexer.deid.mpegts import SYNC
from tests.builders import Counted, streamed_copy
from tests.deid.test_frames import (
    H264_HEAD,
    MARK,
    NAME,
    SLICE,
    TEXT,
    TIMING,
    UUID,
    _copy,
    _even,
    _frames_of,
    _object,
    _payload_read,
    _refused,
    _sei,
    _spaced,
    _streamed,
    _with_peak,
)
from tests.deid.test_units_searched import found_and_refused

# the pooled search too; fragments as they come, the cuts tried (``frames.JOIN_BYTES``)
pytestmark = pytest.mark.usefixtures("leaks_searched_both_ways", "fragments_as_they_come")

VIDEO_PID, AUDIO_PID, PMT_PID = 0x100, 0x101, 0x1000
PTS = b"\x21\x00\x01\x00\x01"


def fed_in_parts(stream: bytes, codec: str, cuts: tuple[int, ...]) -> bytes:
    """``stream`` cut at ``cuts``, each part fed to one demultiplexer; the parts as it left
    them, joined."""
    demux = frames._demux(stream, codec)
    assert demux is not None
    ends = [0, *cuts, len(stream)]
    parts = [bytearray(stream[a:z]) for a, z in itertools.pairwise(ends)]
    for part in parts:
        demux.feed(part)
    return b"".join(parts)


def fed_cut_anywhere(stream: bytes, codec: str, pairs: int) -> bytes:
    """``stream`` fed whole; asserted to give the same bytes cut at any byte, and at
    ``pairs`` random pairs of bytes."""
    whole = fed_in_parts(stream, codec, ())
    rng = random.Random(20261206)  # noqa: S311 - a seeded stream of test inputs
    cuts = [(c,) for c in range(1, len(stream))]
    cuts += [tuple(sorted(rng.sample(range(1, len(stream)), 2))) for _ in range(pairs)]
    for cut in cuts:
        assert fed_in_parts(stream, codec, cut) == whole, cut
    return whole


def _packets(pid: int, payload: bytes, *, private: bytes = b"", size: int = 188) -> bytes:
    """``payload`` in packets of ``pid``, the first with the unit start flag, the last
    filled out by an adaptation field's stuffing; ``private``: the first packet's adaptation
    field's private data, after a clock reference. ``size`` 192: each packet after a 4-byte
    time code."""
    out, first, count = b"", True, 0
    while payload or first:
        field = b""
        if first and private:  # flags: a clock reference (PCR), private data
            field = b"\x12" + b"\x00\x00\x3a\x98\x7e\x00" + bytes([len(private)]) + private
        room = 184 - (1 + len(field) if field else 0)
        chunk, payload = payload[:room], payload[room:]
        if len(chunk) < room or field:
            stuffing = 184 - len(chunk) - 1 - max(len(field), 1)
            field = (field or b"\x00") + b"\xff" * stuffing
        control = (0x30 if field else 0x10) | count % 16
        head = bytes([0x47, (0x40 if first else 0) | pid >> 8, pid & 0xFF, control])
        packet = head + (bytes([len(field)]) + field if field else b"") + chunk
        assert len(packet) == 188
        out += (struct.pack(">L", count * 1000) if size == 192 else b"") + packet
        first, count = False, count + 1
    return out


def _pes(stream_id: int, data: bytes) -> bytes:
    return b"\x00\x00\x01" + bytes([stream_id]) + b"\x00\x00\x80\x80\x05" + PTS + data


def _section(table: int, body: bytes) -> bytes:
    """A section after its pointer field (its CRC is not read: four bytes of it)."""
    return b"\x00" + bytes([table, 0xB0, len(body) + 4]) + body + b"\xde\xad\xbe\xef"


PAT = _section(0, b"\x00\x01\xc1\x00\x00\x00\x01\xf0\x00")
PMT = _section(2, b"\x00\x01\xc1\x00\x00\xe1\x00\xf0\x00\x1b\xe1\x00\xf0\x00")
SDT = _section(
    0x42, b"\x00\x01\xc1\x00\x00\xff\x01\xff\x48\x1b\x01\x08" + MARK[:8] + b"\x11" + MARK
)
AUDIO = b"\xff\xf1\x00\x00\x01\x06\x05\x40" + UUID + b"audio, not video"  # an SEI's look


def _transport(video: bytes, *, size: int = 188, blanked: bool = False) -> bytes:
    """A stream: its tables, the service's name, ``video`` (in two PES packets, the second
    beginning in its SEI message; private data in the first packet's adaptation field) and
    audio. ``blanked``: as the copy holds it."""
    sdt = _packets(0x11, SDT, size=size)
    if blanked:  # a null packet, zeros after its header
        at = size - 188
        sdt = sdt[:at] + b"\x47\x1f\xff" + sdt[at + 3 : at + 4] + bytes(184)
    private = bytes(len(MARK)) if blanked else MARK
    return (
        _packets(0, PAT, size=size)
        + _packets(PMT_PID, PMT, size=size)
        + sdt
        + _packets(VIDEO_PID, _pes(0xE0, video[:SPLIT]), private=private, size=size)
        + _packets(VIDEO_PID, _pes(0xE0, video[SPLIT:]), size=size)
        + _packets(AUDIO_PID, _pes(0xC0, AUDIO), size=size)
    )


SPLIT = len(H264_HEAD) + 300  # where the second video PES packet begins: in the SEI message
VIDEO = H264_HEAD + _sei((5, UUID + MARK + TEXT * 6), TIMING, (4, b"\xb5" + MARK))
VIDEO += b"\x00\x00\x01" + SLICE
BLANKED = H264_HEAD + _sei(
    (5, UUID + _spaced(MARK + TEXT * 6)), TIMING, (4, _spaced(b"\xb5" + MARK))
)
BLANKED += b"\x00\x00\x01" + SLICE


@pytest.mark.parametrize("size", [188, 192])
def test_a_transport_streams_text_is_blanked_and_its_packets_kept(size):
    """The SEI text (spread over three packets) as in a bare stream, the service's name by a
    null packet, the private data zeroed; the tables, the audio and every header kept."""
    source = _transport(VIDEO, size=size)
    assert mpegts.packet_size(source) == size
    copy = _copy(_object(source, ts=uid.MPEG4HP41))
    assert MARK not in copy
    assert b"x264" not in copy
    assert _frames_of(copy) == [_even(_transport(BLANKED, size=size, blanked=True))]


def test_a_held_stream_dense_with_text_is_blanked_in_one_copy(monkeypatch):
    """A held transport stream whose every packet holds text (hundreds of thousands of
    blanks in 100 MiB) is blanked in place in the copy: before, it was copied to blank it,
    its blanks kept and placed in the object, and the copy made from them (4.5 times its
    size in memory: 630 MB for 100 MiB, now 260 MB). In several fragments, it is blanked
    in their bytes joined, and copied back (the blanks counted as in one)."""
    monkeypatch.setattr(demux, "WINDOW", 1 << 16)  # (what a window's parse holds: little)
    unit = _transport(VIDEO)
    stream = unit * ((2 << 20) // len(unit))
    want = fed_in_parts(stream, video.H264, ())
    counts = set()
    for pieces, most in ((1, 1.35), (3, 2.4)):
        step = len(stream) // pieces // 2 * 2
        value = encapsulate([stream[a : a + step] for a in range(0, len(stream), step)])
        (blanked, count), peak = _with_peak(frames.blank, value, video.H264)
        assert b"".join(blanked[a:z] for a, z in frames.fragments(blanked)) == want
        assert peak < most * len(value), (pieces, peak / len(value))
        counts.add(count)
    assert counts == {len(stream) // len(unit) * frames.blank(encapsulate([unit]), video.H264)[1]}


def test_hevc_and_mpeg2_video_in_a_transport_stream():
    hevc = b"\x00\x00\x00\x01\x40\x01\x0c\x01" + _sei((5, UUID + MARK), header=b"\x4e\x01")
    mpeg2 = b"\x00\x00\x01\xb3\x02\x00\x10\x14" + b"\x00\x00\x01\xb2" + MARK + TEXT
    hevc_blanked = hevc.replace(MARK, _spaced(MARK))
    mpeg2_blanked = mpeg2.replace(MARK + TEXT, _spaced(MARK + TEXT))
    for stream, blanked, ts in (
        (hevc, hevc_blanked, uid.HEVCMP51),
        (mpeg2, mpeg2_blanked, uid.MPEG2MPML),
    ):
        after = b"\x00\x00\x01" + SLICE
        copy = _copy(_object(_transport(stream + after), ts=ts))
        assert _frames_of(copy) == [_even(_transport(blanked + after, blanked=True))]


def test_a_streamed_transport_stream_cut_anywhere_is_blanked_as_held(tmp_path):
    """A large object's fragments are blanked one at a time, and may cut a packet (its
    header, its PES header, an SEI message) anywhere: each cut gives the copy the held
    stream gives, but for a header cut before its PID is whole (a service packet then keeps
    its PID, its payload zeroed)."""
    stream = _transport(VIDEO)
    held_value, count = frames.blank(encapsulate([stream]), video.H264)
    assert count > 0
    (held,) = [held_value[a:z] for a, z in frames.fragments(held_value)]
    rng = random.Random(20261205)  # noqa: S311 - a seeded stream of test inputs
    even = range(2, len(stream), 2)
    cuts = [(c,) for c in even] + [tuple(sorted(rng.sample(even, 3))) for _ in range(40)]
    for cut in cuts:
        ends = [0, *cut, len(stream)]
        parts = [stream[a:z] for a, z in itertools.pairwise(ends)]
        value = encapsulate(parts)
        copy, found = _streamed(tmp_path, value, video.H264)
        joined = b"".join(copy[a:z] for a, z in frames.fragments(copy))
        differs = [i for i in range(len(held)) if joined[i] != held[i]]
        sdt = 2 * 188  # its PID's first byte went before the cut: only the second is changed
        assert differs == ([sdt + 1] if sdt + 2 in cut else []), cut
        assert MARK not in joined
        assert MARK in found  # as they went: the source's text (found mode)
        assert PAT in found  # (the first packet, whatever its first fragment holds)
        assert PMT in found


@pytest.mark.parametrize("window", [1, 100, 1 << 20])
def test_video_is_parsed_a_window_at_a_time_as_whole(window, monkeypatch):
    monkeypatch.setattr(demux, "WINDOW", window)
    copy = _copy(_object(_transport(VIDEO), ts=uid.MPEG4HP41))
    assert _frames_of(copy) == [_even(_transport(BLANKED, blanked=True))]


@pytest.mark.parametrize("size", [188, 192])
def test_streamed_transport_stream_is_blanked_as_it_is_copied(tmp_path, monkeypatch, size):
    """Known as one by its first packets (an M2TS stream's sync bytes after time codes)."""
    data = _object(_transport(VIDEO, size=size), ts=uid.MPEG4HP41)
    whole, copy = streamed_copy(tmp_path, monkeypatch, data, 7, frames.Blanked)
    assert copy == whole
    assert MARK not in copy


def test_verify_searches_the_source_streams_text_held_and_streamed(tmp_path):
    """`verify` of another tool's copy: the service's name, the private data and the SEI
    text are found as they are, held or streamed."""
    value = encapsulate([_transport(VIDEO)])
    found = frames.headers(value, video.H264)
    assert found.count(MARK) == 4  # the service's name, the private data, two SEI messages
    assert _streamed(tmp_path, value, video.H264)[1] == found
    blanked = frames.blank(value, video.H264)[0]
    assert MARK not in frames.headers(blanked, video.H264)


@pytest.mark.parametrize(
    "table", [PMT[:-4] + b"\x05\x12" + NAME + b"\xde\xad\xbe\xef", b"\x00\x03\xb0\x20" + NAME]
)
def test_a_value_in_a_table_that_stays_is_caught_by_the_leak_check(tmp_path, table):
    """Tables but the service information stay, and are searched: a patient's name in a
    program map table's descriptor, or in a table of a PID of its own, refuses the object."""
    stream = _packets(0, PAT) + _packets(PMT_PID, table) + _packets(VIDEO_PID, _pes(0xE0, VIDEO))
    data = _object(stream, ts=uid.MPEG4HP41, PatientName=NAME.decode())
    assert b"PHIMARK" not in _refused(tmp_path, data).encode()


def test_the_packets_after_bytes_that_are_no_packet_are_read():
    """Bytes that are no packet (damage, a recorder's padding), a sync byte's value among
    them: the next packet is the next sync byte with another a packet on."""
    stream = _transport(VIDEO)
    sdt = 2 * 188
    junk = b"\x47\x00\x11\x10\x47"
    copy = _copy(_object(stream[:sdt] + junk + stream[sdt:], ts=uid.MPEG4HP41))
    expected = _transport(BLANKED, blanked=True)
    assert _frames_of(copy) == [_even(expected[:sdt] + junk + expected[sdt:])]
    value = encapsulate([stream[:sdt] + b"\x47" + NAME + stream[sdt:]])
    assert NAME in frames.headers(value, video.H264)  # what no packet holds: searched


def test_a_packet_whose_next_ones_sync_byte_is_damaged_is_still_read():
    """The packet after it begins no packet (its sync byte lost): a service packet before it
    is still made a null packet, a data packet's payload zeroed, a video packet's SEI text
    blanked (each was taken for bytes no packet holds, and only searched). Fed whole, and
    cut at each byte of the two (a buffer's end before the packet after them, too)."""
    for stream, packet in ((_transport(VIDEO), 2), (_with_data(), 4), (_with_data(), 5)):
        damaged = bytearray(stream)
        damaged[(packet + 1) * 188] = 0x48
        its = slice(packet * 188, (packet + 1) * 188)
        assert MARK in damaged[its]
        for cut in [(), *((c,) for c in range(packet * 188 + 1, (packet + 2) * 188))]:
            assert MARK not in fed_in_parts(bytes(damaged), video.H264, cut)[its], cut


def _kept_by_the_cut(stream: bytes, cut: tuple[int, ...]) -> list[int]:
    """The bytes ``stream`` fed whole changes, fed cut at ``cut`` keeps, and does not search.

    But for a service packet's PID that a cut falls in (its first byte went before its PID
    was seen). Searched: a run of such bytes lies whole in a part searched.
    """
    whole = fed_in_parts(stream, video.H264, ())
    walk = frames._demux(stream, video.H264)
    assert walk is not None
    ends = [0, *cut, len(stream)]
    parts = [bytearray(stream[a:z]) for a, z in itertools.pairwise(ends)]
    found = [part for buf in parts for part in walk.feed(buf)[1]]
    copy = b"".join(parts)
    kept = [i for i, (w, c) in enumerate(zip(whole, copy, strict=True)) if w != c == stream[i]]
    kept = [i for i in kept if not (SYNC in stream[i - 2 : i] and any(0 < c - i <= 2 for c in cut))]
    runs = [
        [i for _n, i in g] for _k, g in itertools.groupby(enumerate(kept), lambda t: t[1] - t[0])
    ]
    return [
        i for run in runs if not any(stream[run[0] : run[-1] + 1] in f for f in found) for i in run
    ]


def test_a_chance_sync_byte_past_damage_is_no_packet_where_a_buffer_ends():
    """Damage (a lost sync byte) before a packet, a sync byte's value in it: where a
    buffer's end leaves too few bytes to see a packet or two on, it is taken for no packet's
    (read as one, it took the next packet's header into it, read as neither: the cut copy
    kept text the whole one blanked). At each cut, the cut copy keeps nothing the whole one
    changes."""
    stream = bytearray(_with_data())
    klv = stream.index(_packets(KLV_PID, _pes(0xBD, DATA_TEXT))[:8])
    stream[klv - 188] = 0x48  # the packet before the KLV stream's: no packet
    stream[klv - 188 + 90] = SYNC  # a chance sync byte in it
    for cut in range(klv - 188, klv + 188):
        assert _kept_by_the_cut(bytes(stream), (cut,)) == [], cut


def test_damaged_streams_cut_keep_nothing_fed_whole_changes():
    """Damaged streams (bytes changed, a sync byte among them at times), cut once or twice:
    the cut copy keeps no byte of the source that the whole one changes."""
    rng = random.Random(20261206)  # noqa: S311 - a seeded stream of test inputs
    for n in range(400):
        stream = bytearray(_with_data() if n % 2 else _transport(VIDEO))
        for _ in range(rng.randrange(1, 4)):
            stream[rng.randrange(len(stream))] = rng.choice((SYNC, rng.randrange(256)))
        if frames._demux(bytes(stream), video.H264) is None:
            continue
        for _ in range(3):
            cut = tuple(sorted(rng.sample(range(1, len(stream)), rng.randrange(1, 3))))
            assert _kept_by_the_cut(bytes(stream), cut) == [], (n, cut)


def test_damaged_transport_streams_never_raise():
    """Lost sync bytes, lengths that run past the packet, cut packets: only zeros, spaces and
    a null packet's PID are written, and the length stays."""
    rng = random.Random(20261205)  # noqa: S311 - a seeded stream of test inputs
    for n in range(2500):  # a stream's tables, video and audio; then data streams too
        stream = bytearray(_transport(VIDEO) if n < 1500 else _with_data())
        for _ in range(rng.randrange(1, 6)):
            stream[rng.randrange(len(stream))] = rng.randrange(256)
        if rng.random() < 0.3:
            del stream[rng.randrange(len(stream)) :]
        if rng.random() < 0.2:
            at = rng.randrange(len(stream) + 1)
            stream[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        old = encapsulate([bytes(stream[: max(2, len(stream) - len(stream) % 2)]).ljust(2)])
        new, _count = frames.blank(old, video.H264)
        assert len(new) == len(old)
        assert all(n == o or n in (0, 0x20, 0x1F, 0xFF) for o, n in zip(old, new, strict=True))
        frames.headers(new, video.H264)


def test_an_h264_stream_whose_fifth_byte_is_a_sync_bytes_value_is_no_transport_stream():
    """A parameter set with nal_ref_idc 2 begins 47: the stream is still a byte stream."""
    sps = b"\x00\x00\x00\x01\x47\x64\x00\x1f\xac"
    stream = sps + _sei((5, UUID + MARK)) + b"\x00\x00\x01" + SLICE
    assert mpegts.packet_size(stream) == 0
    assert MARK not in _copy(_object(stream, ts=uid.MPEG4HP41))


@pytest.mark.parametrize("size", [188, 192])
def test_a_demultiplexer_fed_a_stream_cut_at_any_byte_blanks_it_as_whole(size):
    """Cut at any byte (a PES payload's bytes lie at either parity, so a cut may fall just
    after a start code, or between an HEVC unit's two header bytes), in two or three: the
    same bytes as fed whole, but for a cut in a service packet's PID."""
    stream = _transport(VIDEO, size=size)

    def fed(cuts: tuple[int, ...]) -> bytes:
        return fed_in_parts(stream, video.H264, cuts)

    whole = fed(())
    pid = 2 * size + size - 188 + 1  # the service packet's PID, after its sync byte
    rng = random.Random(20261205)  # noqa: S311 - a seeded stream of test inputs
    cuts = [(c,) for c in range(1, len(stream))]
    cuts += [tuple(sorted(rng.sample(range(1, len(stream)), 2))) for _ in range(200)]
    for cut in cuts:
        differs = [i for i, (a, b) in enumerate(zip(fed(cut), whole, strict=True)) if a != b]
        assert set(differs) <= {pid, pid + 1}, cut
        assert not differs or any(pid < c <= pid + 2 for c in cut), cut


def test_a_long_sei_unit_many_buffers_cut_is_read_once(monkeypatch):
    """A video stream's SEI unit of one message of 300 kB, in 1,600 packets, fed in buffers
    of 1,000 bytes: each parse goes on from where the last left, and the unit is kept as
    that read and the search need it (its header, its last bytes), not whole (each parse
    read it again from its start, in time quadratic in its size, and one longer than
    ``HELD_BYTES`` was left unread from there). The copy is the one fed whole."""
    monkeypatch.setattr(mp4, "SEARCH_BEHIND", 100)
    monkeypatch.setattr(frames, "HELD_BYTES", 4096)
    unit = _sei((5, UUID + b"free text " * 30_000 + MARK), TIMING)
    long = H264_HEAD + unit + b"\x00\x00\x01" + SLICE
    stream = _packets(0, PAT) + _packets(PMT_PID, PMT) + _packets(VIDEO_PID, _pes(0xE0, long))
    whole = fed_in_parts(stream, video.H264, ())
    assert MARK in stream
    assert MARK not in whole
    sizes = _payload_read(monkeypatch)
    walk = frames._demux(stream, video.H264)
    assert walk is not None
    copy, kept = bytearray(), []
    for at in range(0, len(stream), 1000):
        part = bytearray(stream[at : at + 1000])
        walk.feed(part)
        copy += part
        kept.append(sum(z - a for _src, a, z in walk._video.get(VIDEO_PID, [])))
    assert copy == whole
    assert sum(sizes) < len(unit) + 10 * len(sizes)
    run = len(unit) // 255  # the bytes of 255 in its size: read again till they end
    assert max(kept) <= 100 + 8 + run
    assert max(kept[run // 900 + 4 :]) <= 100 + 8


@pytest.mark.parametrize("held", [4096, 1 << 30])
def test_bytes_no_packet_holds_are_searched_with_those_before_a_cut(monkeypatch, held):
    """A transport stream in a fragment over ``HELD_BYTES`` (mapped from disk; 4096 here) is
    demultiplexed ``HELD_BYTES`` at a time, as fragments are: bytes of a megabyte that no
    packet holds (damage) are not copied whole to be searched. A value in them that a
    window's end, or a fragment's, cuts is found: the bytes before the cut are searched
    again with the next (it was missed). The copy is the one fed whole."""
    monkeypatch.setattr(mp4, "SEARCH_BEHIND", 100)
    monkeypatch.setattr(frames, "HELD_BYTES", held)
    source, sdt = _transport(VIDEO), 2 * 188
    cut = 4096 * 200  # a window's end, and a fragment's, in the value
    value = b"Roe^Richard^PHIMARK"  # (the stream's other text: ``MARK``)
    junk = b"." * (cut - 5 - sdt) + value + b"." * 1000
    stream = source[:sdt] + junk + source[sdt:]
    whole = fed_in_parts(stream, video.H264, ())
    for ends in ([0, len(stream)], [0, cut, len(stream)]):
        searched: list[int] = []
        walk = frames._VideoPass(video.H264, check=lambda b, s=searched: s.append(len(b)))
        copy = [bytearray(stream[a:z]) for a, z in itertools.pairwise(ends)]
        for part in copy:
            walk(part)
        assert b"".join(copy) == whole
        found: list[bytes] = []
        walk = frames._VideoPass(video.H264, found=found)
        for a, z in itertools.pairwise(ends):
            walk(bytearray(stream[a:z]))
        assert any(value in part for part in found), (held, ends)
        if held == 4096:
            assert max(searched) <= 4096 + 100 + 188


def _entry(kind: int, pid: int, descriptors: bytes = b"") -> bytes:
    """A program map table's entry: a stream's type, its PID, its descriptors."""
    return bytes([kind, 0xE0 | pid >> 8, pid & 0xFF, 0xF0, len(descriptors)]) + descriptors


ID3_PID, KLV_PID, TELETEXT_PID, AC3_PID, OPUS_PID, META_PID, ANCILLARY_PID, NAV_PID = range(
    0x102, 0x10A
)
DATA_PMT = _section(
    2,
    b"\x00\x01\xc1\x00\x00\xe1\x00\xf0\x06\x05\x04HDMV"  # a program descriptor
    + _entry(0x1B, VIDEO_PID)
    + _entry(0x15, ID3_PID)  # metadata in PES packets (private stream 1): ID3
    + _entry(0x06, KLV_PID, b"\x05\x04KLVA")  # private data, registered as KLV
    + _entry(0x06, TELETEXT_PID, b"\x0a\x04eng\x00" + b"\x56\x05eng\x09\x00")  # teletext
    + _entry(0x81, AC3_PID, b"\x05\x04AC-3")  # AC-3 audio (private stream 1)
    + _entry(0x06, OPUS_PID, b"\x05\x04Opus"),  # private data, registered as Opus audio
)
DATA_TEXT = b"ID3\x04\x00\x00\x00\x00\x01\x00TIT2" + MARK + TEXT * 4  # over two packets
KEPT_AUDIO = b"\x0b\x77 AC-3 frame, its bytes kept " * 8


def _plain(stream_id: int, data: bytes) -> bytes:
    """A PES packet with no header past its length (private stream 2, as a DVD's)."""
    return b"\x00\x00\x01" + bytes([stream_id]) + struct.pack(">H", len(data)) + data


def _with_data(*, blanked: bool = False, pmt: bytes = DATA_PMT) -> bytes:
    """A stream whose program map table names data streams of private stream 1 (ID3, KLV,
    teletext) and audio ones (AC-3, Opus), with streams of data ids it does not name
    (metadata, ancillary data, private stream 2); each data stream's text ``DATA_TEXT``.
    ``blanked``: as the copy holds it, the data streams' payloads zeroed."""
    data = bytes(len(DATA_TEXT)) if blanked else DATA_TEXT
    video = BLANKED if blanked else VIDEO
    return (
        _packets(0, PAT)
        + _packets(PMT_PID, pmt)
        + _packets(VIDEO_PID, _pes(0xE0, video))
        + _packets(ID3_PID, _pes(0xBD, data))
        + _packets(KLV_PID, _pes(0xBD, data))
        + _packets(TELETEXT_PID, _pes(0xBD, data))
        + _packets(AC3_PID, _pes(0xBD, KEPT_AUDIO))
        + _packets(OPUS_PID, _pes(0xBD, KEPT_AUDIO))
        + _packets(META_PID, _pes(0xFC, data))
        + _packets(ANCILLARY_PID, _pes(0xF9, data[:100]))
        + _packets(NAV_PID, _plain(0xBF, data))
        + _packets(ANCILLARY_PID, _pes(0xF9, data[100:]))  # after another's packets
        + _packets(VIDEO_PID, _pes(0xE0, video))
    )


def test_data_streams_payloads_are_zeroed_and_audio_kept():
    """Streams of data ids (metadata, ancillary data, private stream 2), and those of private
    stream 1 that the program map table does not name audio (ID3 metadata, KLV, teletext):
    their payloads zeroed, every header kept. Private stream 1's audio (AC-3, Opus) stays."""
    source = _with_data()
    assert source.count(MARK) == 8 + 2  # (and in the video's SEI, twice)
    copy = _copy(_object(source, ts=uid.MPEG4HP41))
    assert MARK not in copy
    assert copy.count(KEPT_AUDIO[:30]) == source.count(KEPT_AUDIO[:30]) > 2 * 6
    assert _frames_of(copy) == [_even(_with_data(blanked=True))]


def test_private_stream_1_that_no_program_map_table_names_as_audio_is_zeroed():
    """Before its program map table (or with none, or where it names the stream as no
    audio), a stream of private stream 1 is not known to hold audio: it may hold metadata,
    subtitles or a writer's own data, so its payloads are zeroed, its headers kept; audio
    too, where no table names it."""
    pmt = _section(2, b"\x00\x01\xc1\x00\x00\xe1\x00\xf0\x00" + _entry(0x1B, VIDEO_PID))
    copy = _frames_of(_copy(_object(_with_data(pmt=pmt), ts=uid.MPEG4HP41)))[0]
    assert MARK not in copy
    assert KEPT_AUDIO[:30] not in copy
    for pid in (ID3_PID, KLV_PID, TELETEXT_PID):
        at = copy.index(_packets(pid, _pes(0xBD, bytes(len(DATA_TEXT))))[:30])
        assert copy[at + 30 : at + 188] == bytes(158)
    for pid in (AC3_PID, OPUS_PID):
        assert _packets(pid, _pes(0xBD, bytes(len(KEPT_AUDIO)))) in copy
    unnamed = (
        _packets(0, PAT) + _packets(AC3_PID, _pes(0xBD, KEPT_AUDIO)) + _packets(PMT_PID, DATA_PMT)
    )
    later = unnamed + _packets(AC3_PID, _pes(0xBD, KEPT_AUDIO))
    out = fed_in_parts(later, video.H264, ())
    assert out.count(KEPT_AUDIO[:30]) == later.count(KEPT_AUDIO[:30]) // 2  # the named half


def test_audio_is_known_by_its_stream_type_or_its_descriptors():
    """ATSC's and Blu-ray's audio stream types; private data with DVB's AC-3, E-AC-3, DTS or
    AAC descriptor, ATSC's AC-3 one, an extension naming AC-4, DTS-HD or DTS-UHD, or a
    registered audio format. Not: metadata, KLV, teletext, subtitles (TTML: an extension
    too), a language alone, a writer's own format."""
    audio = {
        0x200: _entry(0x81, 0x200),
        0x201: _entry(0x87, 0x201),
        0x202: _entry(0x06, 0x202, b"\x6a\x01\x00"),
        0x203: _entry(0x06, 0x203, b"\x0a\x04eng\x00" + b"\x7a\x01\x00"),
        0x204: _entry(0x06, 0x204, b"\x7f\x02\x15\x00"),
        0x205: _entry(0x06, 0x205, b"\x05\x04BSSD"),
        0x206: _entry(0x86, 0x206),
        0x207: _entry(0x06, 0x207, b"\x81\x03\x00\x00\x00"),
    }
    other = [
        _entry(0x15, 0x300),
        _entry(0x06, 0x301, b"\x05\x04KLVA"),
        _entry(0x06, 0x302, b"\x56\x05eng\x09\x00"),
        _entry(0x06, 0x303, b"\x59\x08eng\x10\x00\x01\x00\x01"),
        _entry(0x06, 0x304, b"\x7f\x02\x20\x00"),
        _entry(0x06, 0x305, b"\x0a\x04eng\x00"),
        _entry(0x06, 0x306, b"\x05\x04WRTR"),
        _entry(0x06, 0x307, b"\x7f\x00"),  # an extension with no tag
    ]
    body = b"\x00\x01\xc1\x00\x00\xe1\x00\xf0\x00" + b"".join([*audio.values(), *other])
    assert mpegts.audio_pids(_section(2, body)[1:]) == set(audio)


def test_a_program_map_table_over_several_packets_is_read_whole():
    """A table longer than a packet's payload (its descriptors), gathered packet by packet:
    the streams it names at its end are known."""
    long = b"\x00\x01\xc1\x00\x00\xe1\x00\xf0\x00" + _entry(
        0x1B, VIDEO_PID, b"\x7f\xc0" + bytes(192)
    )
    body = long + _entry(0x06, AC3_PID, b"\x05\x04AC-3")
    pmt = _section(2, body)
    stream = _packets(PMT_PID, pmt) + _packets(AC3_PID, _pes(0xBD, KEPT_AUDIO))
    assert len(_packets(PMT_PID, pmt)) == 2 * 188
    assert KEPT_AUDIO[:100] in fed_in_parts(stream, video.H264, ())
    assert mpegts.audio_pids(pmt[1:]) == {AC3_PID}
    assert mpegts.audio_pids(pmt[1:200]) == set()  # an entry cut is not read


def test_data_streams_fed_cut_at_any_byte_are_zeroed_as_whole():
    """Cut in a PES header (an MPEG-2 one, a plain one), in the program map table, in a
    payload: each cut gives the bytes the whole stream gives."""
    assert fed_cut_anywhere(_with_data(), video.H264, 200) == _with_data(blanked=True)


def test_verify_searches_data_streams_held_and_streamed(tmp_path):
    """Another tool's copy: each data stream's text is found, though its packets' ends cut
    it (the ancillary stream's value across two PES packets, each in a packet of its own)."""
    value = encapsulate([_with_data()])
    found = frames.headers(value, video.H264)
    assert found.count(MARK) >= 6 + 2
    value_cut = DATA_TEXT[80:120]  # the ancillary stream's second PES packet begins at 100
    assert found.count(value_cut) >= 6
    assert _streamed(tmp_path, value, video.H264)[1] == found
    assert MARK not in frames.headers(frames.blank(value, video.H264)[0], video.H264)


def test_a_value_a_data_streams_packets_cut_is_found_at_any_buffer_cut(monkeypatch):
    """Found, not blanked (``verify``), fed in buffers cut anywhere in the ancillary stream's
    second packet: a value across its two PES packets is still found (the last bytes
    searched are those of its last whole packet, not of one cut), and in the first buffer
    alone where it ends past the value (a stream cut short)."""
    monkeypatch.setattr(demux, "DATA_BEHIND", 40)
    value = b"Roe^Richard^PHIMARK"
    text = b"caption: " * 20 + value + b" ends" * 20
    first = _packets(0, PAT) + _packets(ANCILLARY_PID, _pes(0xF9, text[:190]))
    second = _packets(NAV_PID, _plain(0xBF, TEXT)) + _packets(ANCILLARY_PID, _pes(0xF9, text[190:]))
    stream = first + second
    assert all(value not in part for part in (text[:190], text[190:]))
    for cut in range(len(first), len(stream) + 1):
        walk = frames._demux(stream, video.H264, blank=False)
        assert walk is not None
        found = walk.feed(bytearray(stream[:cut]))[1]
        if cut >= stream.index(b"d^PHIMARK ends") + 9:  # the stream cut there: searched as is
            assert any(value in part for part in found), cut
        found += walk.feed(bytearray(stream[cut:]))[1]
        assert any(value in part for part in found), cut


def test_a_long_data_stream_is_searched_a_window_at_a_time(monkeypatch):
    """Found, not blanked: a data stream's payloads are joined and searched a window at a
    time, not gathered whole (a value cut by a window's end is found)."""
    monkeypatch.setattr(demux, "WINDOW", 300)
    monkeypatch.setattr(demux, "DATA_BEHIND", 40)
    value = b"Roe^Richard^PHIMARK"
    stream = _packets(META_PID, _pes(0xFC, b"note: " * 2000 + value + b" end" * 100))
    walk = frames._demux(stream, video.H264, blank=False)
    assert walk is not None
    found = walk.feed(bytearray(stream))[1]
    assert max(map(len, found)) <= 300 + 40 + 184
    assert any(value in part for part in found)


def test_a_data_pid_that_becomes_audio_is_kept():
    """A PID used again: its next unit audio, carried as it is."""
    stream = _packets(META_PID, _pes(0xFC, DATA_TEXT)) + _packets(META_PID, _pes(0xC0, AUDIO))
    copy = fed_in_parts(stream, video.H264, ())
    assert copy == _packets(META_PID, _pes(0xFC, bytes(len(DATA_TEXT)))) + _packets(
        META_PID, _pes(0xC0, AUDIO)
    )


def test_a_video_pid_that_becomes_another_stream_has_its_video_parsed_first():
    """A video PID's next unit an audio PES packet (damage, or a PID used again): the video
    bytes gathered so far are parsed then, not dropped (their SEI text neither blanked nor
    searched)."""
    stream = _packets(VIDEO_PID, _pes(0xE0, VIDEO)) + _packets(VIDEO_PID, _pes(0xC0, AUDIO))
    copy = fed_in_parts(stream, video.H264, ())
    assert MARK in stream
    assert MARK not in copy
    assert copy.endswith(_packets(VIDEO_PID, _pes(0xC0, AUDIO)))


def test_blanks_are_placed_in_a_windows_packets_in_time_linear_in_both():
    """A window of a dense stream holds thousands of packets' payloads (pieces) and of
    blanks: each blank is placed in the pieces it lies in, found by its place, not by
    walking every piece (a megabyte of SEI messages took 2 s; 100 MiB, 10 minutes). The
    bytes blanked are those the pieces map each blank to; an earlier buffer's are not."""
    rng = random.Random(20261215)  # noqa: S311 - a seeded stream of test inputs
    walk = mpegts.TsDemux(video.H264, 188)
    buf = bytearray(rng.randbytes(3000 * 12))
    pieces: list[demux.Piece] = [  # 2 bytes of a header, 10 of payload; some went already
        (b"e" * 10, 0, 10) if n % 7 == 0 else (None, n * 12 + 2, n * 12 + 12) for n in range(3000)
    ]
    blanks = [
        (at, at + rng.randrange(1, 40), rng.choice((b" ", b"\x00")))
        for at in sorted(rng.sample(range(10 * len(pieces) - 40), 3000))
    ]
    want = bytearray(buf)
    for a, z, fill in blanks:  # each stream byte's place, piece by piece
        for p in range(a, z):
            src, start, _end = pieces[p // 10]
            if src is None and want[start + p % 10] != fill[0]:
                want[start + p % 10] = fill[0]
    walk._buf, walk._blanks = buf, []  # the window's state, as feed sets it
    Counted.reads = 0
    walk._blank_pieces(Counted(pieces), blanks)
    assert buf == want
    assert Counted.reads <= 4 * (len(pieces) + len(blanks))


def _swallowed(name: bytes) -> bytes:
    """A metadata packet whose adaptation field's length, damaged, runs to the packet's
    end: its PES header and payload (an ID3 title holding ``name``) are the field's
    stuffing now, which demultiplexers pass over."""
    packet = bytearray(_packets(0x102, _pes(0xFC, b"ID3\x04\x00\x00\x00\x00\x00\x00TIT2" + name)))
    assert packet[3] & 0x20  # an adaptation field: the payload is short
    packet[4] = 183
    return _packets(0, PAT, size=188) + bytes(packet) + _packets(VIDEO_PID, _pes(0xE0, VIDEO))


def test_an_adaptation_fields_stuffing_that_is_not_stuffing_is_searched(tmp_path):
    """Bytes of an adaptation field past its fields are stuffing (0xFF): a damaged length
    takes in the payload, and a name in it went into the copy, neither zeroed nor searched.
    They are searched where any is no 0xFF, held and streamed, cut anywhere: the object is
    refused. Nothing more is zeroed: a title holding no one's name stays."""
    source = _swallowed(NAME)
    assert NAME in frames.headers(encapsulate([source]), video.H264)
    for cut in range(188, 2 * 188, 2):
        value = encapsulate([source[:cut], source[cut:]])
        assert NAME in _streamed(tmp_path, value, video.H264)[1], cut
    message = _refused(tmp_path, _object(source, ts=uid.MPEG4HP41, PatientName=NAME.decode()))
    assert "(0010,0010)" in message
    assert "PHIMARK" not in message
    kept = _copy(_object(_swallowed(b"no one's title"), ts=uid.MPEG4HP41))
    assert b"no one's title" in kept


def test_stuffing_is_not_searched():
    """An adaptation field's stuffing of 0xFF bytes is not among the bytes searched."""
    stuffed = _packets(VIDEO_PID, _pes(0xE0, H264_HEAD))
    assert b"\xff" * 8 in stuffed
    assert b"\xff" * 8 not in frames.headers(encapsulate([stuffed]), video.H264)


@pytest.mark.parametrize("stream_id", [0x00, 0x68, 0xB9])
def test_a_pes_packet_of_no_pes_stream_id_is_zeroed_as_data(tmp_path, stream_id):
    """A stream id below any PES stream's (damage: a title's packet of 0xBD became 0x68) is
    no packet a demultiplexer reads: its payload went into the copy, neither zeroed nor
    searched. It is zeroed as a data stream's, fed cut anywhere as whole; `verify` finds
    the text in a copy that kept it, held and streamed."""
    damaged = _packets(0, PAT) + _packets(ID3_PID, _pes(stream_id, DATA_TEXT))
    damaged += _packets(VIDEO_PID, _pes(0xE0, VIDEO))
    blanked = _packets(0, PAT) + _packets(ID3_PID, _pes(stream_id, bytes(len(DATA_TEXT))))
    blanked += _packets(VIDEO_PID, _pes(0xE0, BLANKED))
    assert fed_cut_anywhere(damaged, video.H264, 50) == blanked
    copy = _copy(_object(damaged, ts=uid.MPEG4HP41))
    assert MARK not in copy
    value = encapsulate([damaged])
    assert MARK in frames.headers(value, video.H264)
    assert MARK in _streamed(tmp_path, value, video.H264)[1]


def test_a_null_packet_that_holds_more_than_filler_is_searched(tmp_path):
    """A video packet whose PID a damaged byte made the null packets' (1FFF): dropped
    unread by demultiplexers, and by the walk, its SEI text went into the copy (fuzz seed
    166). A null packet whose bytes are neither 0xFF nor zeros is searched, held and
    streamed cut anywhere: the object is refused. Filler is not searched."""
    video_packet = bytearray(_packets(VIDEO_PID, _pes(0xE0, H264_HEAD + _sei((5, UUID + NAME)))))
    video_packet[1:3] = b"\x5f\xff"  # (its unit start flag kept)
    source = _packets(0, PAT) + bytes(video_packet) + _packets(VIDEO_PID, _pes(0xE0, VIDEO))
    found_and_refused(tmp_path, source, video.H264)
    filler = b"\x47\x1f\xff\x10" + b"\xff" * 184 + b"\x47\x1f\xff\x11" + bytes(184)
    assert (
        frames.headers(encapsulate([_packets(0, PAT) + filler]), video.H264).count(b"\xff" * 8) == 0
    )
