"""Module boundaries: database drivers only in store/, deid/ pure, no PHI-ish logging calls."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "indexer"
DB_MODULES = ("sqlalchemy", "psycopg", "pymongo", "alembic")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_database_drivers_only_in_store():
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if rel.parts[0] == "store":
            continue
        bad = {n for n in _imports(path) if n.split(".")[0] in DB_MODULES}
        if bad:
            offenders.append(f"{rel}: {sorted(bad)}")
    assert offenders == []


def test_deid_is_pure():
    for path in (PKG / "deid").rglob("*.py"):
        names = _imports(path)
        assert not any(n.startswith(("indexer.store", "indexer.pipeline")) for n in names), path
        assert not any(
            n.split(".")[0] in (*DB_MODULES, "os", "shutil", "subprocess") for n in names
        ), path


def test_only_cli_configures_output():
    for path in PKG.rglob("*.py"):
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                assert not (isinstance(f, ast.Name) and f.id == "print"), path
                assert not (isinstance(f, ast.Attribute) and f.attr == "basicConfig"), path
