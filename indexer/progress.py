"""Progress on a terminal (files/s, MB/s, ETA); silence elsewhere."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from indexer.pipeline import Progress as ProgressFn

LINE_EVERY_SECONDS = 10.0


def mode(quiet: bool) -> str:
    """'bar' on a terminal, 'lines' (one every few seconds) elsewhere, 'off' in CI or quiet."""
    if quiet or os.environ.get("CI"):
        return "off"
    return "bar" if sys.stderr.isatty() else "lines"


def _rates(
    files: int, nbytes: int | None, started: float, total: int | None, unit: str = "files"
) -> str:
    elapsed = max(time.monotonic() - started, 1e-6)
    text = f"{files / elapsed:,.0f} {unit}/s"
    if nbytes is not None:
        text += f"  {nbytes / elapsed / 1e6:,.1f} MB/s"
    if total:
        text += f"  ETA {(total - files) / max(files / elapsed, 1e-6):,.0f}s"
    return text


@contextmanager
def reporter(
    kind: str,
    total_files: int | None = None,
    *,
    label: str = "ingest",
    reads: bool = True,
    unit: str = "files",
) -> Iterator[ProgressFn | None]:
    """A progress callback for the mode, or None when off; ``label`` names the work.

    ``reads``: the work reads the files, so MB/s means something (a check of sizes does not).
    ``unit``: what the work counts (files; rows, for a key rotation).
    """
    if kind == "off":
        yield None
        return
    started = time.monotonic()
    if kind == "lines":
        last = [started]

        def line(files: int, nbytes: int) -> None:
            now = time.monotonic()
            if now - last[0] >= LINE_EVERY_SECONDS:
                last[0] = now
                rates = _rates(files, nbytes if reads else None, started, total_files, unit)
                sys.stderr.write(f"{label}: {files:,} {unit}  {rates}\n")
                sys.stderr.flush()

        yield line
        return
    yield from _bar(total_files, started, label, reads, unit)


def _bar(
    total_files: int | None, started: float, label: str, reads: bool, unit: str
) -> Iterator[ProgressFn]:
    # imported only for a terminal: a run in the background does not wait for rich
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(stderr=True)
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as p:
        task = p.add_task(label, total=total_files, rate="")

        def update(files: int, nbytes: int) -> None:
            rates = _rates(files, nbytes if reads else None, started, total_files, unit)
            p.update(task, completed=files, rate=rates)

        yield update
