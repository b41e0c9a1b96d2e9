"""Upgrading a populated database keeps it consistent (audit rows join the chain)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from indexer.deid import VIDEO_RULES_VERSION
from indexer.errors import StoreError
from indexer.store import audit, migrate
from indexer.store.db import SETUP_LOCK
from tests.builders import SampleShape, write_archive
from tests.conftest import ROLES, role_url


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


SET_UP_ONE = """
import sys, time
from sqlalchemy import create_engine
from indexer.store import migrate, roles
engine = create_engine(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all at once
migrate.upgrade(engine)
roles.apply_roles(engine, roles.RoleNames(), {})
roles.grant_if_present(engine, roles.RoleNames())
"""


def test_commands_setting_up_one_database_at_once_take_turns(pg_server):
    """The embedded quick start upgrades the schema and applies the grants at each command:
    several commands started together on a new database must all succeed, one at a time,
    not fail on PostgreSQL's "duplicate key" or "tuple concurrently updated"."""
    admin = create_engine(pg_server.admin_url, isolation_level="AUTOCOMMIT")
    for round_ in range(2):
        name = f"race_{os.getpid()}_{round_}"
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            c.execute(text(f"CREATE DATABASE {name}"))
        try:
            start = str(time.time() + 3.0)
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", SET_UP_ONE, pg_server.url(name), start],
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(4)
            ]
            errors = [p.communicate(timeout=120)[1] for p in procs]
            assert [p.returncode for p in procs] == [0] * 4, "\n".join(errors)
            engine = create_engine(pg_server.url(name))
            assert migrate.current(engine) == migrate.head()
            assert roles_granted(engine)
            engine.dispose()
        finally:
            with admin.connect() as c:
                c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def roles_granted(engine) -> bool:
    with engine.connect() as c:
        return bool(
            c.execute(
                text("SELECT has_table_privilege(:r, 'dicom_index.instance', 'SELECT')"),
                {"r": ROLES.reader},
            ).scalar()
        )


def test_a_failed_upgrade_lets_the_setup_lock_go(pg_server, migrated_template):
    """An upgrade that fails (here: a role that may not create the schema) must release the
    advisory lock even though its connection stays open in a pool; else the next upgrade or
    grant waits on it."""
    del migrated_template  # made: the roles exist
    name = f"lockfree_{os.getpid()}"
    admin = create_engine(pg_server.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        c.execute(text(f"CREATE DATABASE {name}"))
    weak = create_engine(role_url(pg_server.url(name), ROLES.reader))
    owner = create_engine(pg_server.url(name))
    try:
        with pytest.raises(StoreError, match="the schema upgrade failed: permission denied"):
            migrate.upgrade(weak)
        with owner.connect() as c:  # the weak engine's pooled session must not hold it
            c.execute(text("SET lock_timeout = '2s'"))
            c.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SETUP_LOCK})
            c.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SETUP_LOCK})
        migrate.upgrade(owner)
        assert migrate.current(owner) == migrate.head()
    finally:
        weak.dispose()
        owner.dispose()
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def test_0009_0010_give_further_copies_their_first_copys_digest_and_source(cli, engine, tmp_path):
    """Further copies recorded before 0009 were of their first copy's content (others were
    refused then): the upgrades record that copy's digest, size and source for each."""
    from alembic import command  # noqa: PLC0415

    archive = tmp_path / "archive"
    write_archive(archive, SampleShape(1, 1, 1, 2))
    for out in ("out1", "out2"):
        cli("ingest", str(archive), "--out", str(tmp_path / out), "--workers", "1")
    further = text(
        "SELECT c.sop_uid, c.copy_sha256, c.copy_bytes, c.source_id, "
        "i.copy_sha256, i.copy_bytes, i.source_id "
        "FROM dicom_index.instance_copy c JOIN dicom_index.instance i USING (sop_uid)"
    )
    with engine.connect() as c:
        before = sorted(c.execute(further).all())
    assert len(before) == 2
    assert all(r[1:4] == r[4:7] for r in before)
    cfg = migrate._config(engine)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")
        conn.commit()
    with engine.connect() as c:
        columns = text(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'dicom_index' AND table_name = 'instance_copy'"
        )
        assert "copy_sha256" not in set(c.execute(columns).scalars())
    migrate.upgrade(engine)
    with engine.connect() as c:
        assert sorted(c.execute(further).all()) == before
    assert migrate.check(engine) == []


def test_0012_marks_the_video_sources_indexed_before(cli, engine, tmp_path):
    """Sources indexed before 0012 recorded no video rules: the upgrade marks those whose
    instance is video (by transfer syntax) as made under video rules 1 (those of rules
    version 23, when it came), the rest 0."""
    from alembic import command  # noqa: PLC0415

    from tests.test_rules_rerun import _video_object  # noqa: PLC0415 - its builder

    archive = tmp_path / "archive"
    write_archive(archive, SampleShape(1, 1, 1, 2))
    (archive / "video.dcm").write_bytes(_video_object(7))
    cli("ingest", str(archive), "--out", str(tmp_path / "out"), "--workers", "1")
    seen = text(
        "SELECT i.transfer_syntax_uid, s.video_rules FROM dicom_index.source_seen s "
        "JOIN dicom_index.instance i USING (sop_uid) ORDER BY 1, 2"
    )
    with engine.connect() as c:
        before = c.execute(seen).all()
    assert [r[1] for r in before] == [0, 0, VIDEO_RULES_VERSION]
    cfg = migrate._config(engine)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0011")
        conn.commit()
    migrate.upgrade(engine)
    with engine.connect() as c:
        assert c.execute(seen).all() == [*before[:2], (before[2][0], 1)]
    assert migrate.check(engine) == []
