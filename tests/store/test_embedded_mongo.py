"""The embedded MongoDB server: outlives its command, is shared, stops on `db stop`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pymongo import MongoClient, WriteConcern
from pymongo.errors import OperationFailure

from indexer.errors import StoreError
from indexer.store import mongo, mongo_server
from indexer.store.mongo import EMBEDDED_CACHE, embedded_url
from tests.conftest import Cli, until

pytest.importorskip("secantus", reason="install the embedded-mongo extra")


def _servers(state: Path) -> list[int]:
    """Process ids of every embedded server of ``state``, found by their command lines."""
    storage = os.fsencode((state / "mongo").resolve())
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                args = (proc / "cmdline").read_bytes().split(b"\0")
                if b"indexer.store.mongo_server" in args and storage in args:
                    found.append(int(proc.name))
    return found


@pytest.fixture
def state(tmp_path: Path):
    """A state directory whose servers are all gone after the test, whatever it did."""
    yield tmp_path
    with contextlib.suppress(StoreError):
        mongo_server.stop(tmp_path)
    for pid in _servers(tmp_path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _pid(url: str) -> int:
    with MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        return int(client.admin.command("serverStatus")["pid"])


def test_a_process_of_its_own_with_a_bounded_cache(state):
    (state / "mongo").mkdir(mode=0o755)  # as an earlier version made it
    url = embedded_url(state)
    assert url is not None
    pid = _pid(url)
    assert pid != os.getpid()  # its work does not wait for the ingest's interpreter lock
    assert os.getsid(pid) == pid  # a session of its own: Ctrl-C at a terminal stays away
    ppid = int((Path("/proc", str(pid), "stat").read_text().rsplit(")", 1)[1].split())[1])
    assert ppid != os.getpid()  # nobody's child to reap: detached
    recorded = json.loads((state / mongo_server.STATE_FILE).read_text())
    assert recorded == {"pid": pid, "uri": url}
    assert (state / mongo_server.STATE_FILE).stat().st_mode & 0o777 == 0o600
    assert (state / "mongo").stat().st_mode & 0o777 == 0o700  # its files: this user's alone
    settings = (state / "mongo" / "WiredTiger.basecfg").read_text().splitlines()
    assert f"cache_size={EMBEDDED_CACHE}" in settings  # what the storage engine was opened with
    assert int(EMBEDDED_CACHE.removesuffix("M")) <= 128  # the server process stays small


def _refused(url: str, command: str = "find") -> int:
    """The error code the server answers ``command`` on a collection with (``url``'s login)."""
    attempts = {
        "find": lambda c: c["dicom_index"]["studies"].find_one(),
        "insert": lambda c: c["dicom_index"]["studies"].insert_one({"_id": "planted"}),
        "configureFailPoint": lambda c: c.admin.command(
            "configureFailPoint", "failCommand", mode="alwaysOn"
        ),
    }
    with (
        MongoClient(url, serverSelectionTimeoutMS=5000) as client,
        pytest.raises(OperationFailure) as e,
    ):
        attempts[command](client)
    return int(e.value.code or 0)


def test_only_its_own_user_gets_in_with_a_password_new_at_each_start(state):
    url = embedded_url(state)
    assert url is not None
    first = urlsplit(url)
    assert first.username == mongo_server.USER
    assert first.password
    assert len(first.password) >= 40  # 32 random bytes
    with MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        client["dicom_index"]["studies"].insert_one({"_id": "kept"})
    anyone = f"mongodb://127.0.0.1:{first.port}/"  # another user of this machine
    assert _refused(anyone) == 13  # Unauthorized: no reading
    assert _refused(anyone, "insert") == 13  # nor writing
    guessed = f"mongodb://{mongo_server.USER}:guessed@127.0.0.1:{first.port}/?authSource=admin"
    assert _refused(guessed) == 18  # AuthenticationFailed
    assert _refused(url, "configureFailPoint") == 59  # CommandNotFound: no test commands
    assert mongo_server.stop(state) is True
    again = embedded_url(state)
    assert again is not None
    second = urlsplit(again)
    assert second.password != first.password
    stale = f"mongodb://{mongo_server.USER}:{first.password}@127.0.0.1:{second.port}/"
    assert _refused(stale + "?authSource=admin") == 18  # the last start's password opens nothing
    with MongoClient(again, serverSelectionTimeoutMS=5000) as client:
        assert client["dicom_index"]["studies"].find_one() == {"_id": "kept"}


STARTER = """
import pathlib, sys
from pymongo import MongoClient, WriteConcern
from pymongo.errors import OperationFailure
from indexer.store.mongo import embedded_url
url = embedded_url(pathlib.Path(sys.argv[1]))
with MongoClient(url) as client:
    client["kept"]["docs"].insert_one({"_id": sys.argv[2]})
print(url, flush=True)
"""


def test_it_outlives_its_command_and_the_next_one_uses_it(state):
    first = subprocess.run(
        [sys.executable, "-c", STARTER, str(state), "first"],
        capture_output=True,  # the server must not hold these pipes open: run() would wait
        text=True,
        check=True,
        timeout=60,
    )
    url = first.stdout.strip()
    assert url.startswith("mongodb://")
    assert "WiredTiger" not in first.stderr
    pid = _pid(url)
    started = time.monotonic()
    assert embedded_url(state) == url  # found, not started: no storage to open
    assert time.monotonic() - started < 1
    second = subprocess.run(
        [sys.executable, "-c", STARTER, str(state), "second"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert second.stdout.strip() == url
    assert _servers(state) == [pid]
    with MongoClient(url) as client:
        assert sorted(d["_id"] for d in client["kept"]["docs"].find()) == ["first", "second"]


def test_stop_closes_it_and_the_data_stays(state):
    url = embedded_url(state)
    with MongoClient(url) as client:
        client["kept"]["docs"].insert_one({"_id": "before the stop"})
    assert mongo_server.stop(state) is True
    assert _servers(state) == []
    assert not (state / mongo_server.STATE_FILE).exists()
    assert mongo_server.stop(state) is False  # nothing left to stop
    again = embedded_url(state)
    with MongoClient(again) as client:
        assert client["kept"]["docs"].count_documents({}) == 1


def test_a_killed_server_is_replaced_and_the_data_stays(state):
    url = embedded_url(state)
    with MongoClient(url) as client:
        # journaled: a write acknowledged without j may still sit in the storage engine's
        # log buffer for some milliseconds, and a SIGKILL then loses it, as with mongod
        docs = client["kept"].get_collection("docs", write_concern=WriteConcern(j=True))
        docs.insert_one({"_id": "before the kill"})
    (killed,) = _servers(state)
    os.kill(killed, signal.SIGKILL)
    until(lambda: _servers(state) == [], "the killed server is still there", 30)
    assert (state / mongo_server.STATE_FILE).exists()  # it had no chance to remove it
    assert mongo_server.running((state / "mongo").resolve()) is None
    again = embedded_url(state)
    (replacement,) = _servers(state)
    assert replacement != killed
    with MongoClient(again) as client:
        assert client["kept"]["docs"].count_documents({}) == 1


def _killed(state: Path) -> None:
    (server,) = _servers(state)
    os.kill(server, signal.SIGKILL)
    until(lambda: _servers(state) == [], "the killed server is still there", 30)


def test_a_batch_the_sink_wrote_outlasts_a_killed_server(state):
    """An acknowledged batch is on disk: PostgreSQL marks it written on that acknowledgement.

    Unjournaled, a SIGKILL straight after lost the last 4 to 20 documents of 500. The
    batch's last write is journaled, and so holds the wait for all of them.
    """
    body = "x" * 3000  # about an instance document's size
    for batch in range(3):
        sink = mongo.MongoSink(embedded_url(state), "kept")
        ids = [f"{batch}-{i:03d}" for i in range(500)]
        study = {"_id": "study", "n_instances": len(ids) * (batch + 1)}  # as a batch's study
        sink.write(mongo.MongoDocs([{"_id": i, "body": body} for i in ids], [], [study]))
        sink.close()
        _killed(state)
        again = mongo.MongoSink(embedded_url(state), "kept")
        assert set(again.ids_after(mongo.INSTANCES, f"{batch}-", 1000)) >= set(ids)
        again.close()


def test_a_repair_that_leaves_the_studies_unchanged_outlasts_a_killed_server(state):
    """`sync --all` after a loss rewrites lost instances; their study stays as it was.

    SecantusDB syncs nothing for a write that changes nothing, so the journaled study alone
    did not wait for the repaired instances: a SIGKILL straight after lost them again.
    """
    body = "x" * 3000
    ids = [f"i-{i:03d}" for i in range(500)]
    docs = mongo.MongoDocs(
        [{"_id": i, "body": body} for i in ids], [{"_id": "series"}], [{"_id": "study"}]
    )
    sink = mongo.MongoSink(embedded_url(state), "kept")
    sink.write(docs)
    for round_ in range(3):
        lost = ids[round_ * 100 : round_ * 100 + 300]
        assert sink.delete(mongo.INSTANCES, lost) == len(lost)  # the loss, on disk
        sink.write(docs)  # the repair: only instances change
        sink.close()
        _killed(state)
        sink = mongo.MongoSink(embedded_url(state), "kept")
        assert set(sink.ids_after(mongo.INSTANCES, None, 1000)) == set(ids), round_
    sink.close()


LISTENER = """
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(60)
"""


def test_a_state_file_naming_another_process_is_not_believed(state):
    (state / "mongo").mkdir()
    listener = subprocess.Popen(  # alive, answering, but no server of ours
        [sys.executable, "-c", LISTENER],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(listener.stdout.readline())
        fake = f"mongodb://127.0.0.1:{port}/"
        (state / mongo_server.STATE_FILE).write_text(json.dumps({"pid": listener.pid, "uri": fake}))
        url = embedded_url(state)
        assert url != fake
        assert _servers(state) == [_pid(url)]
    finally:
        listener.kill()
        listener.wait()
        listener.stdout.close()


def test_starts_at_once_make_one_server(state, capfd):
    with ThreadPoolExecutor(4) as pool:
        urls = set(pool.map(lambda _: embedded_url(state), range(4)))
    assert len(urls) == 1
    # the starts that lost print the winner's URL, then exit: maybe a moment after it is read
    until(lambda: len(_servers(state)) == 1, "more than one server stays", 30)
    # the starts that lost said why in the server's log, not on the command's terminal
    assert "WiredTiger" not in capfd.readouterr().err


def test_a_prestarted_server_is_the_one_used(state):
    mongo.prestart(state)  # as `ingest` does before its set-up
    storage = (state / "mongo").resolve()
    started = mongo._STARTED[storage]
    url = embedded_url(state)
    assert not mongo._STARTED
    assert started.returncode == 0  # the child that detached it ended at once, cleanly
    assert _servers(state) == [_pid(url)]
    mongo.prestart(state)  # one runs: nothing is started
    assert not mongo._STARTED


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


def test_storage_another_process_holds_is_a_clear_error(state, capfd):
    embedded_url(state)
    mongo_server.stop(state)
    holder = subprocess.Popen(  # not a server of ours, and it keeps the storage's lock
        [sys.executable, "-c", HOLDER, str(state / "mongo" / mongo_server.LOCK_FILE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(StoreError) as e:
            embedded_url(state)
        assert time.monotonic() - started >= mongo_server.LOCK_WAIT_S  # it waited for it
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    message = str(e.value)
    assert "could not start the embedded MongoDB server" in message
    assert "in use by another process" in message
    assert "DICOM_INDEX_MONGO_URL" in message
    # it says why, then exits: nobody's child, it may still be ending as the starter raises
    until(lambda: _servers(state) == [], "the server that could not start stays", 5)
    assert "WiredTiger" not in capfd.readouterr().err


def test_a_server_whose_state_file_was_removed_is_found_and_stopped(state, offline_cli):
    embedded_url(state)
    (pid,) = _servers(state)
    (state / mongo_server.STATE_FILE).unlink()
    offline_cli.env.update(DICOM_INDEX_STATE_DIR=str(state), DICOM_INDEX_MONGO_ENABLED="true")
    storage = (state / "mongo").resolve()
    status = offline_cli("db", "status").stdout.splitlines()[1]
    assert status == (
        f"MongoDB: embedded in {storage}, running (pid {pid}) without its state file; "
        "`dicom-index db stop` stops it"
    )
    with pytest.raises(StoreError) as e:  # a start waits for the storage, then says why
        embedded_url(state)
    assert "state file was removed; `dicom-index db stop` stops it" in str(e.value)
    # the one that could not start says why, then exits (it may still be ending)
    until(lambda: _servers(state) == [pid], "the server that could not start stays", 5)
    assert mongo_server.stop(state) is True
    assert _servers(state) == []
    assert mongo_server.stop(state) is False
    embedded_url(state)  # the storage is free again
    assert len(_servers(state)) == 1


def test_storage_that_cannot_be_made_is_a_clear_error(state):
    (state / "mongo").write_text("a file where the storage directory should be")
    with pytest.raises(StoreError) as e:
        embedded_url(state)
    assert "could not start the embedded MongoDB server" in str(e.value)
    assert "FileExistsError" in str(e.value)


def test_damaged_storage_is_a_clear_error_at_once(state, capfd):
    # nothing holds it: no waiting for another server to let go (that wait is 15 s)
    storage = state / "mongo"
    storage.mkdir()
    for name in ("WiredTiger", "WiredTiger.turtle"):
        (storage / name).write_text("not what the storage engine wrote")
    started = time.monotonic()
    with pytest.raises(StoreError) as e:
        embedded_url(state)
    assert time.monotonic() - started < mongo_server.LOCK_WAIT_S / 2
    message = str(e.value)
    assert "could not start the embedded MongoDB server" in message
    assert str(state / mongo_server.LOG_FILE) in message  # where the storage engine said why
    assert "DICOM_INDEX_MONGO_URL" in message
    assert "WiredTiger" in (state / mongo_server.LOG_FILE).read_text()
    assert "WiredTiger" not in capfd.readouterr().err
    # it says why, then exits: nobody's child, it may still be ending as the starter raises
    until(lambda: _servers(state) == [], "the server that could not start stays", 5)


def test_commands_share_the_server_and_db_stop_stops_both(tmp_path, state):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_INDEX_")}
    env.update(DICOM_INDEX_STATE_DIR=str(state), CI="1")
    cli = Cli(env, tmp_path, [])
    pg, storage = (state / "pg").resolve(), (state / "mongo").resolve()
    try:
        assert cli("db", "status").stdout.splitlines() == [
            f"PostgreSQL: embedded in {pg}, not running",
            f"MongoDB: embedded in {storage}, not running",
        ]
        cli("keys", "init")
        cli("sample", str(tmp_path / "archive"))
        cli("ingest", str(tmp_path / "archive"), "--out", str(tmp_path / "out"), "-q")
        (pid,) = _servers(state)
        assert "agree" in cli("check").stdout  # the second command found the same server
        assert _servers(state) == [pid]
        postmaster = int((pg / "postmaster.pid").read_text().split()[0])
        url = urlsplit(json.loads((state / mongo_server.STATE_FILE).read_text())["uri"])
        status = cli("db", "status").stdout
        assert status.splitlines() == [
            f"PostgreSQL: embedded in {pg}, running (pid {postmaster})",
            f"MongoDB: embedded in {storage}, running (pid {pid}) at 127.0.0.1:{url.port}",
        ]
        assert url.password is not None
        assert url.password not in status
        stopped = cli("db", "stop").stdout
        assert "embedded PostgreSQL and MongoDB servers stopped" in stopped
        assert _servers(state) == []
        assert "no embedded server running" in cli("db", "stop").stdout
        assert cli("db", "status").stdout.count("not running") == 2
    finally:
        cli("db", "stop", check=False)


def test_db_status_names_servers_given_by_settings(offline_cli):
    offline_cli.env["DICOM_INDEX_MONGO_URL"] = "mongodb://somewhere:27017/"
    assert offline_cli("db", "status").stdout.splitlines() == [
        "PostgreSQL: the server of the database_url setting",
        "MongoDB: the server of the mongo_url setting",
    ]
    offline_cli.env["DICOM_INDEX_MONGO_ENABLED"] = "false"
    assert offline_cli("db", "status").stdout.splitlines()[1] == (
        "MongoDB: off (mongo_enabled = false)"
    )
