"""Parallel ingest (#6): N worker processes give exactly what one process gives."""

from __future__ import annotations

import json

from sqlalchemy import text

from indexer.pipeline import POOL_THRESHOLD
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
