"""Progress on a terminal (files/s, MB/s, ETA); silence elsewhere."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from indexer.pipeline import Progress as ProgressFn


def wanted(quiet: bool) -> bool:
    """A progress display only on an interactive terminal, never in CI or with --quiet."""
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def bar(enabled: bool, total_files: int | None = None) -> Iterator[ProgressFn | None]:
    """A callback that updates a live bar on stderr, or None when not wanted."""
    if not enabled:
        yield None
        return
    console = Console(stderr=True)
    started = time.monotonic()
    with Progress(
        TextColumn("ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as p:
        task = p.add_task("ingest", total=total_files, rate="")

        def update(files: int, nbytes: int) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            rate = f"{files / elapsed:,.0f} files/s  {nbytes / elapsed / 1e6:,.1f} MB/s"
            if total_files:
                eta = (total_files - files) / max(files / elapsed, 1e-6)
                rate += f"  ETA {eta:,.0f}s"
            p.update(task, completed=files, rate=rate)

        yield update
