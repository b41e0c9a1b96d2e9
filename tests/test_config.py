"""Settings: defaults, the environment, the TOML file and flags, in that order of strength.

Each kind of value is read from the environment's text and from TOML; a bad value is refused
with a message that names the setting and never repeats the value (it may be a secret).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from indexer.config import DEFAULT_STATE_DIR, load_settings
from indexer.errors import ConfigError

SECRET = "s3cr3t-PHIMARK"  # noqa: S105 - a planted marker


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os  # noqa: PLC0415

    for name in list(os.environ):
        if name.upper().startswith("DICOM_INDEX_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults():
    s = load_settings()
    assert s.state_dir == DEFAULT_STATE_DIR
    assert s.database_url is None
    assert s.mongo_enabled is True
    assert s.mongo_timeout_ms == 5000
    assert s.deid_options == []
    assert s.burned_in == "reject"
    assert s.workers is None
    assert s.resolved_key_file == DEFAULT_STATE_DIR / "keys.json"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("state_dir", "/srv/state", Path("/srv/state")),
        ("database_url", "postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("database_url", "", None),  # set but empty: unset
        ("mongo_enabled", "false", False),
        ("mongo_enabled", "0", False),
        ("mongo_enabled", "No", False),
        ("mongo_enabled", "off", False),
        ("mongo_enabled", "TRUE", True),
        ("mongo_enabled", "1", True),
        ("mongo_enabled", "yes", True),
        ("mongo_timeout_ms", "250", 250),
        ("workers", " 3 ", 3),
        (
            "deid_options",
            '["retain-uids", "clean-descriptors"]',
            ["retain-uids", "clean-descriptors"],
        ),
        ("burned_in", "clean", "clean"),
        ("key_file", "/keys/k.json", Path("/keys/k.json")),
        ("id_prefix", "SITE-1", "SITE-1"),
    ],
)
def test_environment_text_is_read_as_each_kind(clean_env, name, text, expected):
    clean_env.setenv(f"DICOM_INDEX_{name.upper()}", text)
    assert getattr(load_settings(), name) == expected


def test_environment_names_ignore_case(clean_env):
    clean_env.setenv("dicom_index_batch_size", "17")
    assert load_settings().batch_size == 17


def test_other_environment_variables_are_not_settings(clean_env):
    before = load_settings()
    clean_env.setenv("DICOM_INDEX_FAILPOINT", "copy_written")  # read by the failpoints
    clean_env.setenv("DICOM_INDEX_READER_PASSWORD", SECRET)  # read by `db roles`
    assert load_settings() == before


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, "utf-8")
    return path


def test_toml_file_values(tmp_path):
    path = _toml(
        tmp_path,
        'state_dir = "/data/di"\nmongo_enabled = false\nbatch_size = 50\n'
        'deid_options = ["retain-uids"]\nburned_in = "allow"\n',
    )
    s = load_settings(path)
    assert s.state_dir == Path("/data/di")
    assert s.mongo_enabled is False
    assert s.batch_size == 50
    assert s.deid_options == ["retain-uids"]
    assert s.burned_in == "allow"


def test_the_config_variable_names_the_file(clean_env, tmp_path):
    clean_env.setenv("DICOM_INDEX_CONFIG", str(_toml(tmp_path, "batch_size = 9\n")))
    assert load_settings().batch_size == 9


def test_flags_beat_the_environment_which_beats_the_file(clean_env, tmp_path):
    path = _toml(tmp_path, 'state_dir = "/from/file"\nbatch_size = 5\nid_prefix = "FILE"\n')
    clean_env.setenv("DICOM_INDEX_STATE_DIR", "/from/env")
    clean_env.setenv("DICOM_INDEX_BATCH_SIZE", "6")
    s = load_settings(path, state_dir=Path("/from/flag"), batch_size=None)
    assert s.state_dir == Path("/from/flag")  # flag
    assert s.batch_size == 6  # environment (a flag left unset does not count)
    assert s.id_prefix == "FILE"  # file


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_settings().batch_size = 3  # type: ignore[misc]


def test_the_master_key_is_not_in_the_repr(clean_env):
    clean_env.setenv("DICOM_INDEX_MASTER_KEY", SECRET)
    s = load_settings()
    assert s.master_key == SECRET
    assert SECRET not in repr(s)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("mongo_enabled", f"maybe-{SECRET}", "true or false"),
        ("batch_size", f"{SECRET}", "whole number"),
        ("batch_size", "0", "at least 1"),
        ("batch_size", "100001", "at most 100000"),
        ("workers", "257", "at most 256"),
        ("mongo_timeout_ms", "99", "at least 100"),
        ("date_shift_days", "0", "at least 1"),
        ("max_member_bytes", "-1", "at least 1"),
        ("deid_options", f"{SECRET}", "JSON list"),
        ("deid_options", f'{{"a": "{SECRET}"}}', "list of strings"),
        ("burned_in", f"{SECRET}", "one of reject, allow, clean"),
        ("id_prefix", f"{SECRET}", "at most 8 letters"),
        ("id_prefix", "A/B", "at most 8 letters"),
    ],
)
def test_bad_environment_values_are_refused_without_repeating_them(clean_env, name, text, problem):
    clean_env.setenv(f"DICOM_INDEX_{name.upper()}", text)
    with pytest.raises(ConfigError) as e:
        load_settings()
    assert name in str(e.value)
    assert problem in str(e.value)
    assert SECRET not in str(e.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f'not_a_setting = "{SECRET}"\n', "not_a_setting: not a setting"),
        (f'batch_size = "{SECRET}"\n', "batch_size: must be a whole number"),
        ("batch_size = true\n", "batch_size: must be a whole number"),
        ('mongo_enabled = "false"\n', "mongo_enabled: must be true or false"),
        ("state_dir = 3\n", "state_dir: must be a path"),
        ("database_url = 5\n", "database_url: must be text"),
        ("deid_options = [1, 2]\n", "deid_options: must be a list of strings"),
    ],
)
def test_bad_file_values_are_refused(tmp_path, text, problem):
    with pytest.raises(ConfigError) as e:
        load_settings(_toml(tmp_path, text))
    assert problem in str(e.value)
    assert SECRET not in str(e.value)


def test_every_problem_is_reported_at_once(clean_env):
    clean_env.setenv("DICOM_INDEX_BATCH_SIZE", "0")
    clean_env.setenv("DICOM_INDEX_BURNED_IN", "never")
    with pytest.raises(ConfigError) as e:
        load_settings()
    assert "batch_size" in str(e.value)
    assert "burned_in" in str(e.value)


def test_an_unreadable_or_broken_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot read settings file"):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_toml(tmp_path, "batch_size = = 3\n"))
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'database_url = "caf\xe9"\n')  # was an internal error
    with pytest.raises(ConfigError, match="settings file is not UTF-8 text"):
        load_settings(latin1)
