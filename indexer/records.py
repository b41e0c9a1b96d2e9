"""Frozen records passed between the pipeline's stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from indexer.deid import Identity


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One candidate object. ``locator`` (path, archive member) goes to the vault only."""

    source_id: str
    locator: str = field(repr=False)
    size: int
    read: Callable[[], bytes] = field(repr=False, compare=False)
    version: str = ""  # size, mtime, ctime, inode; CRC; the tar's: changes with the content
    # the copies the index holds from this source in this output, made under other rules or
    # settings: (copy name, SHA-256, made from this very version), which its new copy may
    # replace (and which go, made from this version, where it is refused or renamed)
    replaces: tuple[tuple[str, str, bool], ...] = ()

    def replaced(self, name: str) -> str | None:
        """The SHA-256 of the copy under ``name`` that this source's copy may replace."""
        return next((sha for n, sha, _same in self.replaces if n == name), None)

    def made_here(self, but: str | None = None) -> tuple[tuple[str, str], ...]:
        """(name, SHA-256) of the copies made from this very version, but the one named."""
        return tuple((n, sha) for n, sha, same in self.replaces if same and n != but)


@dataclass(frozen=True, slots=True)
class Failure:
    """A file that was skipped (not DICOM) or failed; ``message`` is PHI-free."""

    source_id: str
    locator: str = field(repr=False)
    outcome: str  # "skipped" | "failed"
    reason: str
    message: str
    # keyed, of the source's bytes, where the rules refused them (its copies go)
    source_digest: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class IndexRecord:
    """Rows for each level of the index, from the de-identified dataset."""

    patient: dict[str, Any]
    study: dict[str, Any]
    series: dict[str, Any]
    instance: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One object de-identified, copied, and ready to index."""

    source_id: str
    locator: str = field(repr=False)
    size: int
    identities: tuple[Identity, ...] = field(repr=False)
    record: IndexRecord = field(repr=False)
    replaces: str | None = None  # the SHA-256 of the indexed copy its copy may replace
