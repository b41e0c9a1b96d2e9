"""SIGKILL at several points, then a rerun: the same state as one clean run (#6)."""

from __future__ import annotations

import itertools
import os

import pytest
from pymongo import MongoClient
from sqlalchemy import create_engine, text

from indexer.store.files import OUTPUT_ID_FILE, read_output_id
from tests.builders import SampleShape, files_sha, write_archive
from tests.conftest import ROLES, role_url

_n = itertools.count(1)


@pytest.fixture
def reference(pg_server, migrated_template):
    """A second, clean database for the reference run."""
    name = f"ref_{os.getpid()}_{next(_n)}"
    admin = create_engine(pg_server.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name} TEMPLATE {migrated_template}"))
    url = pg_server.url(name)
    yield url
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def _state(db_url, mongo_url, mongo_db, out):
    e = create_engine(db_url)
    with e.connect() as c:
        rows = {
            "instance": c.execute(
                text(
                    "SELECT sop_uid, series_uid, study_uid, patient_id, copy_path, copy_sha256, "
                    "header::text FROM dicom_index.instance ORDER BY 1"
                )
            ).all(),
            "study": c.execute(
                text(
                    "SELECT study_uid, patient_id, accession_number "
                    "FROM dicom_index.study ORDER BY 1"
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
    with MongoClient(mongo_url) as m:
        docs = {
            n: sorted(m[mongo_db][n].find({}, {"run_id": 0}), key=lambda d: d["_id"])
            for n in ("instances", "series", "studies")
        }
    assert read_output_id(out) is not None  # the output has its id
    leftovers = [
        p for p in out.rglob("*") if p.is_file() and p.suffix != ".dcm" and p.name != OUTPUT_ID_FILE
    ]
    return rows, docs, files_sha(out), leftovers


@pytest.mark.parametrize(
    "point", ["copy_temp:10", "copy_written:10", "vault_written:3", "sql_committed:3"]
)
def test_kill_then_rerun_equals_a_clean_run(
    point, cli, tmp_path, db_url, reference, mongo_url, mongo_db, pg_server
):
    archive = tmp_path / "archive"
    write_archive(archive, SampleShape(2, 2, 2, 3))
    common = ["--batch-size", "4", "--workers", "1"]

    cli.env["DICOM_INDEX_FAILPOINT"] = point
    p = cli("ingest", str(archive), "--out", str(tmp_path / "out"), *common, check=-9)
    assert p.returncode == -9  # killed at the failpoint
    del cli.env["DICOM_INDEX_FAILPOINT"]
    cli("ingest", str(archive), "--out", str(tmp_path / "out"), *common)
    got = _state(db_url, mongo_url, mongo_db, tmp_path / "out")

    ref_env = dict(cli.env)
    ref_env["DICOM_INDEX_DATABASE_URL"] = reference
    ref_env["DICOM_INDEX_MONGO_DB"] = f"{mongo_db}_ref"
    if pg_server.embedded:
        for setting, role in (
            ("INGEST", ROLES.ingest),
            ("READER", ROLES.reader),
            ("REIDENTIFIER", ROLES.reidentifier),
        ):
            ref_env[f"DICOM_INDEX_{setting}_URL"] = role_url(reference, role)
    saved, cli.env = cli.env, ref_env
    try:
        cli("ingest", str(archive), "--out", str(tmp_path / "ref"), *common)
    finally:
        cli.env = saved
    want = _state(reference, mongo_url, f"{mongo_db}_ref", tmp_path / "ref")
    with MongoClient(mongo_url) as m:
        m.drop_database(f"{mongo_db}_ref")

    assert got[0] == want[0]  # same rows in PostgreSQL, vault included, nothing pending
    assert got[1] == want[1]  # same MongoDB documents
    assert got[2] == want[2]  # same copies, byte for byte
    assert got[3] == []  # no partial copy left behind
    assert len(got[2]) == 24
