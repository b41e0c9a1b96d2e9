"""each run records the id of the output its copies went to

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 08:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # the id its output keeps in itself; NULL for runs made before: not recorded
    op.add_column(
        "ingest_run", sa.Column("output_id", sa.Text(), nullable=True), schema="dicom_index"
    )


def downgrade() -> None:
    op.drop_column("ingest_run", "output_id", schema="dicom_index")
