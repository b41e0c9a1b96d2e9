"""A zip's central directory read an entry at a time, and one member read from its entry.

``zipfile`` reads the whole central directory, then holds an object per member for as long
as the archive is open, in every process that reads from it: about 650 bytes a member, so
131 MB for 200,000 members, and a worker that reads one member holds them all. Here the
walk streams the directory, keeping nothing of an entry once it is yielded, and a worker
opens a member at its offset from the few numbers of its ``Entry``; ``zipfile`` only
decompresses it and checks its CRC.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

END = struct.Struct("<4s4H2LH")  # end of central directory record
END64_LOCATOR = struct.Struct("<4sLQL")
END64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record
CENTRAL = struct.Struct("<4s6H3L5H2L")  # central directory file header, before its name
LOCAL = struct.Struct("<4s5H3L2H")  # local file header, before its name
END_SIG, END64_LOCATOR_SIG, END64_SIG = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
CENTRAL_SIG, LOCAL_SIG = b"PK\x01\x02", b"PK\x03\x04"
MAX_COMMENT = 0xFFFF
ZIP64_EXTRA = 0x0001
FLAG_ENCRYPTED, FLAG_PATCHED, FLAG_STRONG, FLAG_UTF8 = 0x1, 0x20, 0x40, 0x800
ALL_ONES_32 = 0xFFFF_FFFF

DateTime = tuple[int, int, int, int, int, int]


class EncryptedMemberError(Exception):
    """A member is encrypted: it is never decrypted (no password is ever asked for)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One member as the central directory describes it (picklable: workers read by it)."""

    name: str  # as zipfile decodes it; bytes that are not UTF-8 kept (surrogateescape)
    offset: int  # of its local header in the file
    method: int
    flags: int
    crc: int
    packed: int  # bytes stored
    size: int  # bytes once decompressed, as declared
    date_time: DateTime
    mode: int  # the Unix file mode, from the external attributes

    @property
    def is_dir(self) -> bool:
        """Whether the entry is a folder."""
        return self.name.endswith("/")


def entries(f: BinaryIO) -> Iterator[Entry]:
    """The entries of the zip open as ``f``, in the order of its central directory.

    Raises
    ------
    zipfile.BadZipFile
        ``f`` is no zip, spans several disks, or its directory is damaged; entries before
        the damage have been yielded.

    """
    start, size, shift = _directory(f)
    f.seek(start)
    left = size
    while left > 0:
        head = _exactly(f, CENTRAL.size, "a truncated central directory")
        (
            sig,
            _made,
            _need,
            flags,
            method,
            time,
            date,
            crc,
            packed,
            length,
            n_name,
            n_extra,
            n_comment,
            _disk,
            _internal,
            external,
            offset,
        ) = CENTRAL.unpack(head)
        if sig != CENTRAL_SIG:
            raise zipfile.BadZipFile("a bad central directory entry")
        raw = _exactly(f, n_name, "a truncated central directory")
        extra = _exactly(f, n_extra, "a truncated central directory")
        f.seek(n_comment, 1)
        length, packed, offset = _zip64(extra, length, packed, offset)
        yield Entry(
            name=_name(raw, flags),
            offset=offset + shift,
            method=method,
            flags=flags,
            crc=crc,
            packed=packed,
            size=length,
            date_time=(
                (date >> 9) + 1980,
                (date >> 5) & 0xF,
                date & 0x1F,
                time >> 11,
                (time >> 5) & 0x3F,
                (time & 0x1F) * 2,
            ),
            mode=external >> 16,
        )
        left -= CENTRAL.size + n_name + n_extra + n_comment


def _exactly(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise zipfile.BadZipFile(what)
    return data


def _name(raw: bytes, flags: int) -> str:
    """A member's name as zipfile gives it: UTF-8 when flagged, else code page 437.

    Bytes flagged UTF-8 that are not are kept, as a folder's file names are, not refused.
    """
    name = raw.decode("utf-8", "surrogateescape") if flags & FLAG_UTF8 else raw.decode("cp437")
    nul = name.find("\0")
    return name if nul < 0 else name[:nul]


def _directory(f: BinaryIO) -> tuple[int, int, int]:
    """Where the central directory starts, its size, and how far the zip is shifted.

    A zip with bytes before it (a self-extracting archive) records offsets from its own
    start: ``shift`` is added to each.
    """
    length = f.seek(0, 2)
    tail_length = min(length, END.size + MAX_COMMENT)
    f.seek(length - tail_length)
    tail = f.read(tail_length)
    at = _end_record(tail)
    _sig, _disk, _disk_cd, _here, _count, size, offset, _comment = END.unpack_from(tail, at)
    end = length - tail_length + at  # the directory ends where this record begins
    if end >= END64_LOCATOR.size:
        f.seek(end - END64_LOCATOR.size)
        sig, _disk, _where, disks = END64_LOCATOR.unpack(f.read(END64_LOCATOR.size))
        if sig == END64_LOCATOR_SIG:
            if disks > 1:
                raise zipfile.BadZipFile("a zip that spans several disks")
            end -= END64_LOCATOR.size + END64.size
            f.seek(end)
            record = f.read(END64.size)
            if len(record) == END64.size and record[:4] == END64_SIG:
                size, offset = END64.unpack(record)[8:10]
            else:
                end += END64_LOCATOR.size + END64.size  # as zipfile: no record, no zip64
    start = end - size
    if start < 0 or offset > start:
        raise zipfile.BadZipFile("a bad offset for the central directory")
    return start, size, start - offset


def _end_record(tail: bytes) -> int:
    """Where in ``tail`` the end record is: the last one whose comment ends the file.

    An archive comment can hold the record's signature (zipfile then refuses the zip); with
    bytes after the comment, the last record whose comment fits is taken.
    """
    fallback = -1
    at = tail.rfind(END_SIG)
    while at >= 0:
        if at + END.size <= len(tail):
            ends = at + END.size + END.unpack_from(tail, at)[-1]  # where its comment ends
            if ends == len(tail):
                return at
            if ends < len(tail):
                fallback = max(fallback, at)
        at = tail.rfind(END_SIG, 0, at)
    if fallback < 0:
        raise zipfile.BadZipFile("no end of central directory: not a zip")
    return fallback


def _zip64(extra: bytes, size: int, packed: int, offset: int) -> tuple[int, int, int]:
    """The sizes and offset, from the zip64 extra field where the entry's own overflowed."""
    while len(extra) >= 4:  # noqa: PLR2004 - an extra field's id and length
        kind, n = struct.unpack_from("<HH", extra)
        if n + 4 > len(extra):
            raise zipfile.BadZipFile("a damaged extra field")
        if kind == ZIP64_EXTRA:
            data = extra[4 : n + 4]
            values = [size, packed, offset]
            for i in range(3):
                if values[i] == ALL_ONES_32:
                    if len(data) < 8:  # noqa: PLR2004 - one 64-bit value
                        raise zipfile.BadZipFile("a damaged zip64 extra field")
                    (values[i],) = struct.unpack_from("<Q", data)
                    data = data[8:]
            size, packed, offset = values
        extra = extra[n + 4 :]
    return size, packed, offset


def stored_as_is(entry: Entry) -> bool:
    """Whether a member's bytes lie in the zip as they are: not compressed, not encrypted."""
    return (
        entry.method == zipfile.ZIP_STORED
        and not entry.flags & (FLAG_ENCRYPTED | FLAG_PATCHED | FLAG_STRONG)
        and entry.packed == entry.size
    )


def data_offset(f: BinaryIO, entry: Entry) -> int:
    """Where the member ``entry`` of the zip open as ``f`` begins, after its local header.

    Raises
    ------
    zipfile.BadZipFile
        No local header at the entry's offset.

    """
    f.seek(entry.offset)
    head = f.read(LOCAL.size)
    if len(head) != LOCAL.size or head[:4] != LOCAL_SIG:
        raise zipfile.BadZipFile("no member header at its offset")
    n_name, n_extra = LOCAL.unpack(head)[9:]
    return int(entry.offset + LOCAL.size + n_name + n_extra)


def open_member(f: BinaryIO, entry: Entry) -> zipfile.ZipExtFile:
    """A reader of the member ``entry`` of the zip open as ``f``: decompressed, CRC checked.

    Raises
    ------
    zipfile.BadZipFile
        No local header at the entry's offset.
    NotImplementedError
        Compressed by a method zipfile lacks, patched, or strongly encrypted.
    EncryptedMemberError
        Encrypted.

    """
    f.seek(data_offset(f, entry))
    if entry.flags & (FLAG_PATCHED | FLAG_STRONG):
        raise NotImplementedError("patched data or strong encryption")
    if entry.flags & FLAG_ENCRYPTED:
        raise EncryptedMemberError
    info = zipfile.ZipInfo()  # no name: it stays out of any error zipfile raises
    info.compress_type = entry.method
    info.compress_size = entry.packed
    info.file_size = entry.size
    info.CRC = entry.crc
    info.flag_bits = entry.flags
    return zipfile.ZipExtFile(f, "r", info)
