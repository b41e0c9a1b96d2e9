"""Batches commit on a thread of their own, in order, one in flight; errors are not lost."""

from __future__ import annotations

import threading

import pytest

from indexer.pipeline import _Batch, _Commits
from indexer.records import Failure


def _batch(n: int) -> _Batch:
    return _Batch(failures=[Failure(f"src-{n}", "x", "failed", "missing", "m")])


def test_batches_commit_in_order_off_the_ingest_thread_one_at_a_time():
    started, in_flight, threads, counted = [], [0], set(), []
    lock = threading.Lock()

    def commit(b: _Batch) -> _Batch:
        with lock:
            in_flight[0] += 1
            assert in_flight[0] == 1
        threads.add(threading.get_ident())
        started.append(b.failures[0].source_id)
        with lock:
            in_flight[0] -= 1
        return b

    with _Commits(commit, lambda b: counted.append(b.failures[0].source_id), background=True) as c:
        for n in range(20):
            c.submit(_batch(n))
        c.submit(_Batch())  # an empty batch: nothing to commit
    expected = [f"src-{n}" for n in range(20)]
    assert started == expected
    assert counted == expected  # every one counted, once, in order
    assert threading.get_ident() not in threads


def test_a_failed_commit_is_raised_on_the_ingest_thread():
    def commit(b: _Batch) -> _Batch:
        if b.failures[0].source_id == "src-1":
            raise RuntimeError("database gone")
        return b

    counted = []

    def run() -> None:
        with _Commits(commit, counted.append, background=True) as c:
            for n in range(5):
                c.submit(_batch(n))

    with pytest.raises(RuntimeError, match="database gone"):
        run()
    assert len(counted) == 1  # the batch before it, and nothing after


def test_an_error_of_the_run_still_waits_for_the_batch_in_flight():
    release = threading.Event()
    counted = []

    def commit(b: _Batch) -> _Batch:
        release.wait(5)
        return b

    def run() -> None:
        with _Commits(commit, counted.append, background=True) as c:
            c.submit(_batch(0))
            release.set()
            raise KeyError("the run's own error")

    with pytest.raises(KeyError):
        run()
    assert len(counted) == 1
