"""Key files: created 0600, refused when missing, malformed or readable by others."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

from indexer import keys
from indexer.errors import KeyFileError


def test_init_creates_0600_and_never_overwrites(tmp_path):
    env = {**os.environ, "DICOM_INDEX_STATE_DIR": str(tmp_path / "st"), "CI": "1"}
    run = [sys.executable, "-m", "indexer.cli", "keys", "init"]
    p = subprocess.run(run, env=env, capture_output=True, text=True, check=True)
    path = tmp_path / "st" / "keys.json"
    assert "created key file" in p.stdout
    assert path.stat().st_mode & 0o777 == 0o600
    before = path.read_bytes()
    p = subprocess.run(run, env=env, capture_output=True, text=True, check=True)
    assert "left unchanged" in p.stdout
    assert path.read_bytes() == before


def test_the_state_folders_it_makes_are_its_users_alone_and_one_there_keeps_its_mode(tmp_path):
    """The key file is 0600; the folders made for it list its name to nobody else. A folder
    a site made keeps the mode it chose."""
    run = [sys.executable, "-m", "indexer.cli", "keys", "init"]
    made = tmp_path / "new" / "st"
    env = {**os.environ, "DICOM_INDEX_STATE_DIR": str(made), "CI": "1"}
    subprocess.run(run, env=env, capture_output=True, text=True, check=True)
    assert (made / "keys.json").is_file()
    assert [p.stat().st_mode & 0o777 for p in (made, made.parent)] == [0o700, 0o700]
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    chosen.chmod(0o750)
    env = {**os.environ, "DICOM_INDEX_STATE_DIR": str(chosen), "CI": "1"}
    subprocess.run(run, env=env, capture_output=True, text=True, check=True)
    assert (chosen / "keys.json").is_file()
    assert chosen.stat().st_mode & 0o777 == 0o750


def test_a_key_file_whose_folder_cannot_be_made_is_named_with_why(tmp_path):
    (tmp_path / "afile").write_bytes(b"")  # a file where the state directory's parent must go
    env = {**os.environ, "DICOM_INDEX_STATE_DIR": str(tmp_path / "afile" / "st"), "CI": "1"}
    run = [sys.executable, "-m", "indexer.cli", "keys", "init"]
    p = subprocess.run(run, env=env, capture_output=True, text=True, check=False)
    assert p.returncode == KeyFileError.exit_code
    assert p.stderr.strip() == (
        f"error (keys): key file {tmp_path}/afile/st/keys.json cannot be created "
        "(NotADirectoryError: Not a directory)"
    )


def test_round_trip(tmp_path):
    k = keys.generate()
    keys.write_key_file(tmp_path / "k.json", k)
    again = keys.read_key_file(tmp_path / "k.json")
    assert again == k
    assert k.pseudonym != k.blind != k.active_vault_key


def test_missing_key_file_is_refused(tmp_path):
    with pytest.raises(KeyFileError, match="keys init"):
        keys.read_key_file(tmp_path / "nope.json")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_readable_by_others_is_refused(tmp_path, mode):
    path = tmp_path / "k.json"
    keys.write_key_file(path, keys.generate())
    path.chmod(mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        keys.read_key_file(path)


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"format": "other"}',
        '{"format": "dicom-index-keys/1"}',
        '{"format": "dicom-index-keys/1", "pseudonym": "!!", "blind": "", "vault": {}}',
    ],
)
def test_malformed_key_file_is_refused(tmp_path, content):
    path = tmp_path / "k.json"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError):
        keys.read_key_file(path)


def test_cli_refuses_world_readable_key_file(tmp_path):
    path = tmp_path / "k.json"
    keys.write_key_file(path, keys.generate())
    path.chmod(0o644)
    env = {
        **os.environ,
        "DICOM_INDEX_KEY_FILE": str(path),
        "CI": "1",
        "DICOM_INDEX_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "DICOM_INDEX_STATE_DIR": str(tmp_path / "state"),
    }
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "indexer.cli",
            "ingest",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 3
    assert "readable by others" in p.stderr
    assert "Traceback" not in p.stderr
    # refused before anything started: no embedded MongoDB server outlives the command
    assert not (tmp_path / "state" / "mongo").exists()


def test_master_key_derivation():
    master = base64.b64encode(b"m" * 32).decode()
    a, b = keys.from_master(master), keys.from_master(master)
    assert a == b
    assert len({a.pseudonym, a.blind, a.active_vault_key}) == 3
    with pytest.raises(KeyFileError):
        keys.from_master(base64.b64encode(b"short").decode())
