"""One frozen Settings object.

Precedence, highest first: CLI flags, environment (``DICOM_INDEX_*``), the TOML settings file
(``--config`` or ``DICOM_INDEX_CONFIG``), defaults.

Plain dataclasses and a small converter: every command reads the settings first, and a
validation framework would add a fifth of a second to each start.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

from indexer.errors import ConfigError, os_reason

DEFAULT_STATE_DIR = Path(".dicom-index")
MAX_PREFIX = 8
ENV_PREFIX = "DICOM_INDEX_"
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def setting(
    default: object,
    description: str,
    *,
    ge: int | None = None,
    le: int | None = None,
    repr: bool = True,  # noqa: A002 - dataclasses' own name
) -> Any:  # noqa: ANN401 - a dataclass field, typed by the attribute it defines
    """A setting: its default, its description (README lists it), its bounds if a number."""
    meta = {"description": description, "ge": ge, "le": le}
    if isinstance(default, list):
        return dataclasses.field(default_factory=list, metadata=meta, repr=repr)
    return dataclasses.field(default=default, metadata=meta, repr=repr)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of dicom-index; each one is documented in README.md."""

    state_dir: Path = setting(
        DEFAULT_STATE_DIR,
        "Directory for local state: the embedded PostgreSQL data and the key file.",
    )
    database_url: str | None = setting(
        None,
        (
            "SQLAlchemy URL of the PostgreSQL server (postgresql+psycopg://...). "
            "Unset: an embedded PostgreSQL is started in the state directory."
        ),
    )
    ingest_url: str | None = setting(
        None,
        (
            "URL `ingest` and `sync` connect with (the ingest role). Unset: the embedded "
            "server's ingest role, or the database URL."
        ),
    )
    reader_url: str | None = setting(
        None,
        (
            "URL `sql` and `check` connect with (the reader role: SELECT on dicom_index only). "
            "Unset: the embedded server's reader role, or the database URL behind SET ROLE."
        ),
    )
    reidentifier_url: str | None = setting(
        None,
        (
            "URL `reidentify` and `lookup` connect with (the reidentifier role). Unset: the "
            "embedded server's reidentifier role, or the database URL."
        ),
    )
    role_ingest: str = setting("dicom_index_ingest", "Name of the ingest role.")
    role_reader: str = setting("dicom_index_reader", "Name of the reader role.")
    role_reidentifier: str = setting("dicom_index_reidentifier", "Name of the reidentifier role.")
    mongo_url: str | None = setting(
        None,
        (
            "MongoDB URL of the document index. Unset: an embedded SecantusDB server in the "
            "state directory when the embedded-mongo extra is installed, else the sink is off."
        ),
    )
    mongo_db: str = setting("dicom_index", "MongoDB database name.")
    mongo_enabled: bool = setting(
        default=True,
        description="Write the MongoDB index; false switches the MongoDB sink off.",
    )
    mongo_timeout_ms: int = setting(
        5000, "How long to wait for MongoDB before a batch is left pending.", ge=100
    )
    key_file: Path | None = setting(
        None,
        "Key file made by `dicom-index keys init` (default: <state_dir>/keys.json).",
    )
    master_key: str | None = setting(
        None,
        (
            "Base64 of a 32-byte master key, instead of a key file; the pseudonym, vault and "
            "blind-index keys are derived from it with HKDF."
        ),
        repr=False,
    )
    id_prefix: str = setting(
        "DI",
        "Prefix of pseudonymized PatientID, AccessionNumber and StudyID values.",
    )
    date_shift_days: int = setting(
        3650,
        "Largest per-patient date offset, in days, used when dates are shifted.",
        ge=1,
    )
    deid_options: list[str] = setting(
        [],
        (
            "PS3.15 E.3 options applied to every object, by name (retain-uids, "
            "clean-descriptors, ...; Aspose.Medical and fo-dicom names such as RetainUIDs "
            "are accepted). In the environment, a JSON list."
        ),
    )
    rules_file: Path | None = setting(
        None,
        (
            "Site rules (JSON or YAML, ours or Microsoft's anonymization format) that override "
            "the profile; checked against schemas/deid-rules.schema.json before any file is read."
        ),
    )
    burned_in: Literal["reject", "allow", "clean"] = setting(
        "reject",
        (
            "Objects whose pixels may carry burned-in text: reject (recorded, not exported), "
            "allow, or clean (blank the rectangles of the device's pixel mask)."
        ),
    )
    pixel_masks_file: Path | None = setting(
        None,
        (
            "Pixel masks (JSON or YAML) for the clean policy: rectangles per manufacturer, "
            "model and image size."
        ),
    )
    verify_output: bool = setting(
        default=True,
        description=(
            "Scan every de-identified object for identifying values of its original before "
            "writing it; a leak fails the file."
        ),
    )
    workers: int | None = setting(
        None,
        "Processes for the per-file work during ingest (default: the number of cores).",
        ge=1,
        le=256,
    )
    batch_size: int = setting(
        200, "Files per database transaction during ingest.", ge=1, le=100_000
    )
    max_member_bytes: int = setting(
        2 * 1024**3,
        "Largest archive member (zip/tar) that is read; larger ones are refused.",
        ge=1,
    )

    @property
    def resolved_key_file(self) -> Path:
        """Path of the key file, defaulting into the state directory."""
        return self.key_file if self.key_file is not None else self.state_dir / "keys.json"


def descriptions() -> dict[str, str]:
    """Setting name -> its description."""
    return {f.name: f.metadata["description"] for f in dataclasses.fields(Settings)}


@functools.cache
def _types() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:  # noqa: ANN401
    """Build Settings from env, then the TOML file (if any), then non-None overrides.

    Raises
    ------
    ConfigError
        An unreadable settings file, an unknown setting, or a value of the wrong kind; the
        message names the setting, never the value (it may be a password or a key).

    """
    file_values: dict[str, Any] = {}
    path = config_file or (
        Path(os.environ["DICOM_INDEX_CONFIG"]) if os.environ.get("DICOM_INDEX_CONFIG") else None
    )
    if path is not None:
        try:
            file_values = tomllib.loads(path.read_text("utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read settings file ({os_reason(e)})") from None
        except UnicodeDecodeError:
            raise ConfigError("settings file is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"settings file is not valid TOML: {e}") from None
    names = {f.name for f in dataclasses.fields(Settings)}
    env = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)}
    values: dict[str, Any] = {}
    problems: list[str] = []
    unknown = sorted(set(file_values) - names)
    problems += [f"{k}: not a setting" for k in unknown]
    sources = (
        (file_values, False),
        ({n: env[ENV_PREFIX + n.upper()] for n in names if ENV_PREFIX + n.upper() in env}, True),
        ({k: v for k, v in overrides.items() if v is not None}, False),
    )
    for given, from_env in sources:
        for name, raw in given.items():
            if name not in names:
                continue
            try:
                values[name] = _convert(name, raw, from_env=from_env)
            except ValueError as e:
                problems.append(f"{name}: {e}")
    if problems:
        raise ConfigError(f"invalid settings: {'; '.join(problems)}")
    return Settings(**values)


def _convert(name: str, raw: object, *, from_env: bool) -> object:
    """``raw`` (text from the environment, else a TOML or Python value) as setting ``name``."""
    kind = _types()[name]
    optional = isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)
    if optional:
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
        if from_env and raw == "":
            return None  # set but empty: unset
    value: Any = _parse(kind, raw, from_env=from_env)
    field = next(f for f in dataclasses.fields(Settings) if f.name == name)
    ge, le = field.metadata["ge"], field.metadata["le"]
    if ge is not None and value < ge:
        raise ValueError(f"must be at least {ge}")
    if le is not None and value > le:
        raise ValueError(f"must be at most {le}")
    if name == "id_prefix" and (
        len(value) > MAX_PREFIX or not all(c.isalnum() or c in "-_" for c in value)
    ):
        raise ValueError("must be at most 8 letters, digits, '-' or '_'")
    return value


def _parse(kind: Any, raw: object, *, from_env: bool) -> object:  # noqa: ANN401, C901
    if typing.get_origin(kind) is Literal:
        allowed = typing.get_args(kind)
        if raw not in allowed:
            raise ValueError("must be one of " + ", ".join(allowed))
        return raw
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if from_env and isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError("must be true or false")
    if kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if from_env and isinstance(raw, str):
            try:
                return int(raw.strip())
            except ValueError:
                pass
        raise ValueError("must be a whole number")
    if typing.get_origin(kind) is list:
        if from_env and isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                raise ValueError("must be a JSON list of strings") from None
        if isinstance(raw, list | tuple) and all(isinstance(v, str) for v in raw):
            return list(raw)
        raise ValueError("must be a list of strings")
    if kind is Path:
        if isinstance(raw, str | os.PathLike):
            return Path(raw)
        raise ValueError("must be a path")
    if isinstance(raw, str):
        return raw
    raise ValueError("must be text")
