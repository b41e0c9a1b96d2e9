"""Keyed, deterministic pseudonyms: the same original and key give the same pseudonym anywhere.

Every pseudonym is an HMAC-SHA256 of a purpose label and the original under the pseudonym key,
so no table is needed to stay consistent across batches, processes and machines.

The functions are pure, so recent answers are kept: the slices of a series ask for the same
study, series and patient pseudonyms again and again (in memory only, like the originals
being processed).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac

# PS3.5 9.1: UIDs are at most 64 characters; 2.25.<128-bit integer> is at most 44.
UID_ROOT = "2.25."


def _mac(key: bytes, purpose: str, value: str) -> bytes:
    return hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


@functools.lru_cache(maxsize=4096)
def uid(key: bytes, original: str) -> str:
    """Return the pseudonym UID ``2.25.<int>`` of an original UID (PS3.5 B.2)."""
    return UID_ROOT + str(int.from_bytes(_mac(key, "uid", original)[:16], "big"))


@functools.lru_cache(maxsize=4096)
def ident(key: bytes, kind: str, original: str, prefix: str, max_len: int) -> str:
    """Return ``<prefix>-<base32 digest>`` that fits in ``max_len`` characters.

    The digest part is 12 to 20 characters (60 to 100 bits); ``kind`` separates the spaces
    of patient IDs, accession numbers and so on.
    """
    head = f"{prefix}-" if prefix else ""
    n = max(12, min(20, max_len - len(head)))
    digest = base64.b32encode(_mac(key, kind, original)).decode("ascii").rstrip("=")
    return (head + digest[:n])[:max_len]


@functools.lru_cache(maxsize=4096)
def date_offset_days(key: bytes, patient: str, max_days: int) -> int:
    """Return this patient's date shift: a whole number of days in [-max_days, -1]."""
    n = int.from_bytes(_mac(key, "dateshift", patient)[:8], "big")
    return -(1 + n % max_days)


CACHES = (uid, ident, date_offset_days)  # what work.clear_caches empties
