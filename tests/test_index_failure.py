"""An object whose index rows cannot be built is a recorded failure, and leaves no copy."""

from __future__ import annotations

import base64
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import text

from indexer import extract
from indexer.pipeline import Summary
from indexer.store import db
from tests.builders import (
    SampleShape,
    all_bytes,
    ingest_job,
    make_instance,
    to_bytes,
    with_element,
    write_archive,
)

MARKER = "PHIMARKIDX"


def _ingest(db_url: str, key_file: Path, archive: Path, out: Path) -> tuple[db.Database, Summary]:
    """Ingest ``archive`` into ``out``; the database (to read, then dispose of) and summary."""
    database = db.connect(db_url, out.parent / "state")
    job = ingest_job(database, key_file, out)
    try:
        return database, job.run([archive])
    finally:
        job.output.close()


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
    database, summary = _ingest(db_url, key_file, archive, out)
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


def test_numbers_that_are_none_are_indexed_as_their_bytes(db_url: str, key_file: Path, tmp_path):
    """A Series Number "N/A", a Slice Thickness "1,5" (a decimal comma): kept as they came in
    the copy, and in the index's JSON header as UN bytes (the JSON model has them as numbers
    or not at all); the object is indexed, not refused."""
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    for i, (tag, vr, value, before) in enumerate(
        [
            (0x00200011, b"IS", b"N/A ", 0x00200013),
            (0x00180050, b"DS", b"1,5 ", 0x0020000D),
        ]
    ):
        ds = make_instance(1, 1, 1, i + 1, marker=MARKER)
        del ds[tag]
        (archive / f"{i}.dcm").write_bytes(with_element(to_bytes(ds), tag, vr, value, before))
    database, summary = _ingest(db_url, key_file, archive, out)
    try:
        with database.engine.connect() as c:
            rows = c.execute(
                text(
                    "SELECT i.header->'00200011', i.header->'00180050', s.series_number "
                    "FROM dicom_index.instance i JOIN dicom_index.series s USING (series_uid) "
                    "ORDER BY i.instance_number"
                )
            ).all()
    finally:
        database.engine.dispose()
    assert (summary.files_indexed, summary.files_failed) == (2, 0)
    assert rows[0][0] == {"vr": "UN", "InlineBinary": base64.b64encode(b"N/A ").decode()}
    assert rows[1][1] == {"vr": "UN", "InlineBinary": base64.b64encode(b"1,5 ").decode()}
    assert rows[1][0] == {"vr": "IS", "Value": [1]}  # the other's, a number
    assert rows[0][2] is None  # the series column: no number
    copies = [pydicom.dcmread(p) for p in sorted(out.rglob("*.dcm"))]
    assert {str(c.get("SliceThickness", "")) for c in copies} >= {"1,5"}
