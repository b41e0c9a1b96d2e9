"""One frozen Settings object.

Precedence, highest first: CLI flags, environment (``DICOM_INDEX_*``), the TOML settings file
(``--config`` or ``DICOM_INDEX_CONFIG``), defaults.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from indexer.errors import ConfigError

DEFAULT_STATE_DIR = Path(".dicom-index")
MAX_PREFIX = 8


class Settings(BaseSettings):
    """Every setting of dicom-index; each one is documented in README.md."""

    model_config = SettingsConfigDict(env_prefix="DICOM_INDEX_", frozen=True, extra="forbid")

    state_dir: Path = Field(
        DEFAULT_STATE_DIR,
        description="Directory for local state: the embedded PostgreSQL data and the key file.",
    )
    database_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the PostgreSQL server (postgresql+psycopg://...). "
            "Unset: an embedded PostgreSQL is started in the state directory."
        ),
    )
    ingest_url: str | None = Field(
        None,
        description=(
            "URL `ingest` and `sync` connect with (the ingest role). Unset: the embedded "
            "server's ingest role, or the database URL."
        ),
    )
    reader_url: str | None = Field(
        None,
        description=(
            "URL `sql` and `check` connect with (the reader role: SELECT on dicom_index only). "
            "Unset: the embedded server's reader role, or the database URL behind SET ROLE."
        ),
    )
    reidentifier_url: str | None = Field(
        None,
        description=(
            "URL `reidentify` and `lookup` connect with (the reidentifier role). Unset: the "
            "embedded server's reidentifier role, or the database URL."
        ),
    )
    role_ingest: str = Field("dicom_index_ingest", description="Name of the ingest role.")
    role_reader: str = Field("dicom_index_reader", description="Name of the reader role.")
    role_reidentifier: str = Field(
        "dicom_index_reidentifier", description="Name of the reidentifier role."
    )
    mongo_url: str | None = Field(
        None,
        description=(
            "MongoDB URL of the document index. Unset: an embedded SecantusDB server in the "
            "state directory when the embedded-mongo extra is installed, else the sink is off."
        ),
    )
    mongo_db: str = Field("dicom_index", description="MongoDB database name.")
    mongo_enabled: bool = Field(
        default=True, description="Write the MongoDB index; false switches the MongoDB sink off."
    )
    mongo_timeout_ms: int = Field(
        5000, description="How long to wait for MongoDB before a batch is left pending.", ge=100
    )
    key_file: Path | None = Field(
        None,
        description="Key file made by `dicom-index keys init` (default: <state_dir>/keys.json).",
    )
    master_key: str | None = Field(
        None,
        description=(
            "Base64 of a 32-byte master key, instead of a key file; the pseudonym, vault and "
            "blind-index keys are derived from it with HKDF."
        ),
        repr=False,
    )
    id_prefix: str = Field(
        "DI",
        description="Prefix of pseudonymized PatientID, AccessionNumber and StudyID values.",
    )
    date_shift_days: int = Field(
        3650,
        description="Largest per-patient date offset, in days, used when dates are shifted.",
        ge=1,
    )
    deid_options: list[str] = Field(
        default_factory=list,
        description=(
            "PS3.15 E.3 options applied to every object, by name (retain-uids, "
            "clean-descriptors, ...; Aspose.Medical and fo-dicom names such as RetainUIDs "
            "are accepted). In the environment, a JSON list."
        ),
    )
    rules_file: Path | None = Field(
        None,
        description=(
            "Site rules (JSON or YAML, ours or Microsoft's anonymization format) that override "
            "the profile; checked against schemas/deid-rules.schema.json before any file is read."
        ),
    )
    burned_in: Literal["reject", "allow", "clean"] = Field(
        "reject",
        description=(
            "Objects whose pixels may carry burned-in text: reject (recorded, not exported), "
            "allow, or clean (blank the rectangles of the device's pixel mask)."
        ),
    )
    pixel_masks_file: Path | None = Field(
        None,
        description=(
            "Pixel masks (JSON or YAML) for the clean policy: rectangles per manufacturer, "
            "model and image size."
        ),
    )
    verify_output: bool = Field(
        default=True,
        description=(
            "Scan every de-identified object for identifying values of its original before "
            "writing it; a leak fails the file."
        ),
    )
    workers: int | None = Field(
        None,
        description="Processes for the per-file work during ingest (default: the number of cores).",
        ge=1,
        le=256,
    )
    batch_size: int = Field(
        200, description="Files per database transaction during ingest.", ge=1, le=100_000
    )
    max_member_bytes: int = Field(
        2 * 1024**3,
        description="Largest archive member (zip/tar) that is read; larger ones are refused.",
        ge=1,
    )

    @field_validator("id_prefix")
    @classmethod
    def _prefix_is_safe(cls, v: str) -> str:
        if len(v) > MAX_PREFIX or not all(c.isalnum() or c in "-_" for c in v):
            msg = "id_prefix must be at most 8 letters, digits, '-' or '_'"
            raise ValueError(msg)
        return v

    @property
    def resolved_key_file(self) -> Path:
        """Path of the key file, defaulting into the state directory."""
        return self.key_file if self.key_file is not None else self.state_dir / "keys.json"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:  # noqa: ANN401
    """Build Settings from env, then the TOML file (if any), then non-None overrides."""
    file_values: dict[str, Any] = {}
    path = config_file or (
        Path(os.environ["DICOM_INDEX_CONFIG"]) if os.environ.get("DICOM_INDEX_CONFIG") else None
    )
    if path is not None:
        try:
            file_values = tomllib.loads(path.read_text("utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read settings file ({type(e).__name__})") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"settings file is not valid TOML: {e}") from None
    # init kwargs beat env in pydantic-settings: drop file values that env overrides
    file_values = {
        k: v for k, v in file_values.items() if f"DICOM_INDEX_{k.upper()}" not in os.environ
    }
    values = {**file_values, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return Settings(**values)
    except ValueError as e:
        raise ConfigError(f"invalid settings: {e}") from None
