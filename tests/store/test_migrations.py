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


def test_light_revision_checks_agree_with_alembic(pg_server):
    """`head()` and `current()` skip Alembic (start-up time); they must say what it says."""
    from alembic.runtime.migration import MigrationContext  # noqa: PLC0415
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    assert (
        migrate.head()
        == ScriptDirectory.from_config(migrate._config_no_engine()).get_current_head()
    )
    name = f"rev_{os.getpid()}"
    admin = create_engine(pg_server.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        c.execute(text(f"CREATE DATABASE {name}"))
    engine = create_engine(pg_server.url(name))
    try:
        assert migrate.current(engine) is None  # never migrated
        for revision in ("0002", "head"):
            migrate.upgrade(engine, revision)
            with engine.connect() as conn:
                ctx = MigrationContext.configure(conn, opts={"version_table_schema": "dicom_index"})
                assert migrate.current(engine) == ctx.get_current_revision()
        assert migrate.current(engine) == migrate.head()
    finally:
        engine.dispose()
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
