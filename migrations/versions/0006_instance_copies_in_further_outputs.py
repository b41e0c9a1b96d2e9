"""further copies of indexed instances, in other outputs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "instance_copy",
        sa.Column("sop_uid", sa.Text(), nullable=False),
        sa.Column("output_id", sa.Text(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["sop_uid"],
            ["dicom_index.instance.sop_uid"],
            name=op.f("fk_instance_copy_sop_uid_instance"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["dicom_index.ingest_run.id"],
            name=op.f("fk_instance_copy_run_id_ingest_run"),
        ),
        sa.PrimaryKeyConstraint("sop_uid", "output_id", name=op.f("pk_instance_copy")),
        schema="dicom_index",
    )
    op.create_index(
        op.f("ix_dicom_index_instance_copy_output_id"),
        "instance_copy",
        ["output_id"],
        unique=False,
        schema="dicom_index",
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_dicom_index_instance_copy_output_id"),
        table_name="instance_copy",
        schema="dicom_index",
    )
    op.drop_table("instance_copy", schema="dicom_index")
