"""Test builders: synthetic instances and archives with planted PHI markers."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tarfile
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32
from pymongo import MongoClient
from sqlalchemy import create_engine, text

from indexer import deid, keys, spans, work
from indexer.pipeline import Ingest, local_output
from indexer.records import SourceFile
from indexer.sample import SampleShape, make_instance, to_bytes, write_archive
from indexer.sources import FileReader, Walker
from indexer.store import db
from indexer.store.files import OUTPUT_ID_FILE, LocalStore, read_output_id

if TYPE_CHECKING:
    from tests.conftest import Cli

__all__ = [
    "MALFORMED",
    "SampleShape",
    "archive_of",
    "big_member",
    "dicomdir",
    "files_sha",
    "in_syntax",
    "index_state",
    "ingest_job",
    "make_instance",
    "malformed",
    "odd_zip",
    "rewrite_in_place",
    "streamed_copy",
    "to_bytes",
    "with_element",
    "with_implicit_element",
    "write_archive",
]


def files_sha(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root but an output's id (random each)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root) != Path(OUTPUT_ID_FILE)
    }


def index_state(cli: Cli, out: Path) -> tuple[object, object, dict[str, str], list[Path]]:
    """What a run left, with ``cli``'s database and MongoDB, in the output ``out``.

    The index's rows (vault included) and pending batches, the MongoDB documents, each copy's
    SHA-256, and the files in ``out`` that are neither copies nor its id (none should be).
    """
    e = create_engine(cli.env["DICOM_INDEX_DATABASE_URL"])
    with e.connect() as c:
        rows = {
            "instance": c.execute(
                text(
                    "SELECT sop_uid, series_uid, study_uid, patient_id, copy_path, copy_sha256, "
                    "copy_bytes, header::text FROM dicom_index.instance ORDER BY 1"
                )
            ).all(),
            "study": c.execute(
                text(
                    "SELECT study_uid, patient_id, study_date, accession_number, "
                    "study_description FROM dicom_index.study ORDER BY 1"
                )
            ).all(),
            "series": c.execute(
                text(
                    "SELECT series_uid, study_uid, modality, series_description "
                    "FROM dicom_index.series ORDER BY 1"
                )
            ).all(),
            "patient": c.execute(
                text(
                    "SELECT patient_id, patient_name, patient_sex, patient_birth_date, "
                    "patient_age FROM dicom_index.patient ORDER BY 1"
                )
            ).all(),
            "vault": c.execute(
                text("SELECT kind, pseudonym, blind_index FROM vault.identity ORDER BY 1, 2, 3")
            ).all(),
            "sources": c.execute(text("SELECT count(*) FROM vault.source")).scalar(),
            "pending": c.execute(
                text("SELECT count(*) FROM dicom_index.ingest_batch WHERE NOT mongo_done")
            ).scalar(),
        }
    e.dispose()
    with MongoClient(cli.env["DICOM_INDEX_MONGO_URL"]) as m:
        mongo = m[cli.env["DICOM_INDEX_MONGO_DB"]]
        docs = {
            # the run and its output's id are the run's own (another output, another id)
            n: sorted(mongo[n].find({}, {"run_id": 0, "output_id": 0}), key=lambda d: d["_id"])
            for n in ("instances", "series", "studies")
        }
    assert read_output_id(out) is not None  # the output has its id
    leftovers = [
        p for p in out.rglob("*") if p.is_file() and p.suffix != ".dcm" and p.name != OUTPUT_ID_FILE
    ]
    return rows, docs, files_sha(out), leftovers


def copies_in(out: Path) -> dict[str, bytes]:
    """The copies in the output ``out``, by name."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.dcm"))}


def check_copies_clean(cli: Cli, out: Path, n: int) -> None:
    """``check-copies --content`` finds the ``n`` copies in ``out`` whole, and no other."""
    p = cli("check-copies", str(out), "--content")
    assert f"{n} copies checked" in p.stdout
    assert "0 missing, 0 unreadable, 0 of another size, 0 damaged, 0 with other content" in (
        p.stdout
    )
    assert "0 not indexed here" in p.stdout


def refusing_archive(root: Path) -> None:
    """Four objects; two carry burned-in text: one beside others in its series, one alone
    with its patient."""
    root.mkdir()
    for i in (1, 2, 3):
        extra = {"BurnedInAnnotation": "YES"} if i == 2 else {}
        (root / f"a{i}.dcm").write_bytes(to_bytes(make_instance(1, 1, 1, i, **extra)))
    lone = make_instance(2, 1, 1, 1, BurnedInAnnotation="YES")
    (root / "b.dcm").write_bytes(to_bytes(lone))


def rewrite_in_place(path: Path, data: bytes) -> None:
    """New bytes of the same size, the modification time set back (as some tools do)."""
    st = path.stat()
    time.sleep(0.02)  # past the kernel's timestamp granularity: the change time moves
    with path.open("r+b") as f:  # the same inode
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
    )


def all_bytes(root: Path) -> list[tuple[str, bytes]]:
    """(relative path, bytes) of every file under root (names included in the search)."""
    return [
        (str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()
    ]


def ingest_job(database: db.Database, key_file: Path, out: Path, **options: object) -> Ingest:
    """An in-process ingest with the basic profile and small batches (``options`` added)."""
    return Ingest(
        database,
        keys.read_key_file(key_file),
        deid.basic_plan(),
        local_output(out),
        id_prefix="DI",
        max_shift_days=3650,
        batch_size=4,
        max_member_bytes=10**8,
        **options,  # type: ignore[arg-type]
    )


_LENGTH_32 = frozenset(vr.value.encode() for vr in EXPLICIT_VR_LENGTH_32)


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element, as raw bytes (any VR, any length)."""
    group, elem = tag >> 16, tag & 0xFFFF
    if vr in _LENGTH_32:
        return struct.pack("<HH2sHL", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def with_implicit_element(data: bytes, tag: int, value: bytes, before: int) -> bytes:
    """An implicit VR little endian ``data`` with a raw element before top-level ``before``."""
    head = struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(value))
    return _inserted(data, head + value, before)


def in_transfer_syntax(ds: Dataset, ts: UID) -> bytes:
    """``ds`` as a DICOM file in transfer syntax ``ts`` (its file meta says so)."""
    ds.file_meta.TransferSyntaxUID = ts
    buf = io.BytesIO()
    ds.save_as(
        buf,
        enforce_file_format=True,
        little_endian=ts.is_little_endian,
        implicit_vr=ts.is_implicit_VR,
    )
    return buf.getvalue()


def with_element(data: bytes, tag: int, vr: bytes, value: bytes, before: int) -> bytes:
    """``data`` with a raw element (any tag, VR and length) before top-level ``before``."""
    return _inserted(data, _element(tag, vr, value), before)


def implicit_item(*elements: tuple[int, bytes], undefined: bool = False) -> bytes:
    """A sequence item of implicit VR little endian elements (tag, value), as raw bytes."""
    body = b"".join(struct.pack("<HHL", t >> 16, t & 0xFFFF, len(v)) + v for t, v in elements)
    if undefined:
        return _ITEM + body + _ITEM_END
    return struct.pack("<HHL", 0xFFFE, 0xE000, len(body)) + body


def with_un_sequence(data: bytes, tag: int, items: bytes, before: int) -> bytes:
    """``data`` with a sequence written as UN of undefined length (PS3.5 6.2.2)."""
    head = struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, b"UN", 0, 0xFFFFFFFF)
    return _inserted(data, head + items + _SEQ_END, before)


def _inserted(data: bytes, raw: bytes, before: int) -> bytes:
    """``raw`` inserted before the top-level element ``before`` of a little endian file."""
    pos = data.index(struct.pack("<HH", before >> 16, before & 0xFFFF), 132 + 100)
    return data[:pos] + raw + data[pos:]


_ITEM = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
_ITEM_END = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
_SEQ = struct.pack("<HH2sHL", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)
_SEQ_END = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)

# malformed element kind -> the reason its object is recorded with (an element of an
# unknown VR, malformed("unknown_vr"), and a number of a length that does not fit its VR that
# the profile removes, malformed("bad_length"), are removed unread instead: their objects
# are indexed)
MALFORMED = {
    "nul_in_charset": "invalid_element",  # pydicom reads Specific Character Set as it reads
    "deep_nesting": "invalid_element",  # 600 sequences, one inside the other
    "kept_bad_length": "invalid_element",  # a kept US of 3 bytes: its length is damaged
    "rows_bad_length": "invalid_element",  # Rows (a column of the index) of 3 bytes
}


def malformed(kind: str, study: int, marker: str) -> bytes:
    """An instance (with PHI markers) holding one malformed element of ``kind``."""
    data = to_bytes(make_instance(study, 1, 1, 1, marker=marker))
    if kind == "unknown_vr":  # Single Collimation Width (FD) with a VR that does not exist,
        # over 6 bytes: no whole FD, so not read as one either (``rawvalue.read_as_known``)
        return _inserted(data, _element(0x00189306, b"D\x82", b"HFS   "), 0x0020000D)
    if kind == "bad_length":  # (0010,0000) UL holds 4 bytes, not 6
        return _inserted(data, _element(0x00100000, b"UL", b"\x01\x00" * 3), 0x00100010)
    if kind == "kept_bad_length":  # Smallest Image Pixel Value (kept) of 3 bytes, not 2
        return _inserted(data, _element(0x00280106, b"US", b"\x01\x00\x00"), 0x7FE00010)
    if kind == "rows_bad_length":
        head = _element(0x00280010, b"US", b"\x00\x00")[:8]
        assert data.count(head) == 1
        pos = data.index(head) + 8
        return data[: pos - 2] + b"\x03\x00" + data[pos : pos + 2] + b"\x00" + data[pos + 2 :]
    if kind == "nul_in_charset":  # a NUL inside a defined term: no character set of DICOM's
        sound = _element(0x00080005, b"CS", b"ISO_IR 100")
        assert data.count(sound) == 1
        return data.replace(sound, _element(0x00080005, b"CS", b"ISO_IR\x00100"))
    if kind == "deep_nesting":
        nest = b""
        for _ in range(600):
            nest = _SEQ + _ITEM + nest + _ITEM_END + _SEQ_END
        return _inserted(data, nest, 0x00200010)
    raise ValueError(kind)


def odd_zip(path: Path, members: dict[str, bytes]) -> None:
    """A zip whose members are made unreadable by the start of their names: ``encrypted``
    (the encryption flag set), ``method`` (compression method 9, which zipfile lacks),
    ``crc`` (a stored byte changed: the CRC fails); other members stay readable."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    buf = bytearray(path.read_bytes())
    pos = buf.find(b"PK\x01\x02")  # the central directory's entries
    while pos >= 0:
        name_length = struct.unpack_from("<H", buf, pos + 28)[0]
        name = buf[pos + 46 : pos + 46 + name_length].decode()
        local = struct.unpack_from("<L", buf, pos + 42)[0]
        if name.startswith("encrypted"):
            buf[pos + 8] |= 1
            buf[local + 6] |= 1
        elif name.startswith("method"):
            struct.pack_into("<H", buf, pos + 10, 9)
            struct.pack_into("<H", buf, local + 8, 9)
        elif name.startswith("crc"):
            local_name, extra = struct.unpack_from("<HH", buf, local + 26)
            buf[local + 30 + local_name + extra + 5] ^= 0xFF
        pos = buf.find(b"PK\x01\x02", pos + 4)
    path.write_bytes(bytes(buf))


def in_syntax(ds: Dataset, uid: str) -> bytes:
    """``ds`` as a file in transfer syntax ``uid``, one pydicom may not know (or no transfer
    syntax at all): written as encapsulated explicit VR little endian under a known UID of
    the same padded length, which is then replaced in the file meta."""
    stand_in = "1.2.840.10008.1.2.4.201"  # HTJ2K Lossless: 23 characters, padded to 24
    if len(uid) + len(uid) % 2 != len(stand_in) + 1:
        raise ValueError("a UID of 23 or 24 characters")
    ds.file_meta.TransferSyntaxUID = stand_in
    ds.PixelData = encapsulate([b"\xff\x0a frame, not decoded \xff\xd9"])
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    at = data.index(stand_in.encode(), 132)
    return data[:at] + uid.encode().ljust(24, b"\0") + data[at + 24 :]


def dicomdir(marker: str) -> bytes:
    """A DICOMDIR (media directory) whose patient record holds ``marker``."""
    record = Dataset()
    record.DirectoryRecordType = "PATIENT"
    record.PatientName = f"Doe^{marker}"
    record.PatientID = f"MRN-{marker}"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.1399.1"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.FileSetID = "CD1"
    ds.DirectoryRecordSequence = Sequence([record])
    return to_bytes(ds)


ZIP_METHODS = {
    "deflated": zipfile.ZIP_DEFLATED,
    "bzip2": zipfile.ZIP_BZIP2,
    "lzma": zipfile.ZIP_LZMA,
}


def archive_of(path: Path, members: dict[str, bytes]) -> None:
    """A zip (stored, or compressed as its stem names: ``deflated.zip``) or a tar (plain, or
    compressed as its suffix names) at ``path``, holding ``members``."""
    if path.name.endswith(".zip"):
        method = ZIP_METHODS.get(path.stem, zipfile.ZIP_STORED)
        with zipfile.ZipFile(path, "w", method, compresslevel=1) as z:
            for name, data in members.items():
                z.writestr(name, data)
    else:
        compression = path.name.rsplit(".", 1)[-1]
        mode = f"w:{compression}" if compression in ("gz", "bz2", "xz") else "w"
        with tarfile.open(path, mode) as t:  # type: ignore[call-overload]
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))


def big_member(path: Path) -> SourceFile:
    """The member ``big.dcm`` of the archive at ``path``, as the walk gives it."""
    items = Walker(b"w" * 32, max_member_bytes=1 << 30).walk([path])
    return next(i for i in items if isinstance(i, SourceFile) and i.locator.endswith("!big.dcm"))


def streamed_copy(
    tmp_path: Path,
    monkeypatch: object,
    data: bytes,
    chunk: int,
    wrapper: type,
    archive: str | None = None,
) -> tuple[bytes, bytes]:
    """(The copy of ``data`` read whole, the copy written as its pixel data is streamed.)

    Streamed in chunks of ``chunk`` bytes (7: aligned with nothing), the copy's pixel data a
    ``wrapper`` span, changed as it is copied; the streamed copy's digest is checked.
    ``archive``: ``data`` a member of an archive of that name (``archive_of``), not a file.
    """
    path = tmp_path / (archive or "big.dcm")
    if archive is not None:
        archive_of(path, {"before.txt": b"x" * 1000, "big.dcm": data, "after.txt": b"y"})
    else:
        path.write_bytes(data)

    def src() -> SourceFile:  # (a compressed tar's member is held or not as it is walked)
        if archive is not None:
            return big_member(path)
        return SourceFile("src-1", str(path), path.stat().st_size, FileReader(path))

    store = LocalStore(tmp_path / "out")
    ctx = work.RunContext(deid.build_plan(), keys.generate(), store, "DI", 30, 1)
    try:
        whole = work.prepare(src(), ctx)
        monkeypatch.setattr(spans, "STREAM_FROM", 1)  # type: ignore[attr-defined]
        monkeypatch.setattr(spans, "CHUNK_BYTES", chunk)  # type: ignore[attr-defined]
        streamed = work.prepare(src(), ctx)
        assert isinstance(streamed.encoded.pixels[-1], wrapper)
        digest = work.write_copy(streamed, ctx).digest
    finally:
        store.close()
    copy = (tmp_path / "out" / streamed.name).read_bytes()
    assert digest.sha256 == hashlib.sha256(copy).hexdigest()
    return whole.encoded.data, copy


class Counted(list):
    """A list that counts the items read from it (by index or by iterating), in ``reads``."""

    reads = 0

    def __getitem__(self, i):
        type(self).reads += 1
        return super().__getitem__(i)

    def __iter__(self):
        for item in super().__iter__():
            type(self).reads += 1
            yield item
