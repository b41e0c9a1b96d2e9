"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 03:11:19.292387
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


REIDENTIFY = r"""
CREATE FUNCTION vault.reidentify(p_target text, p_reason text, p_actor text)
RETURNS TABLE(kind text, pseudonym text, key_id text, ciphertext bytea)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    targets text[] := ARRAY[p_target];
    n integer;
BEGIN
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'a reason is required to re-identify' USING ERRCODE = '22023';
    END IF;
    -- an instance brings its series, study, patient and source location
    targets := targets || ARRAY(
        SELECT unnest(ARRAY[i.series_uid, i.study_uid, i.patient_id, i.source_id])
        FROM dicom_index.instance i WHERE i.sop_uid = p_target);
    targets := targets || ARRAY(
        SELECT se.study_uid FROM dicom_index.series se WHERE se.series_uid = p_target);
    -- a study brings its patient, accession number and study ID
    targets := targets || ARRAY(
        SELECT unnest(ARRAY[st.patient_id, st.accession_number, st.study_id])
        FROM dicom_index.study st WHERE st.study_uid = ANY(targets));
    RETURN QUERY
        SELECT v.kind, v.pseudonym, v.key_id, v.ciphertext
        FROM vault.identity v WHERE v.pseudonym = ANY(targets)
        UNION ALL
        SELECT 'source_path'::text, s.source_id, s.key_id, s.ciphertext
        FROM vault.source s WHERE s.source_id = ANY(targets);
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO vault.audit_log(actor, purpose, target, result, rows_released)
    VALUES (coalesce(nullif(btrim(p_actor), ''), session_user), p_reason, p_target,
            CASE WHEN n > 0 THEN 'released' ELSE 'not_found' END, n);
END
$fn$
"""


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS vault")
    op.create_table(
        "index_meta",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_index_meta")),
        schema="dicom_index",
    )
    op.create_table(
        "ingest_run",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Text(), server_default="running", nullable=False),
        sa.Column("tool_version", sa.Text(), nullable=False),
        sa.Column("profile", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("files_seen", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("files_indexed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("files_skipped", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("files_failed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("bytes_read", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("studies", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("series", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("instances", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_run")),
        schema="dicom_index",
    )
    op.create_table(
        "patient",
        sa.Column("patient_id", sa.Text(), nullable=False),
        sa.Column("patient_name", sa.Text(), nullable=True),
        sa.Column("patient_sex", sa.Text(), nullable=True),
        sa.Column("patient_birth_date", sa.Text(), nullable=True),
        sa.Column("patient_age", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_patient")),
        schema="dicom_index",
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("db_role", sa.Text(), server_default=sa.text("CURRENT_USER"), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("rows_released", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        schema="vault",
    )
    op.create_table(
        "identity",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("pseudonym", sa.Text(), nullable=False),
        sa.Column("blind_index", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("kind", "pseudonym", "blind_index", name=op.f("pk_identity")),
        schema="vault",
    )
    op.create_index(
        op.f("ix_vault_identity_kind"),
        "identity",
        ["kind", "blind_index"],
        unique=False,
        schema="vault",
    )
    op.create_table(
        "source",
        sa.Column("source_id", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("source_id", name=op.f("pk_source")),
        schema="vault",
    )
    op.create_table(
        "file_error",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["dicom_index.ingest_run.id"], name=op.f("fk_file_error_run_id_ingest_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_error")),
        schema="dicom_index",
    )
    op.create_index(
        op.f("ix_dicom_index_file_error_run_id"),
        "file_error",
        ["run_id"],
        unique=False,
        schema="dicom_index",
    )
    op.create_table(
        "study",
        sa.Column("study_uid", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.Text(), nullable=False),
        sa.Column("study_date", sa.Text(), nullable=True),
        sa.Column("study_time", sa.Text(), nullable=True),
        sa.Column("accession_number", sa.Text(), nullable=True),
        sa.Column("study_id", sa.Text(), nullable=True),
        sa.Column("study_description", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["dicom_index.patient.patient_id"],
            name=op.f("fk_study_patient_id_patient"),
        ),
        sa.PrimaryKeyConstraint("study_uid", name=op.f("pk_study")),
        schema="dicom_index",
    )
    op.create_index(
        op.f("ix_dicom_index_study_patient_id"),
        "study",
        ["patient_id"],
        unique=False,
        schema="dicom_index",
    )
    op.create_index(
        op.f("ix_dicom_index_study_study_date"),
        "study",
        ["study_date"],
        unique=False,
        schema="dicom_index",
    )
    op.create_table(
        "series",
        sa.Column("series_uid", sa.Text(), nullable=False),
        sa.Column("study_uid", sa.Text(), nullable=False),
        sa.Column("modality", sa.Text(), nullable=True),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("series_description", sa.Text(), nullable=True),
        sa.Column("body_part_examined", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["study_uid"], ["dicom_index.study.study_uid"], name=op.f("fk_series_study_uid_study")
        ),
        sa.PrimaryKeyConstraint("series_uid", name=op.f("pk_series")),
        schema="dicom_index",
    )
    op.create_index(
        op.f("ix_dicom_index_series_modality"),
        "series",
        ["modality"],
        unique=False,
        schema="dicom_index",
    )
    op.create_index(
        op.f("ix_dicom_index_series_study_uid"),
        "series",
        ["study_uid"],
        unique=False,
        schema="dicom_index",
    )
    op.create_table(
        "instance",
        sa.Column("sop_uid", sa.Text(), nullable=False),
        sa.Column("series_uid", sa.Text(), nullable=False),
        sa.Column("study_uid", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.Text(), nullable=False),
        sa.Column("sop_class_uid", sa.Text(), nullable=True),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("transfer_syntax_uid", sa.Text(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("columns", sa.Integer(), nullable=True),
        sa.Column("number_of_frames", sa.Integer(), nullable=True),
        sa.Column("copy_path", sa.Text(), nullable=False),
        sa.Column("copy_sha256", sa.Text(), nullable=False),
        sa.Column("copy_bytes", sa.BigInteger(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("header", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["dicom_index.ingest_run.id"], name=op.f("fk_instance_run_id_ingest_run")
        ),
        sa.ForeignKeyConstraint(
            ["series_uid"],
            ["dicom_index.series.series_uid"],
            name=op.f("fk_instance_series_uid_series"),
        ),
        sa.PrimaryKeyConstraint("sop_uid", name=op.f("pk_instance")),
        schema="dicom_index",
    )
    op.create_index(
        op.f("ix_dicom_index_instance_patient_id"),
        "instance",
        ["patient_id"],
        unique=False,
        schema="dicom_index",
    )
    op.create_index(
        op.f("ix_dicom_index_instance_series_uid"),
        "instance",
        ["series_uid"],
        unique=False,
        schema="dicom_index",
    )
    op.create_index(
        op.f("ix_dicom_index_instance_study_uid"),
        "instance",
        ["study_uid"],
        unique=False,
        schema="dicom_index",
    )
    op.create_index(
        "ix_instance_header",
        "instance",
        ["header"],
        unique=False,
        schema="dicom_index",
        postgresql_using="gin",
    )
    op.execute(REIDENTIFY)
    op.execute("REVOKE ALL ON SCHEMA vault FROM PUBLIC")
    op.execute("REVOKE ALL ON FUNCTION vault.reidentify(text, text, text) FROM PUBLIC")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS vault.reidentify(text, text, text)")
    op.drop_index(
        "ix_instance_header", table_name="instance", schema="dicom_index", postgresql_using="gin"
    )
    op.drop_index(
        op.f("ix_dicom_index_instance_study_uid"), table_name="instance", schema="dicom_index"
    )
    op.drop_index(
        op.f("ix_dicom_index_instance_series_uid"), table_name="instance", schema="dicom_index"
    )
    op.drop_index(
        op.f("ix_dicom_index_instance_patient_id"), table_name="instance", schema="dicom_index"
    )
    op.drop_table("instance", schema="dicom_index")
    op.drop_index(
        op.f("ix_dicom_index_series_study_uid"), table_name="series", schema="dicom_index"
    )
    op.drop_index(op.f("ix_dicom_index_series_modality"), table_name="series", schema="dicom_index")
    op.drop_table("series", schema="dicom_index")
    op.drop_index(op.f("ix_dicom_index_study_study_date"), table_name="study", schema="dicom_index")
    op.drop_index(op.f("ix_dicom_index_study_patient_id"), table_name="study", schema="dicom_index")
    op.drop_table("study", schema="dicom_index")
    op.drop_index(
        op.f("ix_dicom_index_file_error_run_id"), table_name="file_error", schema="dicom_index"
    )
    op.drop_table("file_error", schema="dicom_index")
    op.drop_table("source", schema="vault")
    op.drop_index(op.f("ix_vault_identity_kind"), table_name="identity", schema="vault")
    op.drop_table("identity", schema="vault")
    op.drop_table("audit_log", schema="vault")
    op.drop_table("patient", schema="dicom_index")
    op.drop_table("ingest_run", schema="dicom_index")
    op.drop_table("index_meta", schema="dicom_index")
    op.execute("DROP SCHEMA IF EXISTS vault")
