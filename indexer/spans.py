"""Pixel data too large to hold in memory: a span of the source, streamed into the copy.

A whole-slide image or a long multi-frame object can hold gigabytes of pixel data; read whole,
each worker would hold one. Its header is read and de-identified as any other; its Pixel Data
value stays where it lies, a ``Span``, and the output store copies it in chunks: a
``FileSpan`` of a file (or of an archive that holds the object as it is), or
``sources.PackedSpan`` of a compressed archive member, decompressed again as it is copied.
"""

from __future__ import annotations

import contextlib
import functools
import os
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, Self

from indexer.errors import SourceError

CHUNK_BYTES = 8 << 20  # copied at a time
STREAM_FROM = 128 << 20  # bytes: an object this large has its pixel data streamed, not held


Version = tuple[int, int, int, int]
Reader = Callable[[int, int], bytes]  # (at, n): n bytes of a span from at (fewer at its end)


def version_of(st: os.stat_result) -> Version:
    """What changes when a file's content may have: size, modification and change time, inode.

    The change time (ctime) moves on every write and cannot be set back, so a file rewritten
    in place with its size and modification time restored is still seen to have changed.
    """
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class Span(ABC):
    """Bytes ``start`` to ``end`` of a source, read when they are copied, a chunk at a time."""

    __slots__ = ()
    start: int  # (fields of the dataclasses that derive from it)
    end: int

    def __len__(self) -> int:
        """The span's length in bytes."""
        return self.end - self.start

    @abstractmethod
    def chunks(self) -> Iterator[bytes]:
        """The span's bytes, a chunk at a time (``SourceError`` where they cannot be)."""

    def read(self) -> bytes:
        """The span's bytes, all at once (where they must be held after all)."""
        return b"".join(self.chunks())

    @contextlib.contextmanager
    def random_access(self) -> Iterator[Reader | None]:
        """A reader of the span's bytes anywhere (``read(at, n)``), where its source allows.

        A file's span (or an archive's stored member's) reads where it is asked; a
        compressed member's (``sources.PackedSpan``) decompresses on, and from its start
        again for bytes it has gone past; others give None. Past the span's end, fewer bytes
        come.

        Raises
        ------
        SourceError
            The source cannot be read, or changed since its head was read.

        """
        yield None


@dataclass(frozen=True, slots=True)
class FileSpan(Span):
    """Bytes ``start`` to ``end`` of the file at ``path``, as it was when its head was read.

    ``version`` is the file's ``version_of`` then: a file changed since, or while it is
    copied, is refused, never copied half old, half new. ``crc``, for the end of a zip's
    stored member: the CRC-32 of the member's bytes before the span, and the member's own,
    checked as the copy reaches the end (a damaged member is refused, as zipfile refuses it).
    """

    path: Path = field(repr=False)  # a path can hold a name: never shown
    start: int
    end: int
    version: Version
    crc: tuple[int, int] | None = None
    what: str = "file"  # what ``path`` is to the user: the file, or the archive holding it

    def chunks(self) -> Iterator[bytes]:
        """The span's bytes, a chunk at a time.

        Raises
        ------
        SourceError
            The file cannot be read, or changed since its head was read.

        """
        try:
            with self.path.open("rb", buffering=0) as f:
                if version_of(os.fstat(f.fileno())) != self.version:
                    raise changed(self.what)
                f.seek(self.start)
                crc, expected = self.crc or (0, None)
                short = functools.partial(changed, self.what)
                for chunk in chunks_of(f, len(self), f, self.version, short, self.what):
                    if expected is not None:
                        crc = zlib.crc32(chunk, crc)
                    yield chunk
                if expected is not None and crc != expected:  # the copy is not kept
                    raise bad_crc()
        except OSError as e:
            raise SourceError.unreadable(e) from None

    @contextlib.contextmanager
    def random_access(self) -> Iterator[Reader | None]:
        """A reader of the span's bytes anywhere (see ``Span.random_access``)."""
        try:
            with self.path.open("rb", buffering=0) as f:
                if version_of(os.fstat(f.fileno())) != self.version:
                    raise changed(self.what)

                def read(at: int, n: int) -> bytes:
                    at = min(max(0, at), len(self))
                    f.seek(self.start + at)
                    got = f.read(max(0, min(n, len(self) - at)))
                    if version_of(os.fstat(f.fileno())) != self.version:
                        raise changed(self.what)
                    return got

                yield read
        except OSError as e:
            raise SourceError.unreadable(e) from None


def bad_crc() -> SourceError:
    """The error of an archive member whose content does not match its CRC."""
    return SourceError("an archive member is damaged (its CRC does not match)", reason="unreadable")


def chunks_of(
    f: BinaryIO,
    n: int,
    raw: BinaryIO,
    version: Version,
    short: Callable[[], SourceError],
    what: str = "file",
) -> Iterator[bytes]:
    """``n`` bytes of ``f`` from where it stands, a chunk at a time.

    After each chunk the file ``raw`` (``f`` itself, or what ``f`` decompresses; ``what``
    it is to the user) must still be at ``version``: a source written to while it is read
    is refused (its bytes may be mixed). ``f`` ending first raises ``short()``.
    """
    while n:
        chunk = f.read(min(CHUNK_BYTES, n))
        if not chunk:
            raise short()
        if version_of(os.fstat(raw.fileno())) != version:
            raise changed(what)
        n -= len(chunk)
        yield chunk


def changed(what: str = "file") -> SourceError:
    """The error of a source (``what``: a file, or the archive holding it) changed as read."""
    return SourceError(f"the {what} changed while it was read; not copied", reason="unreadable")


class Hasher(Protocol):
    """A running hash (``blake3``, ``hashlib``'s)."""

    def update(self, data: bytes, /) -> object:
        """Hash ``data`` too."""

    def copy(self) -> Self:
        """An independent hash of what this one has seen."""

    def hexdigest(self) -> str:
        """The digest of what it has seen, as hex."""


@dataclass(frozen=True, slots=True)
class Tapped(Span):
    """``whole``'s bytes, hashed as they pass on, with no read of its own.

    ``before`` has seen the source's bytes before them; ``digest`` is the source's, once a
    pass has read them all.
    """

    whole: Span
    start: int
    end: int
    before: Hasher = field(repr=False, compare=False)
    seen: list[str] = field(default_factory=list, repr=False, compare=False)

    def chunks(self) -> Iterator[bytes]:
        """``whole``'s bytes, a chunk at a time, hashed on their way."""
        h = self.before.copy()
        for chunk in self.whole.chunks():
            h.update(chunk)
            yield chunk
        self.seen[:] = [h.hexdigest()]

    @contextlib.contextmanager
    def random_access(self) -> Iterator[Reader | None]:
        """``whole``'s reader (``Span.random_access``): nothing read so is hashed."""
        with self.whole.random_access() as read:
            yield read

    @property
    def digest(self) -> str | None:
        """The hex digest of the source's bytes, once a pass read them all; None before."""
        return self.seen[0] if self.seen else None


@dataclass(frozen=True, slots=True)
class Cut(Span):
    """The first ``end - start`` bytes of ``whole``: pixel data cut to its image's size.

    ``whole`` is still read to its end, so what its end checks (a zip member's CRC, a source
    changed while read) is checked as before; the bytes past the cut are dropped.
    """

    whole: Span
    start: int
    end: int

    def chunks(self) -> Iterator[bytes]:
        """The first bytes of ``whole``, a chunk at a time; the rest read and dropped."""
        left = len(self)
        for chunk in self.whole.chunks():
            if left:
                yield chunk[:left]
                left -= min(left, len(chunk))
