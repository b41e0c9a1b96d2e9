"""Tar archives (#6: memory stays bounded whatever the archive).

A plain tar's members are read at their offsets when the work asks, so the walk holds none;
a compressed tar's are read as the walk passes them, and the run holds only so many bytes of
them at a time. tarfile's own list of every member's header is not kept.
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
import tarfile
import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import text

from indexer import pipeline
from indexer.errors import SourceError
from indexer.records import SourceFile
from indexer.sources import BytesReader, RegionReader, SeenNames, Walker, held_bytes
from tests.builders import make_instance, to_bytes

KEY = b"t" * 32
MARK = "PHIMARK"


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    mode = "w:gz" if path.name.endswith(".gz") else "w"
    with tarfile.open(path, mode) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def _walk(path: Path) -> list:
    return list(Walker(KEY, max_member_bytes=1 << 24).walk([path]))


DICM = bytes(128) + b"DICM"  # what a DICOM file begins with (of one that does not, only the
# first bytes are read)
MEMBERS = {f"{MARK}/{i}.dcm": DICM + bytes([65 + i]) * (700 * i + 1) for i in range(4)}


@pytest.mark.parametrize("name", ["a.tar", "a.tar.gz"])
def test_members_are_read_whole_and_only_compressed_ones_are_held(tmp_path, name):
    items = _walk(_tar(tmp_path / name, MEMBERS))
    assert [i.read() for i in items] == list(MEMBERS.values())
    assert [i.size for i in items] == [len(d) for d in MEMBERS.values()]
    if name == "a.tar":
        assert all(isinstance(i.read, RegionReader) for i in items)
        assert [held_bytes(i) for i in items] == [0] * 4
    else:
        assert all(isinstance(i.read, BytesReader) for i in items)
        assert [held_bytes(i) for i in items] == [len(d) for d in MEMBERS.values()]


def test_a_plain_tar_replaced_or_cut_after_its_listing_is_refused(tmp_path):
    path = _tar(tmp_path / "a.tar", MEMBERS)
    items = _walk(path)
    with tarfile.open(path) as t:
        last = t.getmembers()[-1]
    path.write_bytes(path.read_bytes()[: last.offset_data + 10])  # within the last member
    with pytest.raises(SourceError, match=r"^the archive changed after it was listed"):
        items[-1].read()
    *members, end = _walk(path)  # listed as it is now: its last member ends too soon
    assert (end.reason, end.message) == ("bad_archive", "cannot read an archive (ReadError)")
    assert [i.read() for i in members[:-1]] == list(MEMBERS.values())[:-1]
    with pytest.raises(SourceError, match=r"^an archive member is cut short$") as caught:
        members[-1].read()
    assert caught.value.reason == "truncated"


@pytest.mark.parametrize("name", ["many.tar", "many.tar.gz"])
def test_walking_a_tar_holds_no_header_per_member(tmp_path, name):
    """tarfile keeps every member's header (about 500 bytes each: 15 MB for these 30,000)."""
    path = _tar(tmp_path / name, {f"{MARK}_{i:06d}/s/{i:06d}.dcm": b"x" for i in range(30_000)})
    tracemalloc.start()
    try:
        walked = sum(1 for _ in Walker(KEY, max_member_bytes=1 << 20).walk([path]))
        _, walk_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        held, _ = tracemalloc.get_traced_memory()
        with tarfile.open(path) as t:
            t.getmembers()
            tarfile_peak = tracemalloc.get_traced_memory()[1] - held
    finally:
        tracemalloc.stop()
    assert walked == 30_000
    assert tarfile_peak > 12_000_000  # what the test would catch
    assert walk_peak < 6_000_000


def test_chunks_end_at_a_count_or_at_the_bytes_they_hold():
    def member(n: int) -> SourceFile:
        return SourceFile("src-0", "x", n, BytesReader(b"x" * n))

    def region(n: int) -> SourceFile:
        return SourceFile("src-0", "x", n, RegionReader(Path("x"), 0, n, (0, (0, 0, 0, 0))))

    items = [member(40), member(70), region(500), member(10), member(5), member(100), region(1)]
    chunks = list(pipeline._chunks(items, 3, 100))
    assert [([i.size for i in c], held) for c, held in chunks] == [
        ([40, 70], 110),  # two members hold 100 bytes or more
        ([500, 10, 5], 15),  # three items (one holds nothing)
        ([100], 100),
        ([1], 0),
    ]


PEAK_OF = """
import runpy, sys
from pathlib import Path
if __name__ == "__main__":
    sys.argv[0] = "dicom-index"
    try:
        runpy.run_module("indexer.cli", run_name="__main__")
    finally:  # this process's own peak (ru_maxrss would count its parent's, kept over exec)
        status = Path("/proc/self/status").read_text()
        print("peak-kib", status.split("VmHWM:", 1)[1].split()[0], file=sys.stderr)
"""


def _big_tar(path: Path, n: int, side: int) -> Path:
    """A tar.gz of ``n`` objects of ``side`` x ``side`` pixels, one held at a time here."""
    ds = make_instance(1, 1, 1, 1, marker=MARK, rows=side, columns=side)
    with tarfile.open(path, "w:gz", compresslevel=1) as t:
        for i in range(n):
            ds.SOPInstanceUID = f"{ds.SOPInstanceUID.rsplit('.', 1)[0]}.{i + 1}"
            data = to_bytes(ds)
            info = tarfile.TarInfo(f"{MARK}/{i}.dcm")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_compressed_tar_of_large_objects_is_ingested_in_bounded_memory(cli, tmp_path, workers):
    """Three times the members, the same peak: the ingest process holds a bounded number of
    bytes of them, not a count of members (before, 256 of any size were held at once)."""
    peak_of = dataclasses.replace(cli, launcher=("-c", PEAK_OF))
    peaks = []
    for n in (20, 60):
        path = _big_tar(tmp_path / f"{n}.tar.gz", n, 1400)  # 3.9 MB each
        out = str(tmp_path / f"o{n}")
        p = peak_of("ingest", str(path), "--out", out, "--workers", workers, "--json")
        assert json.loads(p.stdout.splitlines()[-1])["files_indexed"] == n
        peaks.append(int(p.stderr.rsplit("peak-kib ", 1)[1]) / 1024)
    assert peaks[1] - peaks[0] < 40, peaks  # 40 more members: 156 MB if each were held


def _objects(*instances: int) -> list[bytes]:
    """Objects of one size, their instances' UIDs differing in a digit."""
    data = [to_bytes(make_instance(1, 1, 1, i, marker=MARK)) for i in instances]
    assert len({len(d) for d in data}) == 1
    return data


@pytest.mark.parametrize("name", ["a.tar", "a.tar.gz"])
def test_members_of_one_name_and_header_are_each_indexed_after_a_kill(cli, tmp_path, engine, name):
    """Two members of one name, size and time (an appended tar) have one tar header, and had
    one fingerprint: once the first was indexed, a run killed before the second was, the
    rerun took the second for the first, already indexed, and skipped it."""
    path = tmp_path / name
    with tarfile.open(path, "w:gz" if name.endswith(".gz") else "w") as t:
        for data in _objects(2, 3):
            info = tarfile.TarInfo(f"{MARK}/a.dcm")  # one name, size, time, mode, owner
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    args = ("ingest", str(path), "--out", str(tmp_path / "out"), "--batch-size", "1", "--json")
    cli.env["DICOM_INDEX_FAILPOINT"] = "sql_committed:1"  # the first indexed, not the second
    assert cli(*args, check=-9).returncode == -9
    del cli.env["DICOM_INDEX_FAILPOINT"]
    summary = json.loads(cli(*args).stdout)
    assert (summary["files_unchanged"], summary["files_indexed"]) == (1, 2)  # one read again
    assert json.loads(cli(*args).stdout)["files_unchanged"] == 2
    assert _instances(engine) == 2
    with engine.connect() as c:
        ids = c.execute(text("SELECT count(DISTINCT source_id) FROM dicom_index.instance"))
        assert ids.scalar_one() == 2


@pytest.mark.parametrize("name", ["a.tar", "a.tar.gz"])
def test_a_member_rewritten_with_its_tar_header_unchanged_is_read_again(
    cli, tmp_path, engine, name
):
    """A tar's header has a checksum of its own fields only: a member rewritten with its
    name, size and time kept (the tar made again from fixed objects) had its fingerprint
    unchanged, and the rerun skipped it, leaving the old object's index and copy."""
    path = tmp_path / name
    args = ("ingest", str(path), "--out", str(tmp_path / "out"), "--json")
    for data in _objects(2, 3):
        _tar(path, {f"{MARK}/a.dcm": data})  # in place, the member's header alike
        summary = json.loads(cli(*args).stdout)
        assert (summary["files_unchanged"], summary["files_indexed"]) == (0, 1)
    assert json.loads(cli(*args).stdout)["files_unchanged"] == 1
    assert _instances(engine) == 2


def test_a_second_member_of_a_name_is_located_by_its_offset(tmp_path):
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as t:
        for name, data in (("a.dcm", b"one"), ("b.dcm", b"other"), ("a.dcm", b"two")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    with tarfile.open(path) as t:
        offsets = [m.offset for m in t.getmembers()]
    items = _walk(path)
    locators = [i.locator for i in items]
    assert locators == [f"{path}!a.dcm", f"{path}!b.dcm", f"{path}!a.dcm@{offsets[2]}"]
    assert len({i.source_id for i in items}) == 3
    assert [i.read() for i in items] == [b"one", b"other", b"two"]


def test_seen_names_rarely_take_a_new_name_for_one_met():
    seen = SeenNames()
    names = [f"study{i // 500}/series{i // 100}/{i:06d}.dcm" for i in range(100_000)]
    assert sum(seen.add(n) for n in names) < 20  # about 4 expected: 3 bits of 8 Mi each
    assert all(seen.add(n) for n in names[::97])  # one met is always known


def _instances(engine) -> int:
    with engine.connect() as c:
        return c.execute(text("SELECT count(*) FROM dicom_index.instance")).scalar_one()


BLANK = 12 << 20  # a member of zeros (blank pixels): 12 MiB from a few kilobytes


def _compressed_tar(path: Path, members: dict[str, bytes]) -> Path:
    kind = path.name.rsplit(".", 1)[-1]
    with tarfile.open(path, f"w:{kind}") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name", ["a.tar.gz", "a.tar.bz2", "a.tar.xz"])
def test_members_that_compress_well_are_walked_a_step_at_a_time(tmp_path, name, monkeypatch):
    """tarfile's own decompression kept what one read inflated (megabytes from a few kilobytes
    of zeros) and copied its rest on every later read of 10 kB: time quadratic in the member
    (two blank members of 64 MiB in a .tar.xz: 284 s). The walk decompresses it itself, in
    steps of bounded size, and passes a large member without holding it."""
    monkeypatch.setattr("indexer.spans.STREAM_FROM", 1)  # read where worked on, not held
    path = _compressed_tar(tmp_path / name, {"blank1.dcm": bytes(BLANK), "blank2.dcm": DICM})
    tracemalloc.start()
    try:
        items = _walk(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [type(i) for i in items] == [SourceFile, SourceFile]
    assert [i.size for i in items] == [BLANK, len(DICM)]
    dictionary = 8 << 20 if name.endswith(".xz") else 0  # xz's default preset: its window
    assert peak < dictionary + (2 << 20)  # tarfile's stream: what a read inflated, 30 MB
    assert items[1].read() == DICM


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cut.tar.gz", "cannot read an archive (cut short)"),
        ("cut.tar.xz", "cannot read an archive (cut short)"),
        ("cut.tar.bz2", "cannot read an archive (cut short)"),
        ("bad.tar.gz", "cannot read an archive (its compressed data is damaged: BadGzipFile)"),
        ("bad.tar.xz", "cannot read an archive (its compressed data is damaged: LZMAError)"),
        ("crc.tar.gz", "cannot read an archive (its compressed data is damaged: BadGzipFile)"),
        (
            "bad.tar.bz2",
            "cannot read an archive (its compressed data is damaged: invalid bzip2 data)",
        ),
    ],
)
def test_a_damaged_compressed_tar_is_named_and_its_members_before_land(tmp_path, name, message):
    # random bytes hardly compress: the damage falls in the second member, after bzip2's
    # blocks of 900 kB that hold the first one whole
    first = DICM + random.Random(2).randbytes(2 << 20)  # noqa: S311
    rest = random.Random(1).randbytes(2 << 20)  # noqa: S311
    path = _compressed_tar(tmp_path / name, {f"{MARK}/a.dcm": first, f"{MARK}/b.dcm": rest})
    raw = bytearray(path.read_bytes())
    if name.startswith("cut"):
        raw = raw[: len(raw) * 3 // 4]
    elif name.startswith("crc"):  # the data is whole; its checksum, after the tar's end, not
        raw[-6] ^= 0xFF
    else:
        raw[len(raw) * 3 // 4] ^= 0xFF
    path.write_bytes(bytes(raw))
    *members, end = _walk(path)
    assert (end.reason, end.message) == ("bad_archive", message)
    assert MARK not in end.message
    assert members[0].read() == first
