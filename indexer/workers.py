"""Worker processes for the per-file work: how they start, and starting them early.

Light on purpose: the CLI imports it before the database and pydicom, so the fork server can
import the per-file code on another core while this process connects.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
from multiprocessing import forkserver

POOL_THRESHOLD = 64  # files: below this, worker start-up costs more than it saves
# what every worker needs, imported once in the fork server (numpy: for pixel bits, 0.1 s)
PRELOAD = ["indexer.work", "numpy"]


def context() -> multiprocessing.context.BaseContext:
    """How workers start: forked from a server that imported the per-file code once.

    Never forked from the ingest process itself, which holds threaded database clients.
    Where there is no fork server (Windows), each worker is a fresh interpreter (spawn).
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    mp = multiprocessing.get_context("forkserver")
    mp.set_forkserver_preload(PRELOAD)
    return mp


def prestart() -> None:
    """Start the fork server now, so it imports the per-file code while the caller goes on."""
    if context().get_start_method() == "forkserver":
        forkserver.ensure_running()
