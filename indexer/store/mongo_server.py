"""The embedded MongoDB server (SecantusDB, the optional GPL extra) in a process of its own.

``mongo.embedded_server`` runs this as a child process: ``python -m indexer.store.mongo_server
STORAGE CACHE``. It prints its URL on one line, serves until its standard input closes (the
parent is done, or died), then closes the storage cleanly. In a process of its own the
server's work does not wait for the ingest's interpreter lock, nor the ingest for it.
Ctrl-C reaches the whole process group: the parent stops its run and still writes its last
batch here, so this process ignores SIGINT and goes only when its input closes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

LOCK_WAIT_S = 15.0  # a killed run's server may still be closing the same storage
LOCK_FILE = "WiredTiger.lock"  # the storage engine holds it locked while the storage is open


def _held_elsewhere(storage: str) -> bool:
    """Whether another process has ``storage`` open (its storage engine's lock is taken)."""
    try:
        fd = os.open(Path(storage, LOCK_FILE), os.O_RDWR)
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


def _say(line: str) -> bool:
    """One line to the parent, on standard output; False if the parent is gone already."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # it ended (an error in its set-up) before it read this
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing at exit
        return False
    return True


def main(argv: list[str]) -> int:
    """Serve ``argv[1]`` (storage directory) with ``argv[2]`` of cache; exit code."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    storage, cache = argv[1], argv[2]
    from secantus import SecantusDBServer  # noqa: PLC0415 - the optional extra

    deadline = time.monotonic() + LOCK_WAIT_S
    stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    tries_unheld = 0  # failed tries with the storage free: its own fault, not a wait
    try:
        while True:
            try:
                server = SecantusDBServer(
                    host="127.0.0.1", port=0, storage_path=storage, cache_size=cache
                )
                server.start()
                break
            except Exception as e:  # noqa: BLE001 - reported to the parent by name only
                tries_unheld = 0 if _held_elsewhere(storage) else tries_unheld + 1
                if time.monotonic() > deadline or tries_unheld == 2:  # noqa: PLR2004
                    _say(f"error {type(e).__name__}")
                    return 1
                os.dup2(devnull, 2)  # the storage engine said why once: not on every try
                time.sleep(0.2)
    finally:
        os.dup2(stderr, 2)
    address = server.address
    try:
        if _say(server.uri):
            sys.stdin.buffer.read()  # until the parent closes it or dies
    finally:
        threading.Thread(target=_wake_accept, args=(address,), daemon=True).start()
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
