"""Frames whose headers are damaged so that a walk cannot go on: the rest searched whole.

A JPEG whose header holds bytes that are no segment where one begins: libjpeg passes over such
bytes ("extraneous bytes before marker") to the next marker, and reads the segments after it (a
comment after a damaged Exif segment). A JPEG 2000 codestream's header holding such bytes, or no
tile-part where the last one's length ends: whether a decoder reads on or stops there, the
comments after them stayed in the copy. Video whose first bytes are no start code (nor a
transport, program or MP4 stream's): decoders pass over them to the first start code, and read
the units after it (an SEI message's text). The walk ended at the damage (or never began), and
what came after was neither blanked nor searched: a patient's name went into the copy. Now all
from the damage on is searched as a header is, held and streamed, in one fragment or several: a
value found refuses the object (``leak_detected``). Nothing more is blanked (a walk on would be
misled by a damaged length, or by an Exif's own 0xFF bytes).
"""

from __future__ import annotations

import struct

import pytest
from pydicom import uid
from pydicom.encaps import encapsulate

from indexer.deid import frames, j2k, jpeg, video
from indexer.errors import DeidError
from indexer.spans import FileSpan, version_of
from tests.deid.test_frames import (
    H264_HEAD,
    IMAGE,
    JFIF,
    NAME,
    SLICE,
    UUID,
    _copy,
    _object,
    _refused,
    _seg,
    _sei,
    _streamed,
)

pytestmark = pytest.mark.usefixtures("leaks_searched_both_ways")

CAMERA = _seg(0xE1, b"Exif\x00\x00" + b"\x00" * 40 + b"Camera Model 7")  # no one's
NAMED = _seg(0xFE, NAME)  # a comment: the patient's name
SOS = _seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
DAMAGE = ["marker byte", "extraneous bytes", "short length", "after a scan"]


def _damaged(how: str, comment: bytes = NAMED) -> bytes:
    """A JPEG whose header is damaged ``how`` before the segment ``comment``."""
    if how == "marker byte":  # the Exif segment's 0xFF became 0x7F
        head = b"\x7f" + CAMERA[1:] + comment
    elif how == "extraneous bytes":  # bytes between two segments
        head = CAMERA + b"\x00\x17\x2a\x00" + comment
    elif how == "short length":  # the Exif segment's length below 2
        head = CAMERA[:2] + struct.pack(">H", 1) + CAMERA[4:] + comment
    elif how == "after a scan":  # a table's length below 2, between two scans
        head = CAMERA + SOS + IMAGE + b"\xff\xc4\x00\x01" + comment
    else:
        raise ValueError(how)
    return b"\xff\xd8" + JFIF + head + SOS + IMAGE + b"\xff\xd9"


def _value(*fragments: bytes) -> bytes:
    return encapsulate([f + b"\x00" * (len(f) % 2) for f in fragments])


def _cut_before(frame: bytes, text: bytes) -> list[bytes]:
    """``frame`` in two fragments, the second from an even place before ``text``."""
    at = frame.index(text) - 6
    at -= at % 2
    return [frame[:at], frame[at:]]


@pytest.mark.parametrize("how", DAMAGE)
def test_what_follows_damage_in_a_header_is_searched_held_and_streamed(tmp_path, how):
    frame = _damaged(how)
    for value in (_value(frame), _value(*_cut_before(frame, NAME))):
        assert NAME in frames.headers(value), how
        _blanked, found = _streamed(tmp_path, value, None)
        assert NAME in found, how


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("fragments", [1, 2])
def test_a_name_past_damage_in_a_jpeg_header_refuses_the_object(tmp_path, how, fragments):
    """The walk stopped at the damage: the object was indexed, the name in its copy."""
    frame = _damaged(how)
    pieces = [frame] if fragments == 1 else _cut_before(frame, NAME)
    message = _refused(tmp_path, _object(*pieces, PatientName=NAME.decode()))
    assert "(0010,0010)" in message
    assert "PHIMARK" not in message


@pytest.mark.parametrize("how", DAMAGE)
def test_past_damage_nothing_more_is_blanked(how):
    """A comment past the damage holding no one's name stays as it is, and the object is
    indexed: which bytes are segments there is not told."""
    frame = _damaged(how, _seg(0xFE, b"no one's text"))
    copy = _copy(_object(frame, PatientName=NAME.decode()))
    assert b"no one's text" in copy
    assert NAME not in copy


def test_a_sound_header_ends_its_search_at_the_first_scan():
    """Without damage the header searched is the segments before the scan, as before."""
    frame = b"\xff\xd8" + JFIF + NAMED + SOS + IMAGE + b"\xff\xd9"
    _blanks, regions = jpeg.parse(frame)
    assert regions == [(0, frame.index(SOS))]


SIZ = _seg(0x51, b"\x00\x00" + b"\x00\x00\x00\x08" * 8 + b"\x00\x01\x07\x01\x01")
COD = _seg(0x52, b"\x00\x00\x00\x01\x01\x05\x04\x04\x00\x00")
J2K_DAMAGE = ["marker byte", "short length", "long length", "tile-part length", "tile-part"]


def _codestream(how: str, comment: bytes = NAME) -> bytes:
    """A JPEG 2000 codestream whose header is damaged ``how`` before a comment holding
    ``comment``: in the main header, or (``tile-part``) in the second tile-part's; or the
    first tile-part's length (Psot) is damaged, the second tile-part's comment after it."""
    com = _seg(0x64, b"\x00\x01" + comment)  # Rcme 1: Latin text
    cod, tile_head = COD, b""
    if how == "marker byte":  # the COD segment's 0xFF became 0x7F
        cod = b"\x7f" + COD[1:]
    elif how == "short length":
        cod = COD[:2] + struct.pack(">H", 1) + COD[4:]
    elif how == "long length":  # past the comment's start: into its text
        cod = COD[:2] + struct.pack(">H", len(COD) + 6) + COD[4:]
    elif how == "tile-part":  # the second tile-part's first segment's 0xFF became 0x00
        tile_head = b"\x00" + COD[1:]
    main = b"\xff\x4f" + SIZ + (cod if how != "tile-part" else COD)

    first = _tile_part(0, b"")
    if how == "tile-part length":  # Psot 40 bytes short: no tile-part where it ends
        first = first[:6] + struct.pack(">L", len(first) - 40) + first[10:]
    if how in ("tile-part", "tile-part length"):
        return main + first + _tile_part(1, tile_head + com) + b"\xff\xd9"
    return main + com + first + _tile_part(1, b"") + b"\xff\xd9"


def _tile_part(part: int, head: bytes, parts: int = 2) -> bytes:
    """A tile-part (of tile 0) whose header holds ``head`` after its SOT."""
    body = head + b"\xff\x93" + IMAGE
    return b"\xff\x90" + struct.pack(">HHLBB", 10, 0, 12 + len(body), part, parts) + body


@pytest.mark.parametrize("how", J2K_DAMAGE)
@pytest.mark.parametrize("fragments", [1, 2])
def test_what_follows_damage_in_a_codestreams_header_is_searched(tmp_path, how, fragments):
    """JPEG 2000's walk stopped at bytes that are no marker segment: the comment after
    them went into the copy, neither blanked nor searched. All from the damage on is
    searched, held and streamed: the object is refused. Undamaged, the comment is blanked
    and the object indexed; past damage, a comment holding no one's name stays."""
    stream = _codestream(how)
    pieces = [stream] if fragments == 1 else _cut_before(stream, NAME)
    assert NAME in frames.headers(_value(*pieces)), how
    assert NAME in _streamed(tmp_path, _value(*pieces), None)[1], how
    message = _refused(
        tmp_path, _object(*pieces, ts=uid.JPEG2000Lossless, PatientName=NAME.decode())
    )
    assert "(0010,0010)" in message
    assert "PHIMARK" not in message
    sound = _codestream("sound")
    assert NAME not in _copy(_object(sound, ts=uid.JPEG2000Lossless, PatientName=NAME.decode()))
    other = _codestream(how, b"no one's text")
    copy = _copy(_object(other, ts=uid.JPEG2000Lossless, PatientName=NAME.decode()))
    assert b"no one's text" in copy


def test_past_damage_in_a_tile_parts_header_the_walk_goes_on_where_its_length_ends():
    """Damage in a tile-part's header: searched to where the tile-part's length ends it,
    and the next tile-part walked from there: its comment is blanked."""
    damaged = b"\x00" + COD[1:] + _seg(0x64, b"\x00\x01" + NAME)
    nexts = _seg(0x64, b"\x00\x01the next one's comment")
    stream = b"\xff\x4f" + SIZ + COD + _tile_part(0, damaged, 2) + _tile_part(1, nexts, 2)
    stream += b"\xff\xd9"
    blanks, regions = j2k.parse(stream)
    at = stream.index(b"the next one's")
    assert any(a <= at < z and fill == b" " for a, z, fill in blanks)
    assert NAME in b"".join(stream[a:z] for a, z in regions)
    copy = _copy(_object(stream, ts=uid.JPEG2000Lossless))
    assert b"the next one's" not in copy
    assert NAME in copy  # (no one's: the object holds no such name)


def test_a_sound_codestreams_search_is_its_headers():
    """Undamaged, the headers searched are the main header and each tile-part's."""
    stream = _codestream("sound")
    _blanks, regions = j2k.parse(stream)
    first = stream.index(b"\xff\x90")
    second = stream.index(b"\xff\x90", first + 1)
    assert regions == [(0, first), (first, first + 12), (second, second + 12)]


JUNK = b"\x84\x17"  # damage before the first start code
STREAMS = {  # (transfer syntax, a stream holding the name in its user data, its codec)
    "h264": (uid.MPEG4HP41, H264_HEAD + _sei((5, UUID + NAME)) + b"\x00\x00\x01" + SLICE),
    "mpeg2": (
        uid.MPEG2MPML,
        b"\x00\x00\x01\xb3\x02\x00\x10\x14\x00\x00\x01\xb2" + NAME + b"\x00\x00\x01\x00" + IMAGE,
    ),
}


@pytest.mark.parametrize("name", STREAMS)
@pytest.mark.parametrize("fragments", [1, 2])
def test_video_with_damage_before_its_first_start_code_is_searched_whole(tmp_path, name, fragments):
    """Held and streamed, the whole stream is searched: the object is refused. Without
    the damage its user data is blanked, and it is indexed."""
    ts, stream = STREAMS[name]
    codec = video.VIDEO[ts]
    damaged = JUNK + stream
    pieces = [damaged] if fragments == 1 else [damaged[:10], damaged[10:]]
    value = _value(*pieces)
    assert NAME in frames.headers(value, codec)
    _blanked, found = _streamed(tmp_path, value, codec)
    assert NAME in found
    message = _refused(tmp_path, _object(*pieces, ts=ts, PatientName=NAME.decode()))
    assert "(0010,0010)" in message
    assert "PHIMARK" not in message
    sound = _copy(_object(stream, ts=ts, PatientName=NAME.decode()))
    assert NAME not in sound


def _ts(pid: int, payload: bytes) -> bytes:
    """One transport stream packet of ``pid`` (a unit's start), filled out by stuffing."""
    stuffing = b"\x00" + b"\xff" * (182 - len(payload))
    return bytes([0x47, 0x40 | pid >> 8, pid & 0xFF, 0x30, len(stuffing)]) + stuffing + payload


SHORT_H264 = H264_HEAD + _sei((5, UUID + NAME)) + b"\x00\x00\x01\x65\x88\x84" + bytes(8)
MPEG2 = b"\x00\x00\x01\xb3\x14\x00\xf0\x23\x00\x00\x01\xb2" + NAME + b"\x00\x00\x01\x00" + IMAGE


def _pes_streams(data_length: int) -> dict[str, tuple[str, bytes]]:
    """A transport stream (H.264) and a program stream (MPEG-2), each one video PES packet
    whose header data length is ``data_length`` past the PTS's five bytes."""
    ts_pes = b"\x00\x00\x01\xe0\x00\x00\x80\x80" + bytes([5 + data_length]) + bytes(5)
    ps_body = b"\x80\x80" + bytes([5 + data_length]) + bytes(5) + MPEG2
    pack = b"\x00\x00\x01\xba\x44\x00\x04\x00\x04\x01\x01\x89\xc3\xf8"
    return {
        "transport": (uid.MPEG4HP41, _ts(0x100, ts_pes + SHORT_H264)),
        "program": (
            uid.MPEG2MPML,
            pack + b"\x00\x00\x01\xe0" + len(ps_body).to_bytes(2, "big") + ps_body,
        ),
    }


@pytest.mark.parametrize("kind", ["transport", "program"])
def test_a_pes_header_whose_data_length_takes_in_the_payload_is_searched(tmp_path, kind):
    """A damaged header data length takes in the stream's first units, past the name in
    its user data: demultiplexers pass over those bytes, and the unit's start code with
    them, so it was neither blanked nor searched. The header's data is searched: the object
    is refused. Undamaged, the user data is blanked and the object indexed."""
    ts, sound = _pes_streams(0)[kind]
    stream = SHORT_H264 if kind == "transport" else MPEG2
    into_name = stream.index(NAME) + len(NAME) + 1  # (the name taken in whole)
    ts, damaged = _pes_streams(into_name)[kind]
    codec = video.VIDEO[ts]
    assert NAME in frames.headers(_value(damaged), codec)
    _blanked, found = _streamed(tmp_path, _value(damaged), codec)
    assert NAME in found
    message = _refused(tmp_path, _object(damaged, ts=ts, PatientName=NAME.decode()))
    assert "(0010,0010)" in message
    assert "PHIMARK" not in message
    assert NAME not in _copy(_object(sound, ts=ts, PatientName=NAME.decode()))


FRAMES = {  # (transfer syntax, a frame holding the name in its header, what its start became)
    "jpeg": (uid.JPEGBaseline8Bit, b"\xff\xd8" + JFIF + NAMED + SOS + IMAGE + b"\xff\xd9", b"\xfe"),
    "jpeg, second byte": (
        uid.JPEGBaseline8Bit,
        b"\xff\xd8" + JFIF + NAMED + SOS + IMAGE + b"\xff\xd9",
        b"\xff\x55",
    ),
    "jpeg-ls": (
        uid.JPEGLSLossless,
        b"\xff\xd8" + CAMERA + NAMED + SOS + IMAGE + b"\xff\xd9",
        b"\x00",
    ),
    "jpeg 2000": (uid.JPEG2000Lossless, _codestream("sound"), b"\xff\x00"),
}


@pytest.mark.parametrize("name", FRAMES)
@pytest.mark.parametrize("fragments", [1, 2])
def test_frames_that_begin_as_no_frame_of_their_syntax_are_searched(tmp_path, name, fragments):
    """A first frame whose first bytes are damaged begins no walk: its header text went
    into the copy, neither blanked nor searched (fuzz seed 163). Under a JPEG or JPEG 2000
    syntax it is searched whole, held and streamed, in one fragment or two, up to the next
    frame's start: the object is refused. The next frame is walked as before; under a
    syntax whose frames are no such codestream (RLE) nothing is searched."""
    ts, frame, start = FRAMES[name]
    damaged = start + frame[len(start) :]
    pieces = [damaged] if fragments == 1 else _cut_before(damaged, NAME)
    value = _value(*pieces, frame)
    assert NAME in frames.headers(value, strict=True)
    assert NAME not in frames.headers(_value(*pieces), strict=False)
    path = tmp_path / "frames"
    path.write_bytes(value)
    span = FileSpan(path, 0, len(value), version_of(path.stat()))
    assert NAME in frames.streamed_headers(span, strict=True)
    copied = frames.Blanked(span, 0, len(value), check=lambda b: "PN" * (NAME in b), strict=True)
    with pytest.raises(DeidError, match=r"header \(from PN\)"):
        b"".join(copied.chunks())
    data = _object(*pieces, frame, ts=ts, PatientName=NAME.decode())
    message = _refused(tmp_path, data)
    assert "(0010,0010)" in message
    assert "PHIMARK" not in message
    copy = _copy(_object(damaged, frame, ts=ts))  # (no one's name: the frames copied)
    assert copy.count(NAME) == 1  # the damaged frame's, kept; the sound one's blanked
    assert NAME not in _copy(_object(frame, frame, ts=ts, PatientName=NAME.decode()))
