"""Small files and names that outlast a crash or a power cut; folders only their owner reads."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_synced(path: Path, data: bytes) -> None:
    """A new file holding ``data``, on the disk before it is given another name."""
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_directory(path: Path) -> None:
    """Make the names in the directory ``path`` outlast a crash (where the system can)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # a file system that cannot sync a directory: its names are as safe as it makes them
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """``path`` as a folder, made with its missing parents, each new one 0700; returned.

    For the state (keys, servers' data, their logs and locks): files there are 0600 or 0700
    already, and now their names are not listed to others either. A folder that exists keeps
    its mode: a site may have chosen it.
    """
    missing: list[Path] = []
    at = path
    while not at.exists() and at.parent != at:
        missing.append(at)
        at = at.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile: as that one made it
            folder.mkdir(mode=0o700)
    return path
