"""further copies with their own digest; fingerprint rows found by instance

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column, kind in (("copy_sha256", sa.Text()), ("copy_bytes", sa.BigInteger())):
        op.add_column("instance_copy", sa.Column(column, kind), schema="dicom_index")
    op.execute(  # recorded as of the first copy's content, as they were then
        "UPDATE dicom_index.instance_copy AS c SET copy_sha256 = i.copy_sha256, "
        "copy_bytes = i.copy_bytes FROM dicom_index.instance AS i WHERE i.sop_uid = c.sop_uid"
    )
    for column in ("copy_sha256", "copy_bytes"):
        op.alter_column("instance_copy", column, nullable=False, schema="dicom_index")
    op.create_index(
        op.f("ix_dicom_index_source_seen_sop_uid"),
        "source_seen",
        ["sop_uid"],
        unique=False,
        schema="dicom_index",
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_dicom_index_source_seen_sop_uid"),
        table_name="source_seen",
        schema="dicom_index",
    )
    for column in ("copy_bytes", "copy_sha256"):
        op.drop_column("instance_copy", column, schema="dicom_index")
