"""The `dicom-index` command: parse, call one service function, print. Errors map here."""

from __future__ import annotations

import contextlib
import csv
import getpass
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from indexer import __version__, keys, progress, sample, sources
from indexer.config import Settings, load_settings
from indexer.deid import basic_plan
from indexer.errors import ConfigError, IndexerError, StoreError, VaultAccessError
from indexer.pipeline import Ingest, Summary, compare_stores, local_output, sync_pending
from indexer.store import db, migrate, mongo, sql, vault
from indexer.store.models import metadata

EXIT_OK, EXIT_SOME_FAILED, EXIT_ERROR, EXIT_MONGO_PENDING, EXIT_INTERRUPTED = 0, 1, 3, 4, 130
READER_ROLE = "dicom_index_reader"

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger(__name__)


def handle_errors(fn: F) -> F:
    """Map our errors to one PHI-free line and an exit code, in one place."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        try:
            return fn(*args, **kwargs)
        except IndexerError as e:
            click.echo(f"error ({e.code}): {e}", err=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]  # type: ignore[no-any-return]


def _database(settings: Settings) -> db.Database:
    database = db.connect(settings.database_url, settings.state_dir)
    if database.embedded:  # the quick start: keep the embedded schema current by itself
        migrate.upgrade(database.engine)
    return database


def _keys(settings: Settings) -> keys.Keys:
    return keys.load(settings.resolved_key_file, settings.master_key)


@click.group()
@click.version_option(__version__, prog_name="dicom-index")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML settings file (also DICOM_INDEX_CONFIG).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Local state directory (embedded database, key file).",
)
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v, -vv).")
@click.pass_context
@handle_errors
def cli(ctx: click.Context, config_file: Path | None, state_dir: Path | None, verbose: int) -> None:
    """Turn DICOM archives into a de-identified, queryable index with an encrypted vault."""
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("indexer")
    root.addHandler(handler)
    root.setLevel(level)
    ctx.obj = {"settings": load_settings(config_file, state_dir=state_dir)}


# ---------------------------------------------------------------- keys
@cli.group("keys")
def keys_group() -> None:
    """Create and inspect key material."""


@keys_group.command("init")
@click.pass_context
@handle_errors
def keys_init(ctx: click.Context) -> None:
    """Create a new key file (mode 0600). An existing key file is never overwritten."""
    settings = _settings(ctx)
    path = settings.resolved_key_file
    if path.exists():
        keys.read_key_file(path)  # still refuse a bad or world-readable one
        click.echo(f"key file {path} exists; left unchanged")
        return
    keys.write_key_file(path, keys.generate())
    click.echo(
        f"created key file {path} (mode 0600). Back it up: without it the vault "
        "cannot be read and new pseudonyms will not match old ones."
    )


# ---------------------------------------------------------------- db
@cli.group("db")
def db_group() -> None:
    """Database schema and the embedded server."""


@db_group.command("upgrade")
@click.pass_context
@handle_errors
def db_upgrade(ctx: click.Context) -> None:
    """Create or upgrade the dicom_index and vault schemas (Alembic)."""
    database = db.connect(_settings(ctx).database_url, _settings(ctx).state_dir)
    migrate.upgrade(database.engine)
    click.echo(f"schema at {migrate.current(database.engine)}")


@db_group.command("check")
@click.pass_context
@handle_errors
def db_check(ctx: click.Context) -> None:
    """Check that the database schema is at head and matches the models."""
    database = db.connect(_settings(ctx).database_url, _settings(ctx).state_dir)
    migrate.require_head(database.engine)
    diffs = migrate.check(database.engine)
    if diffs:
        raise StoreError("schema differs from the models: " + "; ".join(diffs))
    click.echo(f"schema at {migrate.head()}, {len(metadata.tables)} tables in step")


@db_group.command("stop")
@click.pass_context
@handle_errors
def db_stop(ctx: click.Context) -> None:
    """Stop the embedded PostgreSQL server of the state directory."""
    stopped = db.stop_embedded(_settings(ctx).state_dir)
    click.echo("embedded server stopped" if stopped else "no embedded server running")


# ---------------------------------------------------------------- ingest
@cli.command()
@click.argument(
    "sources_", metavar="SOURCE...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory for pseudonymized copies (<study>/<series>/<sop>.dcm).",
)
@click.option("--batch-size", type=click.IntRange(1, 100_000), help="Files per transaction.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@click.pass_context
@handle_errors
def ingest(
    ctx: click.Context,
    sources_: tuple[Path, ...],
    out_dir: Path,
    batch_size: int | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """De-identify, copy and index every DICOM object under the SOURCEs (folders, zip, tar)."""
    settings = _settings(ctx)
    key_material = _keys(settings)
    database = _database(settings)
    with _mongo(settings) as sink:
        job = Ingest(
            database,
            key_material,
            basic_plan(),
            local_output(out_dir),
            id_prefix=settings.id_prefix,
            max_shift_days=settings.date_shift_days,
            batch_size=batch_size or settings.batch_size,
            max_member_bytes=settings.max_member_bytes,
            mongo=sink,
        )

        def stop(_signum: int, _frame: object) -> None:
            job.stop_requested = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        show = progress.wanted(quiet)
        total = sources.count_files(list(sources_)) if show else None
        with progress.bar(show, total) as update:
            summary = job.run(list(sources_), update)
    _print_summary(summary, as_json)
    if summary.status == "interrupted":
        sys.exit(EXIT_INTERRUPTED)
    if summary.mongo_pending_batches:
        sys.exit(EXIT_MONGO_PENDING)
    sys.exit(EXIT_SOME_FAILED if summary.files_failed else EXIT_OK)


@contextlib.contextmanager
def _mongo(settings: Settings) -> Iterator[mongo.MongoSink | None]:
    with mongo.open_sink(
        settings.mongo_url,
        settings.mongo_db,
        enabled=settings.mongo_enabled,
        state_dir=settings.state_dir,
        timeout_ms=settings.mongo_timeout_ms,
    ) as (sink, why_off):
        if sink is None:
            click.echo(f"note: the MongoDB sink is off: {why_off}", err=True)
        yield sink


# ---------------------------------------------------------------- sync / check
@cli.command("sync")
@click.pass_context
@handle_errors
def sync_cmd(ctx: click.Context) -> None:
    """Write every batch whose MongoDB write is pending, so MongoDB matches PostgreSQL."""
    settings = _settings(ctx)
    database = _database(settings)
    with _mongo(settings) as sink:
        if sink is None:
            raise ConfigError("nothing to sync to: the MongoDB sink is off")
        report = sync_pending(database, sink)
    click.echo(
        f"synced {report.batches} batches ({report.instances} instances); "
        "MongoDB is level with PostgreSQL"
    )


@cli.command("check")
@click.option(
    "--sample",
    default=50,
    show_default=True,
    type=click.IntRange(0, 100_000),
    help="How many instances to compare document by document.",
)
@click.pass_context
@handle_errors
def check_cmd(ctx: click.Context, sample: int) -> None:
    """Compare PostgreSQL and MongoDB: counts per level and a sample of documents."""
    settings = _settings(ctx)
    database = _database(settings)
    with _mongo(settings) as sink:
        if sink is None:
            raise ConfigError("nothing to compare: the MongoDB sink is off")
        problems = compare_stores(database, sink, sample=sample)
    for p in problems:
        click.echo(f"difference: {p}")
    if problems:
        sys.exit(EXIT_SOME_FAILED)
    click.echo("PostgreSQL and MongoDB agree")


def _print_summary(summary: Summary, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.as_dict(), sort_keys=True))
        return
    s = summary
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(s.failure_reasons.items()))
    lines = [
        f"run {s.run_id} {s.status}",
        (
            f"files: {s.files_seen} seen, {s.files_indexed} indexed "
            f"({s.files_already_indexed} already in the index), {s.files_skipped} skipped, "
            f"{s.files_failed} failed" + (f" ({reasons})" if reasons else "")
        ),
        f"index: {s.studies} studies, {s.series} series, {s.instances} instances",
        *(
            [f"mongodb: {s.mongo_pending_batches} batches pending; run `dicom-index sync`"]
            if s.mongo_pending_batches
            else []
        ),
        (
            f"read {s.bytes_read / 1e6:,.1f} MB in {s.seconds:,.1f} s "
            f"({s.files_per_second:,.1f} files/s)"
        ),
    ]
    click.echo("\n".join(lines))


# ---------------------------------------------------------------- sql
@cli.command("sql")
@click.argument("query")
@click.option("--csv", "fmt", flag_value="csv", help="Print CSV.")
@click.option("--json", "fmt", flag_value="json", help="Print JSON (one array of objects).")
@click.pass_context
@handle_errors
def sql_cmd(ctx: click.Context, query: str, fmt: str | None) -> None:
    """Run one read-only SELECT against the dicom_index schema (never the vault)."""
    settings = _settings(ctx)
    database = _database(settings)
    engine = db.reader_engine(database, settings.reader_url, READER_ROLE)
    result = sql.read_only_query(engine, query, READER_ROLE)
    if fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(result.columns)
        w.writerows(result.rows)
    elif fmt == "json":
        click.echo(
            json.dumps(
                [dict(zip(result.columns, r, strict=True)) for r in result.rows],
                default=str,
                indent=1,
            )
        )
    else:
        table = Table(*result.columns)
        for r in result.rows:
            table.add_row(*("" if v is None else str(v) for v in r))
        Console(width=200).print(table)
        click.echo(f"({len(result.rows)} rows)")


# ---------------------------------------------------------------- reidentify
@cli.command()
@click.argument("target")
@click.option("--reason", required=True, help="Why the originals are needed (audited).")
@click.option("--actor", default=None, help="Who asks (default: the login name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def reidentify(
    ctx: click.Context, target: str, reason: str, actor: str | None, as_json: bool
) -> None:
    """Show the original identifiers behind a pseudonym, UID or source id (audited)."""
    settings = _settings(ctx)
    if not reason.strip():
        raise VaultAccessError("a reason is required to re-identify (--reason)")
    key_material = _keys(settings)
    database = _database(settings)
    with db.transaction(database.engine) as s:
        sealed = vault.release(s, target, reason, actor or getpass.getuser())
    released = vault.open_sealed(key_material, sealed)  # after the audit row is committed
    if not released:
        click.echo("no vault entry for that pseudonym", err=True)
        sys.exit(EXIT_SOME_FAILED)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {"kind": r.kind, "pseudonym": r.pseudonym, "original": r.original}
                    for r in released
                ],
                indent=1,
            )
        )
        return
    table = Table("kind", "pseudonym", "original")
    for r in released:
        table.add_row(r.kind, r.pseudonym, r.original)
    Console(width=200).print(table)


# ---------------------------------------------------------------- sample
@cli.command("sample")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--patients", default=2, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--studies", default=2, show_default=True, type=click.IntRange(1, 100))
@click.option("--series", default=2, show_default=True, type=click.IntRange(1, 100))
@click.option("--instances", default=3, show_default=True, type=click.IntRange(1, 10_000))
@handle_errors
def sample_cmd(out: Path, patients: int, studies: int, series: int, instances: int) -> None:
    """Write a synthetic archive (folder, or .zip) of objects with planted fake PHI."""
    n = sample.write_archive(out, sample.SampleShape(patients, studies, series, instances))
    click.echo(f"wrote {n} synthetic DICOM files to {out}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="dicom-index")


if __name__ == "__main__":
    main()
