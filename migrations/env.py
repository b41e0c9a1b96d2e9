"""Alembic environment: targets indexer.store.models.metadata, one transaction per migration."""

from alembic import context
from sqlalchemy import create_engine, text

from indexer.store.db import SETUP_LOCK, normalize_url
from indexer.store.models import INDEX_SCHEMA, metadata

config = context.config


def include_name(name, type_, _parent_names):
    if type_ == "schema":
        return name in (INDEX_SCHEMA, "vault")
    return True


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(normalize_url(config.get_main_option("sqlalchemy.url")))
        with engine.connect() as conn:
            _run(conn)
        engine.dispose()
    else:
        _run(connection)


def _run(conn) -> None:
    conn.execute(text("SET lock_timeout = '10s'"))
    conn.execute(text("SET statement_timeout = '300s'"))
    # locked first: two CREATE SCHEMA IF NOT EXISTS at once can both try to create it
    conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SETUP_LOCK})
    try:  # released whatever happens: the connection goes back to a pool, lock and all
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {INDEX_SCHEMA}"))
        conn.commit()
        context.configure(
            connection=conn,
            target_metadata=metadata,
            include_schemas=True,
            include_name=include_name,
            version_table_schema=INDEX_SCHEMA,
            compare_server_default=True,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    except BaseException:
        conn.rollback()  # an aborted transaction would refuse the unlock below
        raise
    finally:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SETUP_LOCK})
        conn.commit()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run_migrations_online()
