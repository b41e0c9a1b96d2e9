"""An output directory inside a source is not read as a source; a source inside one is refused.

Copies read as originals would be de-identified again and indexed as new objects
(pseudonyms of pseudonyms): the index would double with every run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from indexer.errors import ConfigError
from indexer.store import db
from indexer.store.files import OUTPUT_ID_FILE
from tests.builders import SampleShape, ingest_job, write_archive

MARKER = "PHIMARK"
SHAPE = SampleShape(patients=1, studies=1, series=2, instances=3)  # 6 objects
NOTE = "note: the output directory is inside a source: it is not walked"


@pytest.fixture
def sql_only(cli):
    cli.env["DICOM_INDEX_MONGO_ENABLED"] = "false"
    return cli


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    write_archive(root, SHAPE, marker=MARKER)
    return root


def _copies(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.dcm") if ".incoming" not in p.parts)


def test_an_output_inside_the_source_is_not_ingested(sql_only, archive, engine):
    out = archive / "deidentified"
    for _ in range(2):
        p = sql_only("ingest", str(archive), "--out", str(out), "--json")
        summary = json.loads(p.stdout)
        assert summary["files_seen"] == 6  # never the copies
        assert summary["files_skipped"] == 0  # nor the output's own files
        assert NOTE in p.stderr
    assert summary["files_unchanged"] == 6
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM dicom_index.instance")).scalar() == 6
        assert c.execute(text("SELECT count(*) FROM dicom_index.patient")).scalar() == 1
    assert len(_copies(out)) == 6


def test_a_source_inside_the_output_is_refused_before_anything_is_written(sql_only, tmp_path):
    out = tmp_path / "out"
    inside = out / f"Doe_{MARKER}"
    write_archive(inside, SHAPE, marker=MARKER)
    for command in ("ingest", "deid"):
        p = sql_only(command, str(inside), "--out", str(out), check=3)
        assert "a source is the output directory or inside it" in p.stderr
        assert MARKER not in p.stderr
    p = sql_only("ingest", str(out), "--out", str(out), check=3)  # the output itself
    assert "a source is the output directory or inside it" in p.stderr
    assert not (out / OUTPUT_ID_FILE).exists()
    assert not (out / ".incoming").exists()


def test_the_batch_anonymizer_does_not_anonymize_its_own_output(sql_only, archive):
    out = archive / "deidentified"
    for _ in range(2):
        p = sql_only("deid", str(archive), "--out", str(out))
        assert p.stdout.startswith("6 de-identified")
        assert NOTE in p.stderr
    assert len(_copies(out)) == 6


def test_verify_reads_no_output_inside_the_originals_as_an_original(sql_only, archive):
    out = archive / "deidentified"
    sql_only("deid", str(archive), "--out", str(out))
    p = sql_only("verify", "--original", str(archive), "--deidentified", str(out))
    assert "6 files scanned, 0 leaks" in p.stdout


def test_the_library_refuses_a_source_inside_the_output(db_url, key_file, tmp_path):
    out = tmp_path / "out"
    write_archive(out / "inside", SHAPE, marker=MARKER)
    database = db.connect(db_url, tmp_path / "state")
    job = ingest_job(database, key_file, out)
    try:
        with pytest.raises(ConfigError, match="inside it"):
            job.run([out / "inside"])
    finally:
        job.output.close()
        database.engine.dispose()


def test_another_output_inside_a_source_is_read_without_its_id_file(sql_only, archive, tmp_path):
    """De-identified copies received from another site (its output, id file and all) may be
    ingested: its copies are read, its id file is neither read nor recorded."""
    received = archive / "received"
    sql_only("deid", str(archive), "--out", str(received))
    assert (received / OUTPUT_ID_FILE).exists()
    summary = json.loads(
        sql_only("ingest", str(received), "--out", str(tmp_path / "out"), "--json").stdout
    )
    assert summary["files_seen"] == 6
    assert summary["files_indexed"] == 6
    assert summary["files_skipped"] == 0
