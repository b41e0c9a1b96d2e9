"""An object whose index rows cannot be built is a recorded failure, and leaves no copy."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from indexer import extract
from indexer.store import db
from tests.builders import SampleShape, all_bytes, ingest_job, write_archive

MARKER = "PHIMARKIDX"


def test_an_object_that_cannot_be_indexed_fails_alone(
    db_url: str, key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    archive, out = tmp_path / "archive", tmp_path / "out"
    write_archive(archive, SampleShape(1, 1, 2, 3), marker=MARKER)  # 6 instances
    index_record = extract.index_record
    refused: list[str] = []

    def refuse_instance_2(ds, **kw):
        if ds.InstanceNumber == 2 and ds.SeriesNumber == 1:
            refused.append(kw["copy_name"])
            raise ValueError(MARKER)  # a message that must not reach the record
        return index_record(ds, **kw)

    monkeypatch.setattr(extract, "index_record", refuse_instance_2)
    database = db.connect(db_url, tmp_path / "state")
    job = ingest_job(database, key_file, out)
    try:
        summary = job.run([archive])
    finally:
        job.output.close()
    try:
        with database.engine.connect() as c:
            failures = c.execute(text("SELECT reason, message FROM dicom_index.file_error")).all()
            indexed = c.execute(text("SELECT copy_path FROM dicom_index.instance")).scalars()
            indexed_paths = sorted(indexed)
    finally:
        database.engine.dispose()
    assert (summary.files_indexed, summary.files_failed) == (5, 1)
    assert summary.failure_reasons == {"index_failed": 1}
    assert [(r, m) for r, m in failures] == [
        (
            "index_failed",
            "cannot index the object: an element holds a value that cannot be read (ValueError)",
        )
    ]
    copies = sorted(str(p.relative_to(out)) for p in out.rglob("*.dcm"))
    assert copies == indexed_paths
    assert len(copies) == 5
    assert len(refused) == 1
    assert refused[0] not in copies  # its copy was never written
    assert not any(MARKER.encode() in data for _name, data in all_bytes(out))
