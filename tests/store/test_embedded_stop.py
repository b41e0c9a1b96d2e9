"""`db stop` stops the embedded server even after a command that used it was killed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest

from indexer.store import mongo_server
from indexer.store.mongo import embedded_url
from tests.conftest import Cli, until


def test_db_stop_stops_the_server_a_killed_command_held(tmp_path):
    """The wheel stops its server only when the last process that opened it lets go, by a
    list of process ids; a command killed never lets go, and `db stop` stopped nothing."""
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_INDEX_")}
    env.update(DICOM_INDEX_STATE_DIR=str(state), DICOM_INDEX_MONGO_ENABLED="false", CI="1")
    pid_file = state / "pg" / "postmaster.pid"
    cli = Cli(env, tmp_path, [])
    cli("db", "upgrade")
    try:
        held = subprocess.Popen(
            [sys.executable, "-m", "indexer.cli", "sql", "SELECT pg_sleep(120)"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        handles = state / "pg" / ".handle_pids.json"
        until(
            lambda: handles.exists() and held.pid in json.loads(handles.read_text() or "[]"),
            "the command never opened the server",
            60,
        )
        held.send_signal(signal.SIGKILL)
        held.wait(30)
        assert "embedded PostgreSQL server stopped" in cli("db", "stop").stdout
        until(lambda: not pid_file.exists(), "the server still runs after `db stop`", 60)
    finally:
        if pid_file.exists():  # do not leave a server behind a failed test
            with pid_file.open() as f:
                pid = int(f.readline())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_db_stop_names_a_damaged_data_directory_and_still_stops_mongodb(tmp_path):
    pytest.importorskip("secantus", reason="install the embedded-mongo extra")
    state = tmp_path / "state"
    (state / "pg").mkdir(parents=True)
    (state / "pg" / "postmaster.pid").write_text("not what PostgreSQL writes\n")
    embedded_url(state)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_INDEX_")}
    env.update(DICOM_INDEX_STATE_DIR=str(state), CI="1")
    try:
        p = Cli(env, tmp_path, [])("db", "stop", check=3)
    finally:
        mongo_server.stop(state)  # nothing left behind a failed test
    assert "could not stop the embedded PostgreSQL server" in p.stderr
    assert "internal" not in p.stderr  # named, not a defect's traceback
    assert "embedded MongoDB server stopped" in p.stdout  # the other one all the same
    assert mongo_server.running((state / "mongo").resolve()) is None
