"""Every setting is documented in README.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.config import descriptions

README = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")


@pytest.mark.parametrize("name", sorted(descriptions()))
def test_setting_is_documented(name):
    assert f"`{name}`" in README
    assert f"`DICOM_INDEX_{name.upper()}`" in README
    assert descriptions()[name]


def test_every_command_is_documented():
    from indexer.cli import cli  # noqa: PLC0415

    for name in cli.commands:
        assert f"dicom-index {name}" in README, name
