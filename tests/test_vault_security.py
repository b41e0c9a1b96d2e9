"""Roles, grants, audited re-identification, the audit chain, and key rotation (#5)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError

from indexer import keys
from indexer.store import vault
from tests.builders import SampleShape, make_instance, write_archive
from tests.conftest import ROLES, pg_dump, role_url

MARKER = "PHIMARK"
VAULT_TABLES = ("identity", "source", "audit_log")


@pytest.fixture
def ingested(cli, tmp_path):
    archive = tmp_path / "archive"
    write_archive(archive, SampleShape(2, 2, 1, 2), marker=MARKER)
    cli("ingest", str(archive), "--out", str(tmp_path / "out"))
    return archive


@pytest.fixture
def as_role(db_url, pg_server):
    if not pg_server.embedded:
        pytest.skip("logging in as each role needs the embedded server's trust auth")
    engines = []

    def make(role):
        e = create_engine(role_url(db_url, role))
        engines.append(e)
        return e

    yield make
    for e in engines:
        e.dispose()


def _study_uids(engine):
    with engine.connect() as c:
        return c.execute(text("SELECT study_uid FROM dicom_index.study ORDER BY 1")).scalars().all()


def _audit_count(engine):
    with engine.connect() as c:
        return c.execute(text("SELECT count(*) FROM vault.audit_log")).scalar()


STATEMENTS = {
    "select": "SELECT * FROM vault.{t}",
    "insert": "INSERT INTO vault.{t} DEFAULT VALUES",
    "update": "UPDATE vault.{t} SET key_id = 'x'",
    "delete": "DELETE FROM vault.{t}",
}


@pytest.mark.parametrize("table", VAULT_TABLES)
@pytest.mark.parametrize("op", sorted(STATEMENTS))
@pytest.mark.parametrize("role", [ROLES.reader, ROLES.reidentifier, ROLES.ingest])
def test_no_role_touches_vault_tables(as_role, role, table, op):
    stmt = (
        STATEMENTS[op]
        .format(t=table)
        .replace("key_id", "actor" if table == "audit_log" else "key_id")
    )
    with as_role(role).connect() as c, pytest.raises(ProgrammingError, match="permission denied"):
        c.execute(text(stmt))


def test_reidentifier_function_writes_one_audit_row_per_call(ingested, as_role, engine):
    reid = as_role(ROLES.reidentifier)
    before = _audit_count(engine)
    for uid in _study_uids(engine):
        with reid.begin() as c:
            rows = c.execute(
                text("SELECT * FROM vault.reidentify(:t, 'report', 'dr x')"), {"t": uid}
            ).all()
        assert rows
    assert _audit_count(engine) == before + len(_study_uids(engine))
    with engine.connect() as c:
        last = c.execute(
            text(
                "SELECT db_role, actor, purpose, result FROM vault.audit_log "
                "ORDER BY id DESC LIMIT 1"
            )
        ).one()
    assert tuple(last) == (ROLES.reidentifier, "dr x", "report", "released")


@pytest.mark.parametrize("role", [ROLES.reader, ROLES.ingest])
def test_other_roles_cannot_reidentify(ingested, as_role, role):
    with as_role(role).connect() as c, pytest.raises(ProgrammingError, match="permission denied"):
        c.execute(text("SELECT * FROM vault.reidentify('x', 'why', 'me')"))


def test_wrong_role_gets_a_clear_phi_free_refusal(ingested, cli, engine, db_url):
    cli.env["DICOM_INDEX_REIDENTIFIER_URL"] = role_url(db_url, ROLES.reader)
    p = cli("reidentify", _study_uids(engine)[0], "--reason", "why", check=3)
    assert "permission denied" in p.stderr
    assert "db roles" in p.stderr
    assert MARKER not in p.stdout + p.stderr


def test_pg_dump_of_whole_database_holds_no_cleartext(ingested, pg_server, db_url):
    dump = pg_dump(pg_server, db_url)
    assert b"vault.identity" in dump or b"identity" in dump
    assert MARKER.encode() not in dump
    assert make_instance(1, 1, 1, 1).StudyInstanceUID.encode() not in dump


def test_forward_lookup_and_run_mapping(ingested, cli, engine):
    original = make_instance(1, 1, 1, 1, marker=MARKER)
    p = subprocess.run(
        [sys.executable, "-m", "indexer.cli", "lookup", "patient-id", "--reason", "withdrawal"],
        input=original.PatientID + "\n",
        env=cli.env,
        cwd=cli.cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    pseudonym = p.stdout.strip()
    with engine.connect() as c:
        assert (
            pseudonym
            in c.execute(text("SELECT patient_id FROM dicom_index.patient")).scalars().all()
        )
        target = c.execute(
            text("SELECT target FROM vault.audit_log ORDER BY id DESC LIMIT 1")
        ).scalar()
    assert MARKER not in target  # the audit names the blind index, never the original

    before = _audit_count(engine)
    p = cli("reidentify", "--run", "1", "--reason", "teleradiology batch", "--json")
    mapping = json.loads(p.stdout)
    assert {m["study"] for m in mapping} == set(_study_uids(engine))
    by = {(m["study"], m["kind"]): m["original"] for m in mapping}
    assert len([k for k in by if k[1] == "study_uid"]) == 4
    assert original.StudyInstanceUID in {by[k] for k in by if k[1] == "study_uid"}
    assert _audit_count(engine) == before + 1
    p = cli("reidentify", "--run", "999", "--reason", "no such run", "--json", check=1)
    assert (p.stdout, p.stderr.splitlines()[-1]) == ("", "no vault entry for a study of that run")


def test_audit_log_is_append_only_except_logged_break_glass(ingested, cli, engine):
    cli("reidentify", _study_uids(engine)[0], "--reason", "one")
    with engine.connect() as c, pytest.raises(ProgrammingError, match="append-only"):
        c.execute(text("UPDATE vault.audit_log SET purpose = 'edited'"))
    with engine.connect() as c, pytest.raises(ProgrammingError, match="append-only"):
        c.execute(text("DELETE FROM vault.audit_log"))
    with engine.begin() as c:  # the owner's break-glass operation is allowed, and logged
        c.execute(text("SET LOCAL vault.break_glass = 'on'"))
        c.execute(
            text(
                "UPDATE vault.audit_log SET purpose = 'redacted' WHERE id = "
                "(SELECT min(id) FROM vault.audit_log)"
            )
        )
    with engine.connect() as c:
        last = c.execute(
            text("SELECT purpose, result FROM vault.audit_log ORDER BY id DESC LIMIT 1")
        ).one()
    assert tuple(last) == ("break-glass UPDATE", "break_glass")
    p = cli("audit", "verify", check=1)  # the edit shows in the chain, as it should
    assert "row 1" in p.stdout


def _tamper(engine, sql):
    with engine.begin() as c:  # the owner, bypassing the append-only trigger
        c.execute(text("ALTER TABLE vault.audit_log DISABLE TRIGGER USER"))
        c.execute(text(sql))
        c.execute(text("ALTER TABLE vault.audit_log ENABLE TRIGGER USER"))


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("UPDATE vault.audit_log SET purpose = 'innocent' WHERE id = 3", "row 3: its contents"),
        ("DELETE FROM vault.audit_log WHERE id = 3", "rows 3..3 are missing"),
        (
            (
                "INSERT INTO vault.audit_log(id, at, db_role, actor, purpose, target, result, "
                "rows_released, prev_hash, row_hash) "
                "SELECT nextval('vault.audit_log_id_seq'), now(), 'x', 'forger', 'fake', 'x', "
                "'released', 1, row_hash, row_hash FROM vault.audit_log WHERE id = 5"
            ),
            "row 6: its contents",
        ),
        ("DELETE FROM vault.audit_log WHERE id = 5", "rows after 4 are missing"),
    ],
    ids=["update", "delete", "insert", "delete-tail"],
)
def test_audit_verify_names_the_first_broken_link(ingested, cli, engine, sql, expected):
    for uid in _study_uids(engine)[:1] * 5:
        cli("reidentify", uid, "--reason", "check")
    assert "intact: 5 rows" in cli("audit", "verify").stdout
    _tamper(engine, sql)
    p = cli("audit", "verify", check=1)
    first = p.stdout.splitlines()[0]
    assert expected in first, p.stdout


def test_audit_verify_against_a_recorded_head(ingested, cli, engine):
    for uid in _study_uids(engine)[:3]:
        cli("reidentify", uid, "--reason", "check")
    head = cli("audit", "verify").stdout.split("head ")[1].split()[0]
    # a forger who edits row 2 and recomputes every later hash passes the bare chain check ...
    _tamper(engine, "UPDATE vault.audit_log SET purpose = 'innocent' WHERE id = 2")
    with engine.begin() as c:
        c.execute(text("ALTER TABLE vault.audit_log DISABLE TRIGGER USER"))
        rows = c.execute(text("SELECT id FROM vault.audit_log WHERE id >= 2 ORDER BY id")).all()
        for (row_id,) in rows:
            c.execute(
                text(
                    "UPDATE vault.audit_log a SET prev_hash = p.row_hash, row_hash = sha256("
                    "p.row_hash || convert_to(vault.audit_canonical(a.id, a.at, a.db_role, "
                    "a.actor, a.purpose, a.target, a.result, a.rows_released), 'UTF8')) "
                    "FROM vault.audit_log p WHERE p.id = a.id - 1 AND a.id = :i"
                ),
                {"i": row_id},
            )
        c.execute(text("ALTER TABLE vault.audit_log ENABLE TRIGGER USER"))
    cli("audit", "verify")
    # ... but not the check against the head recorded before
    p = cli("audit", "verify", "--expect-head", head, check=1)
    assert "recorded head" in p.stdout


def _reidentify_all(cli, engine, key_file_path):
    cli.env["DICOM_INDEX_KEY_FILE"] = str(key_file_path)
    out = {}
    for uid in _study_uids(engine):
        p = cli("reidentify", uid, "--reason", "rotation check", "--json")
        out[uid] = sorted((r["kind"], r["original"]) for r in json.loads(p.stdout))
    return out


def _key_ids(engine):
    with engine.connect() as c:
        return set(
            c.execute(
                text("SELECT key_id FROM vault.identity UNION SELECT key_id FROM vault.source")
            ).scalars()
        )


def test_key_rotation_resumable_and_complete(ingested, cli, engine, key_file):
    before = _reidentify_all(cli, engine, key_file)
    old_id = keys.read_key_file(key_file).active_vault_id
    assert _key_ids(engine) == {old_id}
    # interrupted after one small batch: rows under both keys, all readable
    p = cli("keys", "rotate", "--batch-size", "3", "--max-batches", "1")
    new_id = keys.read_key_file(key_file).active_vault_id
    assert new_id != old_id
    assert "re-encrypted 3 rows;" in p.stdout
    assert " 0 rows still" not in p.stdout
    assert _key_ids(engine) == {old_id, new_id}
    assert _reidentify_all(cli, engine, key_file) == before
    # resumed: the same new key, nothing under the old one, and the old key retired
    p = cli("keys", "rotate", "--retire-old")
    assert "resuming" in p.stdout
    assert keys.read_key_file(key_file).active_vault_id == new_id
    assert _key_ids(engine) == {new_id}
    assert set(keys.read_key_file(key_file).vault) == {new_id}
    assert _reidentify_all(cli, engine, key_file) == before
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_key_rotation_reports_the_rows_done(ingested, cli, engine, key_file):
    """After each batch, the rows re-encrypted so far (the key rotation's progress)."""
    rotated = keys.with_new_vault_key(keys.read_key_file(key_file))
    keys.replace_key_file(key_file, rotated)  # as the command does, before any row uses it
    with engine.connect() as c:
        rows = sum(
            c.execute(text(f"SELECT count(*) FROM vault.{t}")).scalar_one()
            for t in ("identity", "source")
        )
    assert rows > 6  # three batches at least
    calls: list[tuple[int, int]] = []
    done = vault.reencrypt(engine, rotated, 3, progress=lambda n, b: calls.append((n, b)))
    assert done == rows
    assert calls == [(min(n, rows), 0) for n in range(3, rows + 3, 3)]
    assert _key_ids(engine) == {rotated.active_vault_id}
    assert vault.reencrypt(engine, rotated, 3, max_batches=1) == 0  # nothing left
    p = cli("keys", "rotate", "--quiet")  # a CLI run: no progress shown with --quiet
    assert "re-encrypted" in p.stdout


def test_key_rotation_killed_midway_then_rerun(ingested, cli, engine, key_file, tmp_path):
    more = tmp_path / "more"
    write_archive(more, SampleShape(3, 1, 1, 2), marker=MARKER)
    cli("ingest", str(more), "--out", str(tmp_path / "out"))
    before = _reidentify_all(cli, engine, key_file)
    proc = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "keys", "rotate", "--batch-size", "1"],
        env=cli.env,
        cwd=cli.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(keys.read_key_file(key_file).vault) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _reidentify_all(cli, engine, key_file) == before  # readable at any point
    cli("keys", "rotate")
    assert _key_ids(engine) == {keys.read_key_file(key_file).active_vault_id}
    assert _reidentify_all(cli, engine, key_file) == before


def test_db_roles_sets_scram_passwords_without_printing_them(cli, engine, monkeypatch):
    secret = "s3cret-Passw0rd"  # noqa: S105 - a test password
    cli.env["DICOM_INDEX_READER_PASSWORD"] = secret
    p = cli("db", "roles")
    assert f"{ROLES.reader}: exists, password set" in p.stdout
    assert secret not in p.stdout + p.stderr
    with engine.connect() as c:
        stored = c.execute(
            text("SELECT rolpassword FROM pg_authid WHERE rolname = :r"), {"r": ROLES.reader}
        ).scalar()
        c.execute(text(f"ALTER ROLE {ROLES.reader} PASSWORD NULL"))
        c.commit()
    assert stored.startswith("SCRAM-SHA-256$")
    assert secret not in stored


def test_mixing_pseudonym_keys_is_refused(ingested, cli, tmp_path):
    other = tmp_path / "other.json"
    keys.write_key_file(other, keys.generate())
    cli.env["DICOM_INDEX_KEY_FILE"] = str(other)
    p = cli("ingest", str(ingested), "--out", str(tmp_path / "out2"), check=3)
    assert "pseudonym key" in p.stderr


def test_new_vault_key_file_is_0600(tmp_path: Path):
    path = tmp_path / "k.json"
    keys.write_key_file(path, keys.generate())
    keys.replace_key_file(path, keys.with_new_vault_key(keys.read_key_file(path)))
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(keys.read_key_file(path).vault) == 2


def test_db_roles_lets_the_ingest_role_stage_rows_in_a_temporary_table(cli, engine, as_role):
    """The ingest COPYs instance rows through a temporary table: `db roles` grants that even
    where the database no longer lets every role (PUBLIC) create temporary tables."""
    with engine.connect() as c:
        c.execute(
            text(
                "DO $$BEGIN EXECUTE 'REVOKE TEMPORARY ON DATABASE ' || "
                "quote_ident(current_database()) || ' FROM PUBLIC'; END$$"
            )
        )
        c.commit()
    cli("db", "roles")
    with as_role(ROLES.ingest).connect() as c:
        c.execute(text("CREATE TEMP TABLE staged (x int)"))
    with as_role(ROLES.reader).connect() as c, pytest.raises(ProgrammingError):
        c.execute(text("CREATE TEMP TABLE staged (x int)"))
