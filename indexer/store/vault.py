"""The vault: originals encrypted with AES-256-GCM, blind index by HMAC, audited release.

Ciphertexts bind their kind and pseudonym as associated data, so a row copied onto another
pseudonym does not decrypt. Nothing here logs or raises with an original value.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from indexer.deid import Identity
from indexer.errors import VaultAccessError
from indexer.keys import Keys
from indexer.store.models import VaultIdentity, VaultSource

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
    ct = AESGCM(keys.active_vault_key).encrypt(nonce, original.encode(), _aad(kind, pseudonym))
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
    return plain.decode()


def blind_index(keys: Keys, kind: str, original: str) -> bytes:
    """HMAC-SHA256 of the original under the blind-index key, for look-ups by original value."""
    return hmac.new(keys.blind, f"{kind}\x00{original}".encode(), hashlib.sha256).digest()


def put_identities(s: Session, identities: Iterable[Identity], keys: Keys) -> int:
    """Insert identity rows not yet in the vault; returns how many rows were offered."""
    rows = {}
    for ident in identities:
        b = blind_index(keys, ident.kind, ident.original)
        if (ident.kind, ident.pseudonym, b) in rows:
            continue
        kid, blob = encrypt(keys, ident.kind, ident.pseudonym, ident.original)
        rows[(ident.kind, ident.pseudonym, b)] = {
            "kind": ident.kind,
            "pseudonym": ident.pseudonym,
            "blind_index": b,
            "key_id": kid,
            "ciphertext": blob,
        }
    if rows:
        s.execute(insert(VaultIdentity).on_conflict_do_nothing(), list(rows.values()))
    return len(rows)


def put_sources(s: Session, sources: Iterable[tuple[str, str]], keys: Keys) -> int:
    """Store the encrypted location of each (source id, locator)."""
    rows = {}
    for source_id, locator in sources:
        kid, blob = encrypt(keys, SOURCE_KIND, source_id, locator)
        rows[source_id] = {"source_id": source_id, "key_id": kid, "ciphertext": blob}
    if rows:
        s.execute(insert(VaultSource).on_conflict_do_nothing(), list(rows.values()))
    return len(rows)


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
        detail = str(e.orig).splitlines()[0] if e.orig is not None else type(e).__name__
        raise VaultAccessError(f"re-identification refused by the database: {detail}") from None
    return [Sealed(r.kind, r.pseudonym, r.key_id, bytes(r.ciphertext)) for r in rows]


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


def lookup_blind(s: Session, kind: str, original: str, keys: Keys) -> Sequence[str]:
    """Pseudonyms recorded for an original value (forward look-up through the blind index)."""
    rows = s.execute(
        text("SELECT pseudonym FROM vault.identity WHERE kind = :k AND blind_index = :b"),
        {"k": kind, "b": blind_index(keys, kind, original)},
    ).scalars()
    return list(rows)
