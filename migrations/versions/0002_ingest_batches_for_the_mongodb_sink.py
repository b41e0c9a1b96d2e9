"""ingest batches for the MongoDB sink

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:21:01.574304
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ingest_batch",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("sop_uids", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column(
            "committed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("mongo_done", sa.Boolean(), server_default="false", nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["dicom_index.ingest_run.id"],
            name=op.f("fk_ingest_batch_run_id_ingest_run"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_batch")),
        schema="dicom_index",
    )
    op.create_index(
        "ix_ingest_batch_pending",
        "ingest_batch",
        ["id"],
        unique=False,
        schema="dicom_index",
        postgresql_where="NOT mongo_done",
    )


def downgrade() -> None:
    op.drop_index(
        "ix_ingest_batch_pending",
        table_name="ingest_batch",
        schema="dicom_index",
        postgresql_where="NOT mongo_done",
    )
    op.drop_table("ingest_batch", schema="dicom_index")
