"""`check-copies`: every copy the index describes is in its output, whole; nothing else is.

An output keeps its own id (``.dicom-index-output``) and each ingest run records the id of
the output it wrote to, so the index knows which of its instances have their copy in a
given directory, wherever that directory has been moved since. Names printed are copy
names: pseudonymized UIDs only.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.errors import ConfigError, StoreError
from indexer.store import db, sql
from indexer.store.files import OUTPUT_ID_FILE, LocalCopies

if TYPE_CHECKING:
    from indexer.pipeline import Progress

EXAMPLES = 20  # problems named one by one; the rest are counted
NAMES_AT_ONCE = 1000  # copy names looked up in the index at once
COPY_NAME = re.compile(r"[0-9.]+/[0-9.]+/[0-9.]+\.dcm")  # <study>/<series>/<sop>.dcm, UIDs


@dataclass(slots=True)
class CopyCheck:
    """What checking one output's copies against the index found."""

    output_id: str
    checked: int = 0  # copies the index places in this output
    missing: int = 0
    unreadable: int = 0
    other_size: int = 0
    damaged: int = 0  # the right size, but not a copy's first bytes (what a crash leaves)
    other_content: int = 0  # only when contents are compared
    not_indexed: int = 0  # copies here that the index does not place here
    examples: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """How many copies are missing, unreadable, differ, or are not indexed."""
        return (
            self.missing
            + self.unreadable
            + self.other_size
            + self.damaged
            + self.other_content
            + self.not_indexed
        )

    def found(self, problem: str, name: str) -> None:
        """Count a ``problem`` (a counter's name) with the copy ``name``; name the first few."""
        setattr(self, problem, getattr(self, problem) + 1)
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{problem.replace('_', ' ')}: {name}")


def check_copies(
    database: db.Database,
    root: Path,
    *,
    content: bool = False,
    progress: Progress | None = None,
) -> CopyCheck:
    """Check the output at ``root`` against the index.

    Every copy the index places there must exist with its size, beginning as a copy does
    (and, with ``content``, with its SHA-256); every copy there must be one the index places
    there.
    """
    copies = LocalCopies(root)
    if copies.output_id is None:
        raise ConfigError(
            f"not a dicom-index output: the directory has no {OUTPUT_ID_FILE} file "
            "(an ingest gives its output one)"
        )
    report = CopyCheck(copies.output_id)
    with db.transaction(database.engine) as s:
        nbytes = 0
        for c in sql.indexed_copies(s, copies.output_id):
            report.checked += 1
            problem = _problem(copies, c, content=content)
            if problem is not None:
                report.found(problem, c.name)
            if content and problem in (None, "other_content"):
                nbytes += c.size  # read to hash it: what MB/s counts
            if progress is not None:
                progress(report.checked, nbytes)
        for chunk in _chunks(copies.names()):
            described = sql.described_names(s, copies.output_id, [_sop_uid(n) for n in chunk])
            for name in chunk:
                if name not in described:  # named only if named as copies are: no PHI
                    report.found("not_indexed", name if COPY_NAME.fullmatch(name) else "(a file)")
    return report


def _problem(copies: LocalCopies, c: sql.IndexedCopy, *, content: bool) -> str | None:
    """What is wrong with the copy ``c`` in ``copies`` (a CopyCheck counter), or None."""
    try:
        found = copies.look(c.name)
        if found is None:
            return "missing"
        size, begins_as_copy = found
        if size != c.size:
            return "other_size"
        if not begins_as_copy:
            return "damaged"
        if content and copies.sha256(c.name) != c.sha256:
            return "other_content"
    except StoreError:  # no permission, an I/O error: the copy cannot be vouched for
        return "unreadable"
    return None


def unrecorded_copies(database: db.Database) -> int:
    """Instances indexed by runs that recorded no output (before they did): not checkable."""
    with db.transaction(database.engine) as s:
        return sql.count_indexed_copies(s, None)


def count_copies(database: db.Database, root: Path) -> int | None:
    """How many copies the index places in the output at ``root`` (None: not an output)."""
    output_id = LocalCopies(root).output_id
    if output_id is None:
        return None
    with db.transaction(database.engine) as s:
        return sql.count_indexed_copies(s, output_id)


def _chunks(names: Iterator[str]) -> Iterator[list[str]]:
    while chunk := list(itertools.islice(names, NAMES_AT_ONCE)):
        yield chunk


def _sop_uid(name: str) -> str:
    """The SOP Instance UID in a copy's name (``<study>/<series>/<sop>.dcm``)."""
    return Path(name).stem
