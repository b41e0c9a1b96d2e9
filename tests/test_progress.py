"""Progress: a bar on a terminal, a line every few seconds elsewhere, else nothing."""

from __future__ import annotations

import io
import sys

import pytest

from indexer import progress


@pytest.fixture
def no_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    return monkeypatch


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_mode_follows_the_terminal(no_ci):
    no_ci.setattr(sys, "stderr", _Tty())
    assert progress.mode(quiet=False) == "bar"
    assert progress.mode(quiet=True) == "off"
    no_ci.setattr(sys, "stderr", io.StringIO())
    assert progress.mode(quiet=False) == "lines"
    no_ci.setenv("CI", "1")
    assert progress.mode(quiet=False) == "off"


def test_off_reports_nothing():
    with progress.reporter("off", 10) as update:
        assert update is None


def _line(no_ci, nbytes: int, **kwargs: object) -> str:
    """The line a reporter in "lines" mode writes after 25 of 100 are done."""
    err = io.StringIO()
    no_ci.setattr(sys, "stderr", err)
    no_ci.setattr(progress, "LINE_EVERY_SECONDS", 0.0)
    with progress.reporter("lines", 100, **kwargs) as update:
        assert update is not None
        update(25, nbytes)
    return err.getvalue()


def test_lines_give_files_and_megabytes_per_second_and_the_eta(no_ci):
    line = _line(no_ci, 5_000_000)
    assert line.startswith("ingest: 25 files")
    assert "files/s" in line
    assert "MB/s" in line
    assert "ETA" in line


def test_a_check_that_reads_nothing_shows_no_megabytes(no_ci):
    line = _line(no_ci, 0, label="check", reads=False)
    assert line.startswith("check: 25 files")
    assert "files/s" in line
    assert "MB/s" not in line
    assert "ETA" in line


def test_lines_are_spaced_out(no_ci):
    err = io.StringIO()
    no_ci.setattr(sys, "stderr", err)
    with progress.reporter("lines", 100) as update:
        assert update is not None
        for i in range(50):
            update(i, i * 1000)
    assert err.getvalue() == ""  # within the first LINE_EVERY_SECONDS: quiet


def test_the_bar_shows_the_rates(no_ci):
    err = _Tty()
    no_ci.setattr(sys, "stderr", err)
    with progress.reporter("bar", 4) as update:
        assert update is not None
        update(2, 1_000_000)
    assert "files/s" in err.getvalue()


def test_a_rotation_counts_rows(no_ci):
    line = _line(no_ci, 0, label="rotate", reads=False, unit="rows")
    assert line.startswith("rotate: 25 rows")
    assert "rows/s" in line
    assert "files" not in line
    assert "ETA" in line
