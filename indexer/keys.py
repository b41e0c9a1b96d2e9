"""Key material: the pseudonym key, the vault encryption keys and the blind-index key.

Keys live in a JSON key file with 0600 permissions (``dicom-index keys init``), or are derived
with HKDF from one master key given in the environment. Every key has a key id (an HMAC of
the key, never the key) that is stored next to whatever the key produced, so keys can rotate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from indexer.durable import private_dir
from indexer.errors import KeyFileError, os_reason

KEY_FILE_FORMAT = "dicom-index-keys/1"
KEY_BYTES = 32


def key_id(key: bytes) -> str:
    """Return the public id of a key: 12 hex digits of an HMAC, revealing nothing of the key."""
    return hmac.new(key, b"dicom-index key id", hashlib.sha256).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Keys:
    """The three independent keys; vault keys are kept by id, one of them active."""

    pseudonym: bytes
    blind: bytes
    vault: dict[str, bytes]
    active_vault_id: str

    @property
    def pseudonym_id(self) -> str:
        """Key id of the pseudonym key (stored with the index; it must never change)."""
        return key_id(self.pseudonym)

    @property
    def active_vault_key(self) -> bytes:
        """The vault key new ciphertexts are made with."""
        return self.vault[self.active_vault_id]

    def __repr__(self) -> str:
        return f"Keys(pseudonym_id={self.pseudonym_id}, vault_ids={sorted(self.vault)})"


def generate() -> Keys:
    """Make fresh random keys."""
    vault = os.urandom(KEY_BYTES)
    return Keys(os.urandom(KEY_BYTES), os.urandom(KEY_BYTES), {key_id(vault): vault}, key_id(vault))


def from_master(master_b64: str) -> Keys:
    """Derive the three keys from one base64 master key with HKDF-SHA256."""
    master = _b64(master_b64, "the master key")
    if len(master) < KEY_BYTES:
        raise KeyFileError(f"the master key must be at least {KEY_BYTES} bytes")

    def derive(purpose: bytes) -> bytes:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose)
        return hkdf.derive(master)

    vault = derive(b"dicom-index vault")
    return Keys(
        derive(b"dicom-index pseudonym"),
        derive(b"dicom-index blind"),
        {key_id(vault): vault},
        key_id(vault),
    )


def _document(keys: Keys) -> dict[str, Any]:
    return {
        "format": KEY_FILE_FORMAT,
        "pseudonym": _enc(keys.pseudonym),
        "blind": _enc(keys.blind),
        "vault": {
            "active": keys.active_vault_id,
            "keys": {k: _enc(v) for k, v in keys.vault.items()},
        },
    }


def write_key_file(path: Path, keys: Keys) -> None:
    """Create the key file with mode 0600; never overwrite an existing one."""
    try:
        private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:  # its folder cannot be made (a file in its path), no permission
        raise KeyFileError(f"key file {path} cannot be created ({os_reason(e)})") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(_document(keys), f, indent=2)
        f.write("\n")


def replace_key_file(path: Path, keys: Keys) -> None:
    """Rewrite an existing key file atomically (temp file with mode 0600, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_document(keys), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def with_new_vault_key(keys: Keys) -> Keys:
    """The same keys plus a fresh vault key, which becomes the active one."""
    new = os.urandom(KEY_BYTES)
    return Keys(keys.pseudonym, keys.blind, {**keys.vault, key_id(new): new}, key_id(new))


def without_vault_keys(keys: Keys, retire: set[str]) -> Keys:
    """The same keys less the retired vault keys (never the active one)."""
    if keys.active_vault_id in retire:
        raise KeyFileError("the active vault key cannot be retired")
    vault = {k: v for k, v in keys.vault.items() if k not in retire}
    return Keys(keys.pseudonym, keys.blind, vault, keys.active_vault_id)


def read_key_file(path: Path) -> Keys:
    """Read and check a key file: present, a regular file, not group or world readable."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(
            f"no key file at {path}; create one with `dicom-index keys init` "
            "or set DICOM_INDEX_MASTER_KEY"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"key file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        doc: Any = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise KeyFileError(f"key file {path} cannot be read ({os_reason(e)})") from None
    if not isinstance(doc, dict) or doc.get("format") != KEY_FILE_FORMAT:
        raise KeyFileError(f"key file {path} is not a {KEY_FILE_FORMAT} file")
    try:
        vault = {k: _b64(v, f"vault key {k}") for k, v in doc["vault"]["keys"].items()}
        keys = Keys(
            _b64(doc["pseudonym"], "the pseudonym key"),
            _b64(doc["blind"], "the blind-index key"),
            vault,
            doc["vault"]["active"],
        )
    except (KeyError, TypeError, AttributeError):
        raise KeyFileError(f"key file {path} lacks a required key") from None
    for kid, key in vault.items():
        if key_id(key) != kid:
            raise KeyFileError(f"key file {path}: vault key {kid} does not match its id")
    if keys.active_vault_id not in vault:
        raise KeyFileError(f"key file {path}: the active vault key is not in the file")
    return keys


def load(key_file: Path, master_key: str | None) -> Keys:
    """Keys from the environment's master key if set, else from the key file."""
    return from_master(master_key) if master_key else read_key_file(key_file)


def _enc(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _b64(s: object, what: str) -> bytes:
    if not isinstance(s, str):
        raise KeyFileError(f"{what} is not a base64 string")
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{what} is not valid base64") from None
    if len(raw) < KEY_BYTES:
        raise KeyFileError(f"{what} is shorter than {KEY_BYTES} bytes")
    return raw
