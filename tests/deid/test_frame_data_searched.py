"""All of a compressed frame's bytes, pictures too, are searched for long values.

The leak check searched a frame's headers only (``frames.headers``): a slice's or a scan's
bytes are a picture's, where a value's bytes lie by chance. Damage moves text there all the
same: an H.264 SEI unit whose header byte became 0x55 (a 3D-AVC slice's type, 21) was read
as a slice, and its user data, the patient's name and a place, went into the copy (fuzz seed
168, object 321). Now every byte of the frames is searched for the values too long to lie
there by chance (``verify.DATA_MIN``: 8 bytes that are not NUL, of three kinds at least),
held, streamed and in ``verify``; shorter ones (a 4-letter name lies in random data some four
times a gigabyte) are not.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, JPEGLosslessSV1

from indexer import keys, spans, work
from indexer.deid import frames, verify, video
from indexer.errors import DeidError
from indexer.records import SourceFile
from indexer.sources import FileReader
from indexer.store.files import LocalStore
from tests.deid.test_frames import JFIF, NAME, PLAN, _jpeg, _object, _refused
from tests.deid.test_units_searched import SLICE_START, SYNTAX, _stream
from tests.test_pixels_in_place import found_name_whole_then_large

pytestmark = pytest.mark.usefixtures("leaks_searched_both_ways", "fragments_as_they_come")


@pytest.fixture
def ctx(tmp_path):
    store = LocalStore(tmp_path / "out")
    yield work.RunContext(PLAN, keys.generate(), store, "DI", 30, 1)
    store.close()


def _in_slice(codec: str, text: bytes) -> bytes:
    """A stream of ``codec`` whose user data holds the name (blanked), and a slice ``text``."""
    return _stream(codec) + SLICE_START[codec] + b"\x12\x34" + text + b"\x56"


def _named(stream: bytes, ts: str, name: bytes = NAME) -> bytes:
    return _object(stream, ts=ts, PatientName=name.decode())


def _copied(ctx: work.RunContext, tmp_path: Path, data: bytes) -> bytes:
    """The copy of ``data`` (it must be indexed), read back."""
    work.process(SourceFile("src-1", "/a/1.dcm", len(data), lambda: data), ctx)
    (copy,) = (tmp_path / "out").rglob("*.dcm")
    return copy.read_bytes()


@pytest.mark.parametrize("codec", SLICE_START)
def test_a_long_value_in_a_slice_refuses_the_object(tmp_path, codec):
    stream = _in_slice(codec, NAME)
    assert NAME not in frames.headers(frames.blank(encapsulate([stream]), codec)[0], codec)
    message = _refused(tmp_path, _named(stream, SYNTAX[codec]))
    assert "(0010,0010)" in message
    assert "PHIMARK" not in message


def test_an_sei_unit_whose_header_became_a_slices_refuses_the_object(tmp_path):
    """Fuzz seed 168, object 321: 0x55 is a 3D-AVC slice extension's header (type 21)."""
    stream = _stream(video.H264, b"\x55")
    assert video.picture(video.H264, 0x55)
    assert NAME not in frames.headers(encapsulate([stream]), video.H264)
    assert "(0010,0010)" in _refused(tmp_path, _named(stream, SYNTAX[video.H264]))


@pytest.mark.parametrize("ts", [JPEGBaseline8Bit, JPEGLosslessSV1])
def test_a_long_value_in_a_jpeg_scan_refuses_the_object(tmp_path, ts):
    frame = _jpeg(JFIF)
    frame = frame[:-2] + NAME + frame[-2:]  # in the entropy-coded data, before EOI
    assert NAME not in frames.headers(encapsulate([frame]))
    assert "(0010,0010)" in _refused(tmp_path, _named(frame, ts))


@pytest.mark.parametrize("codec", SLICE_START)
def test_short_values_in_a_slice_are_chance(ctx, tmp_path, codec):
    """A name of 7 bytes and an ID of 8 bytes of one kind lie in a picture's data by chance:
    not searched for there. The object is indexed, its slice as it came."""
    text = b"Roe^Ann 11111111"
    attrs = {"PatientName": "Roe^Ann", "PatientID": "11111111"}
    data = _object(_in_slice(codec, text), ts=SYNTAX[codec], **attrs)
    assert text in _copied(ctx, tmp_path, data)


def test_the_windows_searched_hold_every_value_whole_wherever_they_cut(monkeypatch):
    """``frames.data_in`` gives the frames' bytes in windows of ``spans.CHUNK_BYTES`` or more,
    each after the last bytes of the one before: every value is whole in one of them."""
    monkeypatch.setattr(spans, "CHUNK_BYTES", 16)
    stream = bytes(range(256)) * 2
    ds = work.read_dataset(_named(stream, SYNTAX[video.H264]))
    windows = list(frames.data_in(ds))
    assert len(windows) > 30
    for at in range(len(stream) - len(NAME)):
        assert any(stream[at : at + len(NAME)] in w for w in windows), at


def test_streamed_frames_holding_a_long_value_stop_the_copy(ctx, tmp_path, monkeypatch):
    """A large object's frames are searched as they are copied, in windows that overlap (cut
    into many here: the name lies across two); no copy is stored."""
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    monkeypatch.setattr(spans, "CHUNK_BYTES", 16)
    path = tmp_path / "big.dcm"
    path.write_bytes(_named(_in_slice(video.H264, NAME), SYNTAX[video.H264]))
    src = SourceFile("src-1", str(path), path.stat().st_size, FileReader(path))
    prepared = work.prepare(src, ctx)
    assert isinstance(prepared.encoded.pixels[-1], frames.Blanked)
    with pytest.raises(DeidError) as caught:
        work.write_copy(prepared, ctx)
    assert caught.value.reason == "leak_detected"
    assert caught.value.message == (
        "an identifying value survived de-identification in a compressed frame's data "
        "(from (0010,0010)); not written"
    )
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_a_frame_data_check_is_none_where_no_value_is_long_enough():
    assert verify.frame_data_check({"Roe^Ann": "(0010,0010)"}, Dataset()) is None
    assert verify.frame_data_check({"Doe^Jane": "(0010,0010)"}, Dataset()) is not None


def test_verify_finds_a_long_value_in_the_frame_data_of_copies_held_and_large(
    ctx, tmp_path, monkeypatch
):
    """Copies made without the check, read whole and as large files (frames streamed)."""
    originals = tmp_path / "in"
    originals.mkdir()
    (originals / "a.dcm").write_bytes(_named(_in_slice(video.H264, NAME), SYNTAX[video.H264]))
    found_name_whole_then_large(ctx, originals, monkeypatch, "compressed frame data (utf-8)")


def test_picture_text_holds_a_value_exactly_where_its_bytes_lie():
    """The runs of text found (``PictureText``) hold every long needle that the bytes do,
    in ASCII, UTF-16 and Latin-1, at either end and beside text: an oracle of plain search,
    over random bytes with values planted (or bytes that are mostly text), and the pooled
    search finds them too."""
    values = {
        "Doe^Jane^Q": "(0010,0010)",
        "Müller^Jürgen": "(0008,0090)",
        "MRN-0042": "(0010,0020)",
    }
    needles = [n for v in values for _e, n in verify._data_needles(v)]
    assert b"D\x00o\x00e\x00" in needles[1]  # UTF-16; Latin-1's and others' beyond ASCII
    rng = random.Random(168)  # noqa: S311 - a reproducible stream of test inputs
    search = verify.Search(values)
    for trial in range(300):
        data = bytearray(rng.randbytes(rng.randrange(0, 400)))
        if trial % 10 == 0:  # runs of text one in 1 KiB or more: all of it searched
            data = bytearray(b"Roe^Ann!\x01" * rng.randrange(100, 300))
        for needle in rng.sample(needles, rng.randrange(0, 3)):
            at = rng.randrange(0, len(data) + 1)
            data[at:at] = needle[: rng.choice([len(needle), len(needle) - 1])]  # whole, or cut
        if rng.randrange(2):
            data[rng.randrange(0, len(data) + 1) :] = b"Roe plain text beside"[: rng.randrange(22)]
        text = verify.PictureText(bytes(data))
        for value in values:
            expected = any(n in data for _e, n in verify._data_needles(value))
            assert text.holds(value) == expected, (trial, value)
            if expected:
                assert value in search.in_picture(text), (trial, value)
