"""The reader role and the read-only `sql` command cannot reach the vault."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from indexer.errors import StoreError
from indexer.store import migrate, sql

READER = "dicom_index_reader"
VAULT_TABLES = ("identity", "source", "audit_log")


@pytest.fixture
def reader(db_url, pg_server):
    if not pg_server.embedded:
        pytest.skip("logging in as the reader role needs the embedded server's trust auth")
    e = create_engine(make_url(db_url).set(username=READER))
    yield e
    e.dispose()


@pytest.mark.parametrize("table", VAULT_TABLES)
@pytest.mark.parametrize(
    "stmt",
    ["SELECT * FROM vault.{t}", "DELETE FROM vault.{t}", "UPDATE vault.{t} SET created_at = now()"],
)
def test_reader_is_denied_every_vault_table(reader, table, stmt):
    if table == "audit_log" and "UPDATE" in stmt:
        stmt = "UPDATE vault.{t} SET purpose = 'x'"
    with reader.connect() as c, pytest.raises(ProgrammingError, match="permission denied"):
        c.execute(text(stmt.format(t=table)))


def test_reader_cannot_call_reidentify(reader):
    with reader.connect() as c, pytest.raises(ProgrammingError, match="permission denied"):
        c.execute(text("SELECT * FROM vault.reidentify('x', 'why', 'me')"))


def test_read_only_query_refuses_writes_and_stacked_statements(engine):
    with pytest.raises(StoreError, match=r"read-only|permission denied"):
        sql.read_only_query(engine, "DELETE FROM patient", READER)
    with pytest.raises(StoreError, match="multiple commands"):
        sql.read_only_query(engine, "SELECT 1; SELECT 2", READER)
    with pytest.raises(StoreError, match="permission denied"):
        sql.read_only_query(engine, "SELECT * FROM vault.identity", READER)
    r = sql.read_only_query(engine, "SELECT count(*) AS n FROM instance", READER)
    assert r.columns == ["n"]
    assert r.rows == [(0,)]


def test_schema_at_head_and_in_step_with_models(engine):
    assert migrate.current(engine) == migrate.head()
    assert migrate.check(engine) == []


def test_reidentify_function_requires_reason(engine):
    with engine.connect() as c, pytest.raises(Exception, match="reason is required"):
        c.execute(text("SELECT * FROM vault.reidentify('x', '  ', 'me')"))
