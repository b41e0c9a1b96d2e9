"""Output stores for pseudonymized copies: a Protocol, a local directory now, S3/Azure later."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from indexer import failpoints, tree
from indexer.durable import sync_directory, write_synced
from indexer.errors import StoreError, os_reason
from indexer.spans import Span

Part = bytes | memoryview | Span  # a Span: pixel data streamed from its source


@dataclass(frozen=True, slots=True)
class Digest:
    """What an output store reports for a stored object."""

    name: str
    sha256: str
    size: int


class CopyConflictError(StoreError):
    """A copy of that name exists with other content: never overwritten silently."""

    code = "conflict"


class OutputStore(Protocol):
    """Where pseudonymized copies go. ``name`` is made of pseudonymized UIDs only."""

    output_id: str
    """The store's own id, kept in the store itself (it moves with it); runs record it."""

    @property
    def local_root(self) -> Path | None:
        """The local folder the copies are in (None: not on this machine's file system).

        A walk of the sources leaves it out; a source inside it is refused.
        """
        ...

    def put(self, name: str, parts: Sequence[Part], replaces: str | None = None) -> Digest:
        """Store the bytes of ``parts``, in order, under ``name`` atomically.

        Identical bytes again are a no-op. Parts are written as they are (a view into a
        source's pixel data is streamed, not joined first; a ``Span`` is copied from
        its source in chunks, never held whole). ``replaces``: the SHA-256 of a copy under
        ``name`` that these bytes may take the place of (the index's copy of the same
        source, made under other rules or settings); a copy with any other content stays.

        Raises
        ------
        CopyConflictError
            ``name`` holds other bytes already (what a crash left of a copy is replaced, and
            the copy ``replaces`` names).
        SourceError
            A ``Span``'s source cannot be read, or changed since its head was read.

        """
        ...

    def exists(self, name: str, size: int) -> bool:
        """Whether ``name`` is stored whole with this size (a cheap check: its head at most)."""
        ...

    def remove(self, name: str, sha256: str) -> bool:
        """Remove the copy under ``name`` if its SHA-256 is ``sha256``; whether it was there.

        Raises
        ------
        StoreError
            It cannot be removed.

        """
        ...

    def close(self) -> None:
        """Release what the store holds (temporary space); later puts are an error."""
        ...


INCOMING = ".incoming"
OUTPUT_ID_FILE = ".dicom-index-output"  # in an output's root: the output's id, a random UUID
MADE_LIMIT = 4096  # directories a store remembers having made (a series' copies share one)
LOCK_SUFFIX, CLAIM_SUFFIX = ".lock", ".claim"


class LocalStore:
    """Copies as files under a root directory, written to a temporary directory, then linked.

    Each open store writes its temporary files to a directory of its own under
    ``.incoming/``, beside a lock file it holds locked while it is open. Opening a store
    removes what stores that are gone (killed) left there, and never what a live one holds,
    so no partial copy stays behind and two ingests into one directory do not disturb each
    other. Threads and processes (a pickled store, for workers) may ``put`` at once: a name
    is stored once, and other bytes under it are a conflict, never an overwrite, but where
    the caller names the copy they replace (its SHA-256: the index's copy of that source).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._made: set[Path] = set()  # directories known to exist
        self._serial = itertools.count()  # temporary file names
        self._held: int | None = None  # the lock file's descriptor, in the opening process
        spool = root / INCOMING
        token = f"{os.getpid()}-{secrets.token_hex(6)}"
        try:
            spool.mkdir(parents=True, exist_ok=True)
            claim = spool / f"{token}{CLAIM_SUFFIX}"
            fd = os.open(claim, os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)  # locked before it has its name: never seen free
            claim.rename(spool / f"{token}{LOCK_SUFFIX}")
            self._held = fd
            self.incoming = spool / token
            self.incoming.mkdir()
            _sweep(spool)
        except OSError as e:
            raise StoreError(f"cannot create the output directory ({os_reason(e)})") from None
        try:
            self.output_id = _own_id(root, self.incoming)
        except BaseException:
            self.close()
            raise

    @property
    def local_root(self) -> Path:
        """The folder the copies are in."""
        return self.root

    def close(self) -> None:
        """Remove this store's temporary directory and lock file (the opening process only)."""
        if self._held is None:
            return
        shutil.rmtree(self.incoming, ignore_errors=True)
        self.incoming.with_name(self.incoming.name + LOCK_SUFFIX).unlink(missing_ok=True)
        os.close(self._held)
        self._held = None

    def put(self, name: str, parts: Sequence[Part], replaces: str | None = None) -> Digest:
        """Write ``root/name`` atomically (a temporary file, then a hard link to it).

        Few system calls, and none that a cache can spare (directories made before): on the
        ingest's writer thread each one hands the interpreter over and waits to get it back.
        A file of that name and size there already (a rerun) is compared, not written again.
        A file there that is no whole copy, what a crash left, is replaced (``_left_by_crash``),
        and so is the copy whose SHA-256 is ``replaces``.
        """
        path = _inside(self.root, name)
        h = hashlib.sha256()
        size = sum(len(p) for p in parts)
        try:
            if _size_of(path) == size and not _left_by_crash(path, parts, size):
                _hash_parts(parts, h)  # stored before (a rerun): compared, not written again
                sha, have = h.hexdigest(), _sha_of(path)
                if have == sha:
                    return Digest(name, sha, size)
                if have != replaces:
                    raise _conflict()
                h = hashlib.sha256()  # the copy this one replaces, of the same size
            self._make_parent(path)
            tmp = self._write_temporary(parts, h)
            sha = h.hexdigest()
            try:
                failpoints.hit(failpoints.COPY_TEMP_WRITTEN)
                if not self._publish(tmp, path):  # stored before, or meanwhile by another writer
                    if self._replaced(tmp, path, parts, size, replaces):
                        return Digest(name, sha, size)
                    return self._same_or_conflict(name, path, sha, size)
            finally:
                tmp.unlink(missing_ok=True)  # (renamed, where links fail)
        except OSError as e:
            raise StoreError(
                f"cannot write a copy to the output directory ({os_reason(e)})"
            ) from None
        return Digest(name, sha, size)

    def _make_parent(self, path: Path) -> None:
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            if len(self._made) >= MADE_LIMIT:  # bounded, however many series an archive has
                self._made.clear()
            self._made.add(path.parent)

    def _write_temporary(self, parts: Sequence[Part], h: hashlib._Hash) -> Path:
        """``parts`` in a new file of this store's temporary directory (hashed into ``h``)."""
        while True:
            tmp = self.incoming / f"{os.getpid()}-{next(self._serial)}.part"
            try:
                fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                continue  # left by an earlier process of this pid
            break
        try:
            _write_parts(fd, parts, h)
        except BaseException:
            tmp.unlink()
            raise
        finally:
            os.close(fd)
        return tmp

    def _publish(self, tmp: Path, path: Path) -> bool:
        """Give ``tmp`` the name ``path`` unless that name exists; whether it was given.

        A hard link never replaces a file, so writers in other threads and processes cannot
        overwrite each other's copies. File systems without hard links take a rename checked
        under this process's lock.
        """
        try:
            try:
                os.link(tmp, path)
            except FileNotFoundError:  # its directory was removed meanwhile: made again
                self._made.discard(path.parent)
                self._make_parent(path)
                os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            with self._lock:
                if path.exists():
                    return False
                tmp.replace(path)
        return True

    def _replaced(
        self, tmp: Path, path: Path, parts: Sequence[Part], size: int, replaces: str | None
    ) -> bool:
        """Whether ``tmp`` took the place of what a crash left at ``path`` (see put).

        Or of the copy there whose SHA-256 is ``replaces``. Judged again while this thread
        holds the store's lock and this process the output directory's (``flock``): writers
        in other threads and processes replace one at a time, and a whole copy one of them
        put there is never overwritten, but for the one named. (No other writer can name a
        copy there meanwhile: a name is only ever given where there is none.)
        """

        def replaceable() -> bool:
            return _left_by_crash(path, parts, size) or (
                replaces is not None and _holds(path, replaces)
            )

        if not replaceable():
            return False
        with self._lock, _directory_locked(self.root):
            if not replaceable():
                return False
            tmp.replace(path)
        return True

    def __getstate__(self) -> dict[str, object]:
        """For worker processes: the paths and id; the opening process keeps the lock file."""
        return {"root": self.root, "incoming": self.incoming, "output_id": self.output_id}

    def __setstate__(self, state: dict[str, object]) -> None:
        """In a worker process: the paths, a thread lock of its own, no lock file."""
        self.root, self.incoming = Path(str(state["root"])), Path(str(state["incoming"]))
        self.output_id = str(state["output_id"])
        self._lock = threading.Lock()
        self._made, self._serial = set(), itertools.count()
        self._held = None

    def _same_or_conflict(self, name: str, path: Path, sha: str, size: int) -> Digest:
        if path.stat().st_size == size and _sha_of(path) == sha:
            return Digest(name, sha, size)
        raise _conflict()

    def remove(self, name: str, sha256: str) -> bool:
        """Remove ``root/name`` if it is the copy whose SHA-256 is ``sha256`` (see put)."""
        path = _inside(self.root, name)
        try:
            with self._lock, _directory_locked(self.root):
                if not _holds(path, sha256):
                    return False
                path.unlink()
        except OSError as e:
            raise StoreError(
                f"cannot remove a copy from the output directory ({os_reason(e)})"
            ) from None
        return True

    def exists(self, name: str, size: int) -> bool:
        """Whether ``root/name`` exists with this size, and begins as every copy does.

        (Zeros of the right size are what a power cut can leave of a copy: not one.)
        """
        try:
            return _look(self.root / name) == (size, True)
        except OSError:
            return False


def _write_parts(fd: int, parts: Sequence[Part], h: hashlib._Hash) -> None:
    """Write and hash ``parts``: buffers in one system call as a rule, file spans in chunks."""
    run: list[bytes | memoryview] = []
    for part in parts:
        if isinstance(part, Span):
            _write_all(fd, run)
            run = []
            for chunk in part.chunks():
                h.update(chunk)
                _write_all(fd, [chunk])
        else:
            h.update(part)
            run.append(part)
    _write_all(fd, run)


def _hash_parts(parts: Sequence[Part], h: hashlib._Hash) -> None:
    for part in parts:
        if isinstance(part, Span):
            for chunk in part.chunks():
                h.update(chunk)
        else:
            h.update(part)


PART10_HEAD = 132  # a copy's preamble and "DICM": every copy begins with them


def _look(path: Path) -> tuple[int, bool]:
    """A file's size, and whether it begins as every copy does (OSError if it cannot be read)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.fstat(fd).st_size, _begins_as_copy(os.pread(fd, PART10_HEAD, 0))
    finally:
        os.close(fd)


def _begins_as_copy(head: bytes) -> bool:
    """Whether a file's first ``PART10_HEAD`` bytes are a preamble and "DICM", as a copy's."""
    return len(head) == PART10_HEAD and head[128:] == b"DICM"


def _left_by_crash(path: Path, parts: Sequence[Part], size: int) -> bool:
    """Whether the file at ``path`` is no whole copy, but what a crash left of one.

    Given its name before its data reached the disk, a copy is empty, zeros, or cut short
    after a power cut: shorter than a preamble and "DICM", without "DICM" where every copy
    has it, or the first bytes of this very copy (``parts``, ``size`` bytes). Another
    object's copy is none of these: it is a conflict, never replaced.
    """
    try:
        with path.open("rb") as f:
            head = f.read(PART10_HEAD)
            if not _begins_as_copy(head):
                return True
            have = os.fstat(f.fileno()).st_size
            if have >= size:
                return False
            f.seek(0)
            return _begins(f, parts, have)
    except OSError:  # removed meanwhile, a folder, unreadable: nothing a crash left
        return False


def _begins(f: BinaryIO, parts: Sequence[Part], n: int) -> bool:
    """Whether the ``n`` bytes of ``f`` are the first ``n`` of ``parts``."""
    for part in parts:
        for chunk in part.chunks() if isinstance(part, Span) else (part,):
            piece = memoryview(chunk)[:n]
            if f.read(len(piece)) != piece:
                return False
            n -= len(piece)
            if n == 0:
                return True
    return n == 0


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return None


def _write_all(fd: int, parts: Sequence[bytes | memoryview]) -> None:
    """Write ``parts`` to ``fd`` in one system call as a rule (a short write goes on)."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        done = os.writev(fd, views)
        while views and done >= len(views[0]):
            done -= len(views.pop(0))
        if views:
            views[0] = views[0][done:]


def _sweep(spool: Path) -> None:
    """Remove what stores that are gone left in ``spool``; a live store's lock stays held."""
    for entry in spool.iterdir():
        if entry.suffix in (LOCK_SUFFIX, CLAIM_SUFFIX):
            try:
                if entry.suffix == CLAIM_SUFFIX and time.time() - entry.stat().st_mtime < 60:  # noqa: PLR2004
                    continue  # a store opening now, between creating its claim and locking it
                fd = os.open(entry, os.O_RDWR)
            except FileNotFoundError:
                continue  # its store closed meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # held: its store is open
            finally:
                os.close(fd)  # (a lock taken here goes with the descriptor)
            shutil.rmtree(spool / entry.stem, ignore_errors=True)
            entry.unlink(missing_ok=True)
        elif entry.is_file():  # a temporary file of an older layout
            entry.unlink(missing_ok=True)
        elif not entry.with_name(entry.name + LOCK_SUFFIX).exists():
            shutil.rmtree(entry, ignore_errors=True)  # its lock is gone: so is its store


def _own_id(root: Path, incoming: Path) -> str:
    """The id of the output at ``root``; given on first use (written whole, then linked)."""
    if (known := read_output_id(root)) is not None:
        return known
    tmp = incoming / "output-id"
    try:
        write_synced(tmp, f"{uuid.uuid4()}\n".encode())  # runs record it: it must outlast a crash
        try:
            os.link(tmp, root / OUTPUT_ID_FILE)  # never replaces: a store opened meanwhile wins
        except FileExistsError:
            pass
        except OSError:  # no hard links here
            if not (root / OUTPUT_ID_FILE).exists():
                tmp.replace(root / OUTPUT_ID_FILE)
        finally:
            tmp.unlink(missing_ok=True)
        sync_directory(root)
    except OSError as e:
        raise StoreError(f"cannot give the output directory its id ({os_reason(e)})") from None
    if (made := read_output_id(root)) is None:  # pragma: no cover - linked just now
        raise StoreError("cannot give the output directory its id")
    return made


@contextlib.contextmanager
def _directory_locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the directory ``path`` (where the file system has one)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # no locks here: the thread's lock is what there is
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_output_id(root: Path) -> str | None:
    """The id kept in the output at ``root``; None where it has none (never written to)."""
    try:
        text = (root / OUTPUT_ID_FILE).read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise StoreError(f"cannot read the output directory's id ({os_reason(e)})") from None
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise StoreError(
            f"the output directory's id file ({OUTPUT_ID_FILE}) is damaged: it holds no UUID"
        ) from None


class LocalCopies:
    """An output directory's copies, read only (checks): nothing is made or written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.output_id = read_output_id(root)

    def look(self, name: str) -> tuple[int, bool] | None:
        """The size of the copy ``name`` and whether it begins as every copy does.

        None where there is no such file. (Zeros, or bytes of no copy, at its start: what a
        power cut can leave of a copy named before its data reached the disk.)
        """
        path = self._path(name)
        try:
            return _look(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as e:
            raise StoreError(f"cannot read a copy ({os_reason(e)})") from None

    def sha256(self, name: str) -> str:
        """The SHA-256 of the copy ``name`` (read whole, in chunks)."""
        try:
            return _sha_of(self._path(name))
        except OSError as e:
            raise StoreError(f"cannot read a copy ({os_reason(e)})") from None

    def names(self) -> Iterator[str]:
        """The name of every copy here, a directory at a time (the store's own files left out)."""
        incoming = self.root / INCOMING
        for folder, files in tree.walk(self.root, descend=lambda p: p != incoming):
            base = folder.relative_to(self.root)
            yield from ((base / f).as_posix() for f in files if f.endswith(".dcm"))

    def _path(self, name: str) -> Path:
        return _inside(self.root, name)


def _inside(root: Path, name: str) -> Path:
    """``root/name``, refused where ``name`` would lead out of ``root``."""
    if ".." in Path(name).parts or Path(name).is_absolute():
        raise StoreError("refusing a copy name outside the output directory")
    return root / name


def _conflict() -> CopyConflictError:
    return CopyConflictError(
        "a copy with this SOP Instance UID exists with other content; not overwritten"
    )


def _holds(path: Path, sha256: str) -> bool:
    """Whether the file at ``path`` has this SHA-256 (False where it cannot be read)."""
    try:
        return _sha_of(path) == sha256
    except OSError:
        return False


def _sha_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
