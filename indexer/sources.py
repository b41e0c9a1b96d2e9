"""Archive walking and safe opening: folders, .zip, .tar, .tar.gz / .tgz.

Yields a SourceFile for every candidate object, or a Failure for what cannot be opened. A
source's path never leaves this module except as ``locator``, which goes to the vault only;
everything else sees the PHI-free ``source_id`` (a keyed hash of the locator).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import hmac
import logging
import lzma
import os
import sys
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISDIR, S_ISLNK, S_ISREG
from typing import BinaryIO, Literal, Self, cast

from indexer import spans, tree, zipdir
from indexer.errors import ConfigError, SourceError, os_reason
from indexer.records import Failure, SourceFile
from indexer.spans import FileSpan, Span, Version, version_of
from indexer.store.files import OUTPUT_ID_FILE

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
BOMB_RATIO = 200  # a member that inflates more than this ...
BOMB_MIN_BYTES = 10 * 1024 * 1024  # ... to more than this is refused as a zip bomb
Item = SourceFile | Failure
LINK_NOWHERE = "a symbolic link points nowhere"
LINK_MEMBER = ("link_member", "an archive member is a link: not followed")
ZIP_DIRECTORY_BUFFER = 1 << 16
# gzip, bzip2, xz: a tar that must be read front to back (the longest magic last)
COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
TAR_STEP = 1 << 16  # bytes of a compressed tar read at a time past its end-of-archive


def source_id(key: bytes, locator: str) -> str:
    """The PHI-free id of a source: ``src-`` and 16 hex digits of an HMAC of its locator."""
    return (
        "src-"
        + hmac.new(key, locator.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:16]
    )


class SeenNames:
    """The member names met in one archive, as a Bloom filter: 1 MiB for any number of them.

    A member whose name was met before (an appended tar, a zip written twice) has its offset
    in its locator, so that it shares no locator and no source id with the first: the vault
    tells them apart. Rarely (below 0.01% of names at 100,000 members, 3% at a million) a
    name seems met that was not, and its locator has its offset too, which is true anyway.
    """

    BITS = 1 << 23
    __slots__ = ("_bits",)

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS >> 3)

    def add(self, name: str) -> bool:
        """Add ``name``; whether it seems met before."""
        digest = hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=12).digest()
        met = True
        for i in (0, 4, 8):
            bit = int.from_bytes(digest[i : i + 4], "little") & (self.BITS - 1)
            byte, mask = bit >> 3, 1 << (bit & 7)
            if not self._bits[byte] & mask:
                met = False
                self._bits[byte] |= mask
        return met


def member_locator(path: Path, name: str, offset: int, seen: SeenNames) -> str:
    """Where an archive member is: ``archive!name``, and ``@offset`` for a name met before."""
    locator = f"{path}!{name}"
    return f"{locator}@{offset}" if seen.add(name) else locator


def _folder_ids(folders: Sequence[Path]) -> set[tuple[int, int]]:
    ids = set()
    for f in folders:
        try:
            st = f.stat()
        except OSError:
            continue  # not there: nothing to skip
        ids.add((st.st_dev, st.st_ino))
    return ids


def is_archive(name: str) -> bool:
    """Whether a file name has an archive suffix we open."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def refuse_inside(roots: Iterable[Path], outputs: Sequence[Path]) -> None:
    """Refuse a source that is an output directory or lies inside one.

    Its copies would be read as originals: de-identified again, they would be indexed as
    new objects (pseudonyms of pseudonyms). An output inside a source is fine: not walked.
    """
    outs = [out.resolve() for out in outputs]
    if not outs:
        return
    for r in roots:  # once: a long list of sources is streamed
        if any(r.resolve().is_relative_to(o) for o in outs):
            raise ConfigError(
                "a source is the output directory or inside it: its copies would be read as "
                "new objects; give a source and an output apart"
            )


class Roots:
    """The sources of a run: those named on the command line, then those a list names.

    Iterable more than once (the run counts files for its ETA, then walks them). A list in a
    file is streamed each time, never held; a list on standard input ("-") is read once and
    held (for a list of millions, give a file).
    """

    def __init__(self, named: Sequence[Path], listed: Path | None = None) -> None:
        self.named = tuple(named)
        self.listed = listed
        self._held: tuple[Path, ...] | None = None
        if listed is not None and str(listed) == "-":
            self._held = tuple(listed_paths(sys.stdin.buffer))

    def __iter__(self) -> Iterator[Path]:
        yield from self.named
        if self._held is not None:
            yield from self._held
        elif self.listed is not None:
            try:
                with self.listed.open("rb") as f:
                    yield from listed_paths(f)
            except OSError as e:
                raise ConfigError(f"cannot read the list of sources ({os_reason(e)})") from None


LIST_CHUNK = 1 << 16


def listed_paths(f: BinaryIO) -> Iterator[Path]:
    """The paths a list names: one per line, or NUL-separated (``find -print0``).

    The separator is the first of the two the list holds; a line's carriage return (a list
    made on Windows) and empty entries are dropped. Names are bytes: those that are not
    UTF-8 keep their bytes (``os.fsdecode``).
    """
    sep: bytes | None = None
    rest = b""
    while chunk := f.read(LIST_CHUNK):
        rest += chunk
        if sep is None:
            sep = _separator(rest)
            if sep is None:
                continue  # no separator yet: one long first name
        *entries, rest = rest.split(sep)
        yield from _paths(entries, sep)
    yield from _paths([rest], sep or b"\n")


def _separator(head: bytes) -> bytes | None:
    nul, line = head.find(b"\0"), head.find(b"\n")
    if nul < 0 and line < 0:
        return None
    return b"\0" if line < 0 or 0 <= nul < line else b"\n"


def _paths(entries: list[bytes], sep: bytes) -> Iterator[Path]:
    for entry in entries:
        name = entry.rstrip(b"\r") if sep == b"\n" else entry
        if name:
            yield Path(os.fsdecode(name))


def below(folders: Sequence[Path], roots: Iterable[Path]) -> list[Path]:
    """The ``folders`` that lie below one of the ``roots`` (not at it): walked past.

    The roots are streamed (a list of a million sources is never held), each resolved once,
    until every folder is found below one.
    """
    resolved = {f: f.resolve() for f in folders}
    found: set[Path] = set()
    if not resolved:
        return []
    for r in roots:
        top = r.resolve()
        found.update(f for f, rf in resolved.items() if rf != top and rf.is_relative_to(top))
        if len(found) == len(resolved):
            break
    return [f for f in folders if f in found]


class Walker:
    """Walks sources in a stable order; ``max_member_bytes`` bounds what one member may hold.

    Folders in ``skip`` (the output directory, when it lies inside a source) are not walked.
    """

    def __init__(self, key: bytes, *, max_member_bytes: int, skip: Sequence[Path] = ()) -> None:
        self.key = key
        self.max_member_bytes = max_member_bytes
        self.skip = tuple(skip)

    def _fail(self, locator: str, outcome: str, reason: str, message: str) -> Failure:
        return Failure(source_id(self.key, locator), locator, outcome, reason, message)

    def walk(self, roots: Iterable[Path]) -> Iterator[Item]:
        """Every candidate under ``roots`` (files, folders, archives), then failures inline."""
        for root in roots:
            yield from self._walk_root(root)

    def _walk_root(self, root: Path) -> Iterator[Item]:
        try:
            if root.is_dir():
                yield from self._walk_dir(root)
            elif root.is_file():
                yield from self._file(root)
            else:
                yield self._not_a_file(root)
        except OSError as e:
            yield self._fail(
                str(root), "failed", "unreadable", f"cannot open a source ({os_reason(e)})"
            )

    def _walk_dir(self, top: Path) -> Iterator[Item]:
        """The items under ``top``, depth first, without recursion (a tree of any depth).

        Each open folder's names are held, sorted; not os.DirEntry objects, which take
        three times the memory (a flat folder of a million files: 100 MB, not 300).
        """
        seen = _folder_ids(self.skip)  # as they are now (an output is made before the walk)
        skipped = frozenset(seen)
        names = yield from self._listing(top, seen, skipped)
        stack = [(top, iter(names))]
        while stack:
            folder, rest = stack[-1]
            name = next(rest, None)
            if name is None:
                stack.pop()
                continue
            p = folder / name
            try:
                st = p.stat()  # follows links; loops are caught by `seen`
            except OSError as e:
                yield self._unstattable(p, e)
                continue
            if S_ISDIR(st.st_mode):
                names = yield from self._listing(p, seen, skipped, st)
                stack.append((p, iter(names)))
            elif S_ISREG(st.st_mode):
                yield from self._file(p, st)
            else:
                yield self._special(p)

    def _not_a_file(self, path: Path) -> Failure:
        """What a source that is neither folder nor file is: a dangling link, or special."""
        if path.exists():
            return self._special(path)
        if path.is_symlink():
            return self._fail(str(path), "failed", "broken_link", LINK_NOWHERE)
        return self._fail(str(path), "failed", "missing", "a source does not exist")

    def _special(self, path: Path) -> Failure:
        return self._fail(
            str(path), "skipped", "special_file", "a device, FIFO or socket is not a file"
        )

    def _unstattable(self, path: Path, e: OSError) -> Failure:
        """A name in a folder that cannot be looked up: a link to nowhere, or unreadable."""
        if path.is_symlink():
            return self._fail(str(path), "failed", "broken_link", LINK_NOWHERE)
        return self._fail(str(path), "failed", "unreadable", f"cannot open a file ({os_reason(e)})")

    def _listing(
        self,
        d: Path,
        seen: set[tuple[int, int]],
        skipped: frozenset[tuple[int, int]],
        st: os.stat_result | None = None,
    ) -> Generator[Item, None, list[str]]:
        """The names in folder ``d``, sorted (none: skipped, or failed, yielded)."""
        try:
            st = d.stat() if st is None else st
            folder = (st.st_dev, st.st_ino)
            if folder in skipped:  # the output: not a source
                return []
            if folder in seen:
                yield self._fail(
                    str(d),
                    "skipped",
                    "symlink_loop",
                    "a folder link leads back to a folder already walked",
                )
                return []
            seen.add(folder)
            with os.scandir(d) as it:
                # an output's id file is the tool's own, never an object: not even recorded
                return sorted(e.name for e in it if e.name != OUTPUT_ID_FILE)
        except OSError as e:
            yield self._fail(
                str(d), "failed", "unreadable", f"cannot list a folder ({os_reason(e)})"
            )
            return []

    def _file(self, path: Path, st: os.stat_result | None = None) -> Iterator[Item]:
        locator = str(path)
        if is_archive(path.name):
            yield from self._archive(path)
            return
        try:
            st = path.stat() if st is None else st
        except OSError as e:
            yield self._fail(
                locator, "failed", "unreadable", f"cannot stat a file ({os_reason(e)})"
            )
            return
        yield SourceFile(
            source_id(self.key, locator),
            locator,
            st.st_size,
            FileReader(path),
            ":".join(map(str, version_of(st))),
        )

    def _archive(self, path: Path) -> Iterator[Item]:
        name = path.name.lower()
        try:
            if name.endswith(".zip"):
                yield from self._zip(path)
            else:
                yield from self._tar(path)
        except EOFError:  # a compressed tar's stream ends early
            yield self._fail(
                str(path), "failed", "bad_archive", "cannot read an archive (cut short)"
            )
        except (zlib.error, lzma.LZMAError, gzip.BadGzipFile) as e:
            yield self._fail(str(path), "failed", "bad_archive", _damaged(e))
        except (OSError, zipfile.BadZipFile, tarfile.TarError) as e:
            message = f"cannot read an archive ({os_reason(e)})"
            if _bz2_damaged(e):
                message = _damaged(e)
            yield self._fail(str(path), "failed", "bad_archive", message)

    def _member_problem(
        self, name: str, size: int, packed: int | None = None
    ) -> tuple[str, str] | None:
        # not PurePosixPath: it interns every part of every name, and the table grows
        if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
            return "unsafe_member", "an archive member has an absolute or '..' path"
        if size > self.max_member_bytes:
            return "member_too_large", (
                f"an archive member is larger than the {self.max_member_bytes}-byte limit"
            )
        if packed is not None and size > BOMB_MIN_BYTES and size > packed * BOMB_RATIO:
            return "zip_bomb", f"an archive member inflates more than {BOMB_RATIO}-fold"
        if is_archive(name):
            return "nested_archive", "an archive inside an archive is not opened"
        return None

    def _zip(self, path: Path) -> Iterator[Item]:
        # the directory is streamed in its own order: nothing of a member is held once it is
        # yielded, and each member is read when the pipeline asks, from its entry
        with path.open("rb", buffering=ZIP_DIRECTORY_BUFFER) as f:
            archive = _identity(os.fstat(f.fileno()))
            seen = SeenNames()
            for entry in zipdir.entries(f):
                if entry.is_dir:
                    continue
                locator = member_locator(path, entry.name, entry.offset, seen)
                if S_ISLNK(entry.mode):  # its content is the link's target
                    yield self._fail(locator, "skipped", *LINK_MEMBER)
                    continue
                problem = self._member_problem(entry.name, entry.size, entry.packed)
                if problem:
                    yield self._fail(locator, _outcome(problem[0]), *problem)
                    continue
                yield SourceFile(
                    source_id(self.key, locator),
                    locator,
                    entry.size,
                    ZipMemberReader(path, entry, self.max_member_bytes, archive),
                    f"{entry.size}:{entry.crc}:{entry.date_time}",
                )

    def _tar(self, path: Path) -> Iterator[Item]:
        """A tar's members in archive order, read through once.

        A plain tar is read at each member's offset when the pipeline asks, so its members
        are never held; a compressed one must be read front to back, and each member is
        read as the walk passes it (held until its work is done; ``held_bytes``), but for
        a large one (``spans.STREAM_FROM``), which is decompressed again where it is worked
        on, its pixel data as it is copied.
        """
        with path.open("rb") as f:
            archive = _identity(os.fstat(f.fileno()))
            plain = not f.read(len(COMPRESSED_MAGIC[-1])).startswith(COMPRESSED_MAGIC)
            f.seek(0)
            # a tar header's checksum is of its own fields: a member's content is known
            # unchanged only in the same tar, unchanged (members of one name: by offset)
            tar = ":".join(map(str, (archive[0], *archive[1])))
            seen = SeenNames()
            # a compressed tar is decompressed here, not by tarfile: its stream keeps what one
            # read decompressed and copies the rest of it on each later read, so members that
            # compress well (blank pixels) took time quadratic in their size
            # (in its stream mode, tarfile only reads)
            stream = f if plain else cast("BinaryIO", _Steps(_decompressed(f)))
            mode: Literal["r:", "r|"] = "r:" if plain else "r|"
            with tarfile.open(fileobj=stream, mode=mode) as t:
                for m in t:
                    t.members.clear()  # type: ignore[attr-defined]  # it keeps them all
                    if not m.isdir():
                        locator = member_locator(path, m.name, m.offset, seen)
                        yield from self._tar_member(
                            path, t, m, archive, tar, locator, packed=not plain
                        )
            while not plain and stream.read(TAR_STEP):  # to its end, where its checksum is
                pass

    def _tar_member(
        self,
        path: Path,
        t: tarfile.TarFile,
        m: tarfile.TarInfo,
        archive: ArchiveId,
        tar: str,  # the tar's version, in its members'
        locator: str,
        *,
        packed: bool,
    ) -> Iterator[Item]:
        if not m.isfile():
            yield self._fail(locator, "skipped", *_odd_member(m))
            return
        problem = self._member_problem(m.name, m.size)
        if problem:
            yield self._fail(locator, _outcome(problem[0]), *problem)
            return
        reader: Callable[[], bytes]
        if not m.issparse() and (not packed or m.size >= spans.STREAM_FROM):
            reader = RegionReader(path, m.offset_data, m.size, archive, packed=packed)
        else:
            f = t.extractfile(m)
            reader = BytesReader(f.read(self.max_member_bytes + 1) if f is not None else b"")
        version = f"{m.size}:{m.mtime}:{m.chksum}:{m.offset}:{tar}"
        yield SourceFile(source_id(self.key, locator), locator, m.size, reader, version)


def _odd_member(m: tarfile.TarInfo) -> tuple[str, str]:
    """The reason and message for a tar member that is neither file nor folder."""
    if m.issym() or m.islnk():
        return LINK_MEMBER
    return "special_file", "an archive member is a device or FIFO, not a file"


def _outcome(reason: str) -> str:
    return "skipped" if reason == "nested_archive" else "failed"


HEAD_BYTES = 132  # preamble and "DICM"


def could_be_dicom(head: bytes) -> bool:
    """Whether a file whose first bytes are ``head`` may be DICOM, as the reader judges it.

    A Part 10 file has "DICM" after its preamble; one without a preamble can only begin with
    a file meta (group 0002) or an identifying (group 0008) element. Anything else is read as
    no DICOM without looking further.
    """
    return head[128:132] == b"DICM" or head[:2] in (b"\x02\x00", b"\x08\x00")


@dataclass(frozen=True, slots=True)
class FileReader:
    """Reads a file; picklable, so worker processes can read for themselves."""

    path: Path

    def __call__(self) -> bytes:
        """The file's bytes; only its first ones where those say it is no DICOM.

        A video or a disc image beside the objects is not read whole to find that out.
        """
        with self.path.open("rb", buffering=0) as f:
            head = f.read(HEAD_BYTES)
            if len(head) < HEAD_BYTES or _no_dicom(head):
                return head
            f.seek(0)
            return f.readall()


@dataclass(frozen=True, slots=True)
class BytesReader:
    """Bytes already read (tar members, streamed in order)."""

    data: bytes = field(repr=False)

    def __call__(self) -> bytes:
        """The member's bytes."""
        return self.data


def held_bytes(item: object) -> int:
    """Bytes a walked item holds until its work is done: a compressed tar's member."""
    if isinstance(item, SourceFile) and isinstance(item.read, BytesReader):
        return len(item.read.data)
    return 0


ArchiveId = tuple[int, Version]  # device, and what changes with the content (``version_of``)


def _identity(st: os.stat_result) -> ArchiveId:
    return (st.st_dev, version_of(st))


@dataclass(frozen=True, slots=True)
class RegionReader:
    """Reads ``length`` bytes at ``start`` of a tar: a member.

    ``start`` counts in the tar as it is, or, if ``packed``, in the tar decompressed (its
    large members, decompressed again where they are worked on). ``archive`` is the
    identity of the archive the member was listed from: read from another (the archive
    replaced or rewritten since), the member is refused.
    """

    path: Path
    start: int
    length: int
    archive: ArchiveId
    packed: bool = False

    def __call__(self) -> bytes:
        """The member's bytes; only its first ones where those say it is no DICOM.

        Raises
        ------
        SourceError
            The archive changed since it was listed, ends within the member, or its
            compressed stream is damaged.
        OSError
            The archive cannot be read.

        """
        with _region(self) as region, member_errors():
            head = region.f.read(min(HEAD_BYTES, self.length))
            if _no_dicom(head):
                return head
            data = head + region.f.read(self.length - len(head))  # on: a stream goes forward
        if len(data) != self.length:
            raise _cut_short()
        return data


def _no_dicom(head: bytes) -> bool:
    """Whether an object's first bytes say it is no DICOM (a video beside the objects)."""
    return len(head) == HEAD_BYTES and not could_be_dicom(head)


def _bz2_damaged(e: BaseException) -> bool:
    """bz2's only error of damaged data: a bare OSError, no system error (no errno)."""
    return type(e) is OSError and e.errno is None and e.args == ("Invalid data stream",)


def _damage(e: BaseException) -> str:
    """What a decompressor's error says of its data, by kind (zlib's and bz2's bare ones)."""
    if _bz2_damaged(e):
        return "invalid bzip2 data"
    return "invalid deflate data" if isinstance(e, zlib.error) else type(e).__name__


def _damaged(e: BaseException) -> str:
    return f"cannot read an archive (its compressed data is damaged: {_damage(e)})"


def _cut_short() -> SourceError:
    return SourceError("an archive member is cut short", reason="truncated")


def _member_damaged(e: BaseException) -> SourceError:
    return SourceError(f"an archive member is damaged ({_damage(e)})", reason="unreadable")


@contextlib.contextmanager
def member_errors() -> Iterator[None]:
    """A compressed member's errors as PHI-free ``SourceError`` (their text can name it)."""
    try:
        yield
    except zipdir.EncryptedMemberError:
        raise SourceError("an archive member is encrypted", reason="unreadable") from None
    except EOFError:  # the compressed stream ends early
        raise _cut_short() from None
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as e:
        if str(e).startswith("Bad CRC-32"):  # zipfile's; the rest of its text names the member
            raise spans.bad_crc() from None
        raise _member_damaged(e) from None
    except OSError as e:
        if _bz2_damaged(e):
            raise _member_damaged(e) from None
        raise
    except NotImplementedError as e:  # a compression method zipfile lacks
        raise SourceError(
            f"an archive member is compressed by a method that cannot be read ({os_reason(e)})",
            reason="unreadable",
        ) from None


def _decompressed(f: BinaryIO) -> BinaryIO:
    """A compressed tar open as ``f``, decompressed as it is read (by its magic, as tarfile)."""
    magic = f.read(len(COMPRESSED_MAGIC[-1]))
    f.seek(0)
    if magic.startswith(COMPRESSED_MAGIC[0]):
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if magic.startswith(COMPRESSED_MAGIC[1]):
        return bz2.BZ2File(f)  # type: ignore[return-value]
    return lzma.LZMAFile(f)  # type: ignore[return-value]


class _Steps:
    """A decompressed stream read a step at a time, for tarfile (``read`` only).

    Each read returns what one step decompressed (``read1``): a read that reaches a cut in
    the stream first returns what lies before it, so a tar's members there are still walked,
    and the next read raises EOFError.
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def read(self, n: int) -> bytes:
        """At most ``n`` bytes, as many as one step gives; empty at the end."""
        return self._f.read1(n)  # type: ignore[attr-defined, no-any-return]


def _skip(f: BinaryIO, n: int) -> None:
    """Read past ``n`` bytes of the decompressed stream ``f`` (a step at a time, not held)."""
    while n:
        data = f.read(min(n, spans.CHUNK_BYTES))
        if not data:
            raise _cut_short()
        n -= len(data)


def _listed(path: Path, archive: ArchiveId) -> BinaryIO:
    """The archive at ``path``, open, if it is still the one its members were listed from."""
    f = path.open("rb")
    if _identity(os.fstat(f.fileno())) != archive:
        f.close()
        raise _replaced()
    return f


def _still_listed(path: Path, archive: ArchiveId) -> bool:
    """Whether ``path`` is still the archive its members were listed from."""
    try:
        return _identity(path.stat()) == archive
    except OSError:
        return False


def _replaced() -> SourceError:
    return SourceError("the archive changed after it was listed; run again", reason="unreadable")


@dataclass(frozen=True, slots=True)
class ZipMemberReader:
    """Reads one zip member, at most ``limit`` bytes (a zip bomb declares less than it holds).

    ``archive`` is the identity of the archive the member was listed from: read from another
    (the archive replaced or rewritten since), the member is refused.
    """

    path: Path
    member: zipdir.Entry
    limit: int
    archive: ArchiveId

    def __call__(self) -> bytes:
        """The member's bytes, read at its offset (the archive's directory is not read again).

        Only its first bytes where those say it is no DICOM (its CRC is then left unchecked).

        Raises
        ------
        SourceError
            The archive changed since it was listed, or the member is encrypted, compressed
            by a method zipfile lacks, or damaged (its CRC, its compressed stream).
            zipfile's text can name the member: kept out.
        OSError
            The archive cannot be read, or the member holds more than ``limit`` bytes.

        """
        with (
            _listed(self.path, self.archive) as f,
            member_errors(),
            zipdir.open_member(f, self.member) as member,
        ):
            head = member.read(HEAD_BYTES)
            if _no_dicom(head):
                return head
            member.seek(0)  # within what was decompressed: nothing decompressed again
            data = member.read(self.limit + 1)
        if len(data) > self.limit:
            raise OSError("archive member exceeds its size limit")
        return data


PackedReader = RegionReader | ZipMemberReader  # a compressed member's, or a packed tar's


@dataclass(slots=True)
class Region:
    """Where a source's bytes lie, in a file open for reading; a context manager.

    A whole file, a plain tar's member, a zip's stored member: ``f`` is the file, and the
    bytes lie at ``start`` in it as they are. A compressed member (``packed`` reads it):
    ``f`` decompresses ``raw`` as it is read, and ``start`` counts in what it gives. ``f``
    stands at ``start``; it may be read on and moved forward, not back (for a compressed
    member, back means decompressing from the beginning again). A compressed tar's stream
    (``kept`` is the tar's identity) is kept open for the tar's next member when the region
    closes without an error (``STREAMS``).
    """

    path: Path = field(repr=False)
    f: BinaryIO = field(repr=False)
    start: int
    length: int
    version: Version  # the file's, when opened: what a span of it is checked against
    packed: PackedReader | None = None
    raw: BinaryIO | None = field(default=None, repr=False)
    kept: ArchiveId | None = None
    crc: int | None = None  # a zip's stored member's: checked over its head and a span's end
    whole: bool = False  # the file itself, not an archive's member

    def span(self, start: int, end: int, head: bytes) -> Span:
        """Bytes ``start`` to ``end`` of the region, read again where they are copied.

        ``head``: the region's first bytes, ``start`` of them at least (the span to its end
        of a zip's stored member is checked against the member's CRC as it is copied).
        """
        if self.packed is not None:
            return PackedSpan(self.packed, start, end)
        crc = None
        if self.crc is not None and end == self.length:
            assert len(head) >= start  # noqa: S101 - what the header was read from
            crc = (zlib.crc32(head[:start]), self.crc)
        what = "file" if self.whole else "archive"
        return FileSpan(
            self.path, self.start + start, self.start + end, self.version, crc, what=what
        )

    def __enter__(self) -> Self:
        """Itself."""
        return self

    def __exit__(self, kind: type[BaseException] | None, *_exc: object) -> None:
        """Close the file, or keep a compressed tar's stream where it stands."""
        if kind is None and self.kept is not None and self.raw is not None:
            STREAMS.give(_Stream(self.kept, self.raw, self.f))
            return
        _close(self.f, self.raw)


def _close(f: BinaryIO, raw: BinaryIO | None) -> None:
    try:
        f.close()
    finally:
        if raw is not None:
            raw.close()


@dataclass(frozen=True, slots=True)
class _Stream:
    """A compressed tar open as ``raw``, decompressed as ``f``, which stands where it was left."""

    archive: ArchiveId
    raw: BinaryIO = field(repr=False)
    f: BinaryIO = field(repr=False)


class Streams:
    """A process's compressed tars, kept open and decompressed up to where they were left.

    A compressed tar can only be read from its beginning. Each of its large members is read
    twice where it is worked on, its header and then, as its copy is written, its pixel data;
    were each read to decompress the tar from its beginning, a tar of many large members
    would cost time quadratic in its size. A region that closes cleanly hands its stream
    back here, and the next read of the same tar takes the stream that stands furthest on
    without having passed the point it must read from. A header read and a copy, one after
    the other or on two threads, leapfrog from member to member on two streams: the tar is
    decompressed about twice in each process that works on it, whatever its number of
    members. A large MP4 file's movie box at its end is read ahead of the copy
    (``PackedSpan.random_access``), on a third stream, which leapfrogs as the others do.
    At most ``keep`` streams are kept (the oldest are closed; a third is kept only where
    one was opened); ``close`` closes them all, at the end of a run (they hold decompressed
    originals).
    """

    def __init__(self, keep: int = 3) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._kept: list[_Stream] = []

    def __len__(self) -> int:
        """How many streams are kept."""
        return len(self._kept)

    def take(self, archive: ArchiveId, at: int) -> _Stream | None:
        """The kept stream of ``archive`` that stands furthest on, but not past ``at``."""
        with self._lock:
            fit = [s for s in self._kept if s.archive == archive and s.f.tell() <= at]
            best = max(fit, key=lambda s: s.f.tell(), default=None)
            if best is not None:
                self._kept.remove(best)
            return best

    def give(self, stream: _Stream) -> None:
        """Keep ``stream`` for the next read of its tar."""
        with self._lock:
            self._kept.append(stream)
            old = self._kept[: -self.keep]
            del self._kept[: -self.keep]
        for s in old:
            _close(s.f, s.raw)

    def close(self) -> None:
        """Close every kept stream."""
        with self._lock:
            old, self._kept = self._kept, []
        for s in old:
            _close(s.f, s.raw)


STREAMS = Streams()


def file_region(path: Path) -> Region:
    """All of the file at ``path``, open.

    Raises
    ------
    OSError
        The file cannot be opened.

    """
    f = path.open("rb", buffering=0)
    st = os.fstat(f.fileno())
    return Region(path, f, 0, st.st_size, version_of(st), whole=True)


def region_of(reader: Callable[[], bytes]) -> Region | None:
    """The region a reader reads, open; None: its bytes are held already (a small member).

    Raises
    ------
    SourceError
        The archive changed since it was listed; or the member is damaged, cut short,
        encrypted or compressed by a method that cannot be read.
    OSError
        The file cannot be opened.

    """
    if isinstance(reader, FileReader):
        return file_region(reader.path)
    if isinstance(reader, RegionReader | ZipMemberReader):
        return _region(reader)
    return None


def _region(reader: PackedReader, at: int = 0) -> Region:
    """The region of an archive member, open and standing at its start (see ``region_of``).

    ``at``: standing that far into the member instead (a compressed one's first bytes are
    decompressed and dropped).
    """
    if isinstance(reader, RegionReader) and reader.packed:
        return _tar_region(reader, at)
    f = _listed(reader.path, reader.archive)
    version = reader.archive[1]
    try:
        with member_errors():
            if isinstance(reader, RegionReader):
                f.seek(reader.start + at)
                return Region(reader.path, f, reader.start + at, reader.length - at, version)
            size = reader.member.size
            if zipdir.stored_as_is(reader.member):
                start = zipdir.data_offset(f, reader.member) + at
                f.seek(start)
                crc = reader.member.crc if at == 0 else None
                return Region(reader.path, f, start, size - at, version, crc=crc)
            member: BinaryIO = zipdir.open_member(f, reader.member)  # type: ignore[assignment]
            _skip(member, at)
            return Region(reader.path, member, at, size - at, version, reader, f)
    except BaseException:
        f.close()
        raise


def _tar_region(reader: RegionReader, at: int) -> Region:
    """A compressed tar's member, from ``at``: decompressed by a kept stream where one fits."""
    start = reader.start + at
    kept = STREAMS.take(reader.archive, start)
    if kept is None:
        raw = _listed(reader.path, reader.archive)
        try:
            f = _decompressed(raw)
        except BaseException:
            raw.close()
            raise
    else:
        raw, f = kept.raw, kept.f
        if not _still_listed(reader.path, reader.archive):  # the stream reads what was
            _close(f, raw)
            raise _replaced()
    try:
        with member_errors():
            _skip(f, start - f.tell())
        version = reader.archive[1]
        return Region(
            reader.path, f, start, reader.length - at, version, reader, raw, reader.archive
        )
    except BaseException:
        _close(f, raw)
        raise


@dataclass(frozen=True, slots=True)
class PackedSpan(Span):
    """Bytes ``start`` to ``end`` of a compressed archive member, decompressed again as copied.

    The member is read from its beginning (a compressed tar's, from the tar's, or from where
    a stream ``STREAMS`` kept stands); bytes before the span are decompressed and dropped.
    An archive changed since it was listed, or while the span is read, is refused; a zip
    member's CRC is checked when the span reaches its end.
    """

    reader: PackedReader = field(repr=False)  # its path can hold a name: never shown
    start: int
    end: int

    def chunks(self) -> Iterator[bytes]:
        """The span's bytes, a chunk at a time.

        Raises
        ------
        SourceError
            The archive cannot be read, changed, or its member is damaged or cut short.

        """
        try:
            with _region(self.reader, self.start) as region, member_errors():
                assert region.raw is not None  # noqa: S101 - a packed member's region
                yield from spans.chunks_of(
                    region.f, len(self), region.raw, region.version, _cut_short, "archive"
                )
        except OSError as e:
            raise SourceError.unreadable(e) from None

    @contextlib.contextmanager
    def random_access(self) -> Iterator[spans.Reader | None]:
        """A reader of the span's bytes anywhere (see ``Span.random_access``).

        It decompresses on to where it is asked, and from the member's start again for
        bytes before the last ``BEHIND_BYTES`` it has gone past.
        """
        ahead = _Ahead(self)
        try:
            yield ahead.read
        finally:
            ahead.close()


BEHIND_BYTES = 64 << 10  # of a compressed member read ahead: kept, for a read a little back


class _Ahead:
    """A compressed member's span, read where it is asked (``PackedSpan.random_access``)."""

    def __init__(self, span: PackedSpan) -> None:
        self._span = span
        self._region: Region | None = None
        self._pos = 0  # where the region stands, in the span
        self._behind = b""  # the bytes just before it

    def read(self, at: int, n: int) -> bytes:
        """``n`` bytes from ``at`` (fewer at the span's end).

        Raises
        ------
        SourceError
            The archive cannot be read, changed, or its member is damaged or cut short.

        """
        at = min(max(0, at), len(self._span))
        n = max(0, min(n, len(self._span) - at))
        if self._region is None or at < self._pos - len(self._behind):
            self.close()
            self._region = _region(self._span.reader, self._span.start + at)
            self._pos, self._behind = at, b""
        gone = at - (self._pos - len(self._behind))
        got = bytearray(self._behind[gone : gone + n] if gone < len(self._behind) else b"")
        try:
            with member_errors():
                for _skipped in self._chunks(max(0, at - self._pos)):
                    pass
                got += b"".join(self._chunks(at + n - self._pos))
        except BaseException as e:
            region, self._region = self._region, None
            _close(region.f, region.raw)
            if isinstance(e, OSError):
                raise SourceError.unreadable(e) from None
            raise
        return bytes(got)

    def _chunks(self, n: int) -> Iterator[bytes]:
        """The next ``n`` bytes of the region (none if ``n`` < 0), kept behind as they pass."""
        region = self._region
        assert region is not None  # noqa: S101 - opened by ``read``
        assert region.raw is not None  # noqa: S101 - a packed member's region
        for chunk in spans.chunks_of(
            region.f, max(0, n), region.raw, region.version, _cut_short, "archive"
        ):
            self._pos += len(chunk)
            self._behind = (self._behind + chunk[-BEHIND_BYTES:])[-BEHIND_BYTES:]
            yield chunk

    def close(self) -> None:
        """Close the region (a compressed tar's stream is kept, ``STREAMS``)."""
        region, self._region = self._region, None
        if region is not None:
            region.__exit__(None)


def _file_counts(roots: Iterable[Path], *, zips: bool) -> Iterator[int | None]:
    """Files the walk will meet, a root file or a folder at a time; None: unknown.

    A tar's are unknown; a zip's are counted from its directory if ``zips``.
    """
    members = _members if zips else lambda _path: None
    for root in roots:
        if root.is_file():
            yield members(root) if is_archive(root.name) else 1
            continue
        for folder, files in tree.walk(root):
            n: int | None = 0
            for name in files:
                count = members(folder / name) if is_archive(name) else 1
                n = None if n is None or count is None else n + count
            yield n


def _members(path: Path) -> int | None:
    """The members of a zip, from its directory (read, never held); None for a tar.

    A tar must be read to its end to know. An archive that cannot be read counts once (its
    failure is recorded once).
    """
    if not path.name.lower().endswith(".zip"):
        return None
    try:
        with path.open("rb", buffering=ZIP_DIRECTORY_BUFFER) as f:
            return sum(not e.is_dir for e in zipdir.entries(f))
    except (OSError, zipfile.BadZipFile):
        return 1


def at_least(roots: Iterable[Path], n: int) -> bool:
    """Whether the walk will meet ``n`` files or more (an archive: assumed so); stops early."""
    seen = 0
    for count in _file_counts(roots, zips=False):
        if count is None:
            return True
        seen += count
        if seen >= n:
            return True
    return False


def count_files(roots: Iterable[Path]) -> int | None:
    """How many files the walk will meet, for an ETA; None when a tar makes it unknown."""
    total = 0
    for count in _file_counts(roots, zips=True):
        if count is None:
            return None
        total += count
    return total
