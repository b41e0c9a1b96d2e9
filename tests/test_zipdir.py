"""Zips read from their central directory an entry at a time (#6: memory stays bounded).

The directory is streamed, never held, and a member is read at its offset without reading
the directory again; what is read must be what zipfile reads.
"""

from __future__ import annotations

import json
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import text

from indexer import zipdir
from indexer.errors import SourceError
from indexer.records import Failure, SourceFile
from indexer.sources import Walker
from tests.builders import make_instance, to_bytes

MARK = "PHIMARK"
KEY = b"k" * 32
METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def _walk(path: Path) -> list[SourceFile | Failure]:
    return list(Walker(KEY, max_member_bytes=1 << 24).walk([path]))


DICM = bytes(128) + b"DICM"  # what a DICOM file begins with: a member that does not is no
# DICOM, and only its first bytes are read


def _members(n: int = 5) -> dict[str, bytes]:
    return {f"{MARK}/{i}/é {i}.dcm": DICM + bytes([i]) * (1000 * i) + b"tail" for i in range(n)}


def _as_zipfile_reads(path: Path) -> list[tuple]:
    with zipfile.ZipFile(path) as z:
        return [
            (i.filename, i.file_size, i.compress_size, i.CRC, i.date_time, z.read(i))
            for i in z.infolist()
        ]


def _as_we_read(path: Path) -> list[tuple]:
    with path.open("rb") as f:
        entries = list(zipdir.entries(f))
    items = iter(_walk(path))
    return [
        (e.name, e.size, e.packed, e.crc, e.date_time, next(items).read())
        for e in entries
        if not e.is_dir
    ]


@pytest.mark.parametrize("method", METHODS)
def test_members_read_as_zipfile_reads_them(tmp_path, method):
    """Each compression method zipfile reads; a stub before the zip (a self-extracting one)
    shifts every offset."""
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w", method) as z:
        z.comment = b"an archive comment"
        z.mkdir("folder")
        for name, data in _members().items():
            z.writestr(name, data)
    shifted = tmp_path / "shifted.zip"
    shifted.write_bytes(b"#!/bin/sh\nexit 0\n" * 40 + plain.read_bytes())
    for path in (plain, shifted):
        expected = [m for m in _as_zipfile_reads(path) if not m[0].endswith("/")]
        assert len(expected) == len(_members())
        assert _as_we_read(path) == expected


def test_a_comment_that_holds_the_end_signature_is_no_end(tmp_path):
    path = tmp_path / "comment.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.comment = b"made by PK\x05\x06 a tool"
        z.writestr("a.dcm", b"member")
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(path)  # zipfile takes the comment's signature for the record
    assert [i.read() for i in _walk(path)] == [b"member"]
    with path.open("ab") as f:
        f.write(b"bytes after the comment")  # then the last record with room for itself
    assert [i.read() for i in _walk(path)] == [b"member"]


def test_zip64_records_are_read(tmp_path, monkeypatch):
    """Past 4 GiB or 65,535 members a zip records sizes, offsets and counts in zip64 fields;
    zipfile writes them for small members once its limits are lowered."""
    path = tmp_path / "z64.zip"
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 100)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in _members().items():
            z.writestr(name, data)
    monkeypatch.undo()
    raw = path.read_bytes()
    assert zipdir.END64_SIG in raw
    assert zipdir.END64_LOCATOR_SIG in raw
    central = raw[raw.index(zipdir.CENTRAL_SIG) :]
    assert struct.pack("<H", zipdir.ZIP64_EXTRA) in central  # offsets past the lowered limit
    assert _as_we_read(path) == _as_zipfile_reads(path)


def _flag_names(path: Path, raw_names: dict[str, bytes], utf8: bool) -> None:
    """Rewrites members' names in place (same lengths), the UTF-8 flag set or cleared."""
    buf = bytearray(path.read_bytes())
    for old, new in raw_names.items():
        assert len(new) == len(old.encode())
        for sig, at_flags, at_length, head in (
            (b"PK\x01\x02", 8, 28, 46),
            (b"PK\x03\x04", 6, 26, 30),
        ):
            pos = buf.find(sig)
            while pos >= 0:
                n = struct.unpack_from("<H", buf, pos + at_length)[0]
                if buf[pos + head : pos + head + n] == old.encode():
                    buf[pos + head : pos + head + n] = new
                    flags = struct.unpack_from("<H", buf, pos + at_flags)[0]
                    flags = flags | zipdir.FLAG_UTF8 if utf8 else flags & ~zipdir.FLAG_UTF8
                    struct.pack_into("<H", buf, pos + at_flags, flags)
                pos = buf.find(sig, pos + 4)
    path.write_bytes(bytes(buf))


def test_names_decode_as_zipfile_decodes_them_and_bad_utf8_is_kept(tmp_path):
    """A name not flagged UTF-8 is code page 437 (old Windows zips); one flagged UTF-8 that is
    not is kept byte for byte, as a folder's file name is, where zipfile would fail."""
    path = tmp_path / "names.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("cp437_AA.dcm", b"one")
        z.writestr("badutf8_AA.dcm", b"two")
        z.writestr("nul_AAAAA.dcm", b"three")
    _flag_names(path, {"cp437_AA.dcm": b"cp437_\x82\x94.dcm"}, utf8=False)
    _flag_names(path, {"nul_AAAAA.dcm": b"nul.dcm\0xyz.d"}, utf8=False)
    _flag_names(path, {"badutf8_AA.dcm": b"badutf8_\xe9\xff.dcm"}, utf8=True)
    items = _walk(path)
    names = [i.locator.split("!", 1)[1] for i in items]
    assert names == ["cp437_éö.dcm", "badutf8_\udce9\udcff.dcm", "nul.dcm"]
    assert [i.read() for i in items] == [b"one", b"two", b"three"]
    with pytest.raises(UnicodeDecodeError):
        zipfile.ZipFile(path)  # zipfile refuses the whole archive


def test_a_damaged_directory_keeps_the_members_before_the_damage(tmp_path):
    path = tmp_path / "cut.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in _members(4).items():
            z.writestr(name, data)
    raw = bytearray(path.read_bytes())
    third = raw.index(zipdir.CENTRAL_SIG)
    for _ in range(2):
        third = raw.index(zipdir.CENTRAL_SIG, third + 4)
    raw[third : third + 4] = b"XXXX"
    path.write_bytes(bytes(raw))
    items = _walk(path)
    assert [type(i) for i in items] == [SourceFile, SourceFile, Failure]
    assert [i.read() for i in items[:2]] == list(_members(4).values())[:2]
    failure = items[2]
    assert (failure.outcome, failure.reason) == ("failed", "bad_archive")
    assert failure.message == "cannot read an archive (BadZipFile)"
    assert MARK not in failure.message


def test_a_member_whose_offset_holds_no_header_is_damaged(tmp_path):
    path = tmp_path / "off.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{MARK}.dcm", b"data")
    raw = bytearray(path.read_bytes())
    raw[:4] = b"XXXX"  # the member's local header
    path.write_bytes(bytes(raw))
    (item,) = _walk(path)
    with pytest.raises(SourceError, match=r"^an archive member is damaged \(BadZipFile\)$"):
        item.read()


def test_walking_and_reading_hold_no_entry_per_member(tmp_path):
    """zipfile holds about 650 bytes a member in every process that reads one (20 MB for
    these 30,000); the walk holds what one entry needs, a worker what one member needs."""
    path = tmp_path / "many.zip"
    n = 30_000
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            z.writestr(f"{MARK}_{i:06d}/series/slice_{i:06d}.dcm", b"x")
    tracemalloc.start()
    try:
        walked = 0
        last = None
        for item in Walker(KEY, max_member_bytes=1 << 20).walk([path]):
            walked += 1
            last = item
        _, walk_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        held, _ = tracemalloc.get_traced_memory()
        assert isinstance(last, SourceFile)
        assert last.read() == b"x"
        read_peak = tracemalloc.get_traced_memory()[1] - held
        with zipfile.ZipFile(path) as z:
            z.read(z.infolist()[-1])
            zipfile_peak = tracemalloc.get_traced_memory()[1] - held
    finally:
        tracemalloc.stop()
    assert walked == n
    assert zipfile_peak > 15_000_000  # what the test would catch
    assert walk_peak < 4_000_000
    assert read_peak < 1_000_000


def test_members_of_the_same_name_are_each_indexed(cli, tmp_path, engine):
    """zipfile reads a name's last member only: the other object was lost unrecorded."""
    z = tmp_path / "a.zip"
    data = [to_bytes(make_instance(1, 1, 1, i, marker=MARK)) for i in (1, 2)]
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(f"{MARK}/a.dcm", data[0])
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr(f"{MARK}/a.dcm", data[1])
    p = cli("ingest", str(z), "--out", str(tmp_path / "out"), "--json")
    assert json.loads(p.stdout)["files_indexed"] == 2
    p = cli("ingest", str(z), "--out", str(tmp_path / "out"), "--json")
    assert json.loads(p.stdout)["files_unchanged"] == 2
    with engine.connect() as c:
        originals = c.execute(text("SELECT count(*) FROM dicom_index.instance")).scalar_one()
        errors = c.execute(text("SELECT count(*) FROM dicom_index.file_error")).scalar_one()
        ids = c.execute(text("SELECT count(DISTINCT source_id) FROM dicom_index.instance"))
        sources = c.execute(text("SELECT count(*) FROM vault.source")).scalar_one()
    assert (originals, errors) == (2, 0)
    assert (ids.scalar_one(), sources) == (2, 2)  # the vault tells them apart


def test_a_second_member_of_a_name_is_located_by_its_offset(tmp_path):
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.dcm", b"one")
        zf.writestr("b.dcm", b"other")
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("a.dcm", b"two")
        offsets = [i.header_offset for i in zf.infolist()]
    items = _walk(z)
    assert [i.locator for i in items] == [f"{z}!a.dcm", f"{z}!b.dcm", f"{z}!a.dcm@{offsets[2]}"]
    assert len({i.source_id for i in items}) == 3
    assert [i.locator for i in _walk(z)] == [i.locator for i in items]  # the same each run
