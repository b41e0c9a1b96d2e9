"""instances found by their source, for copies replaced under new rules

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 01:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_dicom_index_instance_source_id"),
        "instance",
        ["source_id"],
        unique=False,
        schema="dicom_index",
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_dicom_index_instance_source_id"),
        table_name="instance",
        schema="dicom_index",
    )
