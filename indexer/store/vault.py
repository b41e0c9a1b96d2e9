"""The vault: originals encrypted with AES-256-GCM, blind index by HMAC, audited release.

Ciphertexts bind their kind and pseudonym as associated data, so a row copied onto another
pseudonym does not decrypt. Nothing here logs or raises with an original value.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from indexer.deid import Identity
from indexer.errors import VaultAccessError
from indexer.keys import Keys
from indexer.store.db import transaction

NONCE_BYTES = 12
SOURCE_KIND = "source_path"


@dataclass(frozen=True, slots=True)
class Released:
    """One original value released by a re-identification."""

    kind: str
    pseudonym: str
    original: str


def _aad(kind: str, pseudonym: str) -> bytes:
    return f"{kind}\x00{pseudonym}".encode()


def encrypt(keys: Keys, kind: str, pseudonym: str, original: str) -> tuple[str, bytes]:
    """Return (key id, nonce || ciphertext) of ``original`` under the active vault key."""
    nonce = os.urandom(NONCE_BYTES)
    ct = AESGCM(keys.active_vault_key).encrypt(nonce, _bytes(original), _aad(kind, pseudonym))
    return keys.active_vault_id, nonce + ct


def decrypt(keys: Keys, kind: str, pseudonym: str, key_id: str, blob: bytes) -> str:
    """Decrypt one vault value; a missing or wrong key is a clear VaultAccessError."""
    key = keys.vault.get(key_id)
    if key is None:
        raise VaultAccessError(
            f"the vault holds values encrypted under key id {key_id}, which the key file does "
            "not contain: wrong key file?"
        )
    try:
        plain = AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(kind, pseudonym))
    except InvalidTag:
        raise VaultAccessError(
            f"a vault value under key id {key_id} failed authentication: wrong key or tampered row"
        ) from None
    return plain.decode("utf-8", "surrogateescape")


def _bytes(original: str) -> bytes:
    """An original as UTF-8; a source path's bytes that are not UTF-8 are kept as they were.

    Python gives such bytes of a file name as lone surrogates (PEP 383): "surrogateescape"
    turns them back into the same bytes, and ``decrypt`` gives the same string again.
    """
    return original.encode("utf-8", "surrogateescape")


def blind_index(keys: Keys, kind: str, original: str) -> bytes:
    """HMAC-SHA256 of the original under the blind-index key, for look-ups by original value."""
    return hmac.new(keys.blind, _bytes(f"{kind}\x00{original}"), hashlib.sha256).digest()


def put_identities(s: Session, identities: Iterable[Identity], keys: Keys) -> int:
    """Add identity rows not yet in the vault (through vault.put_identities); returns new rows."""
    rows: dict[tuple[str, str, bytes], tuple[str, bytes]] = {}
    for ident in identities:
        b = blind_index(keys, ident.kind, ident.original)
        if (ident.kind, ident.pseudonym, b) not in rows:
            rows[(ident.kind, ident.pseudonym, b)] = encrypt(
                keys, ident.kind, ident.pseudonym, ident.original
            )
    if not rows:
        return 0
    return _call_put(
        s,
        "SELECT vault.put_identities(:k, :p, :b, :kid, :ct)",
        {
            "k": [k for k, _, _ in rows],
            "p": [p for _, p, _ in rows],
            "b": [b for _, _, b in rows],
            "kid": [kid for kid, _ in rows.values()],
            "ct": [ct for _, ct in rows.values()],
        },
    )


def put_sources(s: Session, sources: Iterable[tuple[str, str]], keys: Keys) -> int:
    """Store the encrypted location of each (source id, locator) through vault.put_sources."""
    rows = {sid: encrypt(keys, SOURCE_KIND, sid, locator) for sid, locator in sources}
    if not rows:
        return 0
    return _call_put(
        s,
        "SELECT vault.put_sources(:id, :kid, :ct)",
        {
            "id": list(rows),
            "kid": [k for k, _ in rows.values()],
            "ct": [c for _, c in rows.values()],
        },
    )


def _call_put(s: Session, statement: str, params: dict[str, object]) -> int:
    try:
        return int(s.execute(text(statement), params).scalar_one())
    except DBAPIError as e:
        raise _refused("write to the vault", e) from None


def _refused(action: str, e: DBAPIError) -> Exception:
    """What to raise for a database error of ``action``.

    A VaultAccessError; but ``e`` itself when the connection failed (lost or refused): the
    command says that as such, and it is no refusal.
    """
    if isinstance(e, OperationalError):
        return e
    return VaultAccessError(_refusal(action, e))


def _refusal(action: str, e: DBAPIError) -> str:
    """A PHI-free explanation of a database refusal, naming the missing privilege."""
    detail = str(e.orig).splitlines()[0] if e.orig is not None else type(e).__name__
    if "permission denied" in detail:
        return (
            f"cannot {action}: {detail}. Connect as the role that holds this privilege "
            "(see `dicom-index db roles`)"
        )
    return f"cannot {action}: {detail}"


@dataclass(frozen=True, slots=True)
class Sealed:
    """One vault value as the database releases it: still encrypted."""

    kind: str
    pseudonym: str
    key_id: str
    ciphertext: bytes


def release(s: Session, target: str, reason: str, actor: str) -> list[Sealed]:
    """Ask the database for the ciphertexts behind ``target`` (a pseudonym or source id).

    The database function writes the audit row in the same transaction that returns the
    ciphertexts, so there is no release without a record. Commit before decrypting
    (``open_sealed``), so that a decryption failure cannot roll the audit row back.
    """
    if not reason or not reason.strip():
        raise VaultAccessError("a reason is required to re-identify (--reason)")
    try:
        rows = s.execute(
            text("SELECT kind, pseudonym, key_id, ciphertext FROM vault.reidentify(:t, :r, :a)"),
            {"t": target, "r": reason, "a": actor},
        ).all()
    except DBAPIError as e:
        raise _refused("re-identify", e) from None
    return [Sealed(r.kind, r.pseudonym, r.key_id, bytes(r.ciphertext)) for r in rows]


@dataclass(frozen=True, slots=True)
class RunMapping:
    """One study of an ingest run and its released (still encrypted) identifiers."""

    study_uid: str
    sealed: Sealed


def release_run(s: Session, run_id: int, reason: str, actor: str) -> list[RunMapping]:
    """The originals of every study of an ingest run, in one audited call."""
    if not reason or not reason.strip():
        raise VaultAccessError("a reason is required to re-identify (--reason)")
    try:
        rows = s.execute(
            text(
                "SELECT study_uid, kind, pseudonym, key_id, ciphertext "
                "FROM vault.reidentify_run(:run, :r, :a)"
            ),
            {"run": run_id, "r": reason, "a": actor},
        ).all()
    except DBAPIError as e:
        raise _refused("re-identify", e) from None
    return [
        RunMapping(r.study_uid, Sealed(r.kind, r.pseudonym, r.key_id, bytes(r.ciphertext)))
        for r in rows
    ]


def lookup(s: Session, kind: str, original: str, reason: str, actor: str, keys: Keys) -> list[str]:
    """Pseudonyms of an original value, through its blind index; audited."""
    if not reason or not reason.strip():
        raise VaultAccessError("a reason is required for a look-up (--reason)")
    try:
        rows = s.execute(
            text("SELECT * FROM vault.lookup(:k, :b, :r, :a)"),
            {"k": kind, "b": blind_index(keys, kind, original), "r": reason, "a": actor},
        ).scalars()
        return sorted(rows)
    except DBAPIError as e:
        raise _refused("look up", e) from None


def open_sealed(keys: Keys, sealed: Iterable[Sealed]) -> list[Released]:
    """Decrypt released values with the caller's vault keys."""
    return sorted(
        (
            Released(
                x.kind, x.pseudonym, decrypt(keys, x.kind, x.pseudonym, x.key_id, x.ciphertext)
            )
            for x in sealed
        ),
        key=lambda r: (r.kind, r.pseudonym, r.original),
    )


@dataclass(frozen=True, slots=True)
class RotationProgress:
    """Rows re-encrypted so far and rows still under other keys."""

    reencrypted: int
    remaining: int


_TABLES = {
    # table: (key columns, kind expression for the associated data, pseudonym column)
    "identity": (("kind", "pseudonym", "blind_index"), "kind", "pseudonym"),
    "source": (("source_id",), f"'{SOURCE_KIND}'", "source_id"),
}


def rows_not_under(s: Session, key_id: str) -> int:
    """How many vault rows are encrypted under any key but ``key_id``."""
    return sum(
        int(
            s.execute(
                text(f"SELECT count(*) FROM vault.{t} WHERE key_id <> :k"), {"k": key_id}
            ).scalar_one()
        )
        for t in _TABLES
    )


def key_ids_in_use(s: Session) -> set[str]:
    """Every key id that some vault row is encrypted under."""
    out: set[str] = set()
    for t in _TABLES:
        out |= set(s.execute(text(f"SELECT DISTINCT key_id FROM vault.{t}")).scalars())
    return out


def reencrypt(
    engine: Engine,
    keys: Keys,
    batch_size: int,
    *,
    max_batches: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Re-encrypt the rows not under the active key, a batch a transaction; how many.

    Until none is left, or ``max_batches`` are done. ``progress`` is told the rows done so
    far after each batch (and 0 bytes: as ingest's reporter takes them).
    """
    done = batches = 0
    while max_batches is None or batches < max_batches:
        with transaction(engine) as s:
            n = reencrypt_batch(s, keys, batch_size)
        if n == 0:
            break
        done += n
        batches += 1
        if progress is not None:
            progress(done, 0)
    return done


def reencrypt_batch(s: Session, keys: Keys, batch_size: int) -> int:
    """Re-encrypt up to ``batch_size`` rows not under the active key; returns how many.

    Each row is decrypted with the key it names and written back under the active key in the
    same transaction, so at no time is a row readable by neither key. Rows locked by another
    rotation are skipped, so two rotations can run at once.
    """
    done = 0
    for table, (key_cols, kind_expr, pseudo_col) in _TABLES.items():
        limit = batch_size - done
        if limit <= 0:
            break
        cols = ", ".join(key_cols)
        rows = s.execute(
            text(
                f"SELECT {cols}, {kind_expr} AS kind_, {pseudo_col} AS pseudo_, key_id, "
                f"ciphertext FROM vault.{table} WHERE key_id <> :k "
                f"LIMIT :n FOR UPDATE SKIP LOCKED"
            ),
            {"k": keys.active_vault_id, "n": limit},
        ).all()
        updates = []
        for r in rows:
            plain = decrypt(keys, r.kind_, r.pseudo_, r.key_id, bytes(r.ciphertext))
            kid, blob = encrypt(keys, r.kind_, r.pseudo_, plain)
            updates.append({**{c: getattr(r, c) for c in key_cols}, "kid": kid, "ct": blob})
        if updates:
            where = " AND ".join(f"{c} = :{c}" for c in key_cols)
            s.execute(
                text(f"UPDATE vault.{table} SET key_id = :kid, ciphertext = :ct WHERE {where}"),
                updates,
            )
        done += len(updates)
    return done
