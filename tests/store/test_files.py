"""The local output store under concurrent writers: a name is stored once, never overwritten."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import pickle
import stat
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from indexer.errors import StoreError
from indexer.spans import FileSpan, version_of
from indexer.store import files
from indexer.store.files import CopyConflictError, Digest, LocalStore

HEAD = b"\0" * 128 + b"DICM"  # every copy begins so: what does not is what a crash left


@pytest.fixture(params=[True, False], ids=["hard-links", "no-hard-links"])
def links(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the file system has hard links; without, the store renames under its lock."""
    if not request.param:

        def no_link(*_args: object, **_kwargs: object) -> None:
            raise PermissionError

        monkeypatch.setattr(os, "link", no_link)
    return bool(request.param)


def _race(store: LocalStore, name: str, contents: list[bytes]) -> list[Digest | str]:
    """Every content put under ``name`` at once, one thread each."""
    barrier = threading.Barrier(len(contents))
    results: list[Digest | str] = [""] * len(contents)

    def put(i: int) -> None:
        barrier.wait()
        try:
            results[i] = store.put(name, [contents[i][:7], memoryview(contents[i])[7:]])
        except CopyConflictError:
            results[i] = "conflict"

    threads = [threading.Thread(target=put, args=(i,)) for i in range(len(contents))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.usefixtures("links")
def test_racing_writers_of_one_name_store_it_once(tmp_path):
    store = LocalStore(tmp_path)
    for round_ in range(20):
        name = f"study/series/{round_}.dcm"
        a, b = HEAD + b"A" * 5000 + bytes([round_]), HEAD + b"B" * 5000 + bytes([round_])
        results = _race(store, name, [a, b])
        winners = [r for r in results if isinstance(r, Digest)]
        assert sorted(map(type, results), key=str) == sorted([Digest, str], key=str)
        assert results.count("conflict") == 1
        stored = (tmp_path / name).read_bytes()
        assert stored in (a, b)
        assert winners[0].sha256 == hashlib.sha256(stored).hexdigest()
        same = _race(store, name + ".same", [a, a, a])  # identical bytes: all succeed
        assert all(isinstance(r, Digest) for r in same)
    assert list(store.incoming.iterdir()) == []  # no temp file left
    store.close()
    assert list((tmp_path / ".incoming").iterdir()) == []  # nor the store's own space


def _put_in_process(store: LocalStore, name: str, content: bytes) -> str:
    try:
        return store.put(name, [content]).sha256
    except CopyConflictError:
        return "conflict"


@pytest.mark.parametrize("crash_left", [False, True], ids=["new names", "empty files there"])
def test_writers_in_other_processes_never_overwrite(tmp_path, crash_left):
    store = LocalStore(tmp_path)  # pickled for the worker processes, as the ingest's is
    for i in range(10 if crash_left else 0):
        (tmp_path / f"{i}.dcm").write_bytes(b"")  # what a crash left: replaced by one of two
    mp = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=mp) as pool:
        futures = [
            pool.submit(_put_in_process, store, f"{i}.dcm", HEAD + bytes([65 + j]) * 100_000)
            for i in range(10)
            for j in range(2)
        ]
        results = [f.result() for f in futures]
    for i in range(10):
        pair = results[2 * i : 2 * i + 2]
        assert pair.count("conflict") == 1
        stored = hashlib.sha256((tmp_path / f"{i}.dcm").read_bytes()).hexdigest()
        assert stored in pair


def test_a_second_store_on_one_directory_leaves_the_first_ones_files_alone(tmp_path):
    first = LocalStore(tmp_path)
    writing = first.incoming / "in-progress.part"  # as if a put were under way
    writing.write_bytes(b"half a copy")
    second = LocalStore(tmp_path)
    assert writing.exists()
    assert first.put("a.dcm", [b"first"]).size == 5
    assert second.put("b.dcm", [b"second"]).size == 6
    second.close()
    assert writing.exists()
    first.close()
    assert list((tmp_path / ".incoming").iterdir()) == []


def test_what_a_killed_store_left_is_removed_when_a_store_opens(tmp_path):
    code = (
        "import os, sys; from pathlib import Path; from indexer.store.files import LocalStore;"
        "s = LocalStore(Path(sys.argv[1])); (s.incoming / 'x.part').write_bytes(b'partial');"
        "os.kill(os.getpid(), 9)"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False)
    left = sorted(p.name for p in (tmp_path / ".incoming").rglob("*"))
    assert any(name.endswith(".lock") for name in left)
    assert "x.part" in left  # killed: nothing was cleaned up
    (tmp_path / ".incoming" / "old-layout.part").write_bytes(b"from an older version")
    store = LocalStore(tmp_path)
    assert [p for p in (tmp_path / ".incoming").rglob("*") if p.is_file()] == [
        store.incoming.with_name(store.incoming.name + ".lock")
    ]
    store.close()
    assert list((tmp_path / ".incoming").iterdir()) == []


def test_a_closed_store_refuses_puts_and_closing_twice_is_harmless(tmp_path):
    store = LocalStore(tmp_path)
    store.close()
    store.close()
    with pytest.raises(StoreError):
        store.put("a.dcm", [b"x"])


def test_short_writes_go_on_until_every_byte_is_written(tmp_path, monkeypatch):
    writev = os.writev

    def at_most_1000_bytes(fd: int, buffers: list[memoryview]) -> int:
        first = buffers[0][:1000]
        return writev(fd, [first])

    monkeypatch.setattr(os, "writev", at_most_1000_bytes)
    store = LocalStore(tmp_path)
    content = os.urandom(5555)
    parts = [content[:10], b"", memoryview(content)[10:3000], content[3000:]]
    digest = store.put("s/x.dcm", parts)
    assert (tmp_path / "s" / "x.dcm").read_bytes() == content
    assert digest == Digest("s/x.dcm", hashlib.sha256(content).hexdigest(), len(content))
    store.close()


def test_a_failed_write_is_a_store_error_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    def disk_full(_fd: int, _buffers: list[memoryview]) -> int:
        raise OSError(errno.ENOSPC, "No space left", str(tmp_path / "PHIMARK"))

    store = LocalStore(tmp_path)
    monkeypatch.setattr(os, "writev", disk_full)
    with pytest.raises(StoreError) as caught:
        store.put("s/x.dcm", [b"abc"])
    # what went wrong, in the system's words for its error number; never the path
    assert str(caught.value) == (
        "cannot write a copy to the output directory (OSError: No space left on device)"
    )
    assert list(store.incoming.iterdir()) == []
    assert not (tmp_path / "s" / "x.dcm").exists()
    store.close()


def test_a_directory_removed_during_a_run_is_made_again(tmp_path):
    store = LocalStore(tmp_path)
    store.put("study/series/1.dcm", [b"one"])
    (tmp_path / "study" / "series" / "1.dcm").unlink()
    (tmp_path / "study" / "series").rmdir()  # by hand, while the store is open
    store.put("study/series/2.dcm", [b"two"])
    assert (tmp_path / "study" / "series" / "2.dcm").read_bytes() == b"two"
    store.close()


def test_a_temporary_name_in_use_is_passed_over(tmp_path):
    store = LocalStore(tmp_path)
    taken = store.incoming / f"{os.getpid()}-0.part"
    taken.write_bytes(b"not ours")  # as a process with this pid left it
    store.put("a.dcm", [b"ours"])
    assert taken.read_bytes() == b"not ours"
    assert (tmp_path / "a.dcm").read_bytes() == b"ours"
    store.close()


def test_the_directories_a_store_remembers_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MADE_LIMIT", 3)
    store = LocalStore(tmp_path)
    for i in range(10):
        store.put(f"study/series-{i}/1.dcm", [bytes([i])])
        assert len(store._made) <= 3
    store.put("study/series-0/2.dcm", [b"again"])  # forgotten, and made (found) again
    assert sorted(p.name for p in (tmp_path / "study" / "series-0").iterdir()) == [
        "1.dcm",
        "2.dcm",
    ]
    store.close()


def _open_id(root: str) -> str:
    store = LocalStore(Path(root))
    try:
        return store.output_id
    finally:
        store.close()


@pytest.mark.usefixtures("links")
def test_an_output_is_given_one_id_and_keeps_it(tmp_path):
    assert files.read_output_id(tmp_path) is None  # none before a store opens it
    first = _open_id(str(tmp_path))
    assert str(uuid.UUID(first)) == first
    assert files.read_output_id(tmp_path) == first
    assert _open_id(str(tmp_path)) == first  # opened again: the same
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    tmp_path.rename(moved)
    assert _open_id(str(moved)) == first  # it moves with the directory
    assert [p.name for p in (moved / files.INCOMING).iterdir()] == []  # nothing left behind


def test_an_outputs_id_is_on_disk_before_a_run_records_it(tmp_path, monkeypatch):
    """A power cut must not leave the id file empty: runs have recorded the id it held."""
    events: list[str] = []
    fsync, link = os.fsync, os.link

    def synced(fd: int) -> None:
        st = os.fstat(fd)
        events.append("directory synced" if stat.S_ISDIR(st.st_mode) else f"{st.st_size} synced")
        fsync(fd)

    def linked(src: Path, dst: Path) -> None:
        events.append(f"named {Path(dst).name}")
        link(src, dst)

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(os, "link", linked)
    store = LocalStore(tmp_path)
    store.close()
    assert events == ["37 synced", f"named {files.OUTPUT_ID_FILE}", "directory synced"]
    events.clear()
    LocalStore(tmp_path).close()  # it has its id: nothing written
    assert events == []


def test_stores_opening_one_output_at_once_agree_on_its_id(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=ctx) as pool:
        ids = list(pool.map(_open_id, [str(tmp_path)] * 8))
    assert len(set(ids)) == 1
    assert files.read_output_id(tmp_path) == ids[0]


def test_a_pickled_store_carries_its_id(tmp_path):
    store = LocalStore(tmp_path)
    try:
        assert pickle.loads(pickle.dumps(store)).output_id == store.output_id  # noqa: S301
    finally:
        store.close()


def test_a_damaged_id_refuses_the_output(tmp_path):
    (tmp_path / files.OUTPUT_ID_FILE).write_text("PHIMARK\n")
    with pytest.raises(StoreError, match="is damaged") as e:
        LocalStore(tmp_path)
    assert "PHIMARK" not in str(e.value)
    assert list((tmp_path / files.INCOMING).iterdir()) == []  # the refused store left nothing


def test_bytes_stored_before_are_compared_not_written_again(tmp_path, monkeypatch):
    store = LocalStore(tmp_path)
    try:
        data = HEAD + b"D" * 5000
        first = store.put("s/e/1.dcm", [data[:10], memoryview(data)[10:]])
        span_file = tmp_path / "source.bin"
        span_file.write_bytes(b"head" + data)
        span = FileSpan(span_file, 4, 4 + len(data), version_of(span_file.stat()))

        def no_write(*_args: object) -> None:
            raise AssertionError("written again")

        monkeypatch.setattr(store, "_write_temporary", no_write)
        assert store.put("s/e/1.dcm", [data]) == first
        assert store.put("s/e/1.dcm", [span]) == first  # pixel data from a file: read, compared
        with pytest.raises(CopyConflictError):
            store.put("s/e/1.dcm", [HEAD + b"E" * 5000])  # same size, other bytes
        assert (tmp_path / "s/e/1.dcm").read_bytes() == data
    finally:
        store.close()


COPY = HEAD + b"header and pixels " * 300


@pytest.mark.parametrize(
    "left",
    [b"", b"\0" * len(COPY), COPY[:100], COPY[:5000]],
    ids=["empty", "zeros", "no DICM yet", "cut short"],
)
def test_what_a_crash_left_of_a_copy_is_replaced(tmp_path, left):
    """A power cut after a copy was named, before its data reached the disk, leaves these."""
    store = LocalStore(tmp_path)
    try:
        (tmp_path / "s").mkdir()
        (tmp_path / "s" / "x.dcm").write_bytes(left)
        source = tmp_path / "source.bin"
        source.write_bytes(b"head" + COPY[200:])
        span = FileSpan(source, 4, 4 + len(COPY) - 200, version_of(source.stat()))
        digest = store.put("s/x.dcm", [COPY[:200], span])  # pixel data from a file too
        assert digest == Digest("s/x.dcm", hashlib.sha256(COPY).hexdigest(), len(COPY))
        assert (tmp_path / "s" / "x.dcm").read_bytes() == COPY
        assert list(store.incoming.iterdir()) == []
    finally:
        store.close()


@pytest.mark.parametrize(
    "other",
    [COPY[:-1] + b"!", COPY[:4000] + b"!" + COPY[4001:5000], COPY + b"more"],
    ids=["same size", "shorter, not its beginning", "longer"],
)
def test_another_objects_copy_is_a_conflict_never_replaced(tmp_path, other):
    store = LocalStore(tmp_path)
    try:
        (tmp_path / "s").mkdir()
        (tmp_path / "s" / "x.dcm").write_bytes(other)
        with pytest.raises(CopyConflictError):
            store.put("s/x.dcm", [COPY])
        assert (tmp_path / "s" / "x.dcm").read_bytes() == other
    finally:
        store.close()


@pytest.mark.usefixtures("links")
@pytest.mark.parametrize(
    "old",
    [COPY[:-1] + b"!", COPY[:4000] + b"!" + COPY[4001:5000], COPY + b"more"],
    ids=["same size", "shorter", "longer"],
)
def test_the_copy_named_as_replaced_is_replaced_and_no_other(tmp_path, old):
    """A source's copy made under other rules: replaced where its digest is the one named;
    under any other digest it is a conflict, and stays."""
    store = LocalStore(tmp_path)
    path = tmp_path / "s" / "x.dcm"
    try:
        path.parent.mkdir()
        path.write_bytes(old)
        with pytest.raises(CopyConflictError):
            store.put("s/x.dcm", [COPY], replaces=hashlib.sha256(b"another").hexdigest())
        assert path.read_bytes() == old
        digest = store.put("s/x.dcm", [COPY], replaces=hashlib.sha256(old).hexdigest())
        assert digest == Digest("s/x.dcm", hashlib.sha256(COPY).hexdigest(), len(COPY))
        assert path.read_bytes() == COPY
        inode = path.stat().st_ino
        assert store.put("s/x.dcm", [COPY], replaces=hashlib.sha256(old).hexdigest()) == digest
        assert store.put("s/x.dcm", [COPY], replaces=digest.sha256) == digest
        assert path.stat().st_ino == inode  # the same bytes again: compared, not written
        assert store.put("s/y.dcm", [COPY], replaces=hashlib.sha256(old).hexdigest()) == Digest(
            "s/y.dcm", digest.sha256, digest.size
        )  # none there: written
        assert list(store.incoming.iterdir()) == []
    finally:
        store.close()


def test_a_copy_is_removed_only_under_its_digest(tmp_path):
    store = LocalStore(tmp_path)
    try:
        digest = store.put("s/x.dcm", [COPY])
        assert not store.remove("s/x.dcm", hashlib.sha256(b"another").hexdigest())
        assert (tmp_path / "s" / "x.dcm").read_bytes() == COPY  # another copy: stays
        assert store.remove("s/x.dcm", digest.sha256)
        assert not (tmp_path / "s" / "x.dcm").exists()
        assert not store.remove("s/x.dcm", digest.sha256)  # gone already: nothing to do
        with pytest.raises(StoreError, match="outside the output"):
            store.remove("../x.dcm", digest.sha256)
    finally:
        store.close()


def test_a_folder_at_a_copys_name_is_a_conflict_of_that_copy_only(tmp_path):
    store = LocalStore(tmp_path)
    try:
        (tmp_path / "s" / "x.dcm").mkdir(parents=True)
        with pytest.raises(CopyConflictError):
            store.put("s/x.dcm", [COPY])
        assert (tmp_path / "s" / "x.dcm").is_dir()
        assert store.put("s/y.dcm", [COPY]).size == len(COPY)  # the store goes on
    finally:
        store.close()


@pytest.mark.usefixtures("links")
def test_writers_racing_to_replace_what_a_crash_left_store_one_copy(tmp_path):
    store = LocalStore(tmp_path)
    try:
        for round_ in range(30):
            name = f"s/e/{round_}.dcm"
            (tmp_path / "s" / "e").mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(b"")  # what a crash left
            a, b = COPY + b"A" + bytes([round_]), COPY + b"B" + bytes([round_])
            results = _race(store, name, [a, b])
            assert results.count("conflict") == 1  # the other object's copy: never replaced
            (winner,) = [r for r in results if isinstance(r, Digest)]
            stored = (tmp_path / name).read_bytes()
            assert stored in (a, b)
            assert winner.sha256 == hashlib.sha256(stored).hexdigest()
            (tmp_path / name).write_bytes(COPY[:1000])  # cut short, this time
            same = _race(store, name, [a, a, a])  # one object's copy thrice: all stored
            assert all(isinstance(r, Digest) for r in same)
            assert (tmp_path / name).read_bytes() == a
        assert list(store.incoming.iterdir()) == []  # nothing left aside
    finally:
        store.close()
