"""The database going away, or what reads our output going away, ends a command cleanly.

Never a hang, a traceback or an internal error: one line, an exit code, and a rerun that
completes.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, make_url, text

from tests.builders import SampleShape, write_archive

MARKER = "PHIMARK"
MANY_ROWS = "SELECT n, md5(n::text) AS h FROM generate_series(1, 3000000) n"


def _sql(cli, *args: str) -> subprocess.Popen[str]:
    """`sql ARGS MANY_ROWS`, started; its output read through pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "sql", *args, MANY_ROWS],
        env=cli.env,
        cwd=cli.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _sql_csv(cli) -> subprocess.Popen[str]:
    p = _sql(cli, "--csv")
    assert p.stdout is not None
    assert p.stdout.readline() == "n,h\n"
    assert p.stdout.readline() == f"1,{'c4ca4238a0b923820dcc509a6f75849b'}\n"
    return p


def test_sql_whose_reader_stops_early_ends_at_once(cli):
    """`sql --csv | head`: the pipe breaks while rows still stream. The stream held the
    connection's lock, so the rollback waited for ever; now it ends as SIGPIPE ends cat."""
    p = _sql_csv(cli)
    assert p.stdout is not None
    p.stdout.close()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 141, err
    assert "error" not in err


def test_sql_draws_its_table_a_page_at_a_time_as_rows_come(cli):
    """The table is drawn a page at a time: its first rows show while the others still
    stream, and three million rows are never held to draw one table."""
    p = _sql(cli)
    assert p.stdout is not None
    ready, _, _ = select.select([p.stdout], [], [], 60)
    try:
        assert ready, "nothing drawn within a minute"
        head = [p.stdout.readline() for _ in range(5)]
        assert any("c4ca4238a0b923820dcc509a6f75849b" in line for line in head), head
        assert p.poll() is None  # still streaming
    finally:
        p.stdout.close()
        _, err = p.communicate(timeout=60)
    assert p.returncode == 141, err


def test_sql_interrupted_while_rows_stream_ends_at_once(cli):
    p = _sql_csv(cli)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert err.strip().endswith("Aborted!")


@pytest.fixture
def admin(pg_server):
    engine = create_engine(pg_server.admin_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def test_an_ingest_that_loses_its_database_stops_with_one_line_and_reruns(
    cli, tmp_path, admin, db_url
):
    """The server goes away in the middle of a run (here: it refuses new connections and
    ends those it has): one line naming the kind of failure, exit 3, no traceback; once it
    is back, the rerun lands everything."""
    cli.env["DICOM_INDEX_MONGO_ENABLED"] = "false"
    archive, out = tmp_path / "archive", tmp_path / "out"
    write_archive(
        archive, SampleShape(patients=4, studies=2, series=2, instances=25), marker=MARKER
    )
    name = make_url(db_url).database
    args = ["ingest", str(archive), "--out", str(out), "--batch-size", "1", "--workers", "1"]
    p = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", *args, "--quiet"],
        env=cli.env,
        cwd=cli.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_batches(db_url, 5, p)
        with admin.connect() as c:
            c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            c.execute(
                text(
                    # every one: a connection still starting has no application name yet
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"
                ),
                {"d": name},
            )
        _, err = p.communicate(timeout=120)
    finally:
        with admin.connect() as c:
            c.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        if p.poll() is None:
            p.kill()
    assert p.returncode == 3, err
    last = err.strip().splitlines()[-1]  # where it is lost decides the kind of error
    assert last.startswith("error (store): the database connection was lost or refused ("), err
    assert "Traceback" not in err
    assert MARKER not in err
    summary = json.loads(cli(*args, "--json").stdout)
    assert summary["instances"] == 400
    cli("check-copies", str(out), "--content")


def _wait_for_batches(db_url: str, n: int, p: subprocess.Popen[str]) -> None:
    """Until the running ingest ``p`` has committed ``n`` batches."""
    engine = create_engine(db_url)
    deadline = time.monotonic() + 60
    try:
        with engine.connect() as c:
            while c.execute(text("SELECT count(*) FROM dicom_index.ingest_batch")).scalar() < n:
                assert time.monotonic() < deadline
                assert p.poll() is None
                c.rollback()
                time.sleep(0.01)
    finally:
        engine.dispose()
