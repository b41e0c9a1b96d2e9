"""sources seen, for skipping unchanged files

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 04:41:48.195005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "source_seen",
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("sop_uid", sa.Text(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["dicom_index.ingest_run.id"], name=op.f("fk_source_seen_run_id_ingest_run")
        ),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_source_seen")),
        schema="dicom_index",
    )


def downgrade() -> None:
    op.drop_table("source_seen", schema="dicom_index")
