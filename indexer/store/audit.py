"""The audit log: listing and verifying its hash chain.

Each row's ``row_hash`` is sha256(prev_hash || canonical text of the row), computed by the
database trigger ``vault.audit_chain``. ``verify`` recomputes every hash here, independently
of the database's functions, and names the first row where the chain breaks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from indexer.errors import VaultAccessError

GENESIS = b"\x00" * 32


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of vault.audit_log."""

    id: int
    at: dt.datetime
    db_role: str
    actor: str
    purpose: str
    target: str
    result: str
    rows_released: int
    prev_hash: bytes
    row_hash: bytes


def canonical(e: AuditEntry) -> bytes:
    """The canonical text of a row, as vault.audit_canonical() builds it."""
    at = e.at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fields = [
        str(e.id),
        at,
        e.db_role,
        e.actor,
        e.purpose,
        e.target,
        e.result,
        str(e.rows_released),
    ]
    return ";".join(f"{len(v)}:{v}" for v in fields).encode()


def entries(s: Session, *, limit: int | None = None) -> list[AuditEntry]:
    """Audit rows in chain order (newest last); ``limit`` keeps the newest."""
    q = (
        "SELECT id, at, db_role, actor, purpose, target, result, rows_released, prev_hash, "
        "row_hash FROM vault.audit_log ORDER BY id"
    )
    params: dict[str, Any] = {}
    if limit is not None:
        q = f"SELECT * FROM ({q} DESC LIMIT :n) t ORDER BY id"
        params["n"] = limit
    try:
        rows = s.execute(text(q), params).all()
    except DBAPIError as e:
        detail = str(e.orig).splitlines()[0] if e.orig is not None else type(e).__name__
        raise VaultAccessError(f"cannot read the audit log: {detail}") from None
    return [
        AuditEntry(
            r.id,
            r.at,
            r.db_role,
            r.actor,
            r.purpose,
            r.target,
            r.result,
            r.rows_released,
            bytes(r.prev_hash or b""),
            bytes(r.row_hash or b""),
        )
        for r in rows
    ]


def verify_chain(rows: Sequence[AuditEntry], last_sequence_value: int | None) -> list[str]:
    """Every break in the chain, first one first; empty when the log is intact.

    Ids come from a sequence that only the chain trigger draws from, so they are contiguous:
    a gap is a deleted row or a rolled-back release.
    """
    problems: list[str] = []
    prev = GENESIS
    expected_id = 1
    for e in rows:
        if e.id != expected_id:
            problems.append(
                f"rows {expected_id}..{e.id - 1} are missing: deleted, or a release whose "
                "transaction was rolled back after the ciphertexts left the database"
            )
        expected_id = e.id + 1
        if e.prev_hash != prev:
            problems.append(
                f"row {e.id}: does not follow the row before it (a row was deleted or "
                "inserted before it, or the previous row was changed)"
            )
        if hashlib.sha256(e.prev_hash + canonical(e)).digest() != e.row_hash:
            problems.append(f"row {e.id}: its contents do not match its hash (edited or forged)")
        prev = e.row_hash
    if rows and last_sequence_value is not None and last_sequence_value > rows[-1].id:
        problems.append(
            f"rows after {rows[-1].id} are missing: the id sequence reached {last_sequence_value}"
        )
    return problems


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of a chain check."""

    rows: int
    head: str  # "<id>:<hex row hash>" of the newest row: record it outside the database
    problems: list[str]


def verify(s: Session, expect_head: str | None = None) -> Verification:
    """Check the whole chain, and that it still passes through a head recorded earlier.

    A hash chain alone cannot stop someone with write access from rewriting a row and
    recomputing every later hash; a head recorded outside the database (``audit verify``
    prints it) can: such a rewrite changes the recorded row's hash.
    """
    rows = entries(s)
    seq = int(s.execute(text("SELECT last_value FROM vault.audit_log_id_seq")).scalar_one())
    problems = verify_chain(rows, seq if rows else None)
    if expect_head:
        problems += _check_head(rows, expect_head)
    head = f"{rows[-1].id}:{rows[-1].row_hash.hex()}" if rows else "0:" + GENESIS.hex()
    return Verification(len(rows), head, problems)


def _check_head(rows: Sequence[AuditEntry], expect_head: str) -> list[str]:
    try:
        head_id_text, head_hash = expect_head.split(":", 1)
        head_id = int(head_id_text)
    except ValueError:
        return ["the recorded head must look like ID:HEXHASH"]
    row = next((e for e in rows if e.id == head_id), None)
    if row is None:
        return [f"the recorded head row {head_id} is gone"]
    if row.row_hash.hex() != head_hash.lower():
        return [f"row {head_id}: differs from the recorded head (rows up to it were rewritten)"]
    return []
