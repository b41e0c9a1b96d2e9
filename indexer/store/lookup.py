"""What the per-file work asks the index: light, for every worker process unpickles it.

The workers' own work never needs the database code. A worker imports it (SQLAlchemy and
psycopg: about a quarter of a second of a core, which every worker would pay while all cores
are busy) only when it asks, which it does only for a copy in conflict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine


class CopiesMadeOf:
    """``sql.copy_made_of`` in one output, callable from the ingest's threads and workers.

    Pickled for a worker process as the database URL (its password too) and the output's
    id; the process connects when it first asks.
    """

    def __init__(self, engine: Engine, output_id: str) -> None:
        self._url = engine.url.render_as_string(hide_password=False)
        self._engine: Engine | None = engine
        self.output_id = output_id

    def __getstate__(self) -> tuple[str, str]:
        return self._url, self.output_id

    def __setstate__(self, state: tuple[str, str]) -> None:
        self._url, self.output_id = state
        self._engine = None

    def __call__(self, name: str, digest: str) -> str | None:
        """The SHA-256 of the copy ``name`` here if a source of these bytes made it."""
        from indexer.store import db, sql  # noqa: PLC0415 - see the module's docstring

        if self._engine is None:
            self._engine = db.engine_for(self._url)
        with db.transaction(self._engine) as s:
            return sql.copy_made_of(s, name, digest, self.output_id)
