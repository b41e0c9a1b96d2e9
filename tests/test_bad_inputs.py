"""A good archive salted with every kind of bad input (#6): the good land once, the bad are
recorded with their reason, nothing leaks, and the exit code says some failed."""

from __future__ import annotations

import base64
import os
import struct
import tarfile
import zipfile
from collections import Counter

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)
from sqlalchemy import text

from indexer.deid import pseudonym
from indexer.keys import read_key_file
from indexer.work import configure_pydicom
from indexer.workers import POOL_THRESHOLD
from tests.builders import (
    MALFORMED,
    dicomdir,
    in_syntax,
    in_transfer_syntax,
    make_instance,
    malformed,
    odd_zip,
    to_bytes,
    with_element,
)

MARK = "PHIMARK"
configure_pydicom()


def _add_malformed(add_bad):
    for study, (kind, reason) in enumerate(MALFORMED.items(), start=20):
        add_bad(f"malformed_{kind}.dcm", malformed(kind, study, MARK), reason)


@pytest.fixture
def corpus(tmp_path):  # noqa: PLR0915 - a statement or two per kind of bad input
    root = tmp_path / f"Doe_{MARK}"
    root.mkdir()
    good: list[str] = []

    def add_good(name, data, ds):
        (root / name).write_bytes(data)
        good.append(str(ds.SOPInstanceUID))

    n = iter(range(1, 100))
    for _ in range(3):
        ds = make_instance(1, 1, 1, next(n), marker=MARK)
        add_good(f"good{len(good)}.dcm", to_bytes(ds), ds)
    ds = make_instance(1, 1, 2, next(n), marker=MARK)
    add_good("no_preamble.dcm", to_bytes(ds)[132:], ds)
    for ts in (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian):
        ds = make_instance(1, 1, 3, next(n), marker=MARK)
        add_good(f"ts_{ts.name.split()[0]}.dcm", in_transfer_syntax(ds, ts), ds)
    ds = make_instance(1, 1, 4, next(n), marker=MARK)
    ds.PixelData = encapsulate([b"\xff\xd8 not really a jpeg \xff\xd9"])
    ds["PixelData"].VR = "OB"
    add_good("compressed.dcm", in_transfer_syntax(ds, JPEGBaseline8Bit), ds)
    ds = make_instance(1, 1, 4, next(n), marker=MARK)  # JPEG XL: newer than pydicom 3.0
    add_good("jpeg_xl.dcm", in_syntax(ds, "1.2.840.10008.1.2.4.110"), ds)
    # Patient Position with an unknown VR: the element removed, the object indexed
    add_good("unknown_vr.dcm", malformed("unknown_vr", 19, MARK), make_instance(19, 1, 1, 1))
    ds = make_instance(1, 1, 5, next(n), marker=MARK, StudyDate="NOTADATE")
    add_good("invalid_value.dcm", to_bytes(ds), ds)
    ds = make_instance(1, 1, 6, next(n), marker=MARK)
    ds.private_block(0x0011, "BIG BLOB", create=True).add_new(0x01, "OB", b"\x01" * 5_000_000)
    add_good("huge_private.dcm", to_bytes(ds), ds)

    expected = Counter()

    def add_bad(name, data, reason):
        (root / name).write_bytes(data)
        expected[reason] += 1

    add_bad("notes.txt", f"patient {MARK}".encode(), "not_dicom")
    add_bad("empty.dcm", b"", "empty_file")
    add_bad("DICOMDIR", dicomdir(MARK), "dicomdir")  # a CD's directory: skipped
    add_bad("truncated.dcm", to_bytes(make_instance(2, 1, 1, 1, marker=MARK))[:-200], "truncated")
    no_syntax = in_syntax(make_instance(2, 1, 2, 1, marker=MARK), "1.2.3.4.5.6.7.8.9.10.11")
    add_bad("no_syntax.dcm", no_syntax, "unknown_transfer_syntax")
    uids = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID")
    for i, kw in enumerate(uids):
        ds = make_instance(3, 1, 1, i + 1, marker=MARK)
        delattr(ds, kw)
        add_bad(f"missing_{kw}.dcm", to_bytes(ds), "missing_uid")
    us = make_instance(
        4, 1, 1, 1, marker=MARK, Modality="US", SOPClassUID="1.2.840.10008.5.1.4.1.1.6.1"
    )
    add_bad("ultrasound.dcm", to_bytes(us), "burned_in_annotation")
    twin = make_instance(1, 1, 1, 1, marker=MARK, SliceThickness="9.0")  # same UIDs, other data
    add_bad("zz_conflict.dcm", to_bytes(twin), "duplicate_sop_conflict")
    _add_malformed(add_bad)
    ds = make_instance(8, 1, 1, 1, marker=MARK)
    comment = b"\xff\xfe\x00\x12" + str(ds.PatientName).encode().ljust(16)
    second = b"\xff\xd8" + comment + b"\xff\xd9"
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9", second])
    ds["PixelData"].VR = "OB"
    item = struct.pack("<HHL", 0xFFFE, 0xE000, len(second)) + second
    damaged = in_transfer_syntax(ds, JPEGBaseline8Bit).replace(item, b"\xfe\x4f" + item[2:])
    add_bad("damaged_item.dcm", damaged, "bad_pixels")  # the frame's text never read
    (root / "loop").symlink_to(root)
    expected["symlink_loop"] += 1
    (root / "dangling.dcm").symlink_to(root / "nowhere")
    expected["broken_link"] += 1
    os.mkfifo(root / "pipe.dcm")  # a read would wait for ever: never opened
    expected["special_file"] += 1
    with tarfile.open(root / "links.tar", "w") as t:
        info = tarfile.TarInfo("passwd.dcm")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(info)
    expected["link_member"] += 1
    with zipfile.ZipFile(root / "archive.zip", "w", zipfile.ZIP_DEFLATED) as z:
        ds = make_instance(5, 1, 1, 1, marker=MARK)
        z.writestr("ok.dcm", to_bytes(ds))
        good.append(str(ds.SOPInstanceUID))
        z.writestr("../../escape.dcm", b"x")
        expected["unsafe_member"] += 1
        z.writestr("bomb.dcm", b"\0" * 30_000_000)
        expected["zip_bomb"] += 1
        z.writestr("inner.zip", b"PK\x05\x06" + b"\0" * 18)
        expected["nested_archive"] += 1
    member = to_bytes(make_instance(7, 1, 1, 1, marker=MARK))
    odd_zip(root / "odd.zip", {f"{k}_{MARK}.dcm": member for k in ("encrypted", "method", "crc")})
    expected["unreadable"] += 3
    return root, good, expected


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_inputs_are_recorded_and_the_rest_lands(
    workers, cli, corpus, tmp_path, engine, key_file
):
    root, good, expected = corpus
    if workers > 1:  # enough files for worker processes: the bad ones fail in a worker
        for i in range(POOL_THRESHOLD):
            ds = make_instance(6, 1, 1, i + 1, marker=MARK)
            (root / f"more{i:03d}.dcm").write_bytes(to_bytes(ds))
            good.append(str(ds.SOPInstanceUID))
    p = cli(
        "ingest",
        str(root),
        "--out",
        str(tmp_path / "out"),
        "--workers",
        str(workers),
        "--json",
        check=1,
    )
    with engine.connect() as c:
        reasons = Counter(
            r.reason for r in c.execute(text("SELECT reason FROM dicom_index.file_error"))
        )
        messages = c.execute(text("SELECT message FROM dicom_index.file_error")).scalars().all()
        sops = c.execute(text("SELECT sop_uid FROM dicom_index.instance")).scalars().all()
    assert reasons == expected
    key = read_key_file(key_file).pseudonym
    assert sorted(sops) == sorted(pseudonym.uid(key, uid) for uid in good)  # each once
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == len(good)
    for text_ in [*messages, *cli.log]:
        assert MARK not in text_
    assert '"files_failed": ' in p.stdout
    with engine.connect() as c:
        skipped = c.execute(
            text("SELECT reason FROM dicom_index.file_error WHERE outcome = 'skipped'")
        ).scalars()
        assert set(skipped) == {
            "not_dicom",
            "empty_file",
            "dicomdir",
            "symlink_loop",
            "nested_archive",
            "special_file",
            "link_member",
        }
    # the big-endian, deflated, implicit VR and compressed objects were carried in their own
    # syntax
    syntaxes = {
        str(pydicom.dcmread(f).file_meta.TransferSyntaxUID)
        for f in (tmp_path / "out").rglob("*.dcm")
    }
    assert {
        str(ImplicitVRLittleEndian),
        str(ExplicitVRBigEndian),
        str(DeflatedExplicitVRLittleEndian),
        str(JPEGBaseline8Bit),
        "1.2.840.10008.1.2.4.110",  # JPEG XL
    } <= syntaxes


def test_strict_stops_at_the_first_failure(cli, corpus, tmp_path, engine):
    root, _good, _expected = corpus
    p = cli(
        "ingest",
        str(root),
        "--out",
        str(tmp_path / "out"),
        "--strict",
        "--batch-size",
        "2",
        check=3,
    )
    assert "aborted" in p.stdout
    with engine.connect() as c:
        status = c.execute(text("SELECT status FROM dicom_index.ingest_run")).scalar()
        failed = c.execute(
            text("SELECT count(*) FROM dicom_index.file_error WHERE outcome = 'failed'")
        ).scalar()
    assert status == "aborted"
    assert failed >= 1


def test_numbers_no_index_column_or_header_holds_leave_the_objects_indexed(cli, tmp_path, engine):
    """An IS past what PostgreSQL's integer columns hold failed the whole batch, and so the
    run (exit 3, nothing indexed); so did a DS or FD that is NaN or infinite (JSON has no
    such number). A UV past 2^63 - 1, or an IS past 64 bits, no MongoDB document holds. An
    IS of -inf (which pydicom cannot read) failed its object. Each object is indexed: the
    column empty, the header's value as its bytes (UN)."""
    root = tmp_path / "archive"
    root.mkdir()
    odd = {
        2: {"InstanceNumber": "99999999999"},  # past 2^31 - 1: no column holds it
        3: {"InstanceNumber": "99999999999999999999"},  # past 2^63 - 1: no header either
        4: {"SliceThickness": "NaN"},
        5: {"SliceThickness": "-inf"},
        6: {"DiffusionBValue": float("nan")},
        7: {"DiffusionBValue": [1.0, float("inf")]},
        8: {"FileLengthInContainer": 2**63 + 5},
    }
    for i in range(1, 10):
        ds = make_instance(1, 1, 1, i, marker=MARK, **odd.get(i, {}))
        (root / f"{i}.dcm").write_bytes(to_bytes(ds))
    del ds.SeriesNumber  # in a series of its own, of Series Number -inf
    ds.SeriesInstanceUID += ".9"
    data = with_element(to_bytes(ds), 0x00200011, b"IS", b"-inf", 0x00200013)
    (root / "9.dcm").write_bytes(data)
    cli("ingest", str(root), "--out", str(tmp_path / "out"))
    cli("check")  # PostgreSQL and MongoDB agree: every document was written
    with engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT header->'00200013'->'Value'->>0 AS n, instance_number, header"
                " FROM dicom_index.instance"
            )
        ).all()
        series = c.execute(text("SELECT series_number FROM dicom_index.series")).scalars()
        assert sorted(series, key=str) == [1, None]  # the second's: -inf
    assert len(rows) == 9
    by_number = {r.n: r for r in rows if r.n is not None}
    assert by_number["99999999999"].instance_number is None  # in the header, as a number
    assert by_number["8"].instance_number == 8
    unknown = [r.header for r in rows if r.header["00200013"]["vr"] == "UN"]
    assert [base64.b64decode(h["00200013"]["InlineBinary"]) for h in unknown] == [
        b"99999999999999999999"
    ]
    held = [
        base64.b64decode(r.header[tag]["InlineBinary"])
        for r in rows
        for tag in ("00180050", "00189087", "0008040D", "00200011")
        if tag in r.header and r.header[tag]["vr"] == "UN"
    ]
    assert sorted(held) == sorted(
        [
            b"NaN ",
            b"-inf",
            struct.pack("<d", float("nan")),
            struct.pack("<2d", 1.0, float("inf")),
            struct.pack("<Q", 2**63 + 5),
            b"-inf",
        ]
    )
