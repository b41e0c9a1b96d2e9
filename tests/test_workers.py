"""Parallel ingest (#6): N worker processes give exactly what one process gives."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pydicom
import pytest
from sqlalchemy import text

from indexer import work
from indexer.deid import build_plan, pseudonym
from indexer.errors import database_failure
from indexer.keys import generate, read_key_file
from indexer.store import db
from indexer.store.files import LocalStore
from indexer.store.lookup import CopiesMadeOf
from indexer.workers import POOL_THRESHOLD
from indexer.workers import context as worker_context
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


def test_a_worker_takes_its_context_without_the_database_code(tmp_path, engine):
    """A worker's context holds the index's lookup for moved sources' copies. Unpickled, it
    imported SQLAlchemy and psycopg in every worker: a quarter of a second of a core each,
    a sixth of a two-worker run of 1,000 CT slices. They come only when a worker asks."""
    store = LocalStore(tmp_path / "out")
    try:
        made_of = CopiesMadeOf(engine, store.output_id)
        ctx = work.RunContext(build_plan(), generate(), store, "DI", 30, 1, made_of=made_of)
        data = pickle.dumps(ctx)
    finally:
        store.close()
    code = (
        "import pickle, sys; import indexer.work; ctx = pickle.loads(sys.stdin.buffer.read()); "
        "assert ctx.made_of.output_id; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'psycopg')))"
    )
    p = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, check=True)
    assert p.stdout.decode().strip() == "[]"  # (asking, it connects: test_moved_sources)


@pytest.mark.parametrize(
    ("set_to", "threads"),
    [(None, 1), ("2", min(2, len(os.sched_getaffinity(0))))],  # OpenBLAS: no more than cores
)
def test_numpy_starts_no_threads_in_the_commands_processes_unless_a_user_asks(set_to, threads):
    """numpy, imported for the pixel bits (no matrix work), started one OpenBLAS thread a
    core, each spinning its core for about 0.05 s, in the command and every worker (which
    inherit its environment). A user's own setting is kept."""
    code = (
        "import os, indexer.cli, numpy; "
        "print(len(os.listdir('/proc/self/task')), os.environ['OPENBLAS_NUM_THREADS'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if set_to is not None:
        env["OPENBLAS_NUM_THREADS"] = set_to
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
    assert p.stdout.decode().split() == [str(threads), set_to or "1"]


def _ask(made_of: CopiesMadeOf) -> str | None:
    return made_of("1.2/1.2.3/1.2.3.4.dcm", "0" * 64)


def test_a_workers_lookup_meeting_no_database_ends_the_run_as_a_database_failure(tmp_path):
    """A worker asks the index (a copy in conflict) and the server is gone: the error that
    crosses back to the ingest is the one its CLI names as a lost database, by kind only
    (not a worker that died, nor a defect), and nothing of the URL's password is in it."""
    store = LocalStore(tmp_path / "out")
    try:
        gone = db.engine_for("postgresql+psycopg://ingest:sekrit@127.0.0.1:1/dicom_index")
        made_of = CopiesMadeOf(gone, store.output_id)
        with (
            ProcessPoolExecutor(1, mp_context=worker_context()) as pool,
            pytest.raises(Exception) as e,  # the driver's, as it arrives
        ):
            pool.submit(_ask, made_of).result()
    finally:
        store.close()
    failure = database_failure(e.value)
    assert failure == "the database connection was lost or refused (OperationalError)"
    assert "sekrit" not in failure
