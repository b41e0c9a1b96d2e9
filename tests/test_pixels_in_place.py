"""Pixel data is carried from the source file to the copy as it is: no copy, no decoding.

The copy must be byte for byte what parsing the whole file would give, for native and
encapsulated pixel data; anything unusual (elements after Pixel Data, a truncated element)
falls back to the whole parse, and the checks that look at pixel data still see it.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

from indexer import deid, keys, leakscan, sources, spans, syntaxes, work
from indexer import encode as encode_module
from indexer.deid import frames
from indexer.deid.pixels import Masked
from indexer.encode import PIXEL_DATA, encode
from indexer.errors import DeidError, SourceError
from indexer.records import SourceFile
from indexer.sources import (
    FileReader,
    PackedSpan,
    RegionReader,
    Walker,
    ZipMemberReader,
    file_region,
    held_bytes,
)
from indexer.store.files import LocalStore
from indexer.work import configure_pydicom, read_dataset
from tests.builders import (
    archive_of,
    big_member,
    in_syntax,
    in_transfer_syntax,
    make_instance,
    rewrite_in_place,
    to_bytes,
)

configure_pydicom()
KEY = keys.generate().pseudonym
PLAN = deid.build_plan()


def _copy(data: bytes, *, in_place: bool) -> bytes:
    ds = read_dataset(data, pixels_in_place=in_place)
    return encode(deid.apply(PLAN, ds, KEY).ds).data


def _native() -> bytes:
    return to_bytes(make_instance(rows=32, columns=32))


def _encapsulated() -> bytes:
    ds = make_instance(rows=8, columns=8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8frame one\xff\xd9", b"\xff\xd8frame two!\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = 2
    return to_bytes(ds)


def _trailing() -> bytes:
    ds = make_instance(rows=8, columns=8)
    ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 8)  # Data Set Trailing Padding, after Pixel Data
    return to_bytes(ds)


def _implicit() -> bytes:
    """Native pixels in implicit VR little endian (no VR: its head is tag and length)."""
    return in_transfer_syntax(make_instance(rows=32, columns=32), ImplicitVRLittleEndian)


def _implicit_trailing() -> bytes:
    ds = make_instance(rows=8, columns=8)
    ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 8)
    return in_transfer_syntax(ds, ImplicitVRLittleEndian)


@pytest.mark.parametrize(
    "build", [_native, _encapsulated, _trailing, _implicit, _implicit_trailing]
)
def test_copy_equals_the_whole_parse(build):
    data = build()
    assert _copy(data, in_place=True) == _copy(data, in_place=False)


@pytest.mark.parametrize("build", [_native, _implicit])
def test_native_pixels_are_a_view_of_the_source(build):
    data = build()
    ds = read_dataset(data, pixels_in_place=True)
    raw = ds.get_item(PIXEL_DATA)
    assert isinstance(raw.value, memoryview)
    assert raw.value.obj is data  # not copied
    encoded = encode(deid.apply(PLAN, ds, KEY).ds)
    assert encoded.pixels[-1].obj is data  # written out from the source's own bytes
    again = pydicom.dcmread(pydicom.filebase.DicomBytesIO(encoded.data))
    assert again.PixelData == pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)).PixelData


def test_encapsulated_frames_are_a_view_of_the_source_written_as_pydicom_writes_them(
    monkeypatch,
):
    """Encapsulated frames lie in place too (they were copied at the read, then written by
    pydicom into a buffer and copied out of it again: a video object of 122 MB held took
    552 MB, now 310): their items are written from the source's bytes, between the head
    pydicom writes and its sequence delimiter, byte for byte as pydicom writes them."""
    data = _encapsulated()
    ds = read_dataset(data, pixels_in_place=True)
    raw = ds.get_item(PIXEL_DATA)
    assert isinstance(raw.value, memoryview)
    assert raw.value.obj is data
    outcomes: list[bytes] = []
    encoded = encode(deid.apply(PLAN, ds, KEY).ds)
    assert encoded.pixels[1].obj is data  # nothing to blank in these frames: not copied
    monkeypatch.setattr(encode_module, "_encapsulated", lambda *_a, **_k: None)
    by_pydicom = encode(deid.apply(PLAN, read_dataset(data, pixels_in_place=True), KEY).ds)
    assert len(by_pydicom.pixels) == 1
    assert encoded.data == by_pydicom.data
    monkeypatch.setattr(encode_module, "_raw_copy_possible", lambda _ds: False)
    whole = encode(deid.apply(PLAN, read_dataset(data, pixels_in_place=True), KEY).ds)
    assert whole.data == by_pydicom.data  # pydicom writes the view too (made bytes)
    monkeypatch.undo()
    for in_place in (True, False):  # an element after Pixel Data: pydicom writes it all
        ds = deid.apply(PLAN, read_dataset(data, pixels_in_place=in_place), KEY).ds
        ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 8)  # Data Set Trailing Padding
        outcomes.append(encode(ds).data)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0].endswith(b"\xfc\xff\xfc\xffOB\x00\x00\x08\x00\x00\x00" + bytes(8))


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (encapsulate([b"\xff\xd8one\xff\xd9"]), True),
        (memoryview(encapsulate([b"\xff\xd8two!\xff\xd9"])), True),
        (encapsulate([b"\xff\xd8three\xff\xd9"]) + b"\x00", False),  # odd: pydicom pads it
        (b"\xff\xd8 no items \xff\xd9", False),  # pydicom refuses it
        (b"", False),
    ],
)
def test_encapsulated_values_are_written_from_their_bytes_only_as_pydicom_would(
    monkeypatch, value, written
):
    """A de-identified object's Pixel Data of undefined length (bytes or a view) is written
    from its bytes where pydicom would write them as they are; else pydicom writes it (an
    odd length padded) or refuses it, as before."""
    ds = read_dataset(_encapsulated())  # as read: written from its elements' bytes
    ds.PixelData = value
    ds["PixelData"].is_undefined_length = True
    outcomes = []
    for own in (True, False):
        if not own:
            monkeypatch.setattr(encode_module, "_encapsulated", lambda *_a, **_k: None)
        try:
            encoded = encode(ds)
        except ValueError as e:
            outcomes.append(str(e))
        else:
            outcomes.append(encoded.data)
            assert (len(encoded.pixels) == 3) == (written and own)
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("build", [_native, _implicit])
def test_truncated_pixel_data_is_still_refused(build):
    data = build()[:-100]
    with pytest.raises(SourceError) as e:
        read_dataset(data, pixels_in_place=True)
    assert e.value.reason == "truncated"


def test_burned_in_policy_still_sees_the_pixel_data():
    ds = make_instance(rows=8, columns=8, BurnedInAnnotation="YES")
    with pytest.raises(DeidError) as e:
        deid.apply(PLAN, read_dataset(to_bytes(ds), pixels_in_place=True), KEY)
    assert e.value.reason == "burned_in_annotation"


def test_a_transfer_syntax_newer_than_pydicom_is_carried():
    """JPEG XL (2024): pydicom 3.0 reads it as the explicit VR little endian it is, but
    would not write it; the copy keeps its transfer syntax and pixel data as they came."""
    jpeg_xl = "1.2.840.10008.1.2.4.110"
    data = in_syntax(make_instance(rows=8, columns=8), jpeg_xl)
    copy = _copy(data, in_place=True)
    assert copy == _copy(data, in_place=False)
    out = pydicom.dcmread(io.BytesIO(copy))
    assert out.file_meta.TransferSyntaxUID == jpeg_xl
    assert out.PixelData == pydicom.dcmread(io.BytesIO(data)).PixelData
    assert "PatientIdentityRemoved" in out


def test_only_the_dicom_roots_uids_are_taken_for_new_transfer_syntaxes(monkeypatch):
    assert syntaxes.known(ExplicitVRLittleEndian)
    for uid in ("1.2.3.4", "1.2.840.10008.1.2.4.110x", "1.2.840.10008.1.2.04", "", "1.2.840"):
        assert not syntaxes.known(uid), uid
    assert not syntaxes.known("1.2.840.10008.1.2." + "1." * 30 + "1")  # longer than a UID
    monkeypatch.setattr(syntaxes, "MAX_TAUGHT", len(syntaxes._TAUGHT))
    assert not syntaxes.known("1.2.840.10008.1.2.4.999")  # a process learns a few, no more


@pytest.fixture
def ctx(tmp_path):
    store = LocalStore(tmp_path / "out")
    yield work.RunContext(PLAN, keys.generate(), store, "DI", 30, 1)
    store.close()


def _source_span(prepared: work.Prepared) -> spans.Span:
    """The span of the source a copy's pixel data is streamed from (wrapped where it is
    changed as it is copied: a frame header's text blanked, a sample's unused bits cleared;
    and where it is hashed as it is read: the source's digest)."""
    part = prepared.encoded.pixels[-1]
    while isinstance(part, frames.Blanked | Masked | spans.Tapped):
        part = part.whole
    assert isinstance(part, spans.Span)
    return part


def _never_whole(*_args, **_kw):
    raise AssertionError("a large file was read whole")


@pytest.mark.parametrize("build", [_native, _encapsulated, _implicit])
def test_a_large_files_pixel_data_is_streamed_byte_for_byte(build, ctx, tmp_path, monkeypatch):
    """Above ``STREAM_FROM`` the pixel data stays in the source file, a span copied in
    chunks: the copy, its digest and its index rows are those of the file held whole."""
    path = tmp_path / "big.dcm"
    path.write_bytes(build())
    src = SourceFile("src-1", str(path), path.stat().st_size, FileReader(path))
    whole = work.prepare(src, ctx)
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    monkeypatch.setattr(spans, "CHUNK_BYTES", 7)  # many chunks, none aligned
    monkeypatch.setattr(FileReader, "__call__", _never_whole)
    streamed = work.prepare(src, ctx)
    assert isinstance(_source_span(streamed), spans.FileSpan)
    assert streamed.encoded.data == whole.encoded.data
    assert work.index(streamed, ctx).record == work.index(whole, ctx).record
    digest = work.write_copy(streamed, ctx).digest
    assert digest.sha256 == hashlib.sha256(whole.encoded.data).hexdigest()
    assert (tmp_path / "out" / streamed.name).read_bytes() == whole.encoded.data
    assert "big.dcm" not in repr(streamed.encoded.pixels[-1])  # a path can hold a name


@pytest.mark.parametrize(
    ("name", "span"),
    [
        ("a.tar", spans.FileSpan),
        ("stored.zip", spans.FileSpan),
        ("deflated.zip", PackedSpan),
        ("bzip2.zip", PackedSpan),
        ("lzma.zip", PackedSpan),
        ("a.tar.gz", PackedSpan),
        ("a.tar.bz2", PackedSpan),
        ("a.tar.xz", PackedSpan),
    ],
)
@pytest.mark.parametrize("build", [_native, _encapsulated])
def test_a_large_archive_members_pixel_data_is_streamed_from_the_archive(
    ctx, tmp_path, monkeypatch, name, span, build
):
    """A plain tar's member and a zip's stored one lie in the archive as they are: their
    pixel data is a span of the archive, as a large file's is of the file. A compressed
    member's is decompressed again as it is copied; it is never held whole (before, it was,
    up to ``max_member_bytes``, in the walk for a compressed tar). Each copy is byte for
    byte that of the object read whole."""
    data = build()
    path = tmp_path / name
    archive_of(path, {"before.txt": b"x" * 1000, "big.dcm": data, "after.txt": b"y" * 10})
    whole = work.prepare(big_member(path), ctx)
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    monkeypatch.setattr(spans, "CHUNK_BYTES", 7)
    src = big_member(path)
    assert held_bytes(src) == 0
    monkeypatch.setattr(type(src.read), "__call__", _never_whole)
    prepared = work.prepare(src, ctx)
    assert type(_source_span(prepared)) is span
    assert prepared.encoded.data == whole.encoded.data
    digest = work.write_copy(prepared, ctx).digest
    assert digest.sha256 == hashlib.sha256(whole.encoded.data).hexdigest()
    assert (tmp_path / "out" / prepared.name).read_bytes() == whole.encoded.data


def _noisy(side: int, instance: int = 1) -> bytes:
    """An object whose pixel data hardly compresses (no zip bomb; a cut falls within it)."""
    ds = make_instance(1, 1, 1, instance, rows=1, columns=1)
    ds.Rows = ds.Columns = side
    ds.PixelData = os.urandom(side * side * 2)
    return to_bytes(ds)


@pytest.mark.parametrize("name", ["deflated.zip", "a.tar.gz"])
def test_a_large_compressed_member_is_copied_in_bounded_memory(ctx, tmp_path, monkeypatch, name):
    """The member is never held: at most a chunk of it at a time (before: all of it)."""
    path = tmp_path / name
    archive_of(path, {"big.dcm": _noisy(3000)})  # 18 MB of pixels
    expected = work.prepare(big_member(path), ctx).encoded.data
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    monkeypatch.setattr(spans, "CHUNK_BYTES", 1 << 20)
    src = big_member(path)
    tracemalloc.start()
    try:
        copied = work.deidentify_file(src, ctx)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6 << 20, peak
    assert copied.digest.sha256 == hashlib.sha256(expected).hexdigest()


def _noisy_frames(side: int, instance: int = 1) -> bytes:
    """An encapsulated object whose two frames hardly compress."""
    ds = make_instance(1, 1, 1, instance, rows=1, columns=1)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8" + os.urandom(side * side) + b"\xff\xd9"] * 2)
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = 2
    return to_bytes(ds)


def _read_so_far() -> int:
    """Bytes this process has read by system calls (Linux counts them per process)."""
    lines = Path("/proc/self/io").read_bytes().splitlines()
    return int(dict(line.split(b": ") for line in lines)[b"rchar"])


def _in_order(prepare, write, n: int, order: str) -> None:
    """Headers and copies of ``n`` objects: each in turn; each header before the copy before
    it (as the copy writer's thread overlaps them); or all headers, then all copies."""
    if order == "in turn":
        for i in range(n):
            write(prepare(i))
    elif order == "overlapping":
        ready = prepare(0)
        for i in range(1, n):
            after = prepare(i)
            write(ready)
            ready = after
        write(ready)
    else:
        for prepared in [prepare(i) for i in range(n)]:
            write(prepared)


@pytest.mark.parametrize("name", ["a.tar.gz", "a.tar.xz"])
@pytest.mark.parametrize("order", ["in turn", "overlapping", "headers first"])
def test_a_compressed_tar_of_many_large_members_is_decompressed_about_twice(
    ctx, tmp_path, monkeypatch, name, order
):
    """Each large member is read twice, its header and, as its copy is written, its pixel
    data; each read decompressed the tar from its beginning, a cost quadratic in the tar's
    size (ten members of 200 MB: 20 GB inflated again). Streams kept open where they were
    left leapfrog from member to member: the tar is read about twice, however many members
    it has (here 9 times before). Every copy is byte for byte that of its object read whole."""
    members = {f"m{i}.dcm": (_noisy if i % 2 else _noisy_frames)(400, i) for i in range(8)}
    path = tmp_path / name
    archive_of(path, members)
    walker = Walker(b"w" * 32, max_member_bytes=1 << 30)
    expected = [work.prepare(i, ctx).encoded.data for i in walker.walk([path])]
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    items = list(walker.walk([path]))
    assert len(items) == len(members)
    assert not any(held_bytes(i) for i in items)
    names: list[str] = []

    def write(prepared):
        assert type(_source_span(prepared)) is PackedSpan
        names.append(prepared.name)
        work.write_copy(prepared, ctx)

    before = _read_so_far()
    _in_order(lambda i: work.prepare(items[i], ctx), write, len(items), order)
    read = _read_so_far() - before
    assert read < 2.5 * path.stat().st_size, read / path.stat().st_size
    assert [(tmp_path / "out" / n).read_bytes() for n in names] == expected
    assert 0 < len(sources.STREAMS) <= sources.STREAMS.keep
    work.clear_caches()  # as a run's end: the tars are closed
    assert len(sources.STREAMS) == 0


def test_verify_reads_a_compressed_tar_of_many_large_members_once(tmp_path, monkeypatch):
    """`verify` reads each large original's header; each decompressed the tar from its
    beginning (here 5.5 times the tar before)."""
    path = tmp_path / "in.tar.gz"
    archive_of(path, {f"m{i}.dcm": _noisy(400, i) for i in range(8)})
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    before = _read_so_far()
    report = leakscan.verify_outputs([path], [], deid.build_plan(), max_member_bytes=1 << 30)
    read = _read_so_far() - before
    assert report.unreadable_originals == 0
    assert read < 2.2 * path.stat().st_size, read / path.stat().st_size  # the walk's, and one
    assert len(sources.STREAMS) == 0


def test_the_kept_stream_is_the_one_furthest_on_not_past_where_reading_starts(tmp_path):
    path = tmp_path / "a.tar.gz"
    archive_of(path, {"a.dcm": os.urandom(1000)})
    streams = sources.Streams(keep=2)
    archive = sources._identity(path.stat())

    def kept_at(at: int):
        raw = path.open("rb")
        f = sources._decompressed(raw)
        f.read(at)
        streams.give(sources._Stream(archive, raw, f))
        return f

    first, second = kept_at(100), kept_at(600)
    assert streams.take(archive, 99) is None  # each stands past it
    assert streams.take((0, archive[1]), 700) is None  # another archive's
    taken = [streams.take(archive, 700), streams.take(archive, 700)]
    assert [t.f for t in taken if t] == [second, first]  # the furthest on first
    assert streams.take(archive, 700) is None  # a taken one is read by its reader alone
    for t in taken:
        streams.give(t)  # kept: second, then first
    third = kept_at(10)
    assert len(streams) == 2
    assert second.closed  # the oldest handed back
    assert not first.closed
    again = streams.take(archive, 50)
    assert again.f is third
    streams.give(again)
    streams.close()
    assert first.closed
    assert third.closed
    assert len(streams) == 0


@pytest.mark.parametrize("name", ["a.tar", "a.tar.gz", "stored.zip", "deflated.zip"])
@pytest.mark.parametrize("large", [True, False])
def test_an_archive_member_that_is_no_dicom_is_not_read_whole_to_find_out(
    ctx, tmp_path, monkeypatch, name, large
):
    """A video beside the objects, in an archive: its first bytes say it is no DICOM, and
    the rest of it is not read (before, all of it was, up to ``max_member_bytes``)."""
    path = tmp_path / name
    archive_of(path, {"big.dcm": b"\x00\x00\x00\x18ftypmp42" + os.urandom(16 << 20)})
    if large:
        monkeypatch.setattr(spans, "STREAM_FROM", 1)
    src = big_member(path)
    tracemalloc.start()
    try:
        with pytest.raises(SourceError) as caught:
            work.prepare(src, ctx)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.reason == "not_dicom"
    assert peak < 4 << 20, peak  # the first read of a large one's header: 1 MiB


def _with_crc(path, member: str, crc: int) -> None:
    """Write ``crc`` into ``member``'s local header and directory entry, as a damaged zip."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    data = bytearray(path.read_bytes())
    old = info.CRC.to_bytes(4, "little")
    assert data.count(old) == 2  # the local header's and the directory's
    path.write_bytes(bytes(data).replace(old, crc.to_bytes(4, "little")))


@pytest.mark.parametrize(
    ("name", "span", "damage"),
    [
        ("deflated.zip", PackedSpan, "crc"),
        ("stored.zip", spans.FileSpan, "crc"),
        ("stored.zip", spans.FileSpan, "pixels"),
    ],
)
def test_a_large_zip_member_that_fails_its_crc_leaves_no_copy(
    ctx, tmp_path, monkeypatch, name, span, damage
):
    """Its header is read from the member's first bytes, before its CRC can be checked; the
    CRC is checked as its copy reaches the end, and the copy is refused. A stored member's
    CRC was not checked: its damaged pixel data was copied."""
    path = tmp_path / name
    data = _noisy(64)
    archive_of(path, {"big.dcm": data})
    if damage == "crc":
        _with_crc(path, "big.dcm", 0x12345678)
    else:  # a bit of its last pixels
        raw = path.read_bytes()
        at = raw.index(data[-100:]) + 90
        path.write_bytes(raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1 :])
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    monkeypatch.setattr(spans, "CHUNK_BYTES", 1000)  # the CRC's run over many chunks
    monkeypatch.setattr(work, "HEAD_READS", (4096, 4096))  # of its 10 kB
    src = big_member(path)
    prepared = work.prepare(src, ctx)
    assert type(_source_span(prepared)) is span
    with pytest.raises(
        SourceError, match=r"^an archive member is damaged \(its CRC does not match\)$"
    ):
        work.write_copy(prepared, ctx)
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_a_large_member_of_a_cut_compressed_tar_is_named_cut_short(ctx, tmp_path, monkeypatch):
    path = tmp_path / "a.tar.gz"
    archive_of(path, {"big.dcm": _noisy(64)})
    path.write_bytes(path.read_bytes()[:-1000])  # within its pixels
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    src, end = Walker(b"w" * 32, max_member_bytes=1 << 20).walk([path])
    assert end.reason == "bad_archive"
    with pytest.raises(SourceError, match=r"^an archive member is cut short$") as caught:
        work.deidentify_file(src, ctx)
    assert caught.value.reason == "truncated"
    assert not list((tmp_path / "out").rglob("*.dcm"))


@pytest.mark.parametrize(("name", "large"), [("bzip2.zip", False), ("a.tar.bz2", True)])
def test_a_damaged_bzip2_member_is_named_damaged(ctx, tmp_path, monkeypatch, name, large):
    """bz2 raises a bare OSError for damaged data: it read "cannot read the file (OSError)",
    as if the disk had failed."""
    path = tmp_path / name
    data = _noisy(400)
    if large:  # in blocks of 100 kB: the tar's first header is read, the member's end is not
        with tarfile.open(path, "w:bz2", compresslevel=1) as t:
            info = tarfile.TarInfo("big.dcm")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    else:
        archive_of(path, {"big.dcm": data})
    raw = bytearray(path.read_bytes())
    raw[len(raw) * 3 // 4] ^= 0xFF  # within the member's compressed bytes
    path.write_bytes(bytes(raw))
    if large:
        monkeypatch.setattr(spans, "STREAM_FROM", 1)
    src = next(i for i in Walker(b"w" * 32, max_member_bytes=1 << 20).walk([path]))
    assert isinstance(src, SourceFile)
    with pytest.raises(SourceError) as caught:
        work.deidentify_file(src, ctx)
    assert caught.value.message == "an archive member is damaged (invalid bzip2 data)"
    assert caught.value.reason == "unreadable"


def test_a_large_member_of_a_cut_tar_is_named_cut_short(ctx, tmp_path, monkeypatch):
    path = tmp_path / "a.tar"
    archive_of(path, {"big.dcm": _native()})
    path.write_bytes(path.read_bytes()[: 512 + len(_native()) - 100])  # within its pixels
    src, end = Walker(b"w" * 32, max_member_bytes=1 << 20).walk([path])
    assert end.reason == "bad_archive"
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    with pytest.raises(SourceError, match=r"^an archive member is cut short$"):
        work.prepare(src, ctx)


@pytest.mark.parametrize("name", ["stored.zip", "deflated.zip", "a.tar", "a.tar.gz"])
def test_a_large_archive_member_replaced_before_its_copy_is_refused(
    ctx, tmp_path, monkeypatch, name
):
    path = tmp_path / name
    archive_of(path, {"big.dcm": _native()})
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    (src,) = Walker(b"w" * 32, max_member_bytes=1 << 20).walk([path])
    prepared = work.prepare(src, ctx)
    archive_of(path, {"big.dcm": _native()[:-2] + b"\x00\x01"})  # same size, new content
    with pytest.raises(SourceError, match=r"^the archive changed") as caught:
        work.write_copy(prepared, ctx)
    assert caught.value.reason == "unreadable"
    assert not list((tmp_path / "out").rglob("*.dcm"))


@pytest.mark.parametrize("first", [200, 132])  # inside an element; at one's end (the meta's)
def test_a_header_longer_than_the_first_read_is_read_again_longer(
    ctx, tmp_path, monkeypatch, first
):
    path = tmp_path / "big.dcm"
    path.write_bytes(_native())
    whole = work.prepare(SourceFile("src-1", str(path), 1, FileReader(path)), ctx)
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    monkeypatch.setattr(work, "HEAD_READS", (first, 1 << 20))
    streamed = work.prepare(SourceFile("src-1", str(path), 1, FileReader(path)), ctx)
    assert isinstance(_source_span(streamed), spans.FileSpan)
    assert streamed.encoded.data == whole.encoded.data


def test_a_large_file_changed_before_its_copy_is_refused(ctx, tmp_path, monkeypatch):
    path = tmp_path / "big.dcm"
    path.write_bytes(_native())
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    prepared = work.prepare(SourceFile("src-1", str(path), 1, FileReader(path)), ctx)
    with path.open("ab") as f:
        f.write(b"\x00" * 16)  # rewritten meanwhile
    with pytest.raises(SourceError) as caught:
        work.write_copy(prepared, ctx)
    assert caught.value.reason == "unreadable"
    assert caught.value.message.startswith("the file changed")
    assert not list((tmp_path / "out").rglob("*.dcm"))  # nothing half old, half new


def test_a_large_file_rewritten_with_its_time_set_back_is_refused(ctx, tmp_path, monkeypatch):
    path = tmp_path / "big.dcm"
    data = _native()
    path.write_bytes(data)
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    prepared = work.prepare(SourceFile("src-1", str(path), 1, FileReader(path)), ctx)
    rewrite_in_place(path, data[:-1] + bytes([data[-1] ^ 1]))  # a pixel changed
    with pytest.raises(SourceError) as caught:
        work.write_copy(prepared, ctx)
    assert caught.value.reason == "unreadable"
    assert not list((tmp_path / "out").rglob("*.dcm"))


def _file_span(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 100)
    return path, spans.FileSpan(path, 10, 100, spans.version_of(path.stat()))


def _packed_span(tmp_path):
    path = tmp_path / "a.tar.gz"
    archive_of(path, {"big.dcm": _noisy(64)})
    return path, PackedSpan(big_member(path).read, 10, 100)


def _stored_span(tmp_path):
    path = tmp_path / "a.tar"
    archive_of(path, {"big.dcm": _noisy(64)})
    region = sources.region_of(big_member(path).read)  # a plain tar's: a span of the tar
    assert region is not None
    with region:
        return path, region.span(10, 100, b"")


@pytest.mark.parametrize(
    ("make", "what"),
    [(_file_span, "file"), (_stored_span, "archive"), (_packed_span, "archive")],
    ids=["file", "plain tar member", "compressed member"],
)
def test_a_large_source_written_to_while_copied_is_refused(tmp_path, monkeypatch, make, what):
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    monkeypatch.setattr(spans, "CHUNK_BYTES", 30)
    path, span = make(tmp_path)
    chunks = span.chunks()
    assert len(next(chunks)) == 30
    with path.open("ab") as f:
        f.write(b"y")  # written to between two chunks
    with pytest.raises(SourceError, match=f"^the {what} changed while it was read"):
        list(chunks)


@pytest.mark.parametrize(
    "make", [_file_span, _stored_span, _packed_span], ids=["file", "plain tar", "compressed"]
)
def test_a_large_sources_span_is_read_anywhere(tmp_path, monkeypatch, make):
    """``random_access`` (a movie box read ahead of the copy): bytes from anywhere in the
    span, on, back a little (a compressed member's last bytes kept) and back further (a
    compressed member decompressed from its start again), cut at the span's ends."""
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    monkeypatch.setattr(spans, "CHUNK_BYTES", 7)
    monkeypatch.setattr(sources, "BEHIND_BYTES", 16)
    path, span = make(tmp_path)
    whole = span.read()
    with span.random_access() as read:
        assert read is not None
        ats = [(0, 5), (3, 10), (40, 20), (55, 3), (41, 3), (2, 40), (-4, 6), (85, 30), (95, 9)]
        for at, n in ats:
            assert read(at, n) == whole[max(0, at) : max(0, at) + n], (at, n)
    with span.random_access() as read:
        assert read is not None
        assert read(10, 5) == whole[10:15]
        with path.open("ab") as f:
            f.write(b"y")  # written to as it is read
        with pytest.raises(SourceError, match=r"^the (file|archive) changed while it was read"):
            read(50, 20)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a.tar.bz2", "an archive member is damaged (invalid bzip2 data)"),
        ("a.tar.gz", "an archive member is cut short"),
    ],
)
def test_a_damaged_compressed_member_read_ahead_is_named_so(tmp_path, monkeypatch, name, message):
    """Read ahead (a movie box at its end), a damaged or cut member gives the errors its
    copy would (bz2's bare OSError is not "cannot read the file")."""
    data = _noisy(400 if name.endswith("bz2") else 64)
    path = tmp_path / name
    with tarfile.open(path, f"w:{name.rsplit('.', 1)[-1]}", compresslevel=1) as t:
        info = tarfile.TarInfo("big.dcm")  # (bzip2 in blocks of 100 kB: the first read whole)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    raw = bytearray(path.read_bytes())
    if name.endswith("bz2"):
        raw[len(raw) * 3 // 4] ^= 0xFF  # within the member's compressed bytes
    else:
        del raw[-1000:]  # within its pixels
    path.write_bytes(bytes(raw))
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    src = next(i for i in Walker(b"w" * 32, max_member_bytes=1 << 20).walk([path]))
    assert isinstance(src, SourceFile)
    with PackedSpan(src.read, 0, len(data)).random_access() as read:
        assert read is not None
        assert read(0, 10) == data[:10]  # the member opened where it begins
        with pytest.raises(SourceError) as caught:
            read(len(data) - 10, 10)  # and decompressed on
    assert caught.value.message == message


def test_a_span_held_elsewhere_is_not_read_ahead():
    """A span of no source that can be read where it is asked (the base ``Span``)."""

    class Held(spans.Span):
        start, end = 0, 4

        def chunks(self):
            yield b"abcd"

    with Held().random_access() as read:
        assert read is None


def test_a_large_file_of_another_shape_is_read_whole(ctx, tmp_path, monkeypatch):
    """Elements after Pixel Data (the file is not streamed, and still copied whole)."""
    path = tmp_path / "big.dcm"
    path.write_bytes(_trailing())
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    prepared = work.prepare(SourceFile("src-1", str(path), 1, FileReader(path)), ctx)
    assert not any(isinstance(p, spans.FileSpan) for p in prepared.encoded.parts)


def test_verify_reads_only_the_headers_of_large_files(ctx, tmp_path, monkeypatch):
    """Pixel data is never searched: of large originals and copies `verify` reads the header
    alone, and finds what it finds reading them whole (here: the name typed into a kept
    attribute, written because the copy was made without the check)."""
    originals = tmp_path / "in"
    originals.mkdir()
    leaky = make_instance(rows=32, columns=32, marker="LEAKY")
    leaky.Manufacturer = "Doe^LEAKY1^Q"
    (originals / "a.dcm").write_bytes(to_bytes(leaky))
    (originals / "b.dcm").write_bytes(to_bytes(make_instance(2, rows=32, columns=32)))
    whole, headers = _verified_whole_then_large(
        ctx, originals, deid.build_plan(burned_in="allow"), monkeypatch
    )
    assert headers == whole
    for report in headers:
        assert (report.scanned, report.unchecked) == (2, 0)
        # the name, and the referrer's name part it shares with it
        assert {(leak.source_path, leak.found_in) for leak in report.leaks} == {
            ("(0010,0010)", "(0008,0070)"),
            ("(0008,0090)", "(0008,0070)"),
        }


SCANS = (leakscan.verify_outputs, leakscan.verify_pairs)


def _verified_whole_then_large(ctx, originals: Path, plan: deid.Plan, monkeypatch) -> tuple:
    """`verify`'s reports, of both kinds, on copies of ``originals`` made without the check:
    with each object read whole, then with each one large (never read whole)."""
    unchecked = work.RunContext(PLAN, ctx.keys, ctx.output, "DI", 30, 1, verify=False)
    for path in sorted(originals.iterdir()):
        src = SourceFile(path.name, str(path), path.stat().st_size, FileReader(path))
        work.deidentify_file(src, unchecked)
    pseudonyms = leakscan.Pseudonyms(ctx.keys, "DI", 30)
    args = ([originals], [ctx.output.root], plan)
    whole = [scan(*args, max_member_bytes=10**8, pseudonyms=pseudonyms) for scan in SCANS]
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    read_whole = work.read_dataset

    def only_empty(data, **kw):  # the output store's empty lock files are read, and skipped
        return _never_whole() if data else read_whole(data, **kw)

    monkeypatch.setattr(work, "read_dataset", only_empty)
    monkeypatch.setattr(FileReader, "__call__", _never_whole)
    large = [scan(*args, max_member_bytes=10**8, pseudonyms=pseudonyms) for scan in SCANS]
    return whole, large


def _icc_jpeg(text: bytes) -> bytes:
    """A JPEG frame whose ICC profile segment (one decoders read: kept) holds ``text``."""
    icc = b"ICC_PROFILE\x00\x01\x01" + text
    app2 = b"\xff\xe2" + (len(icc) + 2).to_bytes(2, "big") + icc
    sos = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + app2 + sos + b"\x12\x34" * 64 + b"\xff\xd9"


def test_verify_searches_the_frame_headers_of_large_copies(ctx, tmp_path, monkeypatch):
    """A large copy's frames are read as they are searched, from its file: a patient's name
    left in a frame's ICC profile segment (the copy made without the check) is found, as in
    the copy read whole (before: frames of large copies were never searched)."""
    originals = tmp_path / "in"
    originals.mkdir()
    name = "Doe^Jane^PHIMARKPN"
    ds = make_instance(rows=8, columns=8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([_icc_jpeg(b"sRGB"), _icc_jpeg(name.encode())])
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = 2
    ds.PatientName = name
    (originals / "a.dcm").write_bytes(to_bytes(ds))
    found_name_whole_then_large(ctx, originals, monkeypatch, "compressed frame headers (utf-8)")


def found_name_whole_then_large(ctx, originals: Path, monkeypatch, found_in: str) -> None:
    """`verify` finds the patient's name in the one copy of ``originals`` (made without the
    check) at ``found_in``, and only there: the copy read whole, and as a large file."""
    whole, large = _verified_whole_then_large(ctx, originals, PLAN, monkeypatch)
    assert large == whole
    for report in large:
        assert (report.scanned, report.unchecked) == (1, 0)
        assert [(leak.source_path, leak.found_in) for leak in report.leaks] == [
            ("(0010,0010)", found_in)
        ]


def test_verify_reads_an_original_whose_header_outlasts_the_first_read(tmp_path, monkeypatch):
    """A large file's header is read from its first bytes only; a header that does not end
    within them (a vendor's raw data in a private element) is read with the rest of the file,
    as the ingest reads it. `verify` counted such an original as one it could not read, and
    did not search for its values."""
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    monkeypatch.setattr(work, "HEAD_BYTES_LIMIT", 64 * 1024)
    ds = make_instance(marker="LONGHEAD")
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091001, "OB", bytes(200 * 1024))  # the header ends past 64 KiB
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.dcm").write_bytes(to_bytes(ds))
    assert "LONGHEAD1" in str(work.read_header(file_region(tmp_path / "in" / "a.dcm")).PatientName)
    leaky = tmp_path / "out"
    leaky.mkdir()
    (leaky / "copy.dcm").write_bytes(to_bytes(ds))  # not de-identified: every value leaks
    report = leakscan.verify_outputs(
        [tmp_path / "in"], [leaky], deid.build_plan(), max_member_bytes=1 << 30
    )
    assert report.unreadable_originals == 0
    assert report.leaks


@pytest.mark.parametrize("name", ["in.tar", "in.zip", "in.tar.gz", "deflated.zip"])
def test_verify_reads_only_the_header_of_a_large_archive_member(tmp_path, monkeypatch, name):
    """A large original in an archive, compressed or not: `verify` reads its header only,
    as of a large file (its pixel data is never searched)."""
    ds = make_instance(marker="INTAR")
    archive_of(tmp_path / name, {"a.dcm": to_bytes(ds), "b.txt": b"after"})
    leaky = tmp_path / "out"
    leaky.mkdir()
    (leaky / "copy.dcm").write_bytes(to_bytes(ds))  # not de-identified: every value leaks
    monkeypatch.setattr(spans, "STREAM_FROM", 1)
    reader = ZipMemberReader if name.endswith(".zip") else RegionReader
    monkeypatch.setattr(reader, "__call__", _never_whole)
    report = leakscan.verify_outputs(
        [tmp_path / name], [leaky], deid.build_plan(), max_member_bytes=1 << 30
    )
    assert report.unreadable_originals == 0
    assert report.leaks


def test_a_large_file_that_is_no_dicom_is_not_read_whole_to_find_out(tmp_path, monkeypatch):
    """A video beside the originals: its first bytes say it is no DICOM, and the rest of it
    is never read (only a header cut short is read again, whole)."""
    monkeypatch.setattr(work, "HEAD_BYTES_LIMIT", 1024)
    video = tmp_path / "scan.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(10_000))

    class Counted(io.FileIO):
        bytes_read = 0

        def read(self, n: int = -1) -> bytes:
            data = super().read(n)
            Counted.bytes_read += len(data)
            return data

    region = file_region(video)
    region.f.close()
    region.f = Counted(video, "rb")
    with pytest.raises(SourceError) as caught:
        work.read_header(region)
    assert caught.value.reason == "not_dicom"
    assert Counted.bytes_read == 1024
    assert region.f.closed
