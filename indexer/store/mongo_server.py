"""The embedded MongoDB server (SecantusDB, the optional GPL extra) in a process of its own.

``mongo.embedded_url`` runs this as ``python -m indexer.store.mongo_server STORAGE CACHE``.
Like the embedded PostgreSQL server, it outlives the command that started it, so the next
command finds it running (a start costs about 1.5 s) and two commands share it;
``dicom-index db stop`` stops it (SIGTERM), and it closes its storage cleanly then.

It detaches at once (a session of its own, so Ctrl-C at the terminal stays with the
command), opens the storage, records its process id and URL in ``mongo-server.json`` beside
the storage, and prints the URL on one line. If another server of the same storage runs, or
is starting, it prints that one's URL instead and exits: whoever starts first serves.
What it has to say (the storage engine's complaints) goes to ``mongo-server.log`` beside the
storage, never to the terminal or pipes of the command that started it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from indexer.errors import StoreError

LOCK_WAIT_S = 15.0  # a stopped or killed server may still be closing the same storage
LOCK_FILE = "WiredTiger.lock"  # the storage engine holds it locked while the storage is open
STATE_FILE = "mongo-server.json"  # beside the storage: the running server's pid and URL
LOG_FILE = "mongo-server.log"  # beside the storage: the running server's own messages
MODULE = __name__ if __name__ != "__main__" else "indexer.store.mongo_server"
STOP_WAIT_S = 60.0  # for a server to close its storage after SIGTERM
POLL_S = 0.2
USER = "dicom-index"  # the server's one user; its password is new at each start


@dataclass(frozen=True, slots=True)
class Running:
    """A server that serves a storage directory now."""

    pid: int
    uri: str


class _Users(Protocol):
    """What this module uses of SecantusDB's storage: its user records."""

    def add_user(
        self, db: str, username: str, record: Mapping[str, object], *, replace: bool = False
    ) -> bool: ...


class _Server(Protocol):
    """What this module uses of SecantusDB's server."""

    address: tuple[str, int]
    uri: str
    storage: _Users

    def stop(self) -> None: ...


def storage_of(state_dir: Path) -> Path:
    """The embedded server's storage directory in ``state_dir`` (absolute)."""
    return (state_dir / "mongo").resolve()


def state_file(storage: Path) -> Path:
    """Where the server of ``storage`` records its process id and URL."""
    return storage.with_name(STATE_FILE)


def running(storage: Path) -> Running | None:
    """The server of ``storage`` (an absolute path) if one runs and answers, else None."""
    found = _recorded(storage)
    return found if found is not None and _answers(found.uri) else None


def _recorded(storage: Path) -> Running | None:
    """The server the state file names, if that process is alive and is one of ours."""
    try:
        info = json.loads(state_file(storage).read_text("utf-8"))
        found = Running(int(info["pid"]), str(info["uri"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found if _ours(found.pid, storage) else None


def _ours(pid: int, storage: Path) -> bool:
    """Whether ``pid`` is alive and is this module serving ``storage``, not a reused id."""
    try:
        os.kill(pid, 0)
    except OSError:  # gone, or another user's process: not ours either way
        return False
    proc = Path("/proc", str(pid), "cmdline")
    if not proc.parent.parent.joinpath("self").exists():
        return True  # no /proc here (macOS): the live id is all there is to go by
    try:
        args = proc.read_bytes().split(b"\0")
    except OSError:
        return False
    return MODULE.encode() in args and os.fsencode(storage) in args  # a zombie has none


def _answers(uri: str) -> bool:
    """Whether something accepts connections at the server's address."""
    parts = urlsplit(uri)
    if parts.hostname is None or parts.port is None:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


def stop(state_dir: Path) -> bool:
    """Stop the embedded server of ``state_dir`` if one runs; return whether one was running.

    Raises
    ------
    StoreError
        It did not close its storage within ``STOP_WAIT_S``.

    """
    storage = storage_of(state_dir)
    found = _recorded(storage)  # answering or not (a hung one is stopped too)
    pids = [found.pid] if found is not None else unrecorded(storage)
    if found is None:
        state_file(storage).unlink(missing_ok=True)  # a killed server's, if any
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while any(_ours(pid, storage) for pid in pids):
        if time.monotonic() > deadline:
            raise StoreError(
                f"the embedded MongoDB server in {storage} did not stop within "
                f"{STOP_WAIT_S:.0f} s; see {storage.with_name(LOG_FILE)}"
            )
        time.sleep(0.05)
    return bool(pids)


def unrecorded(storage: Path) -> list[int]:
    """Servers of ``storage`` its state file does not name (it was removed): from ``/proc``.

    Starts still opening the storage are among them; none where there is no ``/proc``.
    """
    proc = Path("/proc")
    if not proc.joinpath("self").exists():
        return []
    recorded = _recorded(storage)
    skip = {os.getpid(), recorded.pid if recorded is not None else 0}
    with contextlib.suppress(OSError):
        pids = [int(entry.name) for entry in proc.iterdir() if entry.name.isdigit()]
        return [pid for pid in pids if pid not in skip and _ours(pid, storage)]
    return []


def _held_elsewhere(storage: Path) -> bool:
    """Whether another process has ``storage`` open (its storage engine's lock is taken)."""
    try:
        fd = os.open(storage / LOCK_FILE, os.O_RDWR)
    except OSError:
        return False  # no storage yet, or none to wait for
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _wake_accept(address: tuple[str, int]) -> None:
    """End the server's wait in accept(): its stop waits up to 2 s for that, idle."""
    time.sleep(0.05)  # stop() has set its stop flag by now
    with contextlib.suppress(OSError), socket.create_connection(address, timeout=1):
        pass


def _say(line: str) -> None:
    """One line to the starter, on standard output, which then closes."""
    with contextlib.suppress(BrokenPipeError):  # it ended (an error) before it read this
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())  # the starter's pipe ends
    os.close(null)


def _record(storage: Path, uri: str) -> None:
    """Write the state file whole (a temporary, renamed), readable by this user only."""
    target = state_file(storage)
    temporary = target.with_name(f".{target.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"pid": os.getpid(), "uri": uri}, f)
    temporary.replace(target)


def _forget(storage: Path) -> None:
    """Remove the state file if it is still this process's."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if json.loads(state_file(storage).read_text("utf-8"))["pid"] == os.getpid():
            state_file(storage).unlink()


def _detach() -> None:
    """Go on in a grandchild of the starter, in a session of its own, at ``/``.

    The starter's child exits at once (the starter waits for it), so the server is nobody's
    child to reap; with no terminal, no Ctrl-C or hang-up of the command reaches it.
    """
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    os.chdir("/")


@dataclass(frozen=True, slots=True)
class _Started:
    """A server that serves now, and its URL with the credentials of its one user."""

    server: _Server
    uri: str


def _admit(server: _Server) -> str:
    """Give the server, not yet listening, its one user (all rights) with a new password.

    Other users of this machine can reach its port, but not the password, which goes to the
    starter's pipe and the state file (this user's alone). A new one each start: the stored
    record is replaced, so a password of an earlier server opens nothing.
    """
    from secantus.auth import SCRAM_SHA_256, derive_credentials  # noqa: PLC0415 - the extra

    password = secrets.token_urlsafe(32)
    credentials = derive_credentials(password, mechanism=SCRAM_SHA_256).to_doc()
    record = {  # as SecantusDB's createUser stores one
        "_id": f"admin.{USER}",
        "user": USER,
        "db": "admin",
        "credentials": credentials,
        "roles": [{"role": "root", "db": "admin"}],
        "mechanisms": [SCRAM_SHA_256],
    }
    server.storage.add_user("admin", USER, record, replace=True)
    return password


def _with_user(uri: str, password: str) -> str:
    """``uri`` (``mongodb://host:port/``) logged in as the server's one user."""
    parts = urlsplit(uri)
    return f"mongodb://{USER}:{password}@{parts.hostname}:{parts.port}/?authSource=admin"


def shown(uri: str) -> str:
    """Where the server of ``uri`` listens, without its credentials: for people to read."""
    parts = urlsplit(uri)
    return f"{parts.hostname}:{parts.port}"


def _open(storage: Path, cache: str) -> _Started | str:
    """The started server, or a line for the starter: another server's URL, or an error."""
    from secantus import SecantusDBServer  # noqa: PLC0415 - the optional extra

    deadline = time.monotonic() + LOCK_WAIT_S
    failed = 0  # tries with the storage free: its own fault, unless another start took it
    while True:
        if (other := running(storage)) is not None:
            return other.uri
        if _held_elsewhere(storage):  # a server stopping, or one starting: wait
            if time.monotonic() > deadline:
                if unrecorded(storage):
                    return (
                        "error its storage is held by an embedded server whose state file was "
                        "removed; `dicom-index db stop` stops it"
                    )
                return "error its storage is in use by another process"
            time.sleep(POLL_S)
            continue
        try:
            server = SecantusDBServer(
                host="127.0.0.1",
                port=0,
                storage_path=str(storage),
                cache_size=cache,
                require_auth=True,
                enable_test_commands=False,  # no client may make it fail on purpose
            )
            password = _admit(server)
            server.start()
        except Exception as e:  # noqa: BLE001 - reported to the starter by name only
            failed += 1
            if failed == 2 or time.monotonic() > deadline:  # noqa: PLR2004
                return f"error {type(e).__name__}"
            time.sleep(POLL_S)
        else:
            return _Started(server, _with_user(server.uri, password))


def main(argv: list[str]) -> int:
    """Serve ``argv[1]`` (storage directory) with ``argv[2]`` of cache; exit code."""
    storage, cache = Path(argv[1]).resolve(), argv[2]
    _detach()
    for ignored in (signal.SIGINT, signal.SIGHUP):
        signal.signal(ignored, signal.SIG_IGN)
    # SIGTERM waits, blocked in every thread (the server's inherit it), until sigwait below
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    with contextlib.suppress(OSError):  # else they go where the starter's went
        log = os.open(storage.with_name(LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 2)  # the storage engine's complaints: not the starter's terminal or pipe
        os.close(log)
    started = _open(storage, cache)
    if isinstance(started, str):
        _say(started)
        # at once: a server that failed to open may have left threads that would keep this
        # process alive
        os._exit(0 if started.startswith("mongodb://") else 1)
    server = started.server
    try:
        _record(storage, started.uri)
        _say(started.uri)
        signal.sigwait({signal.SIGTERM})
    finally:
        _forget(storage)
        threading.Thread(target=_wake_accept, args=(server.address,), daemon=True).start()
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
