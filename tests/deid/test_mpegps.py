"""Video in a program stream: user data blanked whole, though a PES header cuts it.

MPEG-2 video wrapped into DICOM is most often a program stream (a ``.mpg`` file). Its video
lies in PES packets, and a user data unit may run from one packet into the next; read as a
bare stream of start codes, the next packet's header would end the unit, and the rest of
its text would be neither blanked nor searched.
"""

from __future__ import annotations

import random
import struct

import pytest
from pydicom import uid
from pydicom.encaps import encapsulate

from indexer.deid import frames, mpegps, video
from tests.builders import streamed_copy
from tests.deid.test_frames import (
    IMAGE,
    MARK,
    NAME,
    TEXT,
    _copy,
    _even,
    _frames_of,
    _object,
    _refused,
    _spaced,
    _streamed,
)
from tests.deid.test_mpegts import fed_cut_anywhere, fed_in_parts
from tests.deid.test_units_searched import found_and_refused

# the pooled search too; fragments as they come, the cuts tried (``frames.JOIN_BYTES``)
pytestmark = pytest.mark.usefixtures("leaks_searched_both_ways", "fragments_as_they_come")

PACK2 = b"\x00\x00\x01\xba\x44\x00\x04\x00\x04\x01\x01\x89\xc3\xf8"  # MPEG-2, no stuffing
PACK2_STUFFED = PACK2[:-1] + b"\xfa\xff\xff"  # two stuffing bytes
PACK1 = b"\x00\x00\x01\xba\x21\x00\x01\x00\x01\x80\x1b\x91"  # MPEG-1
SYSTEM = b"\x00\x00\x01\xbb\x00\x06\x80\x1b\x91\x04\xe1\xff"
SEQUENCE = b"\x00\x00\x01\xb3\x14\x00\xf0\x23\xff\xff\xe0\x18"
USER = b"\x00\x00\x01\xb2" + MARK + TEXT * 3
PICTURE = b"\x00\x00\x01\x00\x00\x0f\xff\xf8" + b"\x00\x00\x01\x01" + IMAGE
VIDEO = SEQUENCE + USER + PICTURE
SPLIT = len(SEQUENCE) + 60  # where the second video packet begins: in the user data
BLANKED = SEQUENCE + USER[:4] + _spaced(USER[4:]) + PICTURE


def _pes(stream_id: int, data: bytes, *, mpeg1: bool = False) -> bytes:
    """A PES packet: MPEG-2's header (a PTS), or MPEG-1's (stuffing, a buffer size, a PTS
    and a DTS)."""
    if mpeg1:
        header = b"\xff\xff" + b"\x60\x2e" + b"\x31\x00\x01\x00\x01" + b"\x11\x00\x01\x00\x01"
    else:
        header = b"\x81\x80\x05\x21\x00\x01\x00\x01"
    return (
        b"\x00\x00\x01" + bytes([stream_id]) + struct.pack(">H", len(header + data)) + header + data
    )


def _program(video: bytes, *, mpeg1: bool = False, padding: bytes = b"\xff" * 8) -> bytes:
    """A stream: a pack, its system header, ``video`` in two PES packets (the second one
    beginning in its user data), audio whose bytes look like user data, padding, the end."""
    return (
        (PACK1 if mpeg1 else PACK2)
        + SYSTEM
        + _pes(0xE0, video[:SPLIT], mpeg1=mpeg1)
        + _pes(0xC0, b"\xff\xfd\x00\x00\x01\xb2audio, not video", mpeg1=mpeg1)
        + (PACK1 if mpeg1 else PACK2_STUFFED)
        + _pes(0xE0, video[SPLIT:], mpeg1=mpeg1)
        + b"\x00\x00\x01\xbe"
        + struct.pack(">H", len(padding))
        + padding
        + b"\x00\x00\x01\xb9"
    )


@pytest.mark.parametrize("mpeg1", [False, True])
def test_user_data_cut_by_a_pes_header_is_blanked_whole(mpeg1):
    """Both parts of the unit become spaces; every header, the audio and the picture stay."""
    source = _program(VIDEO, mpeg1=mpeg1)
    assert mpegps.is_program_stream(source)
    copy = _copy(_object(source, ts=uid.MPEG2MPML))
    assert b"PHIMARK" not in copy
    assert _frames_of(copy) == [_even(_program(BLANKED, mpeg1=mpeg1))]


def test_a_demultiplexer_fed_a_stream_cut_at_any_byte_blanks_it_as_whole():
    """Streamed, fragments cut the stream anywhere: in a pack header, a PES header, the
    user data, just past an end code (two streams one after the other, as files joined).
    Each cut (one, or two) gives the bytes the whole stream gives."""
    stream = _program(VIDEO) + _program(VIDEO, mpeg1=True)
    whole = fed_cut_anywhere(stream, video.MPEG2, 200)
    assert whole == _program(BLANKED) + _program(BLANKED, mpeg1=True)


def test_streamed_program_stream_is_blanked_as_held(tmp_path, monkeypatch):
    data = _object(_program(VIDEO), ts=uid.MPEG2MPML)
    whole, copy = streamed_copy(tmp_path, monkeypatch, data, 7, frames.Blanked)
    assert copy == whole
    assert b"PHIMARK" not in copy


def test_verify_finds_the_text_held_and_streamed(tmp_path):
    """The user data unit, joined across the PES header, is searched whole."""
    value = encapsulate([_program(VIDEO)])
    found = frames.headers(value, video.MPEG2)
    assert MARK + TEXT * 3 in found
    assert _streamed(tmp_path, value, video.MPEG2)[1] == found


def test_the_packets_after_bytes_that_are_no_packet_are_read():
    """Damage between packets, the video's own start codes among it (user data, a slice):
    the next packet is the next start code of the stream's own, and what lies before it is
    searched."""
    junk = b"\x00\x00\x01\xb2\x7f\xff" + NAME + b"\x00\x00\x01\x01"
    source, expected = _program(VIDEO), _program(BLANKED)
    at = source.index(PACK2_STUFFED)
    copy = _copy(_object(source[:at] + junk + source[at:], ts=uid.MPEG2MPML))
    assert _frames_of(copy) == [_even(expected[:at] + junk + expected[at:])]
    assert NAME in frames.headers(encapsulate([source[:at] + junk + source[at:]]), video.MPEG2)


def test_a_value_in_padding_is_caught_by_the_leak_check(tmp_path):
    stream = _program(VIDEO, padding=b"\xff" * 4 + NAME)
    data = _object(stream, ts=uid.MPEG2MPML, PatientName=NAME.decode())
    assert b"PHIMARK" not in _refused(tmp_path, data).encode()


def test_damaged_program_streams_never_raise():
    """Lengths that run past the stream, lost start codes, cut packets: only spaces (over
    bytes that were not zero) and zeros (a data stream's payload) are written, and the length
    stays."""
    rng = random.Random(20261205)  # noqa: S311 - a seeded stream of test inputs
    for base in (_program(VIDEO), _program(VIDEO, mpeg1=True)):
        for _ in range(1000):
            stream = bytearray(base)
            for _ in range(rng.randrange(1, 6)):
                stream[rng.randrange(len(stream))] = rng.randrange(256)
            if rng.random() < 0.3:
                del stream[rng.randrange(4, len(stream)) :]
            old = encapsulate([bytes(stream[: len(stream) - len(stream) % 2])])
            new, _count = frames.blank(old, video.MPEG2)
            assert len(new) == len(old)
            assert all(n in (o, 0) or (n == 0x20 and o) for o, n in zip(old, new, strict=True))
            frames.headers(new, video.MPEG2)


DATA_TEXT = b"KLV\x06\x0e\x2b\x34 " + MARK + TEXT


def _with_data(*, blanked: bool = False, mpeg1: bool = False) -> bytes:
    """A stream with data streams (metadata, ancillary data with MPEG-1's header, private
    stream 2 with none) holding ``DATA_TEXT``, and private stream 1 (audio). ``blanked``:
    as the copy holds it, the data streams' payloads zeroed."""
    data = bytes(len(DATA_TEXT)) if blanked else DATA_TEXT
    return (
        _program(BLANKED if blanked else VIDEO, mpeg1=mpeg1)
        + PACK2
        + _pes(0xFC, data)
        + _pes(0xF9, data, mpeg1=True)
        + b"\x00\x00\x01\xbf"
        + struct.pack(">H", len(data))
        + data
        + _pes(0xBD, b"\x80\x01\x00\x01" + TEXT)
        + b"\x00\x00\x01\xb9"
    )


def test_data_streams_payloads_are_zeroed():
    """Every header stays, and private stream 1 (a DVD's audio) is carried as it is."""
    copy = _copy(_object(_with_data(), ts=uid.MPEG2MPML))
    assert MARK not in copy
    assert _frames_of(copy) == [_even(_with_data(blanked=True))]


def test_a_data_packet_whose_header_cannot_be_read_is_zeroed_after_its_length():
    """Its header's data length runs past the packet: all after its length zeroed."""
    bad = b"\x00\x00\x01\xfc\x00\x20\x80\x80\xff" + DATA_TEXT[:29]
    stream = PACK2 + bad + b"\x00\x00\x01\xb9"
    copy = fed_in_parts(stream, video.MPEG2, ())
    assert copy == PACK2 + bad[:6] + bytes(32) + b"\x00\x00\x01\xb9"


def test_data_streams_cut_at_any_byte_are_zeroed_as_whole():
    whole = fed_cut_anywhere(_with_data(mpeg1=True), video.MPEG2, 100)
    assert whole == _with_data(blanked=True, mpeg1=True)


def test_verify_finds_data_streams_text_held_and_streamed(tmp_path):
    value = encapsulate([_with_data()])
    found = frames.headers(value, video.MPEG2)
    assert found.count(DATA_TEXT) == 3
    assert _streamed(tmp_path, value, video.MPEG2)[1] == found


SUBPICTURE = b"\x00\x40\x00\x20" + MARK + TEXT  # its size, its control's place, its lines
AC3 = b"\x80\x01\x00\x01" + TEXT  # a substream id, frames, a frame's place, its bytes


def _with_subpictures(*, blanked: bool = False, mpeg1: bool = False) -> bytes:
    """A DVD's stream: subpictures (substreams 20 and 3F of private stream 1) holding
    ``MARK``, AC-3 audio (substream 80). ``blanked``: as the copy holds it, the subpictures'
    payloads zeroed after their substream's id. ``mpeg1``: the packets' headers MPEG-1's."""
    picture = bytes(len(SUBPICTURE)) if blanked else SUBPICTURE
    return (
        _program(BLANKED if blanked else VIDEO)
        + PACK2
        + _pes(0xBD, b"\x20" + picture, mpeg1=mpeg1)
        + _pes(0xBD, AC3, mpeg1=mpeg1)
        + _pes(0xBD, b"\x3f" + picture[:20], mpeg1=mpeg1)
        + b"\x00\x00\x01\xb9"
    )


def test_a_dvds_subpictures_are_zeroed_and_its_audio_kept():
    """Subtitles drawn as pictures (a name, a date) cannot be searched: their payloads are
    zeroed, as a data stream's, their substream's id and every header kept; AC-3 audio in
    the same private stream is carried as it is."""
    copy = _copy(_object(_with_subpictures(), ts=uid.MPEG2MPML))
    assert MARK not in copy
    assert _frames_of(copy) == [_even(_with_subpictures(blanked=True))]
    assert AC3 in copy


def test_subpictures_cut_at_any_byte_are_zeroed_as_whole():
    whole = fed_cut_anywhere(_with_subpictures(), video.MPEG2, 100)
    assert whole == _with_subpictures(blanked=True)


def test_mpeg1_private_stream_1_is_no_dvds_and_is_kept():
    """A DVD's packets are MPEG-2's: in an MPEG-1 stream, private stream 1 is carried as it
    is, whatever its first byte."""
    stream = _with_subpictures(mpeg1=True)
    kept = fed_in_parts(stream, video.MPEG2, ())
    assert kept.count(SUBPICTURE) == 1
    assert kept.count(SUBPICTURE[:20]) == 2


def test_verify_finds_subpictures_held_and_streamed(tmp_path):
    value = encapsulate([_with_subpictures()])
    found = frames.headers(value, video.MPEG2)
    assert MARK in found
    assert _streamed(tmp_path, value, video.MPEG2)[1] == found


def test_bytes_no_packet_holds_cut_in_a_start_code_are_read_as_whole():
    """Damage between packets holding a video start code (00 00 01, then a byte below the
    stream's own ids) that a buffer's end cuts after its third byte: the start code was
    taken for a packet's, its length read from the bytes after it, and the packets those
    covered (data, video) were neither blanked nor searched. Each cut gives the bytes the
    whole stream gives, and the damage is searched."""
    junk = b"\x00\x00\x01\x72\x40\x00" + NAME
    at = len(_program(VIDEO))
    data = _with_data()[at:]
    # before a pack; before a data packet (the buffer's last bytes its start code's first)
    for before in (0, len(PACK2)):
        stream = _program(VIDEO) + data[:before] + junk + data[before:]
        whole = fed_cut_anywhere(stream, video.MPEG2, 50)
        assert MARK not in whole[at:]
        for cut in range(at, at + before + len(junk) + 1):
            walk = frames._demux(stream, video.MPEG2, blank=False)
            assert walk is not None
            found = walk.feed(bytearray(stream[:cut]))[1] + walk.feed(bytearray(stream[cut:]))[1]
            assert any(NAME in part for part in found), cut


def test_bytes_no_packet_holds_are_not_joined_to_others_a_packet_apart():
    """A value's two halves in damage before a packet and after it, a buffer's end between:
    not searched as one (the first half was kept to search with what comes next)."""
    halves = b"\xff\xff Roe^Ri", b"chard^PHIMARK \xff"
    stream = PACK2 + halves[0] + PACK2 + halves[1] + PACK2 + b"\x00\x00\x01\xb9"
    walk = frames._demux(stream, video.MPEG2, blank=False)
    assert walk is not None
    cut = stream.index(halves[1])
    found = walk.feed(bytearray(stream[:cut]))[1] + walk.feed(bytearray(stream[cut:]))[1]
    assert not any(b"Roe^Richard" in part for part in found)
    assert any(halves[0] in part for part in found)


def test_a_video_pes_header_longer_than_its_packet_is_searched(tmp_path):
    """A damaged header data length that runs past its packet's end (fuzz seed 166): the
    packet was taken for one whose header a buffer's end cut, and its bytes (user data
    holding the name) were neither parsed nor searched. They are searched as header data,
    held and streamed cut anywhere: the object is refused."""
    header = b"\x81\x80\x7c\x21\x00\x01\x00\x01"  # 124 bytes of header data: past the end
    data = SEQUENCE + b"\x00\x00\x01\xb2" + NAME
    packet = b"\x00\x00\x01\xe0" + struct.pack(">H", len(header + data)) + header + data
    source = PACK2 + SYSTEM + packet + _pes(0xE0, PICTURE) + b"\x00\x00\x01\xb9"
    found_and_refused(tmp_path, source, video.MPEG2)
    ts_sound = PACK2 + SYSTEM + _pes(0xE0, data) + _pes(0xE0, PICTURE) + b"\x00\x00\x01\xb9"
    assert NAME not in _copy(_object(ts_sound, ts=uid.MPEG2MPML, PatientName=NAME.decode()))
