"""Text in the headers of compressed frames is blanked; the image bytes are not touched.

A JPEG wrapped into DICOM as it came from a camera carries Exif, XMP, IPTC and comments in
its own segments, under Pixel Data, where no attribute rule reaches. JPEG 2000 carries
comments, a wrapped JP2 file XML and UUID boxes.
"""

from __future__ import annotations

import errno
import io
import itertools
import random
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pydicom
import pytest
from pydicom import uid
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit

from indexer import content, deid, keys, spans, work
from indexer.deid import blanks, build_plan, frames, mp4, statement, verify, video
from indexer.deid.places import Places
from indexer.deid.profile import FRAME_TEXT
from indexer.encode import encode
from indexer.errors import DeidError, StoreError
from indexer.records import Failure, SourceFile
from indexer.sources import FileReader, Walker
from indexer.spans import FileSpan, version_of
from indexer.store.files import LocalStore
from tests.builders import Counted, archive_of, make_instance, streamed_copy

# the pooled search too; fragments as they come, the cuts tried (``frames.JOIN_BYTES``)
pytestmark = pytest.mark.usefixtures("leaks_searched_both_ways", "fragments_as_they_come")

work.configure_pydicom()
KEY = keys.generate().pseudonym
PLAN = build_plan()
ALLOW = build_plan(burned_in="allow")  # pydicom's secondary captures: no burned-in text
MARK = b"PHIMARK Doe^Jane 19700101"
IMAGE = b"\x12\x34IMAGEDATA" * 8  # entropy-coded data: never read, never changed


def _seg(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _jpeg(*segments: bytes) -> bytes:
    sos = _seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    return b"\xff\xd8" + b"".join(segments) + sos + IMAGE + b"\xff\xd9"


JFIF = _seg(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
ADOBE = _seg(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01")
JPEG_LS = _seg(0xE8, b"mrfx\x02\x01")
EXIF = _seg(0xE1, b"Exif\x00\x00" + MARK)
XMP = _seg(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>" + MARK + b"</x:xmpmeta>")
IPTC = _seg(0xED, b"Photoshop 3.0\x00" + MARK)
CAMERA = _seg(0xEC, b"Ducky" + MARK)
COMMENT = _seg(0xFE, MARK)


def _codestream(main_comment: bytes, tile_comment: bytes) -> bytes:
    siz = _seg(0x51, b"\x00\x00" + b"\x00\x00\x00\x08" * 8 + b"\x00\x01\x07\x01\x01")
    com = _seg(0x64, b"\x00\x01" + main_comment)  # Rcme 1: Latin text
    tile_com = _seg(0x64, b"\x00\x00" + tile_comment)  # Rcme 0: binary
    body = tile_com + b"\xff\x93" + IMAGE
    sot = b"\xff\x90" + struct.pack(">HHLBB", 10, 0, 12 + len(body), 0, 1)
    return b"\xff\x4f" + siz + com + sot + body + b"\xff\xd9"


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">L", len(payload) + 8) + kind + payload


def _jp2(codestream: bytes) -> bytes:
    return (
        _box(b"jP  ", b"\r\n\x87\n")
        + _box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ")
        + _box(b"xml ", b"<name>" + MARK + b"</name>")
        + _box(b"uuid", b"\xbe\x7a\xcf\xcb\x97\xa9\x42\xe8\x9c\x71\x99\x94\x91\xe3\xaf\xac" + MARK)
        + _box(b"jp2c", codestream)
    )


def _object(*frame_bytes: bytes, ts: str = JPEGBaseline8Bit, **attrs: object) -> bytes:
    ds = make_instance(rows=8, columns=8)
    ds.file_meta.TransferSyntaxUID = ts
    ds.PixelData = encapsulate(list(frame_bytes))
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = len(frame_bytes)
    for k, v in attrs.items():
        setattr(ds, k, v)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _frames_of(data: bytes) -> list[bytes]:
    value = pydicom.dcmread(io.BytesIO(data)).PixelData
    return [value[a:z] for a, z in frames.fragments(value)]


def _even(frame: bytes) -> bytes:
    """``frame`` as a fragment holds it: padded to an even length."""
    return frame + b"\x00" * (len(frame) % 2)


def _copy(data: bytes, *, in_place: bool = True, plan: deid.Plan = PLAN) -> bytes:
    ds = work.read_dataset(data, pixels_in_place=in_place)
    return encode(deid.apply(plan, ds, KEY).ds).data


def _blanked(seg: bytes, fill: bytes, keep: int = 0) -> bytes:
    """``seg`` with its payload after ``keep`` bytes filled (marker and length kept)."""
    return seg[: 4 + keep] + fill * (len(seg) - 4 - keep)


@pytest.mark.parametrize("in_place", [True, False])
def test_jpeg_text_segments_are_blanked_and_the_rest_kept(in_place):
    frame = _jpeg(JFIF, EXIF, XMP, IPTC, CAMERA, COMMENT, ADOBE, JPEG_LS)
    copy = _copy(_object(frame), in_place=in_place)
    assert MARK not in copy
    expected = _jpeg(
        JFIF,
        _blanked(EXIF, b"\x00"),
        _blanked(XMP, b"\x00"),
        _blanked(IPTC, b"\x00"),
        _blanked(CAMERA, b"\x00"),
        _blanked(COMMENT, b" "),
        ADOBE,
        JPEG_LS,
    )
    assert _frames_of(copy) == [_even(expected)]  # same length; image data and decoders' segments


def test_every_frame_is_blanked_and_a_frame_without_text_is_the_same():
    plain = _jpeg(JFIF, ADOBE)
    copy = _copy(_object(_jpeg(COMMENT), plain, _jpeg(EXIF)))
    assert _frames_of(copy) == [
        _even(_jpeg(_blanked(COMMENT, b" "))),
        _even(plain),
        _even(_jpeg(_blanked(EXIF, b"\x00"))),
    ]


def test_jpeg_2000_comments_in_the_main_and_tile_part_headers_are_blanked():
    frame = _codestream(MARK, MARK)
    copy = _copy(_object(frame, ts=JPEG2000Lossless))
    assert MARK not in copy
    assert _frames_of(copy) == [_even(_codestream(b" " * len(MARK), b"\x00" * len(MARK)))]


def test_a_wrapped_jp2_files_text_boxes_and_codestream_comments_are_blanked():
    copy = _copy(_object(_jp2(_codestream(MARK, b"")), ts=JPEG2000Lossless))
    assert MARK not in copy
    (frame,) = _frames_of(copy)
    assert frame.startswith(
        _box(b"jP  ", b"\r\n\x87\n") + _box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ")
    )
    assert len(frame) == len(_even(_jp2(_codestream(MARK, b""))))
    assert frame.rstrip(b"\x00").endswith(IMAGE + b"\xff\xd9")


def test_jpx_labels_and_xml_inside_association_boxes_are_blanked():
    """JPX association boxes hold labels (free text) and XML of their own, nested."""
    numbers = _box(b"nlst", b"\x00\x00\x00\x01")
    inner = _box(b"asoc", numbers + _box(b"xml ", b"<p>" + MARK + b"</p>"))
    labelled = _box(b"asoc", _box(b"lbl ", MARK) + inner)
    frame = _box(b"jP  ", b"\r\n\x87\n") + labelled + _box(b"jp2c", _codestream(b"", b""))
    copy = _copy(_object(frame, ts=JPEG2000Lossless))
    assert MARK not in copy
    (out,) = _frames_of(copy)
    assert len(out) == len(_even(frame))
    assert numbers in out  # what is not text is kept
    assert out[: len(frame)].endswith(_box(b"jp2c", _codestream(b"", b"")))


def test_associations_nested_past_the_limit_are_blanked_unread():
    box = _box(b"lbl ", MARK)
    for _ in range(blanks.NESTING + 4):
        box = _box(b"asoc", box)
    frame = _box(b"jP  ", b"\r\n\x87\n") + box + _box(b"jp2c", _codestream(b"", b""))
    copy = _copy(_object(frame, ts=JPEG2000Lossless))
    assert MARK not in copy
    assert len(_frames_of(copy)[0]) == len(_even(frame))


def test_a_wrapped_jpeg_xl_files_metadata_boxes_are_blanked():
    """Exif, XML, compressed boxes, and the reconstruction data of a recompressed JPEG (its
    comments and application segments, Brotli compressed where no search reads them) are
    zeroed; the level, the frame index and the codestream, whole or in parts, kept."""
    codestream = (
        _box(b"jxli", b"\x01\x00\x00\x00\x01\x00\x00\x00\x01")
        + _box(b"jxlp", b"\x00\x00\x00\x00\xff\x0a" + IMAGE)
        + _box(b"jxlp", b"\x80\x00\x00\x01" + IMAGE)
    )
    frame = (
        _box(b"JXL ", b"\r\n\x87\n")
        + _box(b"ftyp", b"jxl \x00\x00\x00\x00jxl ")
        + _box(b"jxll", b"\x0a")
        + _box(b"Exif", b"\x00\x00\x00\x00II*\x00" + MARK)
        + _box(b"xml ", MARK)
        + _box(b"brob", b"Exif" + MARK)  # compressed, in truth: blanked unread
        + _box(b"jbrd", b"\x31\x07" + MARK)  # (its text compressed, in truth)
        + codestream
    )
    stand_in = "1.2.840.10008.1.2.4.201"  # HTJ2K Lossless: pydicom 3.0 knows no JPEG XL
    data = _object(frame, ts=stand_in).replace(stand_in.encode(), b"1.2.840.10008.1.2.4.112")
    copy = _copy(data)
    assert MARK not in copy
    (out,) = _frames_of(copy)
    assert len(out) == len(_even(frame))
    assert out[: len(frame)].endswith(codestream)  # the image untouched
    assert _box(b"jxll", b"\x0a") in out
    assert _box(b"jbrd", bytes(2 + len(MARK))) in out


def _refused(tmp_path: Path, data: bytes) -> str:
    """The message of the leak check's refusal of ``data`` (the ingest's own check)."""
    store = LocalStore(tmp_path / "out")
    ctx = work.RunContext(PLAN, keys.generate(), store, "DI", 30, 1)
    try:
        with pytest.raises(DeidError) as e:
            work.process(SourceFile("src-1", "/a/1.dcm", len(data), lambda: data), ctx)
    finally:
        store.close()
    assert e.value.reason == "leak_detected"
    return str(e.value)


NAME = b"Doe^Jane^PHIMARKPN"


@pytest.mark.parametrize(
    ("frame", "ts"),
    [
        (_jpeg(JFIF, _seg(0xE2, b"ICC_PROFILE\x00\x01\x01" + NAME)), JPEGBaseline8Bit),
        (  # video: an SEI message that stays (H.264's header, built below)
            b"\x00\x00\x00\x01\x06\x05\x12"
            + bytes(range(0xA0, 0xB0))
            + b"ok\x89\x12"
            + NAME
            + b"\x80",
            uid.MPEG4HP41,
        ),
    ],
    ids=["jpeg", "h264"],
)
def test_text_left_in_a_segment_decoders_read_is_caught_by_the_leak_check(tmp_path, frame, ts):
    """The kept segments (and SEI messages) are searched: a patient's name in an ICC
    profile's segment, or in a video's SEI message that is kept, refuses the object
    (ingest), and `verify` names where it found it."""
    data = _object(frame, ts=ts, PatientName=NAME.decode())
    assert b"PHIMARK" not in _refused(tmp_path, data).encode()
    values = verify.identifying_values(PLAN, work.read_dataset(data))
    leaks = verify.find_leaks(values, work.read_dataset(_copy(data)))
    assert ("(0010,0010)", "compressed frame headers (utf-8)") in [
        (leak.source_path, leak.found_in) for leak in leaks
    ]


def test_the_trace_and_the_statement_name_the_rule():
    data = _object(_jpeg(COMMENT, EXIF))
    steps = deid.explain(PLAN, work.read_dataset(data, pixels_in_place=True), KEY)
    cut = [s for s in steps if s.source.startswith(FRAME_TEXT.source)]
    assert [(s.keyword, s.action) for s in cut] == [("PixelData", "C")]
    assert "(2 segments)" in cut[0].source
    doc = statement.statement(PLAN)
    assert {"action": "C", "what": FRAME_TEXT.source} in doc["not_in_table"]


@pytest.mark.parametrize(
    "name",
    [
        "693_J2KI.dcm",
        "GDCMJ2K_TextGBR.dcm",
        "MR_small_jp2klossless.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "examples_ybr_color.dcm",
    ],
)
def test_real_files_change_only_in_their_comments(name):
    """pydicom's files: an encoder's name in a JPEG 2000 comment is blanked, nothing else
    (their JPEG frames end at their end: no trailer)."""
    data = Path(get_testdata_file(name)).read_bytes()
    before, after = _frames_of(data), _frames_of(_copy(data, plan=ALLOW))
    assert [len(f) for f in after] == [len(f) for f in before]
    for old, new in zip(before, after, strict=True):
        blanks = frames.parse(old)[0]
        changed = [i for i in range(len(old)) if old[i] != new[i]]
        assert all(any(a <= i < z for a, z, _fill in blanks) for i in changed)
        # (a JPEG's byte of padding after its end is zero already: no change)
        comments = [old[a:z] for a, z, fill in blanks if old[a:z] != fill * (z - a)]
        assert all(new[a:z] == fill * (z - a) for a, z, fill in blanks)
        assert bool(comments) == ("J2K" in name or "jp2k" in name)


def test_damaged_headers_never_raise():
    """Lengths that run past the fragment, or are too short, and random bytes: the parse
    stops where the header stops making sense, and blanks only within the fragment."""
    rng = random.Random(20261203)  # noqa: S311 - a seeded stream of test inputs
    bases = [_jpeg(JFIF, EXIF, COMMENT), _codestream(MARK, MARK), _jp2(_codestream(MARK, b""))]
    for _ in range(2000):
        frame = bytearray(rng.choice(bases))
        for _ in range(rng.randrange(1, 4)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        cut = bytes(frame[: rng.randrange(2, len(frame) + 1)])
        blanks, regions = frames.parse(cut)
        assert all(0 <= a <= z <= len(cut) for a, z, _fill in blanks)
        assert all(0 <= a <= z <= len(cut) for a, z in regions)
        value = encapsulate([cut])
        new, _count = frames.blank(value)
        assert len(new) == len(value)


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_streamed_frames_are_blanked_as_they_are_copied(tmp_path, monkeypatch, chunk):
    """Above ``STREAM_FROM`` the frames are a span of the source: blanked as copied, a
    fragment's head at a time, into the copy the object read whole gives."""
    data = _object(_jpeg(JFIF, EXIF, COMMENT), _jpeg(ADOBE), _codestream(MARK, MARK))
    whole, copy = streamed_copy(tmp_path, monkeypatch, data, chunk, frames.Blanked)
    assert copy == whole
    assert MARK not in copy


def _tiled(*tile_comments: bytes, image: bytes = IMAGE) -> bytes:
    """A JPEG 2000 codestream of one tile-part per comment, each tile-part's image ``image``."""
    one = _codestream(b"", b"")
    main = one[: one.index(b"\xff\x90")]  # SOC, SIZ and the main header's comment
    parts = b""
    for n, comment in enumerate(tile_comments):
        body = _seg(0x64, b"\x00\x01" + comment) + b"\xff\x93" + image
        parts += b"\xff\x90" + struct.pack(">HHLBB", 10, 0, 12 + len(body), n, len(tile_comments))
        parts += body
    return main + parts + b"\xff\xd9"


@pytest.mark.parametrize("held", [1 << 20, 64])
def test_streamed_fragments_are_blanked_whole(tmp_path, monkeypatch, held):
    """A JPEG 2000 tile-part's header can lie anywhere in its fragment: the last one's
    comment, megabytes in, is blanked as in the object read whole. A fragment larger than
    ``HELD_BYTES`` is held on disk to be blanked (64 bytes: each of these)."""
    monkeypatch.setattr(frames, "HELD_BYTES", held)
    image = bytes(range(256)) * 4096  # 1 MiB a tile-part
    tiled = _tiled(b"first", b"second", MARK, image=image)
    data = _object(_jpeg(JFIF, EXIF, COMMENT), tiled, ts=JPEG2000Lossless)
    whole, copy = streamed_copy(tmp_path, monkeypatch, data, 1 << 16, frames.Blanked)
    assert copy == whole
    assert MARK not in copy
    assert copy.count(image) == 3  # the image bytes untouched


@pytest.mark.parametrize("held", [1 << 20, 16])
def test_a_fragment_that_runs_past_the_stream_comes_through_blanked(tmp_path, held, monkeypatch):
    """A fragment whose length runs past the end of the span: what there is of it comes
    through blanked, and nothing else (in memory; held on disk at 16 bytes)."""
    monkeypatch.setattr(frames, "HELD_BYTES", held)
    frame = _jpeg(JFIF, EXIF, COMMENT)
    value = encapsulate([frame])[:-8]  # the fragment's last bytes gone
    path = tmp_path / "frames"
    path.write_bytes(value)
    span = FileSpan(path, 0, len(value), version_of(path.stat()))
    copy = b"".join(frames.Blanked(span, 0, len(value)).chunks())
    assert len(copy) == len(value)
    assert MARK not in copy
    assert copy == frames.blank(value)[0]


def test_a_temporary_file_that_cannot_be_written_stops_the_copy(tmp_path, monkeypatch):
    """No room for a large fragment: the copy stops with a store error naming the cause."""
    monkeypatch.setattr(frames, "HELD_BYTES", 16)
    value = encapsulate([_jpeg(JFIF, EXIF, COMMENT)])
    path = tmp_path / "frames"
    path.write_bytes(value)
    span = FileSpan(path, 0, len(value), version_of(path.stat()))

    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(frames.tempfile, "TemporaryFile", full)
    with pytest.raises(StoreError, match=r"temporary file \(OSError: No space left on device\)"):
        b"".join(frames.Blanked(span, 0, len(value)).chunks())


@pytest.mark.parametrize("held", [1 << 20, 16])
def test_text_left_in_a_streamed_frame_is_caught_as_it_is_copied(tmp_path, monkeypatch, held):
    """Streamed frames are searched as they are copied (held in memory, or on disk at 16
    bytes): a patient's name in the second frame's ICC segment refuses the object, and no
    copy, whole or partial, is left in the output."""
    monkeypatch.setattr(frames, "HELD_BYTES", held)
    name = b"Doe^Jane^PHIMARKPN"
    leaky = _jpeg(JFIF, _seg(0xE2, b"ICC_PROFILE\x00\x01\x01" + name))
    data = _object(_jpeg(JFIF, COMMENT), leaky, PatientName=name.decode())
    path = tmp_path / "big.dcm"
    path.write_bytes(data)
    store = LocalStore(tmp_path / "out")
    ctx = work.RunContext(PLAN, keys.generate(), store, "DI", 30, 1)
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    try:
        src = SourceFile("src-1", str(path), len(data), FileReader(path))
        prepared = work.prepare(src, ctx)  # the header: no frame read yet
        assert isinstance(prepared.encoded.pixels[-1], frames.Blanked)
        with pytest.raises(DeidError) as e:
            work.write_copy(prepared, ctx)
        # the ingest's two ways: a worker process's, and the copy writer thread's
        failed = work.process_safely(src, ctx)
        prepared = work.prepare(src, ctx)
        stored = work.store_safely(work.index(prepared, ctx), prepared, ctx)
    finally:
        store.close()
    digest = content.of_bytes(ctx.content_key, data)  # its source read to the end for it
    for result in (failed, stored):
        assert isinstance(result, Failure)
        assert (result.reason, result.source_digest) == ("leak_detected", digest)
    assert (e.value.reason, e.value.source_digest) == ("leak_detected", digest)
    assert "compressed frame's header (from (0010,0010))" in str(e.value)
    assert b"PHIMARK" not in str(e.value).encode()
    assert list((tmp_path / "out").rglob("*.dcm")) == []
    assert list((tmp_path / "out").rglob("*.part")) == []


def test_a_streamed_frame_without_identifying_text_is_copied_when_checked(tmp_path, monkeypatch):
    """The search finds nothing where the frames hold no value of the object: the copy is
    the one the object read whole gives."""
    data = _object(_jpeg(JFIF, EXIF, COMMENT), _jpeg(ADOBE), PatientName="Doe^John")
    whole, copy = streamed_copy(tmp_path, monkeypatch, data, 7, frames.Blanked)
    assert copy == whole


# video: units after start codes; H.264 and HEVC escape 00 00 0x (x <= 3) as 00 00 03 0x
UUID = bytes(range(0xA0, 0xB0))  # an encoder's, kept
SLICE = b"\x65\x88\x84" + IMAGE  # an H.264 IDR slice: never read, never changed


def _escaped(payload: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for byte in payload:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _number(value: int) -> bytes:
    return b"\xff" * (value // 255) + bytes([value % 255])


def _rbsp(*messages: tuple[int, bytes]) -> bytes:
    """An SEI unit's payload bytes, unescaped: (payload type, payload) messages, stop bit."""
    return b"".join(_number(kind) + _number(len(p)) + p for kind, p in messages) + b"\x80"


def _sei(*messages: tuple[int, bytes], header: bytes = b"\x06") -> bytes:
    """One SEI NAL unit (H.264's header; HEVC's given) of (payload type, payload) messages."""
    return b"\x00\x00\x00\x01" + header + _escaped(_rbsp(*messages))


def _unescaped(unit: bytes) -> bytes:
    return unit.replace(b"\x00\x00\x03", b"\x00\x00")


def _escapes(unit: bytes) -> list[int]:
    """Where a decoder finds an escape byte in ``unit``."""
    found, zeros = [], 0
    for i, byte in enumerate(unit):
        if zeros >= 2 and byte == 3:
            found.append(i)
            zeros = 0
            continue
        zeros = zeros + 1 if byte == 0 else 0
    return found


def _spaced(data: bytes) -> bytes:
    return bytes(b if b == 0 else 0x20 for b in data)


H264_HEAD = b"\x00\x00\x00\x01\x09\xf0" + b"\x00\x00\x00\x01\x67\x64\x00\x1f\xac"  # AUD, SPS
TEXT = b"x264 - core 164 - PHIMARK Doe^Jane options: cabac=1"
TIMING = (1, b"\x00\x00\x01\x02")  # picture timing: binary, kept (escaped in the unit)


def test_h264_user_data_sei_is_blanked_and_the_rest_kept():
    """Unregistered user data (an encoder's settings, a recorder's text) after its UUID, and
    registered user data (captions), each byte not zero a space; the other messages, the
    escape bytes, the parameter sets and the slices as they were."""
    stream = H264_HEAD + _sei((5, UUID + MARK + TEXT), TIMING, (4, b"\xb5\x00\x31" + MARK))
    stream += b"\x00\x00\x01" + SLICE
    copy = _copy(_object(stream, ts=uid.MPEG4HP41))
    assert MARK not in copy
    assert b"x264" not in copy
    expected = H264_HEAD + _sei(
        (5, UUID + _spaced(MARK + TEXT)), TIMING, (4, _spaced(b"\xb5\x00\x31" + MARK))
    )
    assert _frames_of(copy) == [_even(expected + b"\x00\x00\x01" + SLICE)]


def test_an_sei_units_messages_are_read_to_its_stop_bit_in_one_pass():
    """Bytes 80 that are not the stop bit (here messages of type 128, size 0) are read on
    past, to the user data after them; zeros after the stop bit end the unit. Each such byte
    made the rest of the unit be copied to look for the stop bit: 256 KiB of them took 0.8 s,
    a unit of 32 MiB would have taken hours."""
    unit = _sei(*[(128, b"")] * 50_000, (5, UUID + MARK), TIMING) + bytes(300)
    blanked, _regions = video.parse(unit, video.H264)
    assert len(blanked) == 1
    copy = bytearray(unit)
    blanks.fill_in(copy, blanked)
    assert copy == unit.replace(MARK, _spaced(MARK))
    bare = _sei(*[(128, b"")] * 50_000)  # its last byte 80 the stop bit, after a message's 00
    assert video.parse(bare + bytes(300), video.H264)[0] == []


T = TypeVar("T")


def _with_peak(fn: Callable[..., T], *args: object) -> tuple[T, int]:
    """What ``fn(*args)`` gives, and the most memory Python held for it meanwhile."""
    tracemalloc.start()
    try:
        return fn(*args), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_large_sei_unit_is_read_in_memory_of_its_size():
    """A user data message of 4 MiB (escape bytes in it): its bytes are found where they lie
    in the unit by its escape bytes, not by a list of every payload byte's place (83 times
    the unit's size in memory, 350 MiB here)."""
    text = (MARK * 40 + b"\x00\x00\x01") * ((4 << 20) // (len(MARK) * 40 + 3))
    unit = _sei((5, UUID + text))
    assert unit.count(b"\x00\x00\x03") > 4000
    (blanked, _regions), peak = _with_peak(video.parse, unit, video.H264)
    copy = bytearray(unit)
    blanks.fill_in(copy, blanked)
    spaced = unit.replace(MARK, _spaced(MARK)).replace(b"\x00\x00\x03\x01", b"\x00\x00\x03 ")
    assert copy == spaced  # (the escape bytes kept)
    assert peak < 5 * len(unit), peak / len(unit)


def test_escape_bytes_inside_user_data_stay_and_the_next_message_is_read_whole():
    """Zeros that would read as a start code are escaped in the unit: those escape bytes
    stay, so every message keeps its length as a decoder counts it."""
    payload = UUID + b"Doe\x00\x00\x01PHIMARK\x00\x00\x00\x03Jane"
    unit = _sei((5, payload), (5, UUID + MARK))
    assert unit.count(b"\x00\x00\x03") == 2  # 00 00 03 01, 00 00 03 00
    (frame,) = _frames_of(_copy(_object(H264_HEAD + unit, ts=uid.MPEG4HP41F)))
    new = frame[len(H264_HEAD) : len(H264_HEAD) + len(unit)]
    assert _escapes(new) == _escapes(unit)
    assert new[len(unit) - 1 :] == b"\x80"
    spaced = _rbsp((5, UUID + _spaced(payload[16:])), (5, UUID + _spaced(MARK)))
    assert _unescaped(new[5:]) == spaced  # the same messages, the same lengths, as decoded


def test_an_escape_byte_just_before_user_data_stays():
    """A UUID that ends in two zeros and text that begins with 01: the escape byte lies
    between them, where the user data begins as decoded; it is not part of it."""
    uuid = b"\xa0" * 14 + b"\x00\x00"
    unit = _sei((5, uuid + b"\x01" + MARK))
    at = unit.index(b"\x00\x00\x03\x01")
    blanked, _regions = video.parse(unit, video.H264)
    copy = bytearray(unit)
    blanks.fill_in(copy, blanked)
    assert copy == unit[: at + 3] + b" " + _spaced(MARK) + b"\x80"


def _bits(*fields: tuple[int, int]) -> bytes:
    """A header's (value, width) fields (width 0: an Exp-Golomb number), zeros to a byte."""
    text = ""
    for value, width in fields:
        code = format(value, f"0{width}b") if width else format(value + 1, "b")
        text += "0" * (len(code) - 1) * (not width) + code
    text += "0" * (-len(text) % 8)
    return int(text, 2).to_bytes(len(text) // 8, "big") if text else b""


def _messages(*messages: tuple[int, bytes], regional: bool = False) -> bytes:
    """Messages as a nesting message holds them (a regional one: each after a region)."""
    region = b"\x01\x00" * regional  # one region, its index
    return b"".join(region + _number(k) + _number(len(p)) + p for k, p in messages)


REGIONAL = 157
NESTED = ((5, UUID + MARK + TEXT), (4, b"\xb5" + MARK), TIMING)  # one kept, last
NESTED_SPACED = ((5, UUID + _spaced(MARK + TEXT)), (4, _spaced(b"\xb5" + MARK)), TIMING)
NESTINGS = {  # (codec, payload type, the header's fields), by what it applies to
    "svc all layers": (video.H264, 30, [(1, 1)]),
    "svc layers": (video.H264, 30, [(0, 1), (1, 0), (2, 3), (1, 4), (3, 3), (0, 4), (1, 3)]),
    "mvc views": (video.H264, 37, [(0, 1), (0, 1), (1, 0), (5, 10), (6, 10)]),
    "mvc all views": (video.H264, 37, [(0, 1), (1, 1)]),
    "mvc operation point": (video.H264, 37, [(1, 1), (1, 0), (7, 10), (8, 10), (2, 3)]),
    "mvcd views": (video.H264, 48, [(0, 1), (0, 1), (1, 0), (5, 10), (1, 1), (6, 10), (0, 1)]),
    "mvcd operation point": (
        video.H264,
        48,
        [(1, 1), (0, 1), (1, 0), (7, 10), (1, 1), (1, 1), (9, 10), (0, 1), (1, 1), (2, 3)],
    ),
    "mvcd texture only": (video.H264, 48, [(1, 1), (1, 1), (1, 0), (7, 10), (8, 10), (2, 3)]),
    "hevc operation points": (
        video.HEVC,
        133,
        [(0, 1), (1, 1), (0, 1), (1, 0), (3, 3), (0, 0), (2, 3), (5, 0)],
    ),
    "hevc default point": (video.HEVC, 133, [(1, 1), (1, 1), (1, 1), (1, 0), (2, 3), (4, 0)]),
    "hevc layers": (video.HEVC, 133, [(0, 1), (0, 1), (0, 1), (2, 3), (1, 0), (1, 6), (2, 6)]),
    "hevc all layers": (video.HEVC, 133, [(0, 1), (0, 1), (1, 1)]),
    "hevc regions": (
        video.HEVC,
        REGIONAL,
        [(7, 16), (2, 8), (1, 8), *[(16, 16)] * 4, (2, 8), *[(32, 16)] * 4, (2, 8)],
    ),
    "hevc tile sets": (video.HEVC, 159, [(0, 1), (1, 0), (3, 0), (4, 0), (2, 0)]),
    "hevc all tile sets": (video.HEVC, 159, [(1, 1), (2, 0)]),
    "hevc partition": (video.HEVC, 162, [(0, 0), (1, 0), (2, 0), (2, 0)]),
}
SEI_HEADER = {video.H264: b"\x06", video.HEVC: b"\x4e\x01"}


@pytest.mark.parametrize("name", NESTINGS)
def test_user_data_another_message_nests_is_blanked(name):
    """Scalable, multiview, regional, tile set and partition nesting (SVC, MVC, 3D and
    multi-layer HEVC) hold whole messages after a header of bits: the user data among them
    is blanked as a unit's own is; the header, the other messages, the escapes kept."""
    codec, kind, fields = NESTINGS[name]
    header, regional = _bits(*fields), kind == REGIONAL

    def unit(*nested: tuple[int, bytes]) -> bytes:
        outer = (kind, header + _messages(*nested, regional=regional))
        return _sei(outer, (5, UUID + MARK), header=SEI_HEADER[codec])

    blanked, regions = video.parse(unit(*NESTED), codec)
    copy = bytearray(unit(*NESTED))
    blanks.fill_in(copy, blanked)
    assert MARK not in copy
    expected = bytearray(unit(*NESTED_SPACED))
    expected[-len(MARK) - 1 : -1] = _spaced(MARK)  # the unit's own message after it
    assert copy == expected
    assert regions == [(4, len(copy))]


@pytest.mark.parametrize("name", NESTINGS)
def test_a_nesting_header_is_read_to_its_last_bit(name):
    """Not a bit short of it, nor past it: its messages begin at the byte after its last
    bit, and the zeros up to there, or the ones after them, would hide a bit too few or
    too many."""
    codec, kind, fields = NESTINGS[name]
    width = sum(w or 2 * len(format(v + 1, "b")) - 1 for v, w in fields)
    for after in (b"\x00" * 8, b"\xff" * 8):
        header = _bits(*fields) + after
        bits = video._Bits(header, 0, len(header))
        video.NESTING[codec][kind](bits)
        assert bits._at == width


def test_messages_with_text_among_their_fields_are_blanked_whole():
    """HEVC's overlay information (its overlays' names, their language) and annotated
    regions (their labels): their strings lie among fields of bits, so the whole payload is
    made spaces, nested or not. In H.264, which does not define them, too."""
    overlay = _bits((0, 1), (0, 0), (1, 0), (2, 0), (0, 0), (0, 0)) + b"en\x00" + MARK + b"\x00"
    labels = _bits((0, 1), *[(0, 1)] * 4, (1, 1), (0, 1)) + b"tumour\x00" + MARK + b"\x00"
    nested = (133, b"\x20" + _messages((202, labels), TIMING))
    unit = _sei((166, overlay), TIMING, nested, (202, labels), header=b"\x4e\x01")
    copy = bytearray(unit)
    blanks.fill_in(copy, video.parse(unit, video.HEVC)[0])
    spaced_nested = (133, b"\x20" + _messages((202, _spaced(labels)), TIMING))
    expected = (
        (166, _spaced(overlay)),
        TIMING,
        spaced_nested,
        (202, _spaced(labels)),
    )
    assert copy == _sei(*expected, header=b"\x4e\x01")
    h264 = _sei((166, overlay), (202, labels))
    copy = bytearray(h264)
    blanks.fill_in(copy, video.parse(h264, video.H264)[0])
    assert copy == _sei((166, _spaced(overlay)), (202, _spaced(labels)))


RESERVED = (100, b"\x00\x01" + MARK)  # a payload type neither codec defines
RESERVED_SPACED = (100, _spaced(RESERVED[1]))


def test_messages_of_a_type_the_codec_does_not_define_are_blanked_whole():
    """No decoder reads a message of a payload type its codec does not define (it skips a
    reserved one), and no search could say what it holds: it is made spaces whole, nested
    or not, in either codec. A type one codec defines and the other does not (HEVC's
    scalable nesting, 133; H.264's dec_ref_pic_marking_repetition, 7) is blanked in the
    other; the types a codec defines are kept (mastering display and light levels too),
    but H.274's envelope, neural-network post-filter (URIs) and processing order nesting."""
    user = (5, UUID + MARK)
    user_spaced = (5, UUID + _spaced(MARK))
    hdr = ((137, bytes(range(1, 25))), (144, b"\x03\xe8\x01\x90"))
    high = (300, MARK + b" of a type past 255")  # its type in two bytes (255, 45)
    nesting = (133, b"\x20" + _messages(user))
    h274 = [(kind, b"\x01" + MARK) for kind in (208, 210, 214)]  # envelope, post-filter, order
    h264 = _sei(TIMING, RESERVED, (55, MARK), *hdr, nesting, high, *h274, user)
    copy = bytearray(h264)
    blanks.fill_in(copy, video.parse(h264, video.H264)[0])
    spaced = (133, _spaced(nesting[1]))
    h274_spaced = [_sp(message) for message in h274]
    want = _sei(
        TIMING,
        RESERVED_SPACED,
        (55, _spaced(MARK)),
        *hdr,
        spaced,
        _sp(high),
        *h274_spaced,
        user_spaced,
    )
    assert copy == want
    hevc = _sei(
        TIMING,
        (7, MARK),
        *hdr,
        (133, b"\x20" + _messages(RESERVED, TIMING)),
        high,
        user,
        header=b"\x4e\x01",
    )
    copy = bytearray(hevc)
    blanks.fill_in(copy, video.parse(hevc, video.HEVC)[0])
    nested_spaced = (133, b"\x20" + _messages(RESERVED_SPACED, TIMING))
    want = _sei(
        TIMING,
        (7, _spaced(MARK)),
        *hdr,
        nested_spaced,
        _sp(high),
        user_spaced,
        header=b"\x4e\x01",
    )
    assert copy == want


def _sp(message: tuple[int, bytes]) -> tuple[int, bytes]:
    """A message, its payload made spaces."""
    return message[0], _spaced(message[1])


def test_each_codec_defines_the_types_read_as_user_data_or_nesting():
    """The types read for what they hold (user data, nesting: ``NESTING``) are among those
    each codec defines, and no type is both defined and reserved in the tables."""
    for codec, kinds in video.NESTING.items():
        assert set(kinds) <= video.SEI_DEFINED[codec], codec
        assert {video.SEI_REGISTERED, video.SEI_UNREGISTERED} <= video.SEI_DEFINED[codec]
        assert not video.unread_type(codec, 0)  # buffering period
        assert video.unread_type(codec, 255)


def _covered(regions: list[blanks.Region], since: int) -> set[int]:
    """The bytes from ``since`` on that ``regions`` hold."""
    return {x for a, z in regions for x in range(max(a, since), z)}


def test_a_unit_read_on_from_where_a_read_of_its_start_left_finds_what_a_whole_read_does():
    """For every prefix of a unit (nesting of each kind, nesting that cannot be read, escape
    bytes, a zero before one): a read of the whole unit from where a read of that prefix
    left finds what a read from its start finds from there on. That place may lie in a
    message, one another nests too; it is never after the prefix's end. What the prefix's
    read found before its end, and the second read after it, are what the whole read finds:
    a unit streamed is blanked as one held."""
    units = []
    for codec, kind, fields in NESTINGS.values():
        nested = _messages(*NESTED, (5, UUID + b"\x00\x00"), regional=kind == REGIONAL)
        units.append((codec, _sei((1, b"\x05\x00"), (kind, _bits(*fields) + nested), TIMING)))
    views = _bits((1, 1), (999, 0)) + b"free text " + MARK
    units.append((video.H264, _sei((37, views), (1, b"\x00"), (0, b"\x07"), (5, MARK))))
    overrun = _number(137) + _number(200) + b"free text " + MARK
    units.append((video.HEVC, _sei((133, b"\x20" + overrun), (5, UUID + MARK))))
    reserved = _messages(RESERVED, TIMING)  # reserved types, nested and long: blanked whole
    long = (300, b"free text " * 30 + MARK)
    units.append((video.HEVC, _sei((133, b"\x20" + reserved), long, TIMING, RESERVED)))
    units.append((video.H264, _sei(TIMING, long, (30, _bits((1, 1)) + reserved), RESERVED)))
    for codec, unit in units:
        whole = video.sei_user_data(unit, 5, len(unit), codec)
        for cut in range(5, len(unit)):
            found, resume = video.sei_user_data_from(unit[:cut], 5, cut, codec)
            regions, _again = video.sei_user_data_from(unit, 5, len(unit), codec, resume)
            assert resume[0] <= cut
            assert _covered(regions, 0) == _covered(whole, resume[0]), (unit, cut)
            streamed = _covered(found, 0) | _covered(regions, cut)
            assert streamed == _covered(whole, 0), (unit, cut)


def test_a_nesting_message_nested_in_another_is_read_too():
    """Nesting is not allowed to nest, but a file may: each level is read, thousands deep,
    with no recursion."""
    inner = (5, UUID + MARK)
    for _ in range(3000):
        inner = (133, b"\x20" + _messages(inner))  # all layers
    unit = _sei(inner, header=b"\x4e\x01")
    blanked, _regions = video.parse(unit, video.HEVC)
    copy = bytearray(unit)
    blanks.fill_in(copy, blanked)
    assert copy == unit.replace(MARK, _spaced(MARK))


def test_a_nesting_message_that_cannot_be_read_is_blanked_from_there():
    """Its header running past its end (a count of 1,000 views), a message in it running
    past its end, a regional one's region list doing so: the rest of it cannot be read, so
    it is made spaces from the byte its reading stopped in; what came before in it is kept;
    the unit's next message read."""
    after = (5, UUID + MARK)
    views = _bits((1, 1), (999, 0)) + b"free text " + MARK  # 10,000 bits of view ids
    unit = _sei((37, views), after)
    copy = bytearray(unit)
    blanks.fill_in(copy, video.parse(unit, video.H264)[0])
    # a flag and the count (20 bits): the read stops in the third byte, at its ids
    spaced = views[:2] + _spaced(views[2:])
    assert copy == _sei((37, spaced), (5, UUID + _spaced(MARK)))

    kept = _messages(TIMING)
    overrun = _number(137) + _number(200) + b"free text " + MARK  # 200 bytes: past its end
    unit = _sei((133, b"\x20" + kept + overrun), after, header=b"\x4e\x01")
    copy = bytearray(unit)
    blanks.fill_in(copy, video.parse(unit, video.HEVC)[0])
    blanked = b"\x20" + kept + overrun[:2] + _spaced(overrun[2:])  # its type and size kept
    assert copy == _sei((133, blanked), (5, UUID + _spaced(MARK)), header=b"\x4e\x01")

    header = _bits(*NESTINGS["hevc regions"][2])
    # one index more than the message holds: the list runs a byte past its end
    regions = _messages(TIMING, regional=True) + bytes([len(MARK) + 1]) + MARK
    unit = _sei((REGIONAL, header + regions), after, header=b"\x4e\x01")
    copy = bytearray(unit)
    blanks.fill_in(copy, video.parse(unit, video.HEVC)[0])
    spaced = header + regions[: -len(MARK)] + _spaced(MARK)  # the count kept
    assert copy == _sei((REGIONAL, spaced), (5, UUID + _spaced(MARK)), header=b"\x4e\x01")


def _fed(sample: bytes, size: int) -> bytes:
    """An H.264 sample (4-byte lengths) as ``mp4._Samples`` blanks it, fed in buffers of
    ``size`` bytes."""
    samples = mp4._Samples(blank=True)
    samples.expect(Places.of([(0, len(sample), video.H264, 4)]))
    buffers = [bytearray(sample[at : at + size]) for at in range(0, len(sample), size)]
    for at, buf in zip(range(0, len(sample), size), buffers, strict=True):
        samples.feed(buf, at)
    return b"".join(buffers)


def test_nested_user_data_in_an_mp4_sample_is_blanked_held_and_fed_a_byte_at_a_time():
    """A sample's SEI unit (its length before it, not a start code) is read as a stream's:
    held whole, and fed in buffers of a byte."""
    nesting = (37, _bits((0, 1), (1, 1)) + _messages(*NESTED))
    sample = _nal(b"\x06" + _escaped(_rbsp(nesting))) + _nal(SLICE)
    spaced_nesting = (37, _bits((0, 1), (1, 1)) + _messages(*NESTED_SPACED))
    spaced = _nal(b"\x06" + _escaped(_rbsp(spaced_nesting))) + _nal(SLICE)
    found: list[blanks.Blank] = []
    mp4._sample_sei(sample, video.H264, 4, 0, len(sample), found, [])
    held = bytearray(sample)
    blanks.fill_in(held, found)
    assert held == spaced
    assert _fed(sample, 1) == spaced


def test_hevc_prefix_and_suffix_sei_user_data_is_blanked():
    vps = b"\x00\x00\x00\x01\x40\x01\x0c\x01\xff\xff"
    prefix = _sei((5, UUID + MARK), header=b"\x4e\x01")  # type 39
    suffix = _sei((4, b"\xb5" + MARK), header=b"\x50\x01")  # type 40
    slice_ = b"\x00\x00\x01\x26\x01" + IMAGE
    copy = _copy(_object(vps + prefix + slice_ + suffix, ts=uid.HEVCMP51))
    assert MARK not in copy
    expected = vps + _sei((5, UUID + _spaced(MARK)), header=b"\x4e\x01") + slice_
    expected += _sei((4, _spaced(b"\xb5" + MARK)), header=b"\x50\x01")
    assert _frames_of(copy) == [_even(expected)]


def test_mpeg2_user_data_is_blanked():
    sequence = b"\x00\x00\x01\xb3\x02\x00\x10\x14\xff\xff\xe0\x18"
    user = b"\x00\x00\x01\xb2" + MARK + b" recorded at St. Elsewhere"
    picture = b"\x00\x00\x01\x00\x00\x0f\xff\xf8" + b"\x00\x00\x01\x01" + IMAGE
    copy = _copy(_object(sequence + user + picture, ts=uid.MPEG2MPML))
    assert MARK not in copy
    expected = sequence + b"\x00\x00\x01\xb2" + _spaced(user[4:]) + picture
    assert _frames_of(copy) == [_even(expected)]


def test_a_message_cut_by_a_fragment_end_is_blanked_in_both():
    """Fragmentable video: fragments cut the stream anywhere. Held frames are parsed as one
    stream, so a message begun in one fragment is blanked into the next."""
    stream = H264_HEAD + _sei((5, UUID + TEXT + MARK)) + b"\x00\x00\x01" + SLICE
    cut = stream.index(b"PHIMARK") + 3
    cut += cut % 2  # fragments are of even length: a stream is cut where none is padded
    copy = _copy(_object(stream[:cut], stream[cut:], ts=uid.MPEG4HP41F))
    assert b"PHI" not in copy
    assert b"MARK" not in copy
    expected = H264_HEAD + _sei((5, UUID + _spaced(TEXT + MARK))) + b"\x00\x00\x01" + SLICE
    assert _frames_of(copy) == [_even(expected[:cut]), _even(expected[cut:])]


def test_video_bytes_under_another_transfer_syntax_are_left_alone():
    """What is parsed as video is known by the transfer syntax, not guessed from bytes."""
    stream = H264_HEAD + _sei((5, UUID + MARK))
    assert _frames_of(_copy(_object(stream, ts=JPEGBaseline8Bit))) == [_even(stream)]


@pytest.mark.parametrize(("chunk", "held"), [(7, 1 << 20), (1 << 20, 16)])
def test_streamed_video_is_blanked_as_it_is_copied(tmp_path, monkeypatch, chunk, held):
    """As held frames are; a fragment held on disk (16 bytes) is searched for start codes a
    window at a time (5 bytes: a start code across two of them)."""
    monkeypatch.setattr(frames, "HELD_BYTES", held)
    monkeypatch.setattr(video, "FIND_BYTES", 5)
    stream = H264_HEAD + _sei((5, UUID + MARK), TIMING) + b"\x00\x00\x01" + SLICE
    data = _object(stream, ts=uid.MPEG4HP41)
    whole, copy = streamed_copy(tmp_path, monkeypatch, data, chunk, frames.Blanked)
    assert copy == whole
    assert MARK not in copy


@pytest.mark.parametrize("codec", [video.MPEG2, video.H264, video.HEVC])
def test_damaged_video_never_raises(codec, monkeypatch):
    """Sizes that run past the unit, cut units, random bytes: the blanks stay in the
    fragment, and only bytes that were not zero become spaces. A fragment held on disk
    (a memoryview, searched a window at a time) is parsed as the same bytes held are."""
    monkeypatch.setattr(video, "FIND_BYTES", 3)
    rng = random.Random(20261205)  # noqa: S311 - a seeded stream of test inputs
    header = {video.H264: b"\x06", video.HEVC: b"\x4e\x01", video.MPEG2: b""}[codec]
    nesting = {  # user data nested in another message, one of several views'
        video.H264: (37, _bits((0, 1), (0, 1), (1, 0), (5, 10), (6, 10)) + _messages((5, MARK))),
        video.HEVC: (133, b"\x20" + _messages(TIMING, (4, MARK))),
        video.MPEG2: (0, b""),
    }
    base = (
        b"\x00\x00\x01\xb2" + MARK
        if codec == video.MPEG2
        else _sei((5, UUID + MARK), TIMING, (300, MARK * 12), nesting[codec], header=header)
    )
    for _ in range(1500):
        frame = bytearray(H264_HEAD + base + b"\x00\x00\x01" + SLICE)
        for _ in range(rng.randrange(1, 4)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        cut = bytes(frame[: rng.randrange(2, len(frame) + 1)])
        blanks, regions = frames.parse(cut, codec)
        assert all(0 <= a <= z <= len(cut) for a, z, _fill in blanks)
        assert all(0 <= a <= z <= len(cut) for a, z in regions)
        for view in (cut, memoryview(cut)):
            assert frames.parse(view, codec) == (blanks, regions)
        new, _count = frames.blank(encapsulate([cut]), codec)
        old = encapsulate([cut])
        assert len(new) == len(old)
        assert all(n in (o, 0x20) and (n == o or o != 0) for o, n in zip(old, new, strict=True))


def _video_streams() -> dict[str, bytes]:
    """A stream of each codec whose text is cut by every cut of the tests below."""
    escaped = UUID + b"Doe\x00\x00\x01" + MARK + b"\x00\x00\x00\x03Jane" + TEXT
    mvc = (37, _bits((0, 1), (1, 1)) + _messages((5, UUID + MARK), TIMING))  # nested user data
    # a message ending in a zero, then one of type 0, size 3: an escape byte between them
    zeros = [(1, b"\x05\x00"), (0, b"\x07\x08\x09")]
    h264 = H264_HEAD + _sei((5, escaped), TIMING, *zeros, mvc, (4, b"\xb5" + MARK))
    h264 += b"\x00\x00\x01" + SLICE
    hevc = b"\x00\x00\x00\x01\x40\x01\x0c\x01" + _sei((5, escaped), header=b"\x4e\x01")
    regions = (
        REGIONAL,
        _bits(*NESTINGS["hevc regions"][2]) + _messages(TIMING, (4, MARK), regional=True),
    )
    hevc += b"\x00\x00\x01\x26\x01" + IMAGE + _sei((4, b"\xb5" + MARK), regions, header=b"\x50\x01")
    mpeg2 = b"\x00\x00\x01\xb3\x02\x00\x10\x14" + b"\x00\x00\x01\xb2" + MARK + TEXT
    mpeg2 += b"\x00\x00\x01\x00\x00\x0f" + IMAGE + b"\x00\x00\x01\xb2" + MARK
    return {video.H264: h264, video.HEVC: hevc, video.MPEG2: mpeg2}


def _streamed(tmp_path: Path, value: bytes, codec: str | None) -> tuple[bytes, bytes]:
    """(``value`` blanked as streamed, the header bytes searched as it streams)."""
    path = tmp_path / "frames"
    path.write_bytes(value)
    span = FileSpan(path, 0, len(value), version_of(path.stat()))
    return (
        b"".join(frames.Blanked(span, 0, len(value), codec).chunks()),
        frames.streamed_headers(span, codec),
    )


def test_streamed_headers_hold_what_is_searched_held(tmp_path):
    """`verify` of a large video copy searches its SEI units as held ones: as they are, text
    left in them too (another tool's copy), cut by fragments or not."""
    stream = _video_streams()[video.H264]
    at = stream.index(MARK)
    for value in (encapsulate([stream]), encapsulate([stream[:at], stream[at:]])):
        held = frames.headers(value, video.H264)
        assert MARK in held
        assert MARK in _streamed(tmp_path, value, video.H264)[1]


def test_a_unit_many_fragments_cut_is_searched_in_bytes_linear_in_its_size(monkeypatch):
    """`verify`'s walk of an SEI unit of 60 kB in fragments of 1,000 bytes: each fragment's
    part is searched with the last bytes before it (every value found, those a fragment's
    end cuts too), not the whole unit so far again (verify kept each copy: memory quadratic
    in the fragments, gigabytes for a unit of 32 MiB)."""
    monkeypatch.setattr(mp4, "SEARCH_BEHIND", 100)
    unit = _sei((5, UUID + MARK * 2400))
    stream = H264_HEAD + unit + b"\x00\x00\x01" + SLICE
    found: list[bytes] = []
    walk = frames._VideoPass(video.H264, found=found)
    for at in range(0, len(stream), 1000):
        walk(bytearray(stream[at : at + 1000]))
    assert sum(f.count(MARK) for f in found) >= 2400
    assert max(len(f) for f in found) <= 1000 + 100 + len(H264_HEAD)


def _counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many SEI messages ``video`` reads from now on (one count each)."""
    reads: list[int] = []
    message = video._message

    def counted(*args: object, **kwargs: object) -> object:
        reads.append(1)
        return message(*args, **kwargs)

    monkeypatch.setattr(video, "_message", counted)
    return reads


TINY = [(128, b"")] * 20_000  # 40 kB of messages of two bytes (no payload)


def test_a_unit_of_tiny_messages_many_fragments_cut_is_read_once(tmp_path, monkeypatch):
    """A byte stream's SEI unit of 20,000 messages cut by 400 fragments: each fragment's
    read goes on from the last message the one before began, not from the unit's start
    (reading it whole each time took time quadratic in its size: a unit of 32 MiB in
    fragments of 64 KiB, hours). The copy is the held one."""
    stream = H264_HEAD + _sei(*TINY, (5, UUID + MARK), TIMING) + b"\x00\x00\x01" + SLICE
    ends = [*range(0, len(stream), 100), len(stream)]
    value = encapsulate([stream[a:z] for a, z in itertools.pairwise(ends)])
    held, _count = frames.blank(value, video.H264)
    reads = _counted(monkeypatch)
    copy, _found = _streamed(tmp_path, value, video.H264)
    assert copy == held
    assert MARK not in copy
    assert len(reads) < 2 * 2 * (20_000 + 400)  # the copy, then `verify`'s walk


def test_a_nesting_header_with_numbers_no_stream_holds_is_blanked_unread(monkeypatch):
    """100,000 operation points (HEVC allows 1,024), 2,000 SVC layers, or an Exp-Golomb
    number of 40 bits: the header is not read on (a step a bit, millions of them for a
    crafted unit, with each fragment's read), and the message is blanked from the byte its
    reading stopped in, a unit cut past there too."""
    points = _bits((0, 1), (1, 1), (0, 1), (99_999, 0), *[(2, 3), (0, 0)] * 100_000)
    long_number = _bits((1, 1), (1 << 40, 0)) + b"free text " + MARK
    layers = _bits((0, 1), (1999, 0)) + b"free text " + MARK  # SVC: 128 at most
    reads: list[int] = []
    u = video._Bits.u
    monkeypatch.setattr(video._Bits, "u", lambda self, n: reads.append(n) or u(self, n))
    nestings = (  # the header's bytes kept: those its reading stopped past
        (video.HEVC, 133, points, 4),  # three flags, a count of 33 bits
        (video.H264, 37, long_number, 4),  # a flag, 32 zeros
        (video.H264, 30, layers, 2),  # a flag, a count of 21 bits
    )
    for codec, kind, header, kept in nestings:
        nesting = (kind, header + _messages((5, UUID + MARK)))
        unit = _sei(nesting, (5, UUID + MARK), header=SEI_HEADER[codec])
        reads.clear()
        copy = bytearray(unit)
        blanks.fill_in(copy, video.parse(unit, codec)[0])
        blanked = nesting[1][:kept] + _spaced(nesting[1][kept:])
        spaced = _rbsp((kind, blanked), (5, UUID + _spaced(MARK)))
        assert _unescaped(copy) == b"\x00\x00\x00\x01" + SEI_HEADER[codec] + spaced
        assert len(reads) < 100
        # cut inside it: blanked as far as it goes
        cut = unit[: len(unit) // 2]
        copy = bytearray(cut)
        blanks.fill_in(copy, video.parse(cut, codec)[0])
        at = 4 + len(SEI_HEADER[codec]) + len(_number(kind)) + len(_number(len(nesting[1])))
        assert _unescaped(copy)[at + kept :] == _spaced(_unescaped(cut)[at + kept :])
        assert _unescaped(copy)[: at + kept] == _unescaped(cut)[: at + kept]


def test_an_mp4_samples_unit_of_tiny_messages_many_buffers_cut_is_read_once(monkeypatch):
    """As a byte stream's: an MP4 sample's SEI unit fed in buffers of 100 bytes."""
    sample = _nal(b"\x06" + _escaped(_rbsp(*TINY, (5, UUID + MARK), TIMING))) + _nal(SLICE)
    spaced = _nal(b"\x06" + _escaped(_rbsp(*TINY, (5, UUID + _spaced(MARK)), TIMING)))
    reads = _counted(monkeypatch)
    assert _fed(sample, 100) == spaced + _nal(SLICE)
    assert len(reads) < 2 * (20_000 + len(sample) // 100 + 1)


def _payload_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many payload bytes each of ``video``'s SEI reads takes in, from now on."""
    sizes: list[int] = []
    read = video._user_data

    def counted(payload: bytes, *args: object) -> object:
        sizes.append(len(payload))
        return read(payload, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(video, "_user_data", counted)
    return sizes


BIG = (5, UUID + b"free text " * 100_000 + MARK)  # one message of a megabyte
MANY = (133, b"\x20" + _messages(*[TIMING] * 50_000, (5, UUID + MARK)))  # 300 kB, nesting


@pytest.mark.parametrize("codec", [video.H264, video.HEVC])
def test_a_unit_of_one_long_message_many_fragments_cut_is_read_once(monkeypatch, codec):
    """A byte stream's SEI unit of one message of a megabyte (H.264's user data; HEVC's
    scalable nesting of 50,000 messages) in fragments of 1,000 bytes: each read goes on
    from inside the message where the last left, and the unit is held as the search and
    the read need it (its header, its last bytes), not whole (each fragment's read copied
    and read it from the message's start: time quadratic in its size, hours for 32 MiB).
    Longer than ``HELD_BYTES``, it is read to its end; it was left unread from there."""
    monkeypatch.setattr(mp4, "SEARCH_BEHIND", 100)
    monkeypatch.setattr(frames, "HELD_BYTES", 4096)
    header = SEI_HEADER[codec]
    unit = _sei(BIG if codec == video.H264 else MANY, header=header)
    stream = H264_HEAD + unit + b"\x00\x00\x01" + SLICE
    held = bytearray(stream)
    blanks.fill_in(held, video.parse(stream, codec)[0])
    assert MARK in stream
    assert MARK not in held
    sizes = _payload_read(monkeypatch)
    walk = frames._VideoPass(codec, check=lambda _b: None)
    copy, tails = bytearray(), []
    for at in range(0, len(stream), 1000):
        frag = bytearray(stream[at : at + 1000])
        walk(frag)
        copy += frag
        tails.append(len(walk._tail))
    assert copy == held
    assert sum(sizes) < len(unit) + 10 * len(sizes)
    run = len(unit) // 255  # the bytes of 255 in its size: read again till they end
    assert max(tails) <= 100 + 8 + run
    assert max(tails[run // 1000 + 2 :]) <= 100 + 8


def test_a_fragment_larger_than_is_held_is_read_a_window_at_a_time(monkeypatch):
    """A fragment over ``HELD_BYTES`` (mapped from disk) is read ``HELD_BYTES`` at a time,
    as if fragments: an SEI unit in it is read on from one window to the next, none read
    into memory whole (one of gigabytes was, and past 32 MiB of it left unread where it
    went on into the next fragment). The copy is the held one, every value searched."""
    monkeypatch.setattr(frames, "HELD_BYTES", 4096)
    unit = _sei((5, UUID + MARK + b"free text " * 2000 + MARK), TIMING)
    stream = H264_HEAD + (unit + b"\x00\x00\x01" + SLICE) * 2
    held = bytearray(stream)
    blanks.fill_in(held, video.parse(stream, video.H264)[0])
    sizes = _payload_read(monkeypatch)
    frag = bytearray(stream)
    frames._VideoPass(video.H264, check=lambda _b: None)(frag)
    assert frag == held
    assert max(sizes) <= 4096 + 16
    found: list[bytes] = []
    frames._VideoPass(video.H264, found=found)(bytearray(stream))
    assert b"".join(found).count(MARK) >= 4


@pytest.mark.parametrize("first", [None, 200])
def test_an_mp4_fragment_larger_than_is_held_is_read_a_window_at_a_time(monkeypatch, first):
    """An MP4 file in a fragment over ``HELD_BYTES`` (mapped from disk), the first or a later
    one: its samples, and a later fragment's boxes, are read ``HELD_BYTES`` at a time, as
    fragments are. An SEI unit of a megabyte is not copied whole (one of gigabytes was, twice
    over), nor a free box of one: each part searched is ``HELD_BYTES`` and the bytes behind
    it, at most. The copy is the held one, and every value is searched."""
    monkeypatch.setattr(frames, "HELD_BYTES", 4096)
    monkeypatch.setattr(mp4, "SEARCH_BEHIND", 100)
    long, value = b"free text " * 100_000 + MARK, b"Poe^Edgar^PHIMARK"
    text = b"." * (4096 * 200 - 5 - 8) + value + b"." * 1000  # cut by a window's end
    source = _tracked_mp4(video.H264, faststart=True, long=long) + _box(b"free", text)
    held = _tracked_mp4(video.H264, faststart=True, long=long, spaced=True)
    held += _box(b"free", bytes(len(text)))
    sizes, searched = _payload_read(monkeypatch), []
    walk = frames._VideoPass(video.H264, check=lambda b: searched.append(len(b)))
    ends = [0, len(source)] if first is None else [0, first, len(source)]
    copy = [bytearray(source[a:z]) for a, z in itertools.pairwise(ends)]
    for frag in copy:
        walk(frag)
    assert b"".join(copy) == held
    run = len(long) // 255  # the bytes of 255 in its size: read again till they end
    assert max(sizes) <= 4096 + run + 16
    assert max(searched) <= 4096 + run + 100 + 16
    found: list[bytes] = []
    walk = frames._VideoPass(video.H264, found=found)
    for a, z in itertools.pairwise(ends):
        walk(bytearray(source[a:z]))
    assert b"".join(found).count(MARK) >= 2
    assert any(value in part for part in found)
    assert max(len(part) for part in found) <= 4096 + run + 100 + 16


def test_small_video_fragments_are_read_joined(tmp_path, monkeypatch):
    """Streamed video's fragments smaller than ``JOIN_BYTES`` are read joined, up to that
    many bytes, and kept as they were (their items, their bytes blanked): a stream in
    fragments of 2 bytes is read as one in large ones. Each fragment's read searched the
    64 KiB before it again: an SEI unit of 100 kB in 50,000 fragments took 5 s, a megabyte
    about a minute. The copy is the held one."""
    monkeypatch.setattr(frames, "JOIN_BYTES", 4096)
    unit = _sei((5, UUID + b"free text " * 3000 + MARK), TIMING)
    stream = H264_HEAD + unit + b"\x00\x00\x01" + SLICE
    stream += bytes(len(stream) % 2)
    ends = [*range(0, 10_000, 2), *range(10_000, 20_000, 5000), *range(20_000, len(stream), 2)]
    parts = [stream[a:z] for a, z in itertools.pairwise([*ends, len(stream)])]
    value = encapsulate(parts)
    read: list[int] = []
    real = frames._VideoPass.__call__
    monkeypatch.setattr(
        frames._VideoPass, "__call__", lambda self, frag: read.append(len(frag)) or real(self, frag)
    )
    copy, found = _streamed(tmp_path, value, video.H264)
    assert copy == frames.blank(value, video.H264)[0]
    assert MARK in found
    assert [z - a for a, z in frames.fragments(copy)] == [len(part) for part in parts]
    half = read[: len(read) // 2]
    assert read == half * 2  # the copy, and `verify`'s walk
    assert half[:5] == [4096, 4096, 1808, 5000, 5000]  # (the joined ones before a large one)
    assert all(n >= 4096 for n in half[5:-1])
    assert len(half) <= len(stream) // 4096 + 4


def test_an_mp4_samples_unit_of_one_long_message_many_buffers_cut_is_read_once(monkeypatch):
    """As a byte stream's: an MP4 sample's SEI unit of one message of a megabyte, fed in
    buffers of 1,000 bytes, is read once and carried in its last bytes."""
    monkeypatch.setattr(mp4, "SEARCH_BEHIND", 100)
    sample = _nal(b"\x06" + _escaped(_rbsp(BIG))) + _nal(SLICE)
    spaced = bytearray(sample)
    found: list[blanks.Blank] = []
    mp4._sample_sei(sample, video.H264, 4, 0, len(sample), found, [])
    blanks.fill_in(spaced, found)
    assert MARK in sample
    assert MARK not in spaced
    sizes = _payload_read(monkeypatch)
    samples = mp4._Samples(blank=True)
    samples.expect(Places.of([(0, len(sample), video.H264, 4)]))
    copy, carried = bytearray(), []
    for at in range(0, len(sample), 1000):
        buf = bytearray(sample[at : at + 1000])
        samples.feed(buf, at)
        copy += buf
        carried.append(len(samples._carry))
    assert copy == spaced
    assert sum(sizes) < len(sample) + 10 * len(sizes)
    run = len(sample) // 255
    assert max(carried) <= 100 + 8 + run
    assert max(carried[run // 1000 + 2 :]) <= 100 + 8


def test_a_message_whose_type_or_size_no_stream_holds_is_blanked_to_the_units_end(
    tmp_path, monkeypatch
):
    """A type or size of more than ``MOST_FF`` bytes of 255 (a message of over 267 MB):
    read as it comes, a fragment's read would begin at its start each time, so it is not
    read; its bytes from the first past those and the rest of its unit are made spaces,
    held and streamed alike. A size of ``MOST_FF`` such bytes is read."""
    monkeypatch.setattr(video, "MOST_FF", 8)
    after = (5, UUID + MARK)
    payload = UUID + MARK + b"." * (255 * 8 + 3 - len(UUID + MARK))  # a size of 8 bytes
    read = _sei(TIMING, (5, payload), after)
    copy = bytearray(read)
    blanks.fill_in(copy, video.parse(read, video.H264)[0])
    assert copy == _sei(TIMING, (5, UUID + _spaced(payload[16:])), (5, UUID + _spaced(MARK)))
    for message, kept in ((b"\xff" * 9 + b"\x05\x02xx", 8), (b"\x05" + b"\xff" * 9 + b"\x02xx", 9)):
        unit = b"\x00\x00\x00\x01\x06" + _escaped(_rbsp(TIMING)[:-1] + message + _rbsp(after))
        blanked = bytearray(unit)
        blanks.fill_in(blanked, video.parse(unit, video.H264)[0])
        at = len(_sei(TIMING)) - 1 + kept  # the message's first byte past 8 of 255
        assert blanked == unit[:at] + _spaced(unit[at:])
        stream = H264_HEAD + unit + b"\x00\x00\x01" + SLICE
        held = H264_HEAD + blanked + b"\x00\x00\x01" + SLICE
        for size in (2, 4, 8):
            ends = [*range(0, len(stream), size), len(stream)]
            value = encapsulate([stream[a:z] for a, z in itertools.pairwise(ends)])
            copy, _found = _streamed(tmp_path, value, video.H264)
            assert copy == frames.blank(value, video.H264)[0], size
            assert b"".join(copy[a:z] for a, z in frames.fragments(copy)) == _even(held), size


def test_a_sample_unit_many_buffers_cut_is_searched_in_bytes_linear_in_its_size(monkeypatch):
    """An MP4 sample's SEI unit of 60 kB read in buffers of 1,000 bytes (`verify`'s walk):
    each buffer's part is searched with the last bytes before it, every value found, not
    the whole unit so far again."""
    monkeypatch.setattr(mp4, "SEARCH_BEHIND", 100)
    sample = _nal(b"\x06" + _escaped(_rbsp((5, UUID + MARK * 2400)))) + _nal(SLICE)
    samples = mp4._Samples(blank=False)
    samples.expect(Places.of([(0, len(sample), video.H264, 4)]))
    found = [
        b"".join(samples.feed(bytearray(sample[at : at + 1000]), at))
        for at in range(0, len(sample), 1000)
    ]
    assert sum(f.count(MARK) for f in found) >= 2400
    assert max(len(f) for f in found) <= 1000 + 100


@pytest.mark.parametrize("codec", [video.H264, video.HEVC, video.MPEG2])
def test_streamed_video_cut_anywhere_is_blanked_as_held(tmp_path, codec):
    """Streamed video is blanked a fragment at a time, and a fragment may end anywhere: in
    a message's text, its size, an escape, a start code. Each cut gives the copy the frames
    held whole (parsed as one stream) give. Two cuts close together leave a fragment that
    lies inside one unit."""
    stream = _video_streams()[codec]
    even = range(2, len(stream), 2)  # fragments are of even length: where none is padded
    cuts = [(c,) for c in even]
    rng = random.Random(20261205)  # noqa: S311 - a seeded stream of test inputs
    cuts += [tuple(sorted(rng.sample(even, 2))) for _ in range(60)]
    whole = frames.blank(encapsulate([stream]), codec)[1]
    assert whole > 0
    for cut in cuts:
        ends = [0, *cut, len(stream)]
        value = encapsulate([stream[a:z] for a, z in itertools.pairwise(ends)])
        held, count = frames.blank(value, codec)
        assert count == whole, cut  # a unit the fragments cut counted once
        assert MARK not in b"".join(held[a:z] for a, z in frames.fragments(held)).replace(
            b"\x00", b""
        )
        assert _streamed(tmp_path, value, codec)[0] == held, cut


@pytest.mark.parametrize("codec", [video.H264, video.HEVC, video.MPEG2])
def test_streamed_video_in_small_fragments_is_blanked_as_held(tmp_path, codec):
    """Fragments of 2 to 24 bytes: each unit goes on through many of them, and each read of
    it goes on from where the one before left, at every place (escape bytes, nesting, a
    message ending in a zero before an escape byte). The copy is the held one."""
    stream = _video_streams()[codec]
    for size in range(2, 26, 2):
        ends = [*range(0, len(stream), size), len(stream)]
        value = encapsulate([stream[a:z] for a, z in itertools.pairwise(ends)])
        held, _count = frames.blank(value, codec)
        assert _streamed(tmp_path, value, codec)[0] == held, size
        with pytest.MonkeyPatch.context() as patch:  # a unit held from where its read left
            patch.setattr(mp4, "SEARCH_BEHIND", 0)
            assert _streamed(tmp_path, value, codec)[0] == held, size


def test_an_mp4_samples_units_fed_in_small_buffers_are_blanked_as_held():
    """Two SEI units (escape bytes, nesting) in a sample, fed in buffers of 1 to 9 bytes:
    a unit's length cut too, each unit read on from where its last read left it."""
    stream = _video_streams()[video.H264]
    units = [stream[a:z] for a, z in video.units(stream)]
    sei = [u for u in units if u[:1] == b"\x06"]
    sample = b"".join(_nal(u.rstrip(b"\x00")) for u in [*sei, SLICE, *sei])
    found: list[blanks.Blank] = []
    mp4._sample_sei(sample, video.H264, 4, 0, len(sample), found, [])
    held = bytearray(sample)
    blanks.fill_in(held, found)
    assert MARK not in held
    for size in range(1, 10):
        assert _fed(sample, size) == held, size


def test_a_value_in_a_kept_message_cut_by_a_fragment_end_is_found(tmp_path):
    """The unit a fragment ends in is searched whole, with what the next one holds of it:
    a patient's name in a message that stays, cut anywhere, stops the streamed copy."""
    name = b"Doe^Jane^PHIMARKPN"
    stream = H264_HEAD + _sei((5, UUID + b"ok"), (137, name)) + b"\x00\x00\x01" + SLICE
    at = stream.index(name)
    for cut in range(at - at % 2, at + len(name) + 1, 2):
        value = encapsulate([stream[:cut], stream[cut:]])
        path = tmp_path / "frames"
        path.write_bytes(value)
        span = FileSpan(path, 0, len(value), version_of(path.stat()))
        found = frames.Blanked(span, 0, len(value), video.H264, lambda b: "PN" * (name in b))
        with pytest.raises(DeidError, match=r"header \(from PN\)"):
            b"".join(found.chunks())


def test_a_unit_longer_than_what_is_held_is_blanked_to_its_end(tmp_path, monkeypatch):
    """A text unit that runs on past ``HELD_BYTES`` of the next fragment is read on a window
    of that size at a time: blanked to its end, as held (it was left past the first)."""
    monkeypatch.setattr(frames, "HELD_BYTES", 64)
    stream = H264_HEAD + _sei((5, UUID + MARK * 40)) + b"\x00\x00\x01" + SLICE
    cut = len(H264_HEAD) + 40
    value = encapsulate([stream[:cut], stream[cut:]])
    copy, _headers = _streamed(tmp_path, value, video.H264)
    second = next(itertools.islice(frames.fragments(copy), 1, None))
    text = copy[second[0] : second[1]]
    assert text[:64] == b" " * 64
    assert MARK not in copy
    assert copy == frames.blank(value, video.H264)[0]


def _full(kind: bytes, payload: bytes, version: int = 0, flags: int = 0) -> bytes:
    return _box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def _item(kind: bytes, value: bytes) -> bytes:
    return _box(kind, _box(b"data", b"\x00\x00\x00\x01\x00\x00\x00\x00" + value))


TIMES_V0 = b"\xd8\xa2\x62\xbf" * 2  # created, modified: seconds since 1904
TIMES_V1 = b"\x00\x00\x00\x00\xd8\xa2\x62\xbf" * 2
# a handler box's payload, up to its name: version, flags, pre_defined; its type; reserved
HANDLER = b"\x00" * 8 + b"vide" + b"\x00" * 12


def _mp4(*, kept: bytes = b"", blanked: bool = False) -> bytes:
    """An MP4 file as a phone or a recorder writes one; ``blanked``: as its copy holds it.
    ``kept``: in a box of a writer's own in its movie box, which is kept."""

    def text(value: bytes) -> bytes:
        return bytes(len(value)) if blanked else value

    times = (bytes(8), bytes(16)) if blanked else (TIMES_V0, TIMES_V1)
    meta = _full(
        b"meta",
        _full(b"hdlr", bytes(4) + b"mdirappl" + bytes(8) + text(b"handler of " + MARK + b"\x00"))
        + _box(b"ilst", _item(b"\xa9nam", text(MARK)) + _item(b"\xa9too", text(b"Lavf63"))),
    )
    udta = _box(
        b"udta",
        meta
        + _box(b"loci", text(b"\x00\x00\x00\x00\x15\xc7" + MARK + b"\x00\x02K\x85\x00"))
        + _box(b"\xa9xyz", text(b"\x00\x12\x15\xc7+48.8577+002.2950/")),
    )
    trak = _box(
        b"trak",
        _full(b"tkhd", times[1] + b"\x00\x00\x00\x01" + bytes(8), version=1)
        + _box(
            b"mdia",
            _full(b"mdhd", times[0] + bytes(8))
            + _box(b"hdlr", HANDLER + text(b"VideoHandler\x00")),
        ),
    )
    mvhd = _full(b"mvhd", times[0] + b"\x00\x00\x03\xe8" + bytes(8))
    moov = _box(b"moov", mvhd + trak + udta + (_box(b"wrtr", kept) if kept else b""))
    xmp = _box(b"uuid", bytes(range(0xBE, 0xCE)) + text(b"<x:xmpmeta>" + MARK + b"</x:xmpmeta>"))
    ntp = b"\xeb\x0b\x2c\x80\x12\x34\x56\x78"  # 2024-12-05, its wall-clock time
    prft = _full(b"prft", b"\x00\x00\x00\x01" + text(ntp) + b"\x00\x00\x03\xe8")
    emsg = _full(b"emsg", text(b"https://aomedia.org/emsg/ID3\x00\x00" + bytes(16) + MARK))
    return (
        _box(b"ftyp", b"isom\x00\x00\x02\x00isomavc1")
        + _box(b"free", text(b"left by an editor: " + MARK))
        + prft
        + emsg
        + _box(b"mdat", text(b"\x00\x00\x01\x06" + MARK + IMAGE))  # no track places it
        + moov
        + xmp
    )


def test_an_mp4_files_metadata_is_zeroed_and_its_media_kept(tmp_path):
    """Writers wrap whole MP4 files under the video UIDs: its titles, comments, places and
    XMP, free space, event messages (ID3 text), and the times of its movie, tracks and media
    and a live recording's producer time are zeroed, each box keeping its header, and so is
    media data that no track's sample places; the boxes decoders read stay."""
    source = _mp4()
    copy = _copy(_object(source, ts=uid.MPEG4HP41))
    (frame,) = _frames_of(copy)
    expected = _mp4(blanked=True)
    assert len(expected) == len(source)
    assert frame == _even(expected)
    assert MARK not in frame


def test_a_value_left_in_an_mp4_box_is_caught_by_the_leak_check(tmp_path):
    """The boxes but the media data are searched: a patient's name in a box of a writer's
    own, which is kept, refuses the object."""
    data = _object(_mp4(kept=NAME + b"\x00"), ts=uid.MPEG4HP41, PatientName=NAME.decode())
    assert "(0010,0010)" in _refused(tmp_path, data)


def _described(*, blanked: bool = False) -> bytes:
    """An MP4 file's movie box: a video track with its media's and its data handler's names,
    a data reference to a file by its path, a sample entry whose compressor name is a
    device's; an audio track whose sample entry holds, where a video one's name would lie,
    its decoder's configuration (``blanked``: as its copy holds it)."""

    def text(value: bytes) -> bytes:
        return bytes(len(value)) if blanked else value

    name = bytes([len(MARK) + 4]) + b"Cam " + MARK
    name += bytes(32 - len(name))
    config = _box(b"avcC", b"\x01\x64\x00\x1f\xff\xe0\x00")
    fixed = bytes(6) + b"\x00\x01" + bytes(32) + b"\x00\x01"  # ...its frame count: 1
    avc1 = _box(b"avc1", fixed + text(name) + b"\x00\x18\xff\xff" + config)  # depth, -1
    inside = _full(b"url ", b"", flags=1)  # self-contained: its flags kept
    reference = _full(b"url ", text(b"file:///Users/" + MARK + b"/clip.mov\x00"))
    dinf = _box(b"dinf", _full(b"dref", b"\x00\x00\x00\x02" + inside + reference))
    data_handler = _box(b"hdlr", bytes(8) + b"alis" + bytes(12) + text(b"Alias of " + MARK))
    video_table = _box(b"stbl", _full(b"stsd", b"\x00\x00\x00\x01" + avc1))
    minf = _box(b"minf", data_handler + dinf + video_table)
    media = _box(b"hdlr", HANDLER + text(b"Core Media Video of " + MARK + b"\x00"))
    video_track = _box(b"trak", _box(b"mdia", media + minf))
    esds = _full(b"esds", b"\x03\x80\x80\x80" + bytes(range(1, 61)))  # kept, every byte
    mp4a = _box(b"mp4a", bytes(6) + b"\x00\x01" + bytes(20) + esds)
    sound = _box(b"hdlr", bytes(8) + b"soun" + bytes(12))
    audio_table = _box(b"stbl", _full(b"stsd", b"\x00\x00\x00\x01" + mp4a))
    audio_track = _box(b"trak", _box(b"mdia", sound + _box(b"minf", audio_table)))
    return _box(b"ftyp", b"isom\x00\x00\x02\x00isomavc1") + _box(b"moov", video_track + audio_track)


def test_names_and_places_no_decoder_reads_in_the_movie_box_are_zeroed(tmp_path):
    """A media's and a data handler's names, a data reference's location (a user's path),
    and a video sample entry's compressor name (a device's, a writer's): zeroed, held and
    streamed alike; the audio sample entry, whose own boxes lie where a video one's
    compressor name would, is kept."""
    source = _described()
    assert len(source) % 2 == 0
    blanked, _regions = mp4.parse(source)
    copy = bytearray(source)
    blanks.fill_in(copy, blanked)
    assert copy == _described(blanked=True)
    assert MARK not in copy
    assert bytes(range(1, 61)) in copy
    value = encapsulate([source])
    held = frames.blank(value, video.H264)[0]
    assert _streamed(tmp_path, value, video.H264)[0] == held
    assert MARK in frames.headers(value, video.H264)  # the original's names are searched


def _nal(unit: bytes, size: int = 4) -> bytes:
    return len(unit).to_bytes(size, "big") + unit


def _tracked_mp4(
    codec: str,
    *,
    spaced: bool = False,
    faststart: bool = False,
    first_slice: bytes = SLICE,
    long: bytes = b"",
) -> bytes:
    """An MP4 file whose one video track's samples hold an SEI message with text (H.264), or
    whose configuration declares one (HEVC, as x265 does), bytes no track places between
    (as if audio). Its movie box after its media data, or before it (``faststart``).
    ``long``: more of H.264's text. ``spaced``: as its copy holds it (those bytes zeroed)."""
    text = _spaced if spaced else (lambda t: t)
    if codec == video.H264:
        sei = b"\x06" + _escaped(_rbsp((5, UUID + text(MARK + TEXT + long))))
        config = _box(b"avcC", b"\x01\x64\x00\x1f\xff\xe0\x00")  # 4-byte lengths, no sets
        entry_kind, declared = b"avc1", b""
        first = _nal(sei) + _nal(first_slice)
    else:
        sei = b"\x4e\x01" + _escaped(_rbsp((5, UUID + text(MARK + TEXT))))
        record = b"\x01" + bytes(20) + b"\x0f" + b"\x01" + b"\x27\x00\x01" + _nal(sei, 2)
        config = _box(b"hvcC", record)
        entry_kind, declared = b"hvc1", sei
        first = _nal(b"\x26\x01" + IMAGE)
    second = _nal(b"\x41\x9a" + IMAGE) if codec == video.H264 else _nal(b"\x02\x01" + IMAGE)
    audio = _nal(b"\x06" + _rbsp((5, UUID + MARK)))  # as if video; no track places it
    ftyp = _box(b"ftyp", b"isom\x00\x00\x02\x00isomavc1")
    mdat = _box(b"mdat", first + (bytes(len(audio)) if spaced else audio) + second)
    entry = _box(entry_kind, bytes(6) + b"\x00\x01" + bytes(70) + config)

    def moov(at: int) -> bytes:
        """``at``: where the media data's first byte lies."""
        table = (
            _full(b"stsd", b"\x00\x00\x00\x01" + entry)
            + _full(
                b"stsz",
                b"\x00\x00\x00\x00\x00\x00\x00\x02" + struct.pack(">LL", len(first), len(second)),
            )
            + _full(b"stsc", b"\x00\x00\x00\x01" + struct.pack(">LLL", 1, 1, 1))
            + _full(
                b"stco", b"\x00\x00\x00\x02" + struct.pack(">LL", at, at + len(first) + len(audio))
            )
        )
        trak = _box(b"trak", _box(b"mdia", _box(b"minf", _box(b"stbl", table))))
        assert not declared or declared in trak
        return _box(b"moov", trak)

    if faststart:
        return ftyp + moov(len(ftyp) + len(moov(0)) + 8) + mdat
    return ftyp + mdat + moov(len(ftyp) + 8)


@pytest.mark.parametrize("codec", [video.H264, video.HEVC])
def test_sei_text_in_an_mp4_files_video_track_is_blanked(codec):
    """Its samples (found by the track's sample table) and, in HEVC, the units its
    configuration declares: user data SEI blanked as in a stream of start codes; the slices
    untouched, and the bytes between that no track places zeroed."""
    source = _tracked_mp4(codec)
    (frame,) = _frames_of(
        _copy(_object(source, ts=uid.MPEG4HP41 if codec == video.H264 else uid.HEVCMP51))
    )
    assert frame == _even(_tracked_mp4(codec, spaced=True))
    assert MARK not in frame


def _fragmented_mp4(how: str, *, spaced: bool = False, fragments: int = 1) -> bytes:
    """A fragmented MP4 file (empty sample tables; a movie fragment places the samples): an
    audio track's sample that looks like an SEI message, then the video track's, the first
    holding an SEI message with text, then bytes no run places (as the audio's; the audio
    track is not in the movie box, so its sample is placed by no track either). ``how``
    the track fragments count their data from: ``moof`` (the fragment's start, an offset in
    each run; the first sample's flags, each one's duration), ``base`` (the audio's base
    offset; the video's data follows it), or ``trex`` (the fragment's start; the video's
    sample sizes the movie's default). ``fragments``: movie fragments, each with media data
    of its own. ``spaced``: as its copy holds it (the audio's bytes zeroed)."""
    text = _spaced if spaced else (lambda t: t)
    first = _nal(b"\x06" + _escaped(_rbsp((5, UUID + text(MARK + TEXT))))) + _nal(SLICE)
    second = _nal(b"\x41\x9a" + b"\x12" * (len(first) - 6))  # as long as the first
    audio = _nal(b"\x06" + _rbsp((5, UUID + MARK)))  # audio, as if video: never read as such
    ftyp = _box(b"ftyp", b"isom\x00\x00\x02\x00isomiso6")
    config = _box(b"avcC", b"\x01\x64\x00\x1f\xff\xe0\x00")
    entry = _box(b"avc1", bytes(6) + b"\x00\x01" + bytes(70) + config)
    table = _full(b"stsd", b"\x00\x00\x00\x01" + entry) + _full(b"stsz", bytes(8))
    table += _full(b"stsc", bytes(4)) + _full(b"stco", bytes(4))
    tkhd = _full(b"tkhd", bytes(8) + struct.pack(">L", 1) + bytes(68))  # track 1
    trak = _box(b"trak", tkhd + _box(b"mdia", _box(b"minf", _box(b"stbl", table))))
    trex = _full(b"trex", struct.pack(">LLLLL", 1, 1, 0, len(first), 0))
    moov = _box(b"moov", trak + _box(b"mvex", trex))
    sizes = struct.pack(">LL", len(first), len(second))

    def moof(data: int, at: int) -> bytes:
        """``data``: where the media data's first byte lies, ``at`` the fragment's (from the
        file's start)."""
        if how == "base":
            sound = _full(b"tfhd", struct.pack(">LQ", 2, data), flags=1)
            sound += _full(b"trun", struct.pack(">LL", 1, len(audio)), flags=0x200)
            picture = _full(b"tfhd", struct.pack(">L", 1))  # follows the audio's data
            picture += _full(b"trun", struct.pack(">L", 2) + sizes, flags=0x200)
        else:
            sound = _full(b"tfhd", struct.pack(">L", 2), flags=0x20000)
            sound += _full(b"trun", struct.pack(">LlL", 1, data - at, len(audio)), flags=0x201)
            picture = _full(b"tfhd", struct.pack(">L", 1), flags=0x20000)
            runs = struct.pack(">Ll", 2, data - at + len(audio))
            if how == "moof":  # the first sample's flags, then each one's duration and size
                each = struct.pack(">LLLL", 512, len(first), 512, len(second))
                picture += _full(b"trun", runs + b"\x02\x00\x00\x00" + each, flags=0x305)
            else:
                picture += _full(b"trun", runs, flags=1)
        header = _full(b"mfhd", b"\x00\x00\x00\x01")
        return _box(b"moof", header + _box(b"traf", sound) + _box(b"traf", picture))

    unplaced = bytes(len(audio)) if spaced else audio
    mdat = _box(b"mdat", unplaced + first + second + unplaced)
    file = ftyp + moov
    for _ in range(fragments):
        file += moof(len(file) + len(moof(0, 0)) + 8, len(file)) + mdat
    return file


@pytest.mark.parametrize("how", ["moof", "base", "trex"])
def test_sei_text_in_a_fragmented_mp4_files_samples_is_blanked(how):
    """Samples a movie fragment places (by a run's offset from the fragment's start, or a
    track fragment's base offset, with sizes of their own or the movie's default): the
    video track's SEI is blanked; a track the movie box does not name places nothing, so
    its sample is zeroed, as the bytes after the video's samples are."""
    source = _fragmented_mp4(how)
    (frame,) = _frames_of(_copy(_object(source, ts=uid.MPEG4HP41)))
    assert frame == _even(_fragmented_mp4(how, spaced=True))
    assert MARK not in frame


def test_damaged_mp4_never_raises():
    """Sizes that run past their box or are too short, damaged sample tables, random bytes,
    cut files: the blanks stay inside the file, only zeros (and spaces, in SEI messages)
    are written."""
    rng = random.Random(20261206)  # noqa: S311 - a seeded stream of test inputs
    bases = [_mp4(), _tracked_mp4(video.H264), _tracked_mp4(video.HEVC)]
    bases += [_fragmented_mp4(how) for how in ("moof", "base", "trex")]
    for _ in range(4500):
        frame = bytearray(rng.choice(bases))
        for _ in range(rng.randrange(1, 4)):
            frame[rng.randrange(len(frame))] = rng.choice((0, 1, rng.randrange(256)))
        cut = bytes(frame[: rng.randrange(9, len(frame) + 1)])
        old = encapsulate([cut])
        new, _count = frames.blank(old, video.H264)
        assert len(new) == len(old)
        assert all(n in (o, 0, 0x20) for o, n in zip(old, new, strict=True))
        frames.headers(new, video.H264)


def test_damaged_mp4_streamed_never_raises():
    """The streamed walk over damaged files cut anywhere (read ahead or not, its hold as
    small as 16 bytes): it never raises, and writes only zeros and spaces."""
    rng = random.Random(20261207)  # noqa: S311 - a seeded stream of test inputs
    codecs = (video.H264, video.HEVC)
    bases = [_tracked_mp4(codec, faststart=fast) for codec in codecs for fast in (False, True)]
    bases += [_fragmented_mp4(how, fragments=2) for how in ("moof", "base", "trex")]
    for _ in range(3000):
        file = bytearray(rng.choice(bases))
        for _ in range(rng.randrange(1, 4)):
            file[rng.randrange(len(file))] = rng.choice((0, 1, rng.randrange(256)))
        source = bytes(file[: rng.randrange(9, len(file) + 1)])
        walked = walked_anyhow(rng, source)
        assert all(n in (o, 0, 0x20) for o, n in zip(source, walked, strict=True))


def walked_anyhow(rng: random.Random, source: bytes) -> bytes:
    """``source`` as a streamed walk leaves it, fed in up to four buffers cut at random,
    holding 16, 64 or 1 MiB bytes, its movie box read ahead or not."""
    ends = sorted({0, len(source), *(rng.randrange(8, len(source) + 1) for _ in range(3))})
    buffers = [bytearray(source[a:z]) for a, z in itertools.pairwise(ends)]
    held = rng.choice((16, 64, 1 << 20))
    ahead = mp4.samples_ahead(lambda at, n: source[at : at + n], len(buffers[0]), held)
    walk = mp4.Mp4Walk(held, ahead=ahead if rng.random() < 0.5 else None)
    for buf in buffers:
        walk.feed(buf)
    return b"".join(buffers)


@pytest.mark.parametrize("offsets", [b"stco", b"co64"])
def test_a_tables_entries_are_read_as_far_as_samples_are_placed(monkeypatch, offsets):
    """A track's tables may claim millions of samples: of their entries, only those that
    place the first ``MP4_SAMPLES`` are read (all were, into lists of Python numbers: a
    movie box of 56 MB took 3.6 s and a gigabyte; now 0.9 s)."""
    monkeypatch.setattr(mp4, "MP4_SAMPLES", 3)
    read: list[int] = []
    numbers = mp4._array
    monkeypatch.setattr(mp4, "_array", lambda *a, **k: read.append(len(n := numbers(*a, **k))) or n)
    wide = 4 if offsets == b"stco" else 8
    starts = b"".join(at.to_bytes(wide, "big") for at in range(1000, 2000, 10))
    table = _full(b"stsz", struct.pack(">LL", 0, 100) + struct.pack(">100L", *[7] * 100))
    table += _full(b"stsc", struct.pack(">L", 100) + struct.pack(">LLL", 1, 1, 1) * 100)
    table += _full(offsets, struct.pack(">L", 100) + starts)
    starts, stops = mp4._samples(table, 0, len(table))
    assert list(zip(starts.tolist(), stops.tolist(), strict=True)) == [
        (1000, 1007),
        (1010, 1017),
        (1020, 1027),
    ]
    assert read == [2, 3, 3 * 3, 3]


def test_the_samples_waiting_to_be_read_are_bounded(monkeypatch):
    """A movie box's tracks together place at most ``MP4_SAMPLES`` samples (a table may
    claim a million a track, in a few bytes), and at most that many wait in a streamed walk,
    those past it taken as the first are read."""
    monkeypatch.setattr(mp4, "MP4_SAMPLES", 3)
    source = _tracked_mp4(video.H264)
    at = source.index(b"moov") - 4
    trak = source[at + 8 :]
    assert trak[4:8] == b"trak"
    file = source[:at] + _box(b"moov", trak + trak)  # 2 tracks, 2 samples each
    read = lambda start, n: file[start : start + n]  # noqa: E731
    assert len(mp4.samples_ahead(read, 40, 1 << 20)) == 3
    samples = mp4._Samples(blank=True)
    samples.expect(Places.of([(i, i + 1, video.H264, 4) for i in range(10, 15)]))
    samples.expect(Places.of([(i, i + 1, video.H264, 4) for i in range(20, 25)]))
    found = [len(samples._pending) - samples._next]
    samples.feed(bytearray(12), 0)  # the samples at 10 and 11 read
    samples.expect(Places.of([(i, i + 1, video.H264, 4) for i in range(30, 35)]))
    found.append(len(samples._pending) - samples._next)
    assert found == [3, 3]
    assert [p[0] for p in samples._pending.after(samples._next)] == [12, 30, 31]


def _large_media_data(mp4: bytes) -> bytes:
    """``mp4`` with its media data box's size in 64 bits (as a file over 4 GiB has it)."""
    at = mp4.index(b"mdat") - 4
    size = int.from_bytes(mp4[at : at + 4], "big")
    header = b"\x00\x00\x00\x01mdat" + (size + 8).to_bytes(8, "big")
    return mp4[:at] + header + mp4[at + 8 :]


@pytest.mark.parametrize("large", [False, True])
def test_a_streamed_mp4_files_boxes_past_its_first_fragment_are_blanked_as_held(tmp_path, large):
    """A large file in many fragments (a fragmentable transfer syntax), its movie box after
    the media data (whose size may take 64 bits): every box a fragment's end cuts (its
    header, a title, a time) is read on into the next, and the copy is the held one;
    `verify`'s walk finds the text. (A file is known as one by its first fragment's first 8
    bytes.)"""
    source = _large_media_data(_mp4()) if large else _mp4()
    blanked = _large_media_data(_mp4(blanked=True)) if large else _mp4(blanked=True)
    even = range(8, len(source), 2)
    rng = random.Random(20261205)  # noqa: S311 - a seeded stream of test inputs
    cuts = [(c,) for c in even] + [tuple(sorted(rng.sample(even, 3))) for _ in range(60)]
    for cut in cuts:
        ends = [0, *cut, len(source)]
        value = encapsulate([source[a:z] for a, z in itertools.pairwise(ends)])
        copy, found = _streamed(tmp_path, value, video.H264)
        assert b"".join(copy[a:z] for a, z in frames.fragments(copy)) == _even(blanked), cut
        assert MARK in found


def test_a_box_cut_by_buffers_is_searched_in_bytes_linear_in_its_size(monkeypatch):
    """`verify`'s walk (nothing blanked) of a movie box after the media data, fed in pieces:
    a value cut by a piece's end is found (the bytes before it searched again with the
    next piece), and each piece gives its own bytes and those few: the whole box so far,
    searched again with each piece, cost time (and, for `verify`, memory) quadratic in its
    pieces (a movie box of 8 MB in 8 KiB fragments took 313 s to walk; now 2.7 s)."""
    monkeypatch.setattr(mp4, "SEARCH_BEHIND", 40)
    source = _mp4()
    moov = source.index(b"moov") - 4
    boxes = source[:moov].count(MARK) - 1 + source[moov:].count(MARK)  # (the mdat's not)
    for cut in range(moov + 8, len(source)):
        walk = mp4.Mp4Walk(1 << 20, blank=False)
        pieces = [source[: moov + 4], source[moov + 4 : cut], source[cut:]]
        found = [b"".join(walk.feed(bytearray(piece))) for piece in pieces]  # each searched
        assert sum(f.count(MARK) for f in found) >= boxes, cut  # (one behind a cut: twice)
    walk = mp4.Mp4Walk(1 << 20, blank=False)
    walk.feed(bytearray(source[:moov]))
    pieces = [source[at : at + 2] for at in range(moov, len(source), 2)]
    sizes = [len(b"".join(walk.feed(bytearray(piece)))) for piece in pieces]
    assert max(sizes) <= 40 + 2 + 1  # (the last piece's box: its 3 bytes of a header)


def _boxes_too_large(*, blanked: bool = False) -> tuple[bytes, bytes]:
    """(the head of an MP4 file: its type and media data; boxes after it larger than 100
    bytes, then a small one). ``blanked``: as a walk that holds 100 bytes leaves them."""

    def text(value: bytes) -> bytes:
        return bytes(len(value)) if blanked else value

    udta = _box(b"meta", bytes(4) + _item(b"\xa9nam", MARK * 4))
    ntp, junk = b"\xeb\x0b\x2c\x80\x12\x34\x56\x78", MARK * 4
    boxes = [
        _box(b"uuid", UUID + text(MARK * 8)),  # after its UUID
        _box(b"free", text(b"left by an editor: " + MARK * 8)),
        _box(b"udta", text(udta)),  # whole: the headers of its boxes too
        _full(b"emsg", text(b"https://aomedia.org/emsg/ID3\x00\x00" + MARK * 8)),
        _full(b"prft", b"\x00\x00\x00\x01" + text(ntp) + b"\x00\x00\x03\xe8" + junk),
        _box(b"moov", _box(b"udta", text(_item(b"\xa9nam", MARK * 8)))),  # walked into
        _box(b"abcd", text(MARK * 8)),  # media data (a kind not known): no sample in it
        _box(b"free", text(MARK)),  # held and parsed
    ]
    assert all(len(box) > 100 for box in boxes[:-1])
    head = _box(b"ftyp", b"isom\x00\x00\x02\x00isomavc1") + _box(b"mdat", text(MARK + IMAGE))
    return head, b"".join(boxes)


def test_a_box_too_large_to_hold_is_zeroed_as_it_passes(monkeypatch):
    """A box larger than what a streamed file's walk holds is passed over unparsed: user
    data, metadata and free space are zeroed whole, a UUID box, an event message and a
    producer time as parsed, as their bytes come; a movie box is walked into, its user data
    too large to hold zeroed the same way (the movie box was left); a box of a kind not
    known is media data, zeroed where no sample lies (it was left). What stays (a producer
    time's bytes past its time) is searched, each buffer's part with the bytes before it: a
    value a buffer's end cuts is found. `verify`'s walk searches them all (the media data's
    that no sample holds too)."""
    monkeypatch.setattr(mp4, "SEARCH_BEHIND", len(MARK))
    head, boxes = _boxes_too_large()
    blanked = _boxes_too_large(blanked=True)[1]
    rng = random.Random(20261205)  # noqa: S311 - a seeded stream of test inputs
    cuts = [tuple(range(0, len(boxes), n)) for n in (1, 7, 64, 1000)]
    cuts += [tuple(sorted(rng.sample(range(1, len(boxes)), 6))) for _ in range(40)]
    for cut in cuts:
        ends = [0, *cut, len(boxes)]
        pieces = [bytearray(boxes[a:z]) for a, z in itertools.pairwise(ends)]
        walk, searched = mp4.Mp4Walk(100), mp4.Mp4Walk(100, blank=False)
        walk.feed(bytearray(head))
        searched.feed(bytearray(head))
        found = [b"".join(walk.feed(piece)) for piece in pieces]
        assert b"".join(pieces) == blanked, cut
        assert sum(f.count(MARK) for f in found) >= 4, cut  # the producer time's
        found = [
            b"".join(searched.feed(bytearray(boxes[a:z]))) for a, z in itertools.pairwise(ends)
        ]
        assert sum(f.count(MARK) for f in found) >= boxes.count(MARK), cut


def test_a_box_the_first_buffer_ends_in_is_zeroed_past_it(monkeypatch):
    """The first buffer is parsed as a file; a box too large to hold that it ends in (or
    one whose size is 0: to the file's end) has its rest zeroed as it comes."""
    head, _boxes = _boxes_too_large()
    copied = _boxes_too_large(blanked=True)[0]  # (its media data: no sample placed)
    text = b"left by an editor: " + MARK * 8
    for free in (_box(b"free", text), b"\x00\x00\x00\x00free" + text):
        file = head + free
        for cut in range(len(head) + 8, len(file)):
            walk = mp4.Mp4Walk(100)
            pieces = [bytearray(file[:cut]), bytearray(file[cut:])]
            for piece in pieces:
                walk.feed(piece)
            assert b"".join(pieces) == copied + free[:8] + bytes(len(text)), cut


def test_a_cut_movie_boxs_sample_table_is_worked_out_once(monkeypatch):
    """A movie box after the media data that buffers cut is parsed with each, for what to
    blank in it; its sample tables (up to a million places a track) only once it is whole:
    they were worked out with each buffer, and dropped (41 s for a movie box of 8 MB in
    64 KiB fragments; now 2.6 s)."""
    tables = []
    samples = mp4._samples
    monkeypatch.setattr(mp4, "_samples", lambda *a: tables.append(a[1:]) or samples(*a))
    source, blanked = _tracked_mp4(video.H264), _tracked_mp4(video.H264, spaced=True)
    at = source.index(b"moov") - 4
    walk = mp4.Mp4Walk(
        1 << 20, ahead=mp4.samples_ahead(lambda a, n: source[a : a + n], at, 1 << 20)
    )
    ahead = len(tables)
    copy = [bytearray(source[:at])] + [
        bytearray(source[a : a + 4]) for a in range(at, len(source), 4)
    ]
    for buf in copy:
        walk.feed(buf)
    assert ahead == 1
    assert len(tables) == 2  # read ahead, and once whole
    assert b"".join(copy) == blanked


def _mp4_cuts(source: bytes, seed: int) -> list[tuple[int, ...]]:
    """Every even cut of ``source`` from 8 (where one fragment ends: fragments are of even
    length), and 60 triple cuts."""
    even = range(8, len(source), 2)
    rng = random.Random(seed)  # noqa: S311 - a seeded stream of test inputs
    return [(c,) for c in even] + [tuple(sorted(rng.sample(even, 3))) for _ in range(60)]


def _cut_into(source: bytes, cut: tuple[int, ...]) -> bytes:
    ends = [0, *cut, len(source)]
    return encapsulate([source[a:z] for a, z in itertools.pairwise(ends)])


def _named_mp4(name: str) -> tuple[str, bytes, bytes]:
    """(codec, file, its copy) of a file with its movie box first ("faststart H.264" or
    HEVC) or last ("last ..."), or of a fragmented one ("moof", "base", "trex": three
    fragments)."""
    if name.startswith(("faststart", "last")):
        codec = video.H264 if name.endswith("H.264") else video.HEVC
        fast = name.startswith("faststart")
        return (
            codec,
            _tracked_mp4(codec, faststart=fast),
            _tracked_mp4(codec, faststart=fast, spaced=True),
        )
    source = _fragmented_mp4(name, fragments=3)
    return video.H264, source, _fragmented_mp4(name, fragments=3, spaced=True)


@pytest.mark.parametrize(
    "name",
    ["faststart H.264", "faststart HEVC", "last H.264", "last HEVC", "moof", "base", "trex"],
)
def test_a_streamed_mp4_files_samples_past_its_first_fragment_are_blanked_as_held(tmp_path, name):
    """A file in many fragments: its movie box first (faststart), or last (its samples come
    before it: read ahead of the stream, from the file), or movie fragments, each before its
    media data (three). Every cut (in a sample's length, its SEI message's text or size, a
    run, a fragment's header) gives the held copy, and `verify`'s walk finds the text in
    another tool's copy."""
    codec, source, blanked = _named_mp4(name)
    for cut in _mp4_cuts(source, 20261206):
        value = _cut_into(source, cut)
        held, _count = frames.blank(value, codec)
        copy, found = _streamed(tmp_path, value, codec)
        assert b"".join(copy[a:z] for a, z in frames.fragments(copy)) == _even(blanked), cut
        assert copy == held, cut
        assert MARK in found


def _largest_held(source: bytes) -> tuple[int, int]:
    """(the largest box in a movie box or fragment that holds no boxes, the largest movie
    box or fragment)."""
    leaves, tops = [], []

    def walk(start: int, end: int, depth: int) -> None:
        for at, kind, head, stop in mp4.box_list(source, start, end):
            if kind in mp4.MP4_CONTAINERS:
                walk(at + head, stop, depth + 1)
                if depth == 0:
                    tops.append(stop - at)
            elif depth:
                leaves.append(stop - at)

    walk(0, len(source), 0)
    return max(leaves), max(tops)


@pytest.mark.parametrize(
    "name", ["faststart H.264", "faststart HEVC", "last H.264", "last HEVC", "moof", "base", "trex"]
)
def test_a_movie_box_or_fragment_too_large_to_hold_is_walked_into(name):
    """A movie box or fragment larger than a streamed file's walk holds (a recording of
    many hours: its sample tables) is walked into as its bytes come, and so is each box in
    it too large to hold: every box that holds no boxes is parsed as it would be held (a
    sample description: the SEI its HEVC configuration declares), and the samples placed by
    the tables and runs it holds are read as their bytes come (the box was passed over: its
    samples' SEI neither blanked nor searched). A movie box at the file's end is read ahead
    the same way. Held from just its largest such box up, at every cut: the held copy, and
    `verify`'s walk finds the text."""
    _codec, source, blanked = _named_mp4(name)
    leaf, top = _largest_held(source)
    assert leaf < top
    for held in (leaf, (leaf + top) // 2, top - 1):
        for cut in _mp4_cuts(source, 20261207):
            ends = [0, *cut, len(source)]
            pieces = [bytearray(source[a:z]) for a, z in itertools.pairwise(ends)]
            ahead = mp4.samples_ahead(lambda a, n: source[a : a + n], cut[0], held)
            walk = mp4.Mp4Walk(held, ahead=ahead)
            for piece in pieces:
                walk.feed(piece)
            assert b"".join(pieces) == blanked, (held, cut)
            walk = mp4.Mp4Walk(held, blank=False, ahead=ahead)
            found = [walk.feed(bytearray(source[a:z])) for a, z in itertools.pairwise(ends)]
            assert any(MARK in part for parts in found for part in parts), (held, cut)


@pytest.mark.parametrize("last", ["past", "no box"])
def test_a_box_that_runs_past_the_opened_box_it_lies_in_ends_with_it(last):
    """A box in an opened movie box that claims to run past it ends where the movie box
    does, as it does held, and bytes there that are no box (a size below 8) are passed
    over to its end: the box after the movie box is read as one (its text zeroed)."""
    udta = _box(b"udta", _item(b"\xa9nam", MARK))
    if last == "past":
        udta = (len(udta) + 10).to_bytes(4, "big") + udta[4:]  # 10 bytes past the movie box
    else:
        udta = b"\x00\x00\x00\x03" + udta[4:]
    moov = _box(b"moov", _box(b"abcd", b"x" * 300) + udta)
    source = _box(b"ftyp", b"isom\x00\x00\x02\x00isomavc1") + moov
    source += _box(b"free", b"left by an editor: " + MARK) + _box(b"mdat", IMAGE)
    held = bytearray(source)
    blanks.fill_in(held, mp4.parse(source)[0])
    assert held.count(MARK) == (last == "no box")  # (the user data no box holds: kept)
    at = source.index(b"moov") - 4
    for cut in range(at + 1, len(source)):
        walk = mp4.Mp4Walk(100)
        pieces = [bytearray(source[:at]), bytearray(source[at:cut]), bytearray(source[cut:])]
        for piece in pieces:
            walk.feed(piece)
        assert b"".join(pieces) == held, cut


def test_what_an_opened_box_keeps_is_bounded(monkeypatch):
    """An opened movie box keeps the boxes it holds that place samples (its tracks' sample
    tables, not its user data), ``SKELETON_BYTES`` of them all told: past that, a table is
    not kept, and the samples it would place are zeroed, as media data no sample places
    (they were left unread)."""
    source = _tracked_mp4(video.H264, faststart=True)
    blanked = _tracked_mp4(video.H264, faststart=True, spaced=True)
    leaf, _top = _largest_held(source)
    at, stbl, trak = (source.index(kind) - 4 for kind in (b"moov", b"stbl", b"trak"))
    tables = int.from_bytes(source[stbl : stbl + 4], "big") - 8  # its four tables' bytes
    track = int.from_bytes(source[trak : trak + 4], "big")  # (held whole, its moov opened)
    copies = []
    for held, bound in ((leaf, 0), (leaf, tables - 1), (leaf, tables), (track, track - 1)):
        monkeypatch.setattr(mp4, "SKELETON_BYTES", bound)
        walk = mp4.Mp4Walk(held)
        pieces = [bytearray(source[: at + 8]), bytearray(source[at + 8 :])]
        for piece in pieces:
            walk.feed(piece)
        copies.append(b"".join(pieces))
    at = source.index(b"mdat") + 4
    unread = source[:at] + bytes(len(source) - at)  # (the media data last)
    assert copies == [unread, unread, blanked, unread]


def test_an_sei_unit_a_buffer_cuts_is_read_on_with_the_next():
    """A sample's SEI unit cut by a buffer's end anywhere is read on with the next buffer,
    however much of it the first holds (its part there was once held up to a limit, and
    the rest of a longer one made spaces unread)."""
    unit = _nal(b"\x06" + _escaped(_rbsp((5, UUID + MARK * 4))))
    sample = unit + _nal(SLICE)
    spaced = _nal(b"\x06" + _escaped(_rbsp((5, UUID + _spaced(MARK * 4))))) + _nal(SLICE)
    lead = b"\x77" * 10  # bytes before the sample (another box's)
    for cut in range(len(lead) + 1, len(lead) + len(unit)):
        samples = mp4._Samples(blank=True)  # the reader alone
        samples.expect(Places.of([(len(lead), len(lead) + len(sample), video.H264, 4)]))
        first, second = bytearray((lead + sample)[:cut]), bytearray((lead + sample)[cut:])
        found = samples.feed(first, 0) + samples.feed(second, cut)
        assert bytes(first) == (lead + spaced)[:cut], cut
        assert bytes(second) == (lead + spaced)[cut:], cut
        assert b"".join(found).startswith(b"\x06")


def test_a_sample_fed_a_byte_at_a_time_is_blanked_whole():
    """Each byte a buffer: its units' lengths, and its SEI unit, are read on across them."""
    sample = _nal(SLICE) + _nal(b"\x06" + _escaped(_rbsp((5, UUID + MARK)))) + _nal(SLICE)
    spaced = _nal(SLICE) + _nal(b"\x06" + _escaped(_rbsp((5, UUID + _spaced(MARK))))) + _nal(SLICE)
    assert _fed(sample, 1) == spaced


def test_a_streamed_mp4_files_samples_that_went_before_its_movie_box_are_zeroed():
    """A movie box after the media data, not read ahead (a span that cannot be read ahead,
    or one that ended before its box): samples in the buffer it comes in are read; those
    that began in earlier buffers went before their places were known, and are zeroed as
    media data no sample places (they were left, their SEI unread). A sample's bytes are
    never read from where it does not begin (in its slice, a length and an SEI unit's
    look)."""
    fake = _nal(b"\x06" + _rbsp((5, UUID + MARK)))  # in a slice's data, as if a unit
    source = _tracked_mp4(video.H264, first_slice=SLICE + fake + IMAGE)
    blanked = _tracked_mp4(video.H264, first_slice=SLICE + fake + IMAGE, spaced=True)
    start = len(_box(b"ftyp", b"isomxxxxisomavc1")) + 8  # the first sample's
    after, end = source.index(b"\x41\x9a") - 4, source.index(b"moov") - 4  # the second's
    between = len(_nal(b"\x06" + _rbsp((5, UUID + MARK))))  # (no track places it)
    for cut in range(start - 8, end - 2, 2):
        walk = mp4.Mp4Walk(1 << 20)
        first, second = bytearray(source[:cut]), bytearray(source[cut:])
        walk.feed(first)
        walk.feed(second)
        expected = bytearray(blanked)
        if cut > start:
            expected[start : after - between] = bytes(after - between - start)
        if cut > after:
            expected[after:end] = bytes(end - after)
        assert first + second == expected, cut


@pytest.mark.parametrize(
    "archive", [None, "a.tar", "a.tar.gz", "a.tar.xz", "stored.zip", "deflated.zip", "bzip2.zip"]
)
def test_a_large_objects_mp4_file_with_its_movie_box_last_is_blanked_as_held(
    tmp_path, monkeypatch, archive
):
    """Through the ingest's own path (a whole object, its pixel data a span of the file or
    of the archive's member, its digest tapped): the movie box, at the end of an MP4 file in
    three fragments, is read ahead from where the fragments lie in the source, and the
    samples before it are blanked as they are held. A compressed member is decompressed
    once more for it (it was not read ahead: the samples before the box kept their SEI)."""
    source = _tracked_mp4(video.H264)
    at = source.index(b"moov") - 4
    parts = [source[:40], source[40 : at - 10], source[at - 10 :]]
    data = _object(*parts, ts=uid.MPEG4HP41)
    whole, copy = streamed_copy(tmp_path, monkeypatch, data, 7, frames.Blanked, archive)
    assert copy == whole
    assert b"".join(_frames_of(copy)) == _even(_tracked_mp4(video.H264, spaced=True))


def _read_so_far() -> int:
    """Bytes this process has read by system calls (Linux counts them per process)."""
    lines = Path("/proc/self/io").read_bytes().splitlines()
    return int(dict(line.split(b": ") for line in lines)[b"rchar"])


@pytest.mark.parametrize("name", ["a.tar.gz", "a.tar.xz"])
def test_a_compressed_tar_of_large_mp4_files_is_read_ahead_in_linear_time(
    tmp_path, monkeypatch, name
):
    """Each large member's MP4 file, its movie box last, is read ahead on a stream of its
    own, kept open where it was left (``sources.STREAMS``) for the next member's: the tar
    is read about three times over, however many members it has, not from its beginning
    for each. Every copy is its object's held copy, its samples blanked."""
    copies = []
    members = {}
    for i in range(6):
        noise = SLICE + random.Random(i).randbytes(150_000)  # noqa: S311 - incompressible
        source = _tracked_mp4(video.H264, first_slice=noise)
        at = source.index(b"moov") - 4
        parts = [source[:40], source[40 : at - 10], source[at - 10 :]]
        members[f"m{i}.dcm"] = _object(*parts, ts=uid.MPEG4HP41, SOPInstanceUID=f"1.2.826.0.1.{i}")
        copies.append(_even(_tracked_mp4(video.H264, spaced=True, first_slice=noise)))
    path = tmp_path / name
    archive_of(path, members)
    store = LocalStore(tmp_path / "out")
    ctx = work.RunContext(deid.build_plan(), keys.generate(), store, "DI", 30, 1)
    walker = Walker(b"w" * 32, max_member_bytes=1 << 30)
    expected = [work.prepare(i, ctx).encoded.data for i in walker.walk([path])]
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    items = list(walker.walk([path]))
    before = _read_so_far()
    names = []
    try:
        for item in items:
            prepared = work.prepare(item, ctx)
            assert isinstance(prepared.encoded.pixels[-1], frames.Blanked)
            work.write_copy(prepared, ctx)
            names.append(prepared.name)
    finally:
        store.close()
    read = _read_so_far() - before
    written = [(tmp_path / "out" / n).read_bytes() for n in names]
    assert read < 3.5 * path.stat().st_size, read / path.stat().st_size
    assert written == expected
    assert [b"".join(_frames_of(c)) for c in written] == copies
    work.clear_caches()


@pytest.mark.parametrize("held", [1 << 20, 16])
@pytest.mark.parametrize("codec", ["metadata", video.H264, video.HEVC])
def test_a_streamed_mp4_file_is_blanked_as_a_held_one(tmp_path, monkeypatch, codec, held):
    """An MP4 file of 128 MiB or more streams in one fragment (held in memory, or on disk at
    16 bytes): its metadata and its tracks' SEI go as they do held, and `verify`'s
    streamed walk searches its boxes as they are (on disk: ``HELD_BYTES`` at a time, each
    part with the ``SEARCH_BEHIND`` bytes before it)."""
    monkeypatch.setattr(frames, "HELD_BYTES", held)
    source = _mp4() if codec == "metadata" else _tracked_mp4(codec)
    ts = uid.HEVCMP51 if codec == video.HEVC else uid.MPEG4HP41
    whole, copy = streamed_copy(tmp_path, monkeypatch, _object(source, ts=ts), 7, frames.Blanked)
    assert copy == whole
    assert _frames_of(copy) != [_even(source)]  # (what is blanked: the tests above)
    value = encapsulate([source])
    found, headers = _streamed(tmp_path, value, video.H264)[1], frames.headers(value, video.H264)
    assert MARK in found
    if held > len(source):
        assert found == headers
    else:
        assert found.count(MARK) >= headers.count(MARK)


def test_blanks_are_filled_in_as_a_buffer_would_have_them():
    """``blanks.filled`` gives what ``fill_in`` makes of a copy, whatever the blanks: in
    order or not, touching, empty, past the end, overlapping (a later one wins); a view that
    cannot be written to, the value left as it was."""
    rng = random.Random(20261205)  # noqa: S311 - a seeded stream of test inputs
    for _ in range(2000):
        value = rng.randbytes(rng.randrange(0, 60))
        todo = []
        for _ in range(rng.randrange(0, 6)):
            a = rng.randrange(0, len(value) + 5)
            todo.append((a, a + rng.randrange(-2, 12), rng.choice([b" ", b"\x00"])))
        if rng.random() < 0.5:  # most often none overlap
            todo = [t for i, t in enumerate(todo) if all(t[0] >= u[1] for u in todo[:i])]
        expected = bytearray(value)
        blanks.fill_in(expected, todo)
        for given in (value, memoryview(bytearray(value))):
            out = blanks.filled(given, todo)
            assert out == expected, (value, todo)
            assert out.readonly
            assert given == value


def test_a_joined_streams_blanks_are_placed_in_its_fragments_in_time_linear_in_both():
    """A held video's blanks (in its fragments joined) are placed in the fragments they lie
    in, the first found by its place, not by walking every fragment for each blank (5 MiB
    of a transport stream dense with text, in 1,000 fragments, took 12 s; now 0.3 s). The
    places are those a byte-by-byte mapping gives, empty fragments among them."""
    rng = random.Random(20261206)  # noqa: S311 - a seeded stream of test inputs
    places, at = [], 0
    for _ in range(3000):
        at += 8  # an item's header
        size = rng.choice([0, 1, rng.randrange(2, 40)])
        places.append((at, at + size))
        at += size
    total = sum(z - a for a, z in places)
    found = [
        (a, a + rng.randrange(0, 30), rng.choice((b" ", b"\x00")))
        for a in sorted(rng.sample(range(total), 3000))
    ]
    where = [p for a, z in places for p in range(a, z)]  # each stream byte's place
    want = {(where[p], fill) for a, z, fill in found for p in range(a, min(z, total))}
    Counted.reads = 0
    got = frames._in_value(found, Counted(places))
    assert Counted.reads <= 4 * (len(places) + len(found))
    assert {(p, fill) for a, z, fill in got for p in range(a, z)} == want
    assert all(any(pa <= a < z <= pz for pa, pz in places) for a, z, _fill in got)


def test_pieces_of_joined_bytes_are_found_as_byte_by_byte():
    """``blanks.in_pieces``: the parts of a range of joined pieces, each in its piece, as
    each byte's piece gives them; empty pieces and ranges, and past the end, too."""
    rng = random.Random(20261207)  # noqa: S311 - a seeded stream of test inputs
    for _ in range(3000):
        sizes = [rng.choice([0, 0, 1, rng.randrange(2, 9)]) for _ in range(rng.randrange(0, 7))]
        starts = list(itertools.accumulate(sizes, initial=0))
        a = rng.randrange(0, starts[-1] + 3)
        z = a + rng.randrange(-1, 12)
        owner = [i for i, size in enumerate(sizes) for _ in range(size)]
        want: dict[int, list[int]] = {}
        for p in range(a, min(z, starts[-1])):
            want.setdefault(owner[p], []).append(p)
        got = list(blanks.in_pieces(starts, a, z))
        assert [(i, ps[0], ps[-1] + 1) for i, ps in want.items()] == got, (sizes, a, z)


def test_pieces_of_joined_bytes_are_found_by_bisection():
    """``blanks.in_pieces`` reads the pieces' starts a few times for each part it gives,
    and their logarithm's for the first: not each start before it (3,000 ranges in 30,000
    pieces read 45 million starts)."""
    rng = random.Random(20261208)  # noqa: S311 - a seeded stream of test inputs
    starts = Counted(itertools.accumulate((rng.randrange(0, 9) for _ in range(30000)), initial=0))
    ranges = [(a, a + rng.randrange(0, 30)) for a in rng.sample(range(starts[-1]), 3000)]
    Counted.reads = 0
    parts = sum(len(list(blanks.in_pieces(starts, a, z))) for a, z in ranges)
    assert Counted.reads <= 20 * len(ranges) + 3 * parts, (Counted.reads, parts)


def test_held_video_is_blanked_in_one_copy():
    """A held object's video (up to 128 MiB) is blanked into one new copy: before, the
    frames were copied into a buffer, filled in, and copied again (three times in memory)."""
    unit = _sei((5, UUID + MARK))
    value = encapsulate([H264_HEAD + (unit + b"\x00\x00\x00\x01" + SLICE + bytes(1 << 16)) * 200])
    (blanked, count), peak = _with_peak(frames.blank, value, video.H264)
    assert count == 200
    assert bytes(blanked).count(MARK) == 0
    assert blanked == value.replace(unit, _sei((5, UUID + _spaced(MARK))))
    assert peak < 1.2 * len(value), peak / len(value)
