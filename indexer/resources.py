"""Data folders shipped beside the package: migrations/ and schemas/.

In a wheel they live inside the package (``indexer/_migrations``, ``indexer/_schemas``); in a
checkout or an editable install, at the top of the project.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from indexer.errors import ConfigError

PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder ``name`` (``migrations`` or ``schemas``) of this installation."""
    for candidate in (PACKAGE / f"_{name}", PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"the {name} folder is missing from this installation")


def load_schema(file_name: str) -> dict[str, Any]:
    """A JSON Schema document from ``schemas/``."""
    doc: dict[str, Any] = json.loads((data_dir("schemas") / file_name).read_text("utf-8"))
    return doc
