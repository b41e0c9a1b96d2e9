"""Parallel ingest (#6): N worker processes give exactly what one process gives."""

from __future__ import annotations

import json

import pydicom
from sqlalchemy import text

from indexer.deid import pseudonym
from indexer.keys import read_key_file
from indexer.workers import POOL_THRESHOLD
from tests.builders import SampleShape, files_sha, write_archive


def test_two_workers_equal_one(cli, tmp_path, engine):
    archive = tmp_path / "archive.zip"
    n = write_archive(archive, SampleShape(3, 2, 2, 6))  # a zip: members read in the workers
    assert n > POOL_THRESHOLD
    p = cli("ingest", str(archive), "--out", str(tmp_path / "a"), "--workers", "2", "--json")
    assert json.loads(p.stdout)["files_indexed"] == n
    with engine.connect() as c:
        rows = c.execute(
            text("SELECT sop_uid, copy_sha256 FROM dicom_index.instance ORDER BY 1")
        ).all()
    assert len(rows) == n
    p = cli("ingest", str(archive), "--out", str(tmp_path / "b"), "--workers", "1", "--json")
    assert json.loads(p.stdout)["files_already_indexed"] == n
    assert files_sha(tmp_path / "a") == files_sha(tmp_path / "b")
    with engine.connect() as c:
        assert (
            rows
            == c.execute(
                text("SELECT sop_uid, copy_sha256 FROM dicom_index.instance ORDER BY 1")
            ).all()
        )


def test_unchanged_files_are_skipped_on_rerun(cli, tmp_path, engine, key_file):
    archive = tmp_path / "archive"
    n = write_archive(archive, SampleShape(2, 1, 2, 3))
    out = tmp_path / "out"
    cli("ingest", str(archive), "--out", str(out))
    before = files_sha(out)
    p = cli("ingest", str(archive), "--out", str(out), "--json")
    summary = json.loads(p.stdout)
    assert summary["files_unchanged"] == n  # not read again
    assert summary["bytes_read"] == 0  # and not counted as read
    assert summary["files_indexed"] == n
    assert summary["studies"] == 2
    assert files_sha(out) == before
    # a changed file is read again; a missing copy is written again
    changed = min(archive.rglob("*.dcm"))
    changed.touch()
    touched_copy = pseudonym.uid(
        read_key_file(key_file).pseudonym, pydicom.dcmread(changed).SOPInstanceUID
    )
    victim = next(p for p in sorted(out.rglob("*.dcm")) if p.stem != touched_copy)
    victim.unlink()
    p = cli("ingest", str(archive), "--out", str(out), "--json")
    assert json.loads(p.stdout)["files_unchanged"] == n - 2
    assert files_sha(out) == before
    # other de-identification settings: nothing counts as unchanged
    p = cli(
        "ingest", str(archive), "--out", str(tmp_path / "out2"), "--option", "retain-uids", "--json"
    )
    assert json.loads(p.stdout)["files_unchanged"] == 0
    with engine.connect() as c:
        seen = c.execute(text("SELECT count(*) FROM dicom_index.source_seen")).scalar()
    assert seen >= n
