"""The console script's process: no garbage collection while it sets up, back on for the work."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from indexer import cli as cli_mod
from indexer import pipeline
from tests.builders import SampleShape, write_archive


@pytest.fixture
def console(cli, monkeypatch):
    """Run `main()` here, as the console script does, with the test's settings."""
    for k in [k for k in os.environ if k.startswith("DICOM_INDEX_")]:
        monkeypatch.delenv(k)
    for k, v in cli.env.items():
        monkeypatch.setenv(k, v)

    def run(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["dicom-index", *args])
        try:
            with pytest.raises(SystemExit) as e:
                cli_mod.main()
        finally:
            gc.unfreeze()  # main() freezes everything for the process's exit: undo it here
            gc.enable()
        return int(e.value.code or 0)

    return run


def _spy(monkeypatch, owner, name):
    """Wrap owner.name; record whether collection was on, and set-up frozen, at each call."""
    seen = []
    real = getattr(owner, name)

    def wrapper(*a, **k):
        seen.append((gc.isenabled(), gc.get_freeze_count() > 0))
        return real(*a, **k)

    monkeypatch.setattr(owner, name, wrapper)
    return seen


def test_ingest_collects_garbage_while_it_works(console, monkeypatch, tmp_path):
    archive = tmp_path / "archive"
    write_archive(archive, SampleShape(1, 1, 1, 3))
    seen = _spy(monkeypatch, pipeline.Ingest, "run")
    code = console("ingest", str(archive), "--out", str(tmp_path / "out"), "--workers", "1")
    assert code == 0
    assert seen == [(True, True)]
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 3


def test_deid_collects_garbage_while_it_works(console, monkeypatch, tmp_path):
    archive = tmp_path / "archive"
    write_archive(archive, SampleShape(1, 1, 1, 2))
    seen = _spy(monkeypatch, pipeline, "deidentify_tree")
    assert console("deid", str(archive), "--out", str(tmp_path / "out")) == 0
    assert seen == [(True, True)]
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 2


def test_set_up_runs_without_collection(console, monkeypatch, tmp_path):
    seen = _spy(monkeypatch, cli_mod, "_plan")  # part of set-up, before the work
    archive = tmp_path / "archive"
    write_archive(archive, SampleShape(1, 1, 1, 1))
    assert console("deid", str(archive), "--out", str(tmp_path / "out")) == 0
    assert seen == [(False, False)]


def test_an_unforeseen_error_is_one_line_without_its_text(capsys, caplog):
    """A defect (an exception none of ours) ends the command with exit 3 and one line: its
    kind and where it was raised. Its text, which can quote a value or a source path, is
    never shown; with -v the frames follow, by file, line and function only."""

    @cli_mod.handle_errors
    def command() -> None:
        raise UnicodeEncodeError("utf-8", "/archive/Doe PHIMARK", 9, 10, "surrogates")

    caplog.set_level("INFO", logger="indexer.cli")
    with pytest.raises(SystemExit) as ended:
        command()
    assert ended.value.code == cli_mod.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(
        "error (internal): an unexpected UnicodeEncodeError at test_cli_process.py:"
    )
    assert err.count("\n") == 1
    assert "in test_cli_process.py:" in caplog.text
    assert "PHIMARK" not in err + caplog.text


NOISY = """
import logging, runpy, sys
import indexer.sample
real = indexer.sample.write_archive

def noisy(*args, **kwargs):
    logging.getLogger("some.library").warning("a value: PHIMARK")
    return real(*args, **kwargs)

indexer.sample.write_archive = noisy
sys.argv[0] = "dicom-index"
runpy.run_module("indexer.cli", run_name="__main__")
"""


def test_other_librarys_log_records_are_never_printed(cli, tmp_path):
    """A library's warning, with no handler of its own, was printed by Python's last-resort
    handler; its text can quote values (the PostgreSQL wheel's quoted the server's log)."""
    p = subprocess.run(
        [sys.executable, "-c", NOISY, "sample", str(tmp_path / "s")],
        env=cli.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert (tmp_path / "s").is_dir()
    assert "PHIMARK" not in p.stderr + p.stdout
