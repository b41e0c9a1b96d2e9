"""instances and further copies know their source's bytes by a keyed digest

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # None for what was indexed before: its sources' bytes were not digested
    for table in ("instance", "instance_copy"):
        op.add_column(table, sa.Column("source_digest", sa.Text()), schema="dicom_index")
        op.create_index(
            op.f(f"ix_dicom_index_{table}_source_digest"),
            table,
            ["source_digest"],
            unique=False,
            schema="dicom_index",
        )


def downgrade() -> None:
    for table in ("instance", "instance_copy"):
        op.drop_index(
            op.f(f"ix_dicom_index_{table}_source_digest"), table_name=table, schema="dicom_index"
        )
        op.drop_column(table, "source_digest", schema="dicom_index")
