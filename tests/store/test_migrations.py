"""Upgrading a populated database keeps it consistent (audit rows join the chain)."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from indexer.store import audit, migrate


def test_upgrade_from_0002_with_audit_rows(pg_server):
    name = f"up_{os.getpid()}"
    admin = create_engine(pg_server.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        c.execute(text(f"CREATE DATABASE {name}"))
    engine = create_engine(pg_server.url(name))
    try:
        migrate.upgrade(engine, "0002")
        with engine.begin() as c:  # the 0001 function audits each call
            for _ in range(3):
                c.execute(text("SELECT * FROM vault.reidentify('x', 'before upgrade', 'me')"))
        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head()
        assert migrate.check(engine) == []
        with engine.begin() as c:
            c.execute(text("SELECT * FROM vault.reidentify('x', 'after upgrade', 'me')")).all()
        with Session(engine) as s:
            result = audit.verify(s)
        assert result.problems == []
        assert result.rows == 4
    finally:
        engine.dispose()
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
