"""PostgreSQL roles and grants: owner, ingest, reader, reidentifier (`dicom-index db roles`).

- owner: runs the migrations and owns both schemas (the role of DICOM_INDEX_DATABASE_URL);
- ingest: reads and writes ``dicom_index``; writes the vault only through SECURITY DEFINER
  functions;
- reader: SELECT on ``dicom_index``, nothing in ``vault``;
- reidentifier: EXECUTE on the re-identification functions, no table privilege at all.

Passwords are hashed (SCRAM-SHA-256) on the client, so they reach neither the server's logs
nor ours.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from psycopg import sql as pgsql
from sqlalchemy import Connection, Engine, text

from indexer.errors import StoreError
from indexer.store.db import SETUP_LOCK

logger = logging.getLogger(__name__)

INGEST_FUNCTIONS = (
    "vault.put_identities(text[], text[], bytea[], text[], bytea[])",
    "vault.put_sources(text[], text[], bytea[])",
)
REIDENTIFY_FUNCTIONS = (
    "vault.reidentify(text, text, text)",
    "vault.reidentify_run(bigint, text, text)",
    "vault.lookup(text, bytea, text, text)",
)


@dataclass(frozen=True, slots=True)
class RoleNames:
    """The configurable role names."""

    ingest: str = "dicom_index_ingest"
    reader: str = "dicom_index_reader"
    reidentifier: str = "dicom_index_reidentifier"

    def all(self) -> tuple[str, str, str]:
        """Every role name."""
        return (self.ingest, self.reader, self.reidentifier)


def _grants(names: RoleNames, database: str) -> list[str]:
    ingest, reader, reid = (pgsql.Identifier(n).as_string() for n in names.all())
    stmts = [
        "REVOKE ALL ON SCHEMA vault FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA dicom_index TO {ingest}, {reader}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA dicom_index TO {ingest}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA dicom_index TO {ingest}",
        # the ingest stages instance rows in a temporary table (COPY, then one INSERT)
        f"GRANT TEMPORARY ON DATABASE {pgsql.Identifier(database).as_string()} TO {ingest}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA dicom_index TO {reader}",
        f"GRANT USAGE ON SCHEMA vault TO {ingest}, {reid}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA vault FROM {ingest}, {reader}, {reid}",
    ]
    stmts += [f"GRANT EXECUTE ON FUNCTION {f} TO {ingest}" for f in INGEST_FUNCTIONS]
    stmts += [f"GRANT EXECUTE ON FUNCTION {f} TO {reid}" for f in REIDENTIFY_FUNCTIONS]
    return stmts


def apply_roles(engine: Engine, names: RoleNames, passwords: dict[str, str | None]) -> list[str]:
    """Create missing roles, set given passwords, and (re)apply every grant; idempotent.

    Returns one line per role saying what was done (never a password).
    """
    report: list[str] = []
    with engine.begin() as conn:
        _one_at_a_time(conn)
        raw = conn.connection.dbapi_connection
        pgconn = raw.pgconn  # type: ignore[union-attr]
        for role in names.all():
            exists = conn.execute(
                text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
            ).scalar()
            ident = pgsql.Identifier(role).as_string()
            if not exists:
                conn.exec_driver_sql(f"CREATE ROLE {ident} LOGIN")
            password = passwords.get(role)
            if password:
                hashed = pgconn.encrypt_password(
                    password.encode(), role.encode(), b"scram-sha-256"
                ).decode()
                conn.exec_driver_sql(f"ALTER ROLE {ident} PASSWORD " + _literal(hashed))
            state = "created" if not exists else "exists"
            pw = "password set" if password else "no password change"
            report.append(f"{role}: {state}, {pw}")
        for stmt in _grants(names, conn.execute(text("SELECT current_database()")).scalar_one()):
            conn.exec_driver_sql(stmt)
    return report


def grant_if_present(engine: Engine, names: RoleNames) -> bool:
    """Re-apply grants after a migration when the roles exist; False if they do not."""
    with engine.begin() as conn:
        _one_at_a_time(conn)
        present = conn.execute(
            text("SELECT count(*) FROM pg_roles WHERE rolname = ANY(:r)"),
            {"r": list(names.all())},
        ).scalar()
        if present != len(names.all()):
            return False
        for stmt in _grants(names, conn.execute(text("SELECT current_database()")).scalar_one()):
            conn.exec_driver_sql(stmt)
    return True


def _one_at_a_time(conn: Connection) -> None:
    """Wait until no other command changes roles, grants or the schema; hold that to commit.

    Two commands setting up one database at once (the embedded quick start does at each
    command) would otherwise race: PostgreSQL refuses concurrent changes of one role's or
    one table's privileges ("tuple concurrently updated").
    """
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SETUP_LOCK})


def _literal(value: str) -> str:
    if "'" in value or "\\" in value:
        raise StoreError("unexpected character in a hashed password")
    return f"'{value}'"
