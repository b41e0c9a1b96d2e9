"""The `dicom-index` command: parse, call one service function, print. Errors map here."""

from __future__ import annotations

import contextlib
import csv
import gc
import getpass
import importlib.util
import itertools
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from indexer import __version__
from indexer.config import Settings, load_settings
from indexer.errors import (
    ConfigError,
    IndexerError,
    SourceError,
    StoreError,
    VaultAccessError,
    database_failure,
    os_reason,
)
from indexer.lazy import lazy

# numpy (imported by pydicom, used for pixel bits: no matrix work) starts one OpenBLAS thread
# a core, each spinning a core for about 0.05 s at import, in every process: a user's own
# setting wins
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

if TYPE_CHECKING:  # imported on first use below: start-up stays short, workers stay light
    import rich.console as rich_console
    import rich.table as rich_table

    from indexer import (
        copycheck,
        deid,
        keys,
        leakscan,
        pipeline,
        progress,
        rules_file,
        sample,
        sources,
        work,
    )
    from indexer import workers as workers_
    from indexer.deid import Plan
    from indexer.store import audit, db, migrate, models, mongo, mongo_server, roles, sql, vault
else:
    keys, pipeline, progress, rules_file, sample, sources, work = (
        lazy(f"indexer.{m}")
        for m in ("keys", "pipeline", "progress", "rules_file", "sample", "sources", "work")
    )
    workers_, leakscan = lazy("indexer.workers"), lazy("indexer.leakscan")
    copycheck = lazy("indexer.copycheck")
    rich_console, rich_table = lazy("rich.console"), lazy("rich.table")
    audit, db, migrate, models, mongo, mongo_server, roles, sql, vault = (
        lazy(f"indexer.store.{m}")
        for m in (
            "audit",
            "db",
            "migrate",
            "models",
            "mongo",
            "mongo_server",
            "roles",
            "sql",
            "vault",
        )
    )
    deid = lazy("indexer.deid")

EXIT_OK, EXIT_SOME_FAILED, EXIT_ERROR, EXIT_MONGO_PENDING, EXIT_INTERRUPTED = 0, 1, 3, 4, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as the shell reports a command ended by it

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
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: it says them
        except BrokenPipeError:  # what reads our output stopped (`| head`): as SIGPIPE ends cat
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error
            sys.exit(EXIT_BROKEN_PIPE)
        except Exception as e:  # noqa: BLE001 - a defect: its text can quote a value or a path
            if (failure := database_failure(e)) is not None:  # the server went away, ...
                click.echo(f"error ({StoreError.code}): {failure}", err=True)
                sys.exit(StoreError.exit_code)
            _report_defect(e)
            sys.exit(EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


def _report_defect(e: Exception) -> None:
    """One line for an error we did not foresee: its kind and where it was raised.

    Never its text, nor a traceback's (both can quote a value or a source path): with -v,
    the frames it passed through, by file, line and function only.
    """
    frames = traceback.extract_tb(e.__traceback__)
    last = frames[-1] if frames else None
    where = f" at {Path(last.filename).name}:{last.lineno}" if last else ""
    click.echo(
        f"error (internal): an unexpected {type(e).__name__}{where}; this is a defect of "
        "dicom-index, please report it (-v adds where it went)",
        err=True,
    )
    for f in frames:
        logger.info("  in %s:%s, %s", Path(f.filename).name, f.lineno, f.name)


def _settled() -> None:
    """A command's set-up is done and its long work begins: collect garbage again (`main`).

    What set-up made (modules, connections, the plan) is frozen first: it lives until the
    process ends, so later collections skip it. In-process callers (tests) never turned
    collection off, and nothing changes for them.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]  # type: ignore[no-any-return]


def _database(settings: Settings) -> db.Database:
    """The owner's connection; the embedded server keeps its schema and roles current."""
    database = db.connect(settings.database_url, settings.state_dir)
    if database.embedded:  # the quick start: no `db upgrade` or `db roles` by hand
        if migrate.current(database.engine) != migrate.head():
            migrate.upgrade(database.engine)
        names = _role_names(settings)
        if not roles.grant_if_present(database.engine, names):
            roles.apply_roles(database.engine, names, {})
    return database


def _plan(
    settings: Settings, options: Sequence[str], burned_in: str | None, rules: Path | None = None
) -> Plan:
    """The de-identification plan from settings and flags; flags add options."""
    path = rules or settings.rules_file
    masks = settings.pixel_masks_file
    return deid.build_plan(
        [*settings.deid_options, *options],
        burned_in=burned_in or settings.burned_in,
        rules=rules_file.load(path) if path else None,
        pixel_masks=rules_file.load_masks(masks) if masks else (),
    )


def _role_names(settings: Settings) -> roles.RoleNames:
    return roles.RoleNames(settings.role_ingest, settings.role_reader, settings.role_reidentifier)


def _role_db(settings: Settings, which: str) -> db.Database:
    """A connection as the role a command needs (see `dicom-index db roles`)."""
    database = _database(settings)
    names = _role_names(settings)
    url, role = {
        "ingest": (settings.ingest_url, names.ingest),
        "reader": (settings.reader_url, names.reader),
        "reidentifier": (settings.reidentifier_url, names.reidentifier),
    }[which]
    return db.Database(db.role_engine(database, url, role), database.embedded)


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
    # other libraries' records are never printed: their text can quote values and paths
    # (Python's last-resort handler printed any warning of a logger without a handler)
    logging.getLogger().addHandler(logging.NullHandler())
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


@keys_group.command("rotate")
@click.option(
    "--batch-size",
    default=500,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Rows re-encrypted per transaction.",
)
@click.option("--max-batches", type=click.IntRange(1), help="Stop after this many batches.")
@click.option(
    "--retire-old",
    is_flag=True,
    help="When no row uses them any more, remove old vault keys from the key file.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@click.pass_context
@handle_errors
def keys_rotate(
    ctx: click.Context, batch_size: int, max_batches: int | None, retire_old: bool, quiet: bool
) -> None:
    """Re-encrypt the vault under a new vault key, in resumable batches.

    A new key is made only when no earlier rotation is unfinished; otherwise this run goes on
    with the active key. Old keys stay in the key file (rows under them stay readable) until
    --retire-old removes those no row uses. The pseudonym key never changes.
    """
    settings = _settings(ctx)
    if settings.master_key:
        raise ConfigError(
            "rotation needs a key file: keys derived from DICOM_INDEX_MASTER_KEY cannot change"
        )
    path = settings.resolved_key_file
    key_material = keys.read_key_file(path)
    database = _database(settings)
    with db.transaction(database.engine) as s:
        remaining = vault.rows_not_under(s, key_material.active_vault_id)
    if remaining == 0:
        key_material = keys.with_new_vault_key(key_material)
        keys.replace_key_file(path, key_material)  # before any row uses it
        click.echo(f"new vault key {key_material.active_vault_id} is active")
    else:
        click.echo(f"resuming rotation to {key_material.active_vault_id}")
    with db.transaction(database.engine) as s:
        to_do = vault.rows_not_under(s, key_material.active_vault_id)
    _settled()
    mode = progress.mode(quiet)
    with progress.reporter(mode, to_do, label="rotate", reads=False, unit="rows") as update:
        done = vault.reencrypt(
            database.engine, key_material, batch_size, max_batches=max_batches, progress=update
        )
    with db.transaction(database.engine) as s:
        remaining = vault.rows_not_under(s, key_material.active_vault_id)
        in_use = vault.key_ids_in_use(s)
    click.echo(f"re-encrypted {done} rows; {remaining} rows still under older keys")
    unused = set(key_material.vault) - in_use - {key_material.active_vault_id}
    if retire_old and remaining == 0 and unused:
        keys.replace_key_file(path, keys.without_vault_keys(key_material, unused))
        click.echo(f"retired vault keys {', '.join(sorted(unused))}")


# ---------------------------------------------------------------- db
@cli.group("db")
def db_group() -> None:
    """Database schema and the embedded servers."""


@db_group.command("upgrade")
@click.pass_context
@handle_errors
def db_upgrade(ctx: click.Context) -> None:
    """Create or upgrade the dicom_index and vault schemas (Alembic)."""
    settings = _settings(ctx)
    database = db.connect(settings.database_url, settings.state_dir)
    migrate.upgrade(database.engine)
    regranted = roles.grant_if_present(database.engine, _role_names(settings))
    click.echo(
        f"schema at {migrate.current(database.engine)}"
        + (
            "; grants re-applied to the roles"
            if regranted
            else "; run `dicom-index db roles` to create the roles"
        )
    )


@db_group.command("roles")
@click.option("--prompt", is_flag=True, help="Ask for each role's password on the terminal.")
@click.pass_context
@handle_errors
def db_roles(ctx: click.Context, prompt: bool) -> None:
    """Create the ingest, reader and reidentifier roles and apply every grant (idempotent).

    Passwords come from DICOM_INDEX_INGEST_PASSWORD, DICOM_INDEX_READER_PASSWORD and
    DICOM_INDEX_REIDENTIFIER_PASSWORD, or from --prompt; never from the command line.
    """
    settings = _settings(ctx)
    database = db.connect(settings.database_url, settings.state_dir)
    migrate.require_head(database.engine)
    names = _role_names(settings)
    passwords: dict[str, str | None] = {}
    for label, role in (
        ("INGEST", names.ingest),
        ("READER", names.reader),
        ("REIDENTIFIER", names.reidentifier),
    ):
        pw = os.environ.get(f"DICOM_INDEX_{label}_PASSWORD")
        if pw is None and prompt:
            pw = (
                click.prompt(
                    f"password for {role} (empty: leave unchanged)",
                    default="",
                    hide_input=True,
                    show_default=False,
                )
                or None
            )
        passwords[role] = pw
    for line in roles.apply_roles(database.engine, names, passwords):
        click.echo(line)


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
    click.echo(f"schema at {migrate.head()}, {len(models.metadata.tables)} tables in step")


@db_group.command("stop")
@click.pass_context
@handle_errors
def db_stop(ctx: click.Context) -> None:
    """Stop the embedded PostgreSQL and MongoDB servers of the state directory."""
    state_dir = _settings(ctx).state_dir
    stopped, failed = [], []
    for name, stop in (("PostgreSQL", db.stop_embedded), ("MongoDB", mongo_server.stop)):
        try:
            if stop(state_dir):
                stopped.append(name)
        except StoreError as e:  # the other server is stopped all the same
            failed.append(e)
    if stopped or not failed:
        click.echo(
            f"embedded {' and '.join(stopped)} server{'s' if len(stopped) > 1 else ''} stopped"
            if stopped
            else "no embedded server running"
        )
    if failed:
        raise failed[0]


@db_group.command("status")
@click.pass_context
@handle_errors
def db_status(ctx: click.Context) -> None:
    """Which servers the settings name, and whether the state directory's embedded ones run."""
    settings = _settings(ctx)
    if settings.database_url is not None:
        click.echo("PostgreSQL: the server of the database_url setting")
    else:
        pid = db.embedded_pid(settings.state_dir)
        where = (settings.state_dir / "pg").resolve()
        click.echo(f"PostgreSQL: embedded in {where}, " + _running(pid))
    if not settings.mongo_enabled:
        click.echo("MongoDB: off (mongo_enabled = false)")
    elif settings.mongo_url is not None:
        click.echo("MongoDB: the server of the mongo_url setting")
    elif importlib.util.find_spec("secantus") is None:
        click.echo("MongoDB: off (no mongo_url, and the embedded-mongo extra is not installed)")
    else:
        storage = mongo_server.storage_of(settings.state_dir)
        found = mongo_server.running(storage)
        if found is not None:
            state = f"{_running(found.pid)} at {mongo_server.shown(found.uri)}"
        elif lost := mongo_server.unrecorded(storage):
            state = f"{_running(lost[0])} without its state file; `dicom-index db stop` stops it"
        else:
            state = _running(None)
        click.echo(f"MongoDB: embedded in {storage}, {state}")


def _running(pid: int | None) -> str:
    return "not running" if pid is None else f"running (pid {pid})"


def plan_options(fn: F) -> F:
    """The flags that make the de-identification plan: `ingest`, `deid`, `profile`."""
    for option in reversed(
        [
            click.option(
                "--option",
                "options",
                multiple=True,
                metavar="NAME",
                help="A PS3.15 option (repeatable): retain-uids, clean-descriptors, ...",
            ),
            click.option(
                "--burned-in",
                type=click.Choice(["reject", "allow", "clean"]),
                help="Objects whose pixels may carry burned-in text.",
            ),
            click.option(
                "--rules",
                "rules",
                type=click.Path(path_type=Path, dir_okay=False, exists=True),
                help="Site rules file (JSON or YAML) that overrides the profile.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def deid_options(fn: F) -> F:
    """The de-identification flags shared by `ingest` and `deid`."""
    fn = click.option("--no-verify", is_flag=True, help="Skip the leak check of each output.")(fn)
    return plan_options(fn)


def source_arguments(fn: F) -> F:
    """SOURCE... and --files-from, shared by `ingest` and `deid`."""
    fn = click.option(
        "--files-from",
        type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
        help="A list of sources, one per line or NUL-separated (find -print0); - reads it "
        "from standard input.",
    )(fn)
    return click.argument(
        "sources_", metavar="[SOURCE]...", nargs=-1, type=click.Path(path_type=Path)
    )(fn)


def _roots(named: Sequence[Path], files_from: Path | None) -> sources.Roots:
    if not named and files_from is None:
        raise ConfigError("no source: give a SOURCE, or a list of them with --files-from")
    return sources.Roots(named, files_from)


# ---------------------------------------------------------------- ingest
@cli.command()
@source_arguments
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory for pseudonymized copies (<study>/<series>/<sop>.dcm).",
)
@click.option("--batch-size", type=click.IntRange(1, 100_000), help="Files per transaction.")
@deid_options
@click.option("--strict", is_flag=True, help="Stop at the first failed file (exit code 3).")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="Processes for the per-file work (default: the number of cores).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@click.pass_context
@handle_errors
def ingest(
    ctx: click.Context,
    sources_: tuple[Path, ...],
    files_from: Path | None,
    out_dir: Path,
    batch_size: int | None,
    options: tuple[str, ...],
    burned_in: str | None,
    rules: Path | None,
    no_verify: bool,
    strict: bool,
    workers: int | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """De-identify, copy and index every DICOM object under the SOURCEs (folders, zip, tar)."""
    settings = _settings(ctx)
    roots = _roots(sources_, files_from)
    workers = workers or settings.workers or os.cpu_count() or 1
    if workers > 1 and sources.at_least(roots, workers_.POOL_THRESHOLD):
        workers_.prestart()  # imports the per-file code while the database connects
    plan = _plan(settings, options, burned_in, rules)
    key_material = _keys(settings)
    if settings.mongo_enabled and settings.mongo_url is None:
        # the embedded server starts meanwhile, too, once the settings are known to be good:
        # it outlives the command
        mongo.prestart(settings.state_dir)
    _note_output_inside(roots, out_dir)
    database = _role_db(settings, "ingest")
    with _mongo(settings) as sink, contextlib.closing(pipeline.local_output(out_dir)) as output:
        job = pipeline.Ingest(
            database,
            key_material,
            plan,
            output,
            id_prefix=settings.id_prefix,
            max_shift_days=settings.date_shift_days,
            batch_size=batch_size or settings.batch_size,
            max_member_bytes=settings.max_member_bytes,
            mongo=sink,
            verify=settings.verify_output and not no_verify,
            strict=strict,
            workers=workers,
        )

        def stop(_signum: int, _frame: object) -> None:
            job.stop_requested = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        mode = progress.mode(quiet)
        total = sources.count_files(roots) if mode == "bar" else None
        with progress.reporter(mode, total) as update:
            _settled()
            summary = job.run(roots, update)
    _print_summary(summary, as_json)
    if summary.status == "interrupted":
        sys.exit(EXIT_INTERRUPTED)
    if summary.status == "aborted":
        sys.exit(EXIT_ERROR)
    if summary.mongo_pending_batches:
        sys.exit(EXIT_MONGO_PENDING)
    sys.exit(EXIT_SOME_FAILED if summary.files_failed else EXIT_OK)


def _note_output_inside(roots: Iterable[Path], out_dir: Path) -> None:
    sources.refuse_inside(roots, [out_dir])
    if sources.below([out_dir], roots):
        click.echo("note: the output directory is inside a source: it is not walked", err=True)


@contextlib.contextmanager
def _mongo(settings: Settings) -> Iterator[mongo.MongoSink | None]:
    if not settings.mongo_enabled:  # not even pymongo is imported
        click.echo("note: the MongoDB sink is off: switched off (mongo_enabled = false)", err=True)
        yield None
        return
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
@click.option(
    "--all",
    "rebuild",
    is_flag=True,
    help="Rewrite every document from PostgreSQL and remove those it has no row for: for a "
    "MongoDB that lost writes (its server killed, a restore), or a new one.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress display (with --all).")
@click.pass_context
@handle_errors
def sync_cmd(ctx: click.Context, rebuild: bool, quiet: bool) -> None:
    """Write every batch whose MongoDB write is pending, so MongoDB matches PostgreSQL."""
    settings = _settings(ctx)
    database = _role_db(settings, "ingest")
    with _mongo(settings) as sink:
        if sink is None:
            raise ConfigError("nothing to sync to: the MongoDB sink is off")
        _settled()
        if not rebuild:
            report = pipeline.sync_pending(database, sink)
            click.echo(
                f"synced {report.batches} batches ({report.instances} instances); "
                "MongoDB is level with PostgreSQL"
            )
            return
        mode = progress.mode(quiet)
        with db.transaction(database.engine) as s:
            total = sql.level_counts(s)["instances"] if mode == "bar" else None
        with progress.reporter(mode, total, label="sync", reads=False) as update:
            rebuilt = pipeline.rebuild_documents(database, sink, progress=update)
    removed = ", ".join(f"{n} {name}" for name, n in rebuilt.removed.items())
    click.echo(
        f"rewrote the documents of {rebuilt.instances} instances; removed documents "
        f"PostgreSQL has no row for: {removed}; MongoDB is level with PostgreSQL"
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
    database = _role_db(settings, "reader")
    with _mongo(settings) as sink:
        if sink is None:
            raise ConfigError("nothing to compare: the MongoDB sink is off")
        _settled()
        problems = pipeline.compare_stores(database, sink, sample=sample)
    for p in problems:
        click.echo(f"difference: {p}")
    if problems:
        click.echo(
            "to mend: `dicom-index sync` writes the batches that wait; `dicom-index sync --all` "
            "rewrites every document from PostgreSQL (the source of truth)"
        )
        sys.exit(EXIT_SOME_FAILED)
    click.echo("PostgreSQL and MongoDB agree")


@cli.command("check-copies")
@click.argument(
    "outputs",
    metavar="OUT...",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
)
@click.option("--content", is_flag=True, help="Compare each copy's SHA-256 too (reads every copy).")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@click.pass_context
@handle_errors
def check_copies_cmd(
    ctx: click.Context, outputs: tuple[Path, ...], content: bool, quiet: bool
) -> None:
    """Check output directories against the index's copies: all there, whole, no others.

    Each copy the index places in an OUT must be there with its size, beginning as a copy
    does (with --content, its SHA-256 too), and every copy there must be one it places
    there; exit 1 otherwise. An output is known by the id it keeps in itself
    (.dicom-index-output): a directory moved since its ingest is checked as well.
    """
    settings = _settings(ctx)
    database = _role_db(settings, "reader")
    mode = progress.mode(quiet)
    problems = 0
    for out in outputs:
        total = copycheck.count_copies(database, out) if mode == "bar" else None
        with progress.reporter(mode, total, label="check", reads=content) as update:
            report = copycheck.check_copies(database, out, content=content, progress=update)
        problems += report.problems
        _print_copy_check(report, content)
    if unrecorded := copycheck.unrecorded_copies(database):
        click.echo(
            f"not checked: {unrecorded} instance(s) indexed before runs recorded their output"
        )
    sys.exit(EXIT_SOME_FAILED if problems else EXIT_OK)


def _print_copy_check(report: copycheck.CopyCheck, content: bool) -> None:
    r = report
    compared = "sizes and contents" if content else "sizes"
    click.echo(
        f"output {r.output_id}: {r.checked} copies checked ({compared}), {r.missing} missing, "
        f"{r.unreadable} unreadable, {r.other_size} of another size, {r.damaged} damaged"
        + (f", {r.other_content} with other content" if content else "")
        + f"; {r.not_indexed} not indexed here"
    )
    for line in r.examples:
        click.echo(f"  {line}")
    if r.problems > len(r.examples):
        click.echo(f"  ... and {r.problems - len(r.examples)} more")
    if r.missing + r.unreadable + r.other_size + r.damaged + r.other_content:
        click.echo(
            "to mend: `dicom-index ingest` of the same sources into this output writes missing "
            "copies and what a crash left of them again (remove first a copy whose content differs)"
        )


def _failures_hint(run_id: int) -> str:
    """How to list a run's skipped and failed files, and find one's path."""
    query = f"SELECT source_id, outcome, reason, message FROM file_error WHERE run_id = {run_id}"
    return (
        f'which, and why: dicom-index sql "{query}" '
        "(a source's path: dicom-index reidentify SOURCE_ID --reason ...)"
    )


def _print_summary(summary: pipeline.Summary, as_json: bool) -> None:
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
            [
                (
                    f"replaced: {s.copies_replaced} copies made before from the same sources "
                    "under other rules or settings, with their index rows"
                )
            ]
            if s.copies_replaced
            else []
        ),
        *(
            [
                (
                    f"withdrawn: {s.copies_withdrawn} copies made before of the same sources, "
                    "refused or named otherwise under the rules and settings in force, with "
                    "their index rows"
                )
            ]
            if s.copies_withdrawn
            else []
        ),
        *([_failures_hint(s.run_id)] if s.files_skipped or s.files_failed else []),
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
    if not query.strip():
        raise ConfigError("the query is empty: give one SELECT")
    settings = _settings(ctx)
    reader = _role_db(settings, "reader")
    with sql.read_only_rows(reader.engine, query, settings.role_reader) as (columns, rows):
        if fmt == "csv":  # CSV and JSON are written as the rows come: an export of any size
            w = csv.writer(sys.stdout, lineterminator="\n")
            w.writerow(columns)
            w.writerows(rows)
        elif fmt == "json":
            _json_rows(columns, rows)
        else:
            _table_pages(columns, rows)


def _console(width: int) -> rich_console.Console:
    """A console for tables; a broken pipe ends the command as any command's does (141).

    rich's own reaction is exit 1, which says the command failed.
    """
    console = rich_console.Console(width=width)

    def broken_pipe() -> None:
        raise BrokenPipeError

    console.on_broken_pipe = broken_pipe  # type: ignore[method-assign]
    return console


TABLE_PAGE_ROWS = 1000  # rows drawn as one table: a table of any length is never held


def _table_pages(columns: list[str], rows: Iterator[tuple[Any, ...]]) -> None:
    """Rows drawn as tables of ``TABLE_PAGE_ROWS`` each, as they come; then their count.

    A table's columns are as wide as its page needs (as psql's ``FETCH_COUNT`` pages are).
    """
    console = _console(200)
    n = 0
    while True:
        page = list(itertools.islice(rows, TABLE_PAGE_ROWS))
        if page or not n:  # no rows: the header alone
            table = rich_table.Table(*columns)
            for r in page:
                table.add_row(*("" if v is None else str(v) for v in r))
            console.print(table)
        n += len(page)
        if len(page) < TABLE_PAGE_ROWS:
            break
    click.echo(f"({n} rows)")


def _json_rows(columns: list[str], rows: Iterator[tuple[Any, ...]]) -> None:
    """One JSON array of objects, written an object at a time (as ``json.dumps(indent=1)``)."""
    sep = "[\n"
    for r in rows:
        item = json.dumps(dict(zip(columns, r, strict=True)), default=str, indent=1)
        sys.stdout.write(sep + "\n".join(" " + line for line in item.splitlines()))
        sep = ",\n"
    sys.stdout.write("[]\n" if sep == "[\n" else "\n]\n")


# ---------------------------------------------------------------- reidentify
def _need_reason(reason: str) -> str:
    if not reason.strip():
        raise VaultAccessError("a reason is required to re-identify (--reason)")
    return reason


@cli.command()
@click.argument("target", required=False)
@click.option("--run", "run_id", type=int, help="Every study of this ingest run, in one call.")
@click.option("--reason", required=True, help="Why the originals are needed (audited).")
@click.option("--actor", default=None, help="Who asks (default: the login name).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def reidentify(
    ctx: click.Context,
    target: str | None,
    run_id: int | None,
    reason: str,
    actor: str | None,
    as_json: bool,
) -> None:
    """Show the originals behind a pseudonym, UID, accession number or source id (audited).

    TARGET is a pseudonymized PatientID, Study/Series/SOP Instance UID, AccessionNumber, or a
    `src-` source id. With --run, the mapping of every study of that ingest run.
    """
    settings = _settings(ctx)
    if (target is None) == (run_id is None):
        raise ConfigError("give either a TARGET or --run RUN_ID")
    _need_reason(reason)
    key_material = _keys(settings)
    engine = _role_db(settings, "reidentifier").engine
    who = actor or getpass.getuser()
    if run_id is not None:
        with db.transaction(engine) as s:
            mapping = vault.release_run(s, run_id, reason, who)
        opened = vault.open_sealed(key_material, [m.sealed for m in mapping])
        study_of = {(m.sealed.kind, m.sealed.pseudonym): m.study_uid for m in mapping}
        rows = [(study_of[(r.kind, r.pseudonym)], r.kind, r.pseudonym, r.original) for r in opened]
        if not rows:
            click.echo("no vault entry for a study of that run", err=True)
            sys.exit(EXIT_SOME_FAILED)
        _print_released(sorted(rows), ("study", "kind", "pseudonym", "original"), as_json)
        return
    assert target is not None  # noqa: S101 - checked above
    with db.transaction(engine) as s:
        sealed = vault.release(s, target, reason, who)
    released = vault.open_sealed(key_material, sealed)  # after the audit row is committed
    if not released:
        click.echo("no vault entry for that pseudonym", err=True)
        sys.exit(EXIT_SOME_FAILED)
    _print_released(
        [(r.kind, r.pseudonym, r.original) for r in released],
        ("kind", "pseudonym", "original"),
        as_json,
    )


def _print_released(
    rows: Sequence[tuple[str, ...]], header: tuple[str, ...], as_json: bool
) -> None:
    if as_json:
        click.echo(json.dumps([dict(zip(header, r, strict=True)) for r in rows], indent=1))
        return
    table = rich_table.Table(*header)
    for r in rows:
        table.add_row(*map(_shown, r))
    _console(220).print(table)


def _shown(value: str) -> str:
    """``value`` for a terminal: bytes of a name that are not UTF-8 as escapes, not "?".

    As ``ls -b`` shows them: a backslash, x and two hex digits.
    """
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


LOOKUP_KINDS = {
    "patient-id": "patient_id",
    "study-uid": "study_uid",
    "accession-number": "accession_number",
    "sop-uid": "sop_uid",
}


@cli.command()
@click.argument("kind", type=click.Choice(sorted(LOOKUP_KINDS)))
@click.option("--reason", required=True, help="Why the pseudonym is needed (audited).")
@click.option("--actor", default=None, help="Who asks (default: the login name).")
@click.pass_context
@handle_errors
def lookup(ctx: click.Context, kind: str, reason: str, actor: str | None) -> None:
    """Find the pseudonym of an ORIGINAL value, read from standard input (audited).

    The original is read from standard input, never from the command line, so that it stays
    out of shell history and process lists: `echo MRN123 | dicom-index lookup patient-id ...`.
    """
    settings = _settings(ctx)
    _need_reason(reason)
    original = sys.stdin.readline().strip()
    if not original:
        raise ConfigError("no original value on standard input")
    key_material = _keys(settings)
    engine = _role_db(settings, "reidentifier").engine
    with db.transaction(engine) as s:
        found = vault.lookup(
            s, LOOKUP_KINDS[kind], original, reason, actor or getpass.getuser(), key_material
        )
    if not found:
        click.echo("no pseudonym for that value", err=True)
        sys.exit(EXIT_SOME_FAILED)
    for pseudonym in found:
        click.echo(pseudonym)


# ---------------------------------------------------------------- audit
@cli.group("audit")
def audit_group() -> None:
    """Read and verify the re-identification audit log (owner role)."""


@audit_group.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def audit_list(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The newest audit rows: when, who (role and actor), why, what, result."""
    database = _database(_settings(ctx))
    with db.transaction(database.engine) as s:
        rows = audit.entries(s, limit=limit)
    header = ("id", "at", "db_role", "actor", "purpose", "target", "result", "rows")
    data = [
        (
            str(e.id),
            e.at.isoformat(),
            e.db_role,
            e.actor,
            e.purpose,
            e.target,
            e.result,
            str(e.rows_released),
        )
        for e in rows
    ]
    _print_released(data, header, as_json)


@audit_group.command("verify")
@click.option(
    "--expect-head",
    metavar="ID:HASH",
    help="A head printed by an earlier verify: check the chain still passes it.",
)
@click.pass_context
@handle_errors
def audit_verify(ctx: click.Context, expect_head: str | None) -> None:
    """Recompute the hash chain; name the first row where it breaks. Exit 1 if broken.

    Prints the chain's head: keep it outside the database (a ticket, write-once storage) and
    pass it to a later verify with --expect-head.
    """
    database = _database(_settings(ctx))
    _settled()
    with db.transaction(database.engine) as s:
        result = audit.verify(s, expect_head)
    for p in result.problems:
        click.echo(f"broken: {p}")
    if result.problems:
        sys.exit(EXIT_SOME_FAILED)
    click.echo(f"audit log intact: {result.rows} rows, chain verified, head {result.head}")


# ---------------------------------------------------------------- deid / verify
@cli.command("deid")
@source_arguments
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory for the de-identified copies.",
)
@deid_options
@click.option(
    "--what-if",
    is_flag=True,
    help="Print, per element, the action and what decided it; write nothing.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@click.pass_context
@handle_errors
def deid_cmd(
    ctx: click.Context,
    sources_: tuple[Path, ...],
    files_from: Path | None,
    out_dir: Path | None,
    options: tuple[str, ...],
    burned_in: str | None,
    rules: Path | None,
    what_if: bool,
    no_verify: bool,
    quiet: bool,
) -> None:
    """De-identify files without any database (a batch anonymizer), or explain with --what-if."""
    settings = _settings(ctx)
    inputs = _roots(sources_, files_from)
    plan = _plan(settings, options, burned_in, rules)
    _settled()
    if what_if:
        _what_if(plan, inputs)
        return
    if out_dir is None:
        raise ConfigError("--out is required (or --what-if)")
    _note_output_inside(inputs, out_dir)
    mode = progress.mode(quiet)
    total = sources.count_files(inputs) if mode == "bar" else None
    with (
        contextlib.closing(pipeline.local_output(out_dir)) as output,
        progress.reporter(mode, total, label="deid") as update,
    ):
        report = pipeline.deidentify_tree(
            inputs,
            output,
            _keys(settings),
            plan,
            id_prefix=settings.id_prefix,
            max_shift_days=settings.date_shift_days,
            max_member_bytes=settings.max_member_bytes,
            check=settings.verify_output and not no_verify,
            progress=update,
        )
    for f in report.failures:
        click.echo(f"{f.outcome}: {f.source_id}: {f.reason}: {f.message}", err=True)
    failed = sum(f.outcome == "failed" for f in report.failures)
    click.echo(
        f"{report.written} de-identified, {len(report.failures) - failed} skipped, {failed} failed"
    )
    sys.exit(EXIT_SOME_FAILED if failed else EXIT_OK)


@cli.command("profile")
@plan_options
@click.option(
    "--attributes", is_flag=True, help="List every attribute of Table E.1-1 with its action."
)
@click.option("--json", "as_json", is_flag=True, help="Print the statement as JSON.")
@click.pass_context
@handle_errors
def profile_cmd(
    ctx: click.Context,
    options: tuple[str, ...],
    burned_in: str | None,
    rules: Path | None,
    attributes: bool,
    as_json: bool,
) -> None:
    """What de-identification does under these settings: a conformance statement."""
    from indexer.deid import statement  # noqa: PLC0415 - this command only

    plan = _plan(_settings(ctx), options, burned_in, rules)
    doc = statement.statement(plan, attributes=attributes)
    click.echo(json.dumps(doc, indent=2) if as_json else statement.render(doc))


def _what_if(plan: Plan, inputs: Iterable[Path]) -> None:
    """Explain, file by file, what de-identification does to each element."""
    for n, path in enumerate(inputs, 1):
        if sources.is_archive(path.name):
            raise ConfigError(
                f"--what-if explains files: input {n} is an archive (extract a member first)"
            )
        try:
            data = path.read_bytes()
        except IsADirectoryError:
            raise ConfigError(f"--what-if explains files: input {n} is a folder") from None
        except OSError as e:
            raise SourceError.unreadable(e) from None
        steps = deid.explain(plan, work.read_dataset(data), keys.generate().pseudonym)
        table = rich_table.Table("element", "keyword", "VR", "action", "decided by")
        for st in sorted(steps, key=lambda st: st.path):
            table.add_row(st.path, st.keyword, st.vr, st.action, st.source)
        _console(220).print(table)


@cli.command("verify")
@click.option(
    "--original",
    "originals",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path, exists=True),
    help="Original files or folders.",
)
@click.option(
    "--deidentified",
    "outputs",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path, exists=True),
    help="De-identified files or folders.",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="NAME",
    help="The options the outputs were made with (what they may keep).",
)
@click.option(
    "--rules",
    "rules",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Site rules file (JSON or YAML) that overrides the profile.",
)
@click.option(
    "--per-object",
    is_flag=True,
    help="Search each original's own copy only, for that original's values (needs the key).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@click.pass_context
@handle_errors
def verify_cmd(
    ctx: click.Context,
    originals: tuple[Path, ...],
    outputs: tuple[Path, ...],
    options: tuple[str, ...],
    rules: Path | None,
    per_object: bool,
    quiet: bool,
) -> None:
    """Scan de-identified output for any identifying value of the originals.

    By default every output is searched for every original's values. With --per-object each
    original's own copy is searched for its values only (copies found by their pseudonym SOP
    Instance UID, recomputed with the key file): for outputs of unrelated sources.

    Exit 1 on a leak, or when a DICOM original or output could not be checked.

    With the key file present, pseudonyms are recomputed: a value found only inside one is
    chance, not a leak.
    """
    settings = _settings(ctx)
    plan = _plan(settings, options, "allow", rules)
    pseudonyms = (
        leakscan.Pseudonyms(_keys(settings), settings.id_prefix, settings.date_shift_days)
        if settings.resolved_key_file.exists()
        else None
    )
    if per_object and pseudonyms is None:
        raise ConfigError(
            "verify --per-object pairs each copy with its original by its pseudonym: it needs "
            "the key file the copies were made with (see DICOM_INDEX_KEY_FILE)"
        )
    _settled()
    inputs = (list(originals), list(outputs), plan)
    mode = progress.mode(quiet)
    total = _verify_total(originals, outputs) if mode == "bar" else None
    with progress.reporter(mode, total, label="verify") as update:
        if pseudonyms is not None and per_object:
            report = leakscan.verify_pairs(
                *inputs,
                max_member_bytes=settings.max_member_bytes,
                pseudonyms=pseudonyms,
                progress=update,
            )
        else:
            report = leakscan.verify_outputs(
                *inputs,
                max_member_bytes=settings.max_member_bytes,
                pseudonyms=pseudonyms,
                progress=update,
            )
    _print_verify(report)
    sys.exit(EXIT_SOME_FAILED if report.leaks or report.unchecked else EXIT_OK)


def _verify_total(originals: tuple[Path, ...], outputs: tuple[Path, ...]) -> int | None:
    """The files `verify` walks and searches, for its bar's ETA (None: a tar's not counted)."""
    counts = (sources.count_files(originals), sources.count_files(outputs))
    return None if None in counts else sum(c for c in counts if c is not None)


def _print_verify(report: leakscan.VerifyReport) -> None:
    for leak in report.leaks:
        click.echo(f"leak: {leak.output}: the value of {leak.source_path} is in {leak.found_in}")
    click.echo(f"{report.scanned} files scanned, {len(report.leaks)} leaks")
    if report.unreadable_originals or report.unreadable_outputs:
        click.echo(
            f"not checked: {report.unreadable_originals} original(s) whose values could not "
            f"be read, {report.unreadable_outputs} output(s) that could not be read"
        )
    if report.unpaired_outputs:
        click.echo(
            f"not checked: {report.unpaired_outputs} output(s) that are the copy of no "
            "original given (other originals, or other options, rules or key)"
        )
    if report.without_copy:
        click.echo(f"{report.without_copy} original(s) have no copy among the outputs")


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
    _settled()
    try:
        n = sample.write_archive(out, sample.SampleShape(patients, studies, series, instances))
    except OSError as e:
        raise ConfigError(f"cannot write the sample archive there ({os_reason(e)})") from None
    click.echo(f"wrote {n} synthetic DICOM files to {out}")


def main() -> None:
    """Console-script entry point.

    Garbage collection waits while a command sets up: importing and setting up make some
    hundred thousand objects that live until the process ends, and collecting among them
    frees nothing (≈ 0.15 s of each start). A command that goes on to work through many
    objects calls `_settled` first; a short one finishes without collecting. At exit they are
    frozen, so the interpreter does not collect them one last time either (≈ 0.25 s). Nothing
    depends on that collection: transactions are committed, the MongoDB server stopped and
    files closed explicitly before, and a pooled database connection closes with the process.
    """
    gc.disable()
    try:
        cli(prog_name="dicom-index")
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
