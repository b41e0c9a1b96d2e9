"""sources remembered by location and version alone, apart from the settings

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "source_seen", sa.Column("source_key", sa.Text(), nullable=True), schema="dicom_index"
    )
    op.create_index(
        op.f("ix_dicom_index_source_seen_source_key"),
        "source_seen",
        ["source_key"],
        unique=False,
        schema="dicom_index",
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_dicom_index_source_seen_source_key"),
        table_name="source_seen",
        schema="dicom_index",
    )
    op.drop_column("source_seen", "source_key", schema="dicom_index")
