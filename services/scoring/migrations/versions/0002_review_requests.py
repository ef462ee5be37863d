"""Scoring's review requests: colleagues to re-score, asked for without taking their locks.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0002"
down_revision = "0001"
SCHEMA = "scoring"


def upgrade() -> None:
    op.create_table(
        "review_requests",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_scoring_review_requests_requested_at", "review_requests",
                    ["requested_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("review_requests", schema=SCHEMA)
