"""The shipped Table E.1-1 itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from indexer.deid.table import Action, Option, TagPattern, load_table, table_edition

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_row_parses_and_codes_are_actions():
    rows = load_table()
    assert rows
    for row in rows:
        assert isinstance(row.basic, Action)
        assert all(isinstance(o, Option) and isinstance(a, Action) for o, a in row.options.items())
        assert all(a in (Action.KEEP, Action.CLEAN) for a in row.options.values())


def test_row_count_matches_readme():
    n = len(load_table())
    assert re.search(rf"\b{n} rows\b", README.read_text("utf-8"))


def test_edition_recorded():
    assert "2024b" in table_edition()


@pytest.mark.parametrize(
    ("keyword", "action"),
    [
        ("PatientName", Action.ZERO),
        ("PatientID", Action.Z_D),
        ("SOPInstanceUID", Action.UID),
        ("StudyInstanceUID", Action.UID),
        ("MediaStorageSOPInstanceUID", Action.UID),
        ("AccessionNumber", Action.ZERO),
        ("InstitutionName", Action.X_Z_D),
        ("ReferencedImageSequence", Action.X_Z_U),
        ("StudyDescription", Action.REMOVE),
    ],
)
def test_known_rows(keyword, action):
    by_kw = {r.keyword: r for r in load_table()}
    assert by_kw[keyword].basic is action


def test_masks_and_private_rows():
    patterns = {r.tag.text: r for r in load_table() if not r.tag.is_exact}
    assert set(patterns) == {"(50xx,xxxx)", "(60xx,3000)", "(60xx,4000)", "(gggg,eeee)"}
    curve = patterns["(50xx,xxxx)"].tag
    assert curve.matches(0x50001234)
    assert curve.matches(0x501E0000)
    assert not curve.matches(0x60003000)
    overlay = patterns["(60xx,3000)"].tag
    assert overlay.matches(0x60023000)
    assert not overlay.matches(0x60024000)
    assert patterns["(gggg,eeee)"].tag.private
    assert patterns["(gggg,eeee)"].tag.matches(0x00091001)
    assert not patterns["(gggg,eeee)"].tag.matches(0x00100010)
    assert patterns["(gggg,eeee)"].options[Option.RETAIN_SAFE_PRIVATE] is Action.CLEAN


@pytest.mark.parametrize("bad", ["0010,0010", "(0010,001)", "(zz10,0010)", "(0010;0010)"])
def test_bad_tag_patterns_are_refused(bad):
    with pytest.raises(ValueError, match="not a tag pattern"):
        TagPattern.parse(bad)
