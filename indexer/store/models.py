"""SQLAlchemy 2 models for the `dicom_index` schema (pseudonymized only) and `vault`."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

INDEX_SCHEMA = "dicom_index"
VAULT_SCHEMA = "vault"

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

text_pk = Annotated[str, mapped_column(Text, primary_key=True)]
opt_text = Annotated[str | None, mapped_column(Text)]
opt_int = Annotated[int | None, mapped_column(Integer)]
created = Annotated[dt.datetime, mapped_column(DateTime(timezone=True), server_default=func.now())]
count = Annotated[int, mapped_column(BigInteger, server_default="0")]


class Base(DeclarativeBase):
    """Declarative base bound to the project's metadata."""

    metadata = metadata


class IngestRun(Base):
    """One `dicom-index ingest` invocation and its counts."""

    __tablename__ = "ingest_run"
    __table_args__ = {"schema": INDEX_SCHEMA}  # noqa: RUF012

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    started_at: Mapped[created]
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(Text, server_default="running")
    tool_version: Mapped[str] = mapped_column(Text)
    profile: Mapped[dict[str, Any]] = mapped_column(JSONB)
    output_id: Mapped[str | None] = mapped_column(Text)  # the id its output keeps in itself
    files_seen: Mapped[count]
    files_indexed: Mapped[count]
    files_skipped: Mapped[count]
    files_failed: Mapped[count]
    bytes_read: Mapped[count]
    studies: Mapped[count]
    series: Mapped[count]
    instances: Mapped[count]


class Patient(Base):
    """A pseudonymized patient."""

    __tablename__ = "patient"
    __table_args__ = {"schema": INDEX_SCHEMA}  # noqa: RUF012

    patient_id: Mapped[text_pk]
    patient_name: Mapped[opt_text]
    patient_sex: Mapped[opt_text]
    patient_birth_date: Mapped[opt_text]
    patient_age: Mapped[opt_text]
    created_at: Mapped[created]


class Study(Base):
    """A study under its pseudonymized Study Instance UID."""

    __tablename__ = "study"
    __table_args__ = (
        Index(None, "patient_id"),
        Index(None, "study_date"),
        {"schema": INDEX_SCHEMA},
    )

    study_uid: Mapped[text_pk]
    patient_id: Mapped[str] = mapped_column(ForeignKey(f"{INDEX_SCHEMA}.patient.patient_id"))
    study_date: Mapped[opt_text]
    study_time: Mapped[opt_text]
    accession_number: Mapped[opt_text]
    study_id: Mapped[opt_text]
    study_description: Mapped[opt_text]
    created_at: Mapped[created]


class Series(Base):
    """A series under its pseudonymized Series Instance UID."""

    __tablename__ = "series"
    __table_args__ = (Index(None, "study_uid"), Index(None, "modality"), {"schema": INDEX_SCHEMA})

    series_uid: Mapped[text_pk]
    study_uid: Mapped[str] = mapped_column(ForeignKey(f"{INDEX_SCHEMA}.study.study_uid"))
    modality: Mapped[opt_text]
    series_number: Mapped[opt_int]
    series_description: Mapped[opt_text]
    body_part_examined: Mapped[opt_text]
    created_at: Mapped[created]


class Instance(Base):
    """One de-identified object: key attributes, its copy, and the full header as JSONB."""

    __tablename__ = "instance"
    __table_args__ = (
        Index(None, "series_uid"),
        Index(None, "study_uid"),
        Index(None, "patient_id"),
        Index(None, "source_id"),  # a source's copies, replaced under new rules
        Index(None, "source_digest"),  # the copies of a source's bytes, wherever it lies now
        Index("ix_instance_header", "header", postgresql_using="gin"),
        {"schema": INDEX_SCHEMA},
    )

    sop_uid: Mapped[text_pk]
    series_uid: Mapped[str] = mapped_column(ForeignKey(f"{INDEX_SCHEMA}.series.series_uid"))
    study_uid: Mapped[str] = mapped_column(Text)
    patient_id: Mapped[str] = mapped_column(Text)
    sop_class_uid: Mapped[opt_text]
    instance_number: Mapped[opt_int]
    transfer_syntax_uid: Mapped[opt_text]
    rows: Mapped[opt_int]
    columns: Mapped[opt_int]
    number_of_frames: Mapped[opt_int]
    copy_path: Mapped[str] = mapped_column(Text)
    copy_sha256: Mapped[str] = mapped_column(Text)
    copy_bytes: Mapped[int] = mapped_column(BigInteger)
    source_id: Mapped[str] = mapped_column(Text)
    # keyed digest of the source's bytes (``indexer.content``): the same object moved
    # elsewhere; None before migration 0011
    source_digest: Mapped[opt_text]
    run_id: Mapped[int] = mapped_column(ForeignKey(f"{INDEX_SCHEMA}.ingest_run.id"))
    header: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[created]


class InstanceCopy(Base):
    """A further copy of an indexed instance, made of its source, in another output.

    The instance row's run names the output of its first copy. An archive ingested again
    into a second output writes its copies there too: each such output is recorded here, so
    that ``check-copies`` of either output finds its copies described. A further copy has
    the first's content, or, made under other rules or settings, its own (its digest here).
    """

    __tablename__ = "instance_copy"
    __table_args__ = (
        Index(None, "output_id"),
        Index(None, "source_digest"),
        {"schema": INDEX_SCHEMA},
    )

    sop_uid: Mapped[str] = mapped_column(
        ForeignKey(f"{INDEX_SCHEMA}.instance.sop_uid"), primary_key=True
    )
    output_id: Mapped[str] = mapped_column(Text, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey(f"{INDEX_SCHEMA}.ingest_run.id"))
    copy_sha256: Mapped[str] = mapped_column(Text)  # the first's, before migration 0009
    copy_bytes: Mapped[int] = mapped_column(BigInteger)
    # the source it was made of (an archive copied elsewhere: another one than the first's);
    # the first's before migration 0010
    source_id: Mapped[str] = mapped_column(Text)
    source_digest: Mapped[opt_text]  # of its source's bytes; None before migration 0011
    created_at: Mapped[created]


class FileError(Base):
    """A file that was skipped or failed, by PHI-free source id and reason code."""

    __tablename__ = "file_error"
    __table_args__ = (Index(None, "run_id"), {"schema": INDEX_SCHEMA})

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey(f"{INDEX_SCHEMA}.ingest_run.id"))
    source_id: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)  # skipped | failed
    reason: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[created]


class IngestBatch(Base):
    """One committed batch and whether its MongoDB write completed (PostgreSQL is the truth)."""

    __tablename__ = "ingest_batch"
    __table_args__ = (
        Index("ix_ingest_batch_pending", "id", postgresql_where="NOT mongo_done"),
        {"schema": INDEX_SCHEMA},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey(f"{INDEX_SCHEMA}.ingest_run.id"))
    sop_uids: Mapped[list[str]] = mapped_column(ARRAY(Text))
    committed_at: Mapped[created]
    mongo_done: Mapped[bool] = mapped_column(Boolean, server_default="false")


class SourceSeen(Base):
    """A source that was indexed, by keyed fingerprint of location, version, settings and output.

    An unchanged rerun skips it without reading it, unless it is video indexed under other
    video rules.
    """

    __tablename__ = "source_seen"
    __table_args__ = (
        Index(None, "source_key"),
        Index(None, "sop_uid"),  # withdrawn instances' rows go with them
        {"schema": INDEX_SCHEMA},
    )

    fingerprint: Mapped[text_pk]
    sop_uid: Mapped[str] = mapped_column(Text)
    # keyed hash of location and version alone (not the settings); None before migration 0008
    source_key: Mapped[opt_text]
    run_id: Mapped[int] = mapped_column(ForeignKey(f"{INDEX_SCHEMA}.ingest_run.id"))
    created_at: Mapped[created]
    # the video rules version its copy was made under (``deid.VIDEO_RULES_VERSION``); 0: no
    # video, its copy the same under any (migration 0012)
    video_rules: Mapped[int] = mapped_column(Integer, server_default="0")


class IndexMeta(Base):
    """Facts about the index itself, such as the id of the pseudonym key it was built with."""

    __tablename__ = "index_meta"
    __table_args__ = {"schema": INDEX_SCHEMA}  # noqa: RUF012

    key: Mapped[text_pk]
    value: Mapped[str] = mapped_column(Text)


class VaultIdentity(Base):
    """Original <-> pseudonym: AES-256-GCM ciphertext of the original, HMAC blind index."""

    __tablename__ = "identity"
    __table_args__ = (Index(None, "kind", "blind_index"), {"schema": VAULT_SCHEMA})

    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(Text, primary_key=True)
    blind_index: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    key_id: Mapped[str] = mapped_column(Text)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[created]


class VaultSource(Base):
    """The encrypted source location (path, archive member) behind a PHI-free source id."""

    __tablename__ = "source"
    __table_args__ = {"schema": VAULT_SCHEMA}  # noqa: RUF012

    source_id: Mapped[text_pk]
    key_id: Mapped[str] = mapped_column(Text)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[created]


class AuditLog(Base):
    """Who asked the vault for what, when and why; written by the database function."""

    __tablename__ = "audit_log"
    __table_args__ = {"schema": VAULT_SCHEMA}  # noqa: RUF012

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[created]
    db_role: Mapped[str] = mapped_column(Text, server_default=func.session_user())
    actor: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text)
    result: Mapped[str] = mapped_column(Text)
    rows_released: Mapped[int] = mapped_column(Integer)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary)  # set by the chain trigger
    row_hash: Mapped[bytes] = mapped_column(LargeBinary)  # sha256(prev_hash || canonical row)
