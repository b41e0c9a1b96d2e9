"""further copies know the source they were made of

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("instance_copy", sa.Column("source_id", sa.Text()), schema="dicom_index")
    op.execute(  # the first copy's: the only source known for them until now
        "UPDATE dicom_index.instance_copy AS c SET source_id = i.source_id "
        "FROM dicom_index.instance AS i WHERE i.sop_uid = c.sop_uid"
    )
    op.alter_column("instance_copy", "source_id", nullable=False, schema="dicom_index")


def downgrade() -> None:
    op.drop_column("instance_copy", "source_id", schema="dicom_index")
