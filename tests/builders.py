"""Test builders: synthetic instances and archives with planted PHI markers."""

from __future__ import annotations

import hashlib
from pathlib import Path

from indexer.sample import SampleShape, make_instance, to_bytes, write_archive

__all__ = ["SampleShape", "files_sha", "make_instance", "to_bytes", "write_archive"]


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
