"""The exception tree: every error we raise on purpose names the problem and a PHI-free place.

Messages never quote element values or source paths. A pydicom exception's text can quote
values, so code that catches one raises ours ``from None`` and keeps only the type name.
"""

from __future__ import annotations

import os
import sys


def os_reason(e: BaseException) -> str:
    """An error's kind and, for a system error, its cause: ``OSError: No space left on device``.

    The cause is the text of its error number, which holds no path (the error's own text
    does: it is never used).
    """
    name = type(e).__name__
    if isinstance(e, OSError) and e.errno is not None:
        return f"{name}: {os.strerror(e.errno)}"
    return name


def database_failure(e: BaseException) -> str | None:
    """What a database driver's error means, without its text; None if it is none.

    The server's text can quote a value or name a host and user: only the error's kind and
    SQLSTATE are given. The drivers' modules are looked up, not imported: a command that
    never loaded them cannot have raised their errors.
    """
    wrapped = sys.modules.get("sqlalchemy.exc")
    if wrapped is not None and isinstance(e, wrapped.DBAPIError) and e.orig is not None:
        e = e.orig
    psycopg = sys.modules.get("psycopg")
    if psycopg is None or not isinstance(e, psycopg.Error):
        return None
    state = getattr(e, "sqlstate", None)
    if isinstance(e, psycopg.OperationalError) and (state is None or state[:2] in ("08", "57")):
        return f"the database connection was lost or refused ({type(e).__name__})"
    return f"the database refused a statement ({type(e).__name__}, SQLSTATE {state or 'none'})"


class IndexerError(Exception):
    """Base of errors we raise on purpose: names the problem and a PHI-free place."""

    code = "indexer"
    exit_code = 3

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(f"{message} [{where}]" if where else message)
        self.message = message
        self.where = where  # source_id, member index, tag; never a path or a value


class ConfigError(IndexerError):
    """Settings are missing or contradictory."""

    code = "config"


class KeyFileError(IndexerError):
    """The key file is missing, unreadable, world-readable or malformed."""

    code = "keys"


class SourceError(IndexerError):
    """A source file is unreadable, or not DICOM; recorded per file, the run goes on."""

    code = "source"

    def __init__(self, message: str, *, reason: str, where: str | None = None) -> None:
        super().__init__(message, where=where)
        self.reason = reason  # a stable reason code, e.g. "not_dicom", "truncated"

    @classmethod
    def unreadable(cls, e: OSError) -> SourceError:
        """A file the system would not let us read.

        Named by the error's kind, never its text (which holds the path).
        """
        return cls(f"cannot read the file ({os_reason(e)})", reason="unreadable")


class UnsafeArchiveError(SourceError):
    """An archive member would escape its archive (zip-slip), or an archive is too large."""

    code = "unsafe_archive"


class DeidError(IndexerError):
    """An object cannot be de-identified safely; recorded per file, the run goes on."""

    code = "deid"
    source_digest: str | None = None  # of the object's source, where it was read (``prepare``)

    def __init__(self, message: str, *, reason: str, where: str | None = None) -> None:
        super().__init__(message, where=where)
        self.reason = reason


class RuleError(IndexerError):
    """A de-identification rules file or option is invalid; stops before any file is read."""

    code = "rules"


class StoreError(IndexerError):
    """A database or output store cannot be reached or used; stops the run."""

    code = "store"


class VaultAccessError(IndexerError):
    """A re-identification was refused: reason, key or privilege missing."""

    code = "vault"
