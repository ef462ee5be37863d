"""Routing's initial tables.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from baton_runtime.migrations import create_plumbing_tables

revision = "0001"
down_revision = None
SCHEMA = "routing"


def upgrade() -> None:
    create_plumbing_tables(op, SCHEMA)
    op.create_table(
        "leads",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("owner_id", sa.Text),
        sa.Column("team", sa.Text),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("profile", JSONB, nullable=False),
        sa.Column("account", JSONB, nullable=False),
        sa.Column("top_reasons", JSONB, nullable=False),
        sa.Column("last_touchpoint", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "transitions",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("from_stage", sa.Text, nullable=False),
        sa.Column("to_stage", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("owner_id", sa.Text),
        sa.Column("team", sa.Text),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
