"""Test builders: synthetic instances and archives with planted PHI markers."""

from __future__ import annotations

import hashlib
from pathlib import Path

from indexer import deid, keys
from indexer.pipeline import Ingest, local_output
from indexer.sample import SampleShape, make_instance, to_bytes, write_archive
from indexer.store import db

__all__ = ["SampleShape", "files_sha", "ingest_job", "make_instance", "to_bytes", "write_archive"]


def files_sha(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def all_bytes(root: Path) -> list[tuple[str, bytes]]:
    """(relative path, bytes) of every file under root (names included in the search)."""
    return [
        (str(p.relative_to(root)), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()
    ]


def ingest_job(database: db.Database, key_file: Path, out: Path, **options: object) -> Ingest:
    """An in-process ingest with the basic profile and small batches (``options`` added)."""
    return Ingest(
        database,
        keys.read_key_file(key_file),
        deid.basic_plan(),
        local_output(out),
        id_prefix="DI",
        max_shift_days=3650,
        batch_size=4,
        max_member_bytes=10**8,
        **options,  # type: ignore[arg-type]
    )
