"""The README's two set-up commands work as written on a clean copy of the project."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text("utf-8")


def _block_after(heading: str) -> str:
    section = README.split(f"## {heading}", 1)[1]
    match = re.search(r"```sh\n(.+?)\n```", section, re.DOTALL)
    assert match, heading
    return match.group(1).strip()


def test_ci_runs_the_readme_test_command_word_for_word():
    command = _block_after("Tests")
    assert "\n" not in command
    ci = (ROOT / ".ci" / "run").read_text("utf-8")
    assert command in ci.splitlines()


def _clean_copy(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in files:
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@pytest.mark.slow
def test_quick_start_command_works_on_a_clean_copy(tmp_path):
    command = _block_after("Quick start")
    assert "\n" not in command
    project = tmp_path / "project"
    project.mkdir()
    _clean_copy(project)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DICOM_INDEX_", "VIRTUAL_ENV", "PYTHONPATH"))
    }
    try:
        p = subprocess.run(
            ["bash", "-c", command],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert "24 seen, 24 indexed" in p.stdout
        assert "sink is off" not in p.stderr  # the embedded MongoDB server was used
        assert len(list((project / "deidentified").rglob("*.dcm"))) == 24
        q = subprocess.run(
            [
                str(project / ".venv/bin/dicom-index"),
                "sql",
                "--csv",
                "SELECT count(*) FROM instance",
            ],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert q.stdout.splitlines()[-1] == "24"
    finally:
        exe = project / ".venv/bin/dicom-index"
        if exe.exists():
            subprocess.run(
                [str(exe), "db", "stop"],
                cwd=project,
                env=env,
                capture_output=True,
                timeout=120,
                check=False,
            )
