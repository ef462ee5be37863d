"""Scoring's initial tables.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from baton_runtime.migrations import create_plumbing_tables

revision = "0001"
down_revision = None
SCHEMA = "scoring"


def upgrade() -> None:
    create_plumbing_tables(op, SCHEMA)
    op.create_table(
        "lead_scores",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("profile", JSONB, nullable=False),
        sa.Column("account", JSONB, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("score", sa.Integer),
        sa.Column("tier", sa.Text),
        sa.Column("reasons", JSONB, nullable=False, server_default="[]"),
        sa.Column("model_version", sa.Text),
        sa.Column("scored_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "activities",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("asset_id", sa.Text),
        sa.Column("interacted", sa.Boolean, nullable=False, server_default="false"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
