"""each source indexed records the video rules version its copy was made under

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 23:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the video transfer syntaxes (``indexer.deid.video.VIDEO``) as this revision knew them
_ROOT = "1.2.840.10008.1.2.4."
VIDEO_SYNTAXES = [f"{_ROOT}{n}{tail}" for n in range(100, 107) for tail in ("", ".1")]
VIDEO_SYNTAXES += [f"{_ROOT}107", f"{_ROOT}108"]


def upgrade() -> None:
    op.add_column(
        "source_seen",
        sa.Column("video_rules", sa.Integer(), server_default="0", nullable=False),
        schema="dicom_index",
    )
    # the video sources indexed before: under video rules 1 (those of rules version 23; a
    # source indexed under an older rules version has another fingerprint, never matched)
    op.execute(
        sa.text(
            "UPDATE dicom_index.source_seen AS s SET video_rules = 1 "
            "FROM dicom_index.instance AS i "
            "WHERE i.sop_uid = s.sop_uid AND i.transfer_syntax_uid = ANY(:video)"
        ).bindparams(video=VIDEO_SYNTAXES)
    )


def downgrade() -> None:
    op.drop_column("source_seen", "video_rules", schema="dicom_index")
