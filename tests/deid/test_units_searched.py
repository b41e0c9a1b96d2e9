"""Video units that are no coded picture's data: searched whole, as a header is.

An SEI unit whose start code is damaged holds its text as part of the unit before it (a
parameter set); one whose header is damaged (its forbidden bit set, a type reserved or
unspecified) is a unit no decoder reads. The walk read SEI units only, and passed over
both: the text went into the copy, neither blanked nor searched (fuzz seed 160). Now every
unit but a coded slice under a sound header is searched (``video.picture``): in a byte
stream held and streamed, cut by fragments anywhere, in a transport stream's payloads, and
in an MP4 file's samples. A value found refuses the object. A slice's bytes are not
searched as a header's are: they are a picture's, where a short value's bytes lie by chance
(the long ones are searched for in all the frames' bytes: ``test_frame_data_searched``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import uid
from pydicom.encaps import encapsulate

from indexer.deid import frames, video
from tests.deid.test_damaged_headers import _ts
from tests.deid.test_frames import (
    H264_HEAD,
    IMAGE,
    NAME,
    SLICE,
    UUID,
    _box,
    _copy,
    _cut_into,
    _escaped,
    _mp4_cuts,
    _nal,
    _object,
    _rbsp,
    _refused,
    _sei,
    _streamed,
)
from tests.deid.test_mp4_tracks import AVC, _file, streamed_as_held

pytestmark = pytest.mark.usefixtures("leaks_searched_both_ways", "fragments_as_they_come")

HEVC_HEAD = b"\x00\x00\x00\x01\x40\x01\x0c\x01"  # a video parameter set
HEVC_SLICE = b"\x00\x00\x01\x26\x01" + IMAGE  # an IDR slice
MPEG2_HEAD = b"\x00\x00\x01\xb3\x02\x00\x10\x14"  # a sequence header
MPEG2_SLICE = b"\x00\x00\x01\x00\x00\x0f\x00\x00\x01\x01" + IMAGE  # a picture, its slice
NO_START = b"\x00\x00\x00\x21"  # a start code damaged: its unit is the one before's
SYNTAX = {video.H264: uid.MPEG4HP41, video.HEVC: uid.HEVCMP51, video.MPEG2: uid.MPEG2MPML}


def _stream(codec: str, header: bytes | None = None, *, start: bytes = b"") -> bytes:
    """A stream of ``codec`` whose user data holds the name: its unit's ``header`` (None:
    the codec's own), its ``start`` code (none: a sound one)."""
    if codec == video.MPEG2:
        unit = (start or b"\x00\x00\x01") + (header or b"\xb2") + NAME
        return MPEG2_HEAD + unit + MPEG2_SLICE
    sound = b"\x06" if codec == video.H264 else b"\x4e\x01"
    unit = _sei((5, UUID + NAME), header=header or sound)
    if start:
        unit = start + unit[4:]
    if codec == video.H264:
        return H264_HEAD + unit + b"\x00\x00\x01" + SLICE
    return HEVC_HEAD + unit + HEVC_SLICE


def found_and_refused(
    tmp_path: Path, source: bytes, codec: str, text: bytes = NAME, seed: int | None = None
) -> None:
    """``text`` is in the header bytes of the pixel data ``source``, held, and streamed in
    fragments cut at any even place (``seed``: the MP4 cuts, ``_mp4_cuts``; none: two
    fragments); the object holding it, its patient's name ``NAME``, is refused."""
    assert text in frames.headers(encapsulate([source]), codec)
    cuts = [(c,) for c in range(8, len(source), 2)] if seed is None else _mp4_cuts(source, seed)
    for cut in cuts:
        assert text in _streamed(tmp_path, _cut_into(source, cut), codec)[1], cut
    message = _refused(tmp_path, _object(source, ts=SYNTAX[codec], PatientName=NAME.decode()))
    assert "(0010,0010)" in message
    assert "PHIMARK" not in message


DAMAGED = {  # (codec, the damaged unit's header, its start code)
    "h264 start code": (video.H264, None, NO_START),
    "h264 forbidden bit": (video.H264, b"\xd0", b""),
    "h264 reserved type": (video.H264, b"\x17", b""),
    "h264 unspecified type": (video.H264, b"\x1f", b""),
    "hevc start code": (video.HEVC, None, NO_START),
    "hevc forbidden bit": (video.HEVC, b"\x85\x33", b""),
    "hevc reserved type": (video.HEVC, b"\x52\x01", b""),
    "hevc temporal id 0": (video.HEVC, b"\x00\x00", b""),  # (a slice's type: fuzz seed 163)
    "mpeg2 start code": (video.MPEG2, None, NO_START),
    "mpeg2 reserved code": (video.MPEG2, b"\xb0", b""),
    "mpeg2 sequence error": (video.MPEG2, b"\xb4", b""),
}


def _damaged(name: str) -> tuple[str, bytes]:
    codec, header, start = DAMAGED[name]
    return codec, _stream(codec, header, start=start)


@pytest.mark.parametrize("name", DAMAGED)
def test_a_unit_that_is_no_slice_is_searched_held_and_streamed_cut_anywhere(tmp_path, name):
    """The name in a damaged unit is in the header bytes searched, held and streamed,
    whatever even cut of the stream into two fragments; nothing of it is blanked."""
    codec, stream = _damaged(name)
    assert NAME in frames.headers(encapsulate([stream]), codec)
    at = stream.index(NAME)
    for cut in range(2, len(stream) - 1, 2):
        value = encapsulate([stream[:cut], stream[cut:]])
        assert NAME in frames.headers(value, codec), cut
        blanked, found = _streamed(tmp_path, value, codec)
        assert NAME in found, cut
        assert blanked == frames.blank(value, codec)[0], cut
    assert stream[at : at + len(NAME)] == NAME  # (not blanked: no decoder reads it)


@pytest.mark.parametrize("name", DAMAGED)
def test_an_object_whose_damaged_unit_holds_the_name_is_refused(tmp_path, name):
    """The ingest refuses the object, naming where the value came from, not the value;
    the sound stream's user data is blanked, and the object indexed."""
    codec, stream = _damaged(name)
    message = _refused(tmp_path, _object(stream, ts=SYNTAX[codec], PatientName=NAME.decode()))
    assert "(0010,0010)" in message
    assert "PHIMARK" not in message
    sound = _copy(_object(_stream(codec), ts=SYNTAX[codec], PatientName=NAME.decode()))
    assert NAME not in sound


@pytest.mark.parametrize(
    ("codec", "first", "read"),
    [
        (video.H264, 0x65, True),  # an IDR slice
        (video.H264, 0x41, True),  # a slice
        (video.H264, 0x14, True),  # a slice extension (SVC, MVC)
        (video.H264, 0x67, False),  # a sequence parameter set
        (video.H264, 0x09, False),  # an access unit delimiter
        (video.H264, 0xE5, False),  # an IDR slice's type, the forbidden bit set
        (video.HEVC, 0x26, True),  # an IDR slice
        (video.HEVC, 0x02, True),  # a trailing picture's slice
        (video.HEVC, 0x3E, True),  # a reserved slice type
        (video.HEVC, 0x40, False),  # a video parameter set
        (video.HEVC, 0xA6, False),  # an IDR slice's type, the forbidden bit set
        (video.MPEG2, 0x01, True),  # the first slice
        (video.MPEG2, 0xAF, True),  # the last slice
        (video.MPEG2, 0x00, False),  # a picture header
        (video.MPEG2, 0xB3, False),  # a sequence header
    ],
)
def test_what_is_a_pictures_data(codec, first, read):
    """Slices under a sound header are picture data; every other unit is searched."""
    assert video.picture(codec, first) is read


def test_an_hevc_slice_of_temporal_id_plus_1_of_0_is_no_pictures_data():
    """HEVC's header's second byte holds the temporal id plus 1, which is never 0."""
    assert video.picture(video.HEVC, 0x26, 0x01)
    assert not video.picture(video.HEVC, 0x26, 0x00)
    assert video.picture(video.H264, 0x65, 0x00)  # (H.264's header is one byte)


SLICE_START = {  # a slice's start code and header
    video.H264: b"\x00\x00\x01\x65\x88",
    video.HEVC: b"\x00\x00\x01\x26\x01",
    video.MPEG2: b"\x00\x00\x01\x01",
}


@pytest.mark.parametrize("codec", SLICE_START)
def test_a_slices_bytes_are_not_searched_as_a_header(codec):
    """A slice is a picture's data, neither blanked nor searched as a header is (a long
    value there refuses the object all the same: ``test_frame_data_searched``)."""
    stream = _stream(codec) + SLICE_START[codec] + NAME
    assert stream.count(NAME) == 2  # in the user data, in the slice
    assert NAME not in frames.headers(frames.blank(encapsulate([stream]), codec)[0], codec)
    copy = _copy(_object(stream, ts=SYNTAX[codec], PatientName=NAME.decode()))
    assert copy.count(NAME) == 1


def test_a_transport_streams_damaged_unit_is_searched_held_and_streamed(tmp_path):
    """In a PES packet's payload, cut anywhere by fragments: found, and refused."""
    pes = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05" + bytes(5)
    source = _ts(0x100, pes + _damaged("h264 forbidden bit")[1][: 182 - len(pes)])
    assert NAME in source
    found_and_refused(tmp_path, source, video.H264)


def _sample(header: bytes) -> bytes:
    """An H.264 sample: an SEI unit of ``header``, its user data holding the name; a slice."""
    return _nal(header + _escaped(_rbsp((5, UUID + NAME)))) + _nal(SLICE)


@pytest.mark.parametrize("header", [b"\xd0", b"\x17"], ids=["forbidden bit", "reserved type"])
def test_an_mp4_samples_damaged_unit_is_searched_held_and_streamed(tmp_path, header):
    """In an MP4 file's H.264 sample, held and streamed cut anywhere: found, and refused;
    the sound sample's user data is blanked."""
    source = _file(tracks=[(b"vide", AVC, [[_sample(header)]])])
    found_and_refused(tmp_path, source, video.H264, seed=160)
    sound = _file(tracks=[(b"vide", AVC, [[_sample(b"\x06")]])])
    assert NAME not in _copy(_object(sound, ts=uid.MPEG4HP41, PatientName=NAME.decode()))


EXIF_SAMPLE = b"\xff\xd8" + b"\xff\xe1\x00\x1cExif\x00\x00" + NAME + b"\xff\xd9"
DAMAGED_ENTRIES = {  # a visual sample entry no decoder reads: its samples are zeroed
    "no four letters": _box(b"jp\x00\x00", bytes(78)),
    "damaged H.264 kind": _box(b"\xff\xffvc1", bytes(78) + _box(b"avcC", b"\x01\x64\x00")),
    "H.264 of no configuration": _box(b"avc1", bytes(78)),
}


@pytest.mark.parametrize("name", DAMAGED_ENTRIES)
def test_a_video_track_no_decoder_reads_has_its_samples_zeroed(tmp_path, name):
    """A video track whose sample entry is damaged (its kind no codec's; an H.264 entry
    without its configuration): its samples were kept unread, and an Exif (or an SEI's
    text) in them went into the copy. They are zeroed, held and streamed cut anywhere;
    `verify` searches them. A track of a codec its entry names (MPEG-4 Visual) is kept."""
    entry = DAMAGED_ENTRIES[name]
    source = _file(tracks=[(b"vide", entry, [[EXIF_SAMPLE]])])
    zeroed = _file(tracks=[(b"vide", entry, [[bytes(len(EXIF_SAMPLE))]])])
    streamed_as_held(tmp_path, source, zeroed, NAME, 162)
    copy = _copy(_object(source, ts=uid.MPEG4HP41, PatientName=NAME.decode()))
    assert NAME not in copy
    other = _file(tracks=[(b"vide", _box(b"mp4v", bytes(78)), [[EXIF_SAMPLE]])])
    assert NAME in _copy(_object(other, ts=uid.MPEG4HP41))


def test_an_mp4_unit_whose_length_runs_past_its_sample_is_searched(tmp_path):
    """A NAL unit's length that claims more than its sample holds (damage): the walk read
    it as a slice, and the SEI text it took in was neither blanked nor searched. It is
    searched to the sample's end, held and streamed cut anywhere: the object is refused."""
    sei = b"\x06" + _escaped(_rbsp((5, UUID + NAME)))
    sample = (len(sei) + 400).to_bytes(4, "big") + b"\x65\x88" + sei[1:]
    source = _file(tracks=[(b"vide", AVC, [[sample]])])
    found_and_refused(tmp_path, source, video.H264, seed=163)


HVC = _box(b"hvc1", bytes(78) + _box(b"hvcC", bytes(21) + b"\x03\x00"))  # 4-byte lengths


@pytest.mark.parametrize("header", [b"\x00\x00", b"\x85\x33"], ids=["temporal id 0", "forbidden"])
def test_an_hevc_samples_damaged_unit_is_searched_held_and_streamed(tmp_path, header):
    """In an MP4 file's HEVC sample, a unit whose header is damaged (a slice's type with a
    temporal id plus 1 of 0; a forbidden bit), held and streamed cut anywhere (its header's
    two bytes too): found, and refused."""
    unit = header + _escaped(_rbsp((5, UUID + NAME)))
    sample = _nal(unit) + _nal(b"\x26\x01" + IMAGE)
    odd = _nal(b"\x26\x01\x12")  # a sample before it: its unit's header bytes at 43, 44
    source = _file(tracks=[(b"vide", HVC, [[odd, sample]])])
    assert source.index(sample) + 4 == 43  # a cut at 44 lies between them
    found_and_refused(tmp_path, source, video.HEVC, seed=164)
