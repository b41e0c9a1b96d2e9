"""Folder trees walked without recursion (`indexer.tree`): any depth, os.walk's order."""

from __future__ import annotations

import os
from pathlib import Path

from indexer import tree
from tests.conftest import DEEPER_THAN_RECURSION


def test_walk_reaches_below_the_recursion_limit(tmp_path, deep_folder):
    d = deep_folder(tmp_path)
    (d / "x.dcm").write_bytes(b"x")
    walked = list(tree.walk(tmp_path))
    assert len(walked) == DEEPER_THAN_RECURSION + 1
    assert walked[-1] == (d, ["x.dcm"])


def test_walk_gives_os_walks_order_and_names_and_prunes(tmp_path):
    for rel in ("b/2.dcm", "b/a/1.dcm", "a.dcm", "c/3.dcm", "b/c.dcm", "skip/4.dcm"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "b" / "to_c").symlink_to(tmp_path / "c")  # a name, not walked
    expected = []
    for top, dirs, files in os.walk(tmp_path):
        dirs.sort()
        expected.append((Path(top), sorted(files + [d for d in dirs if Path(top, d).is_symlink()])))
    assert list(tree.walk(tmp_path)) == expected
    pruned = list(tree.walk(tmp_path, descend=lambda p: p.name != "skip"))
    assert [folder.name for folder, _ in pruned] == [tmp_path.name, "b", "a", "c"]
    assert pruned[1] == (tmp_path / "b", ["2.dcm", "c.dcm", "to_c"])


def test_walk_of_what_cannot_be_listed_gives_nothing(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    assert list(tree.walk(tmp_path / "f")) == []
    assert list(tree.walk(tmp_path / "missing")) == []
