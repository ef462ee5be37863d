"""Ingest's initial tables.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from baton_runtime.migrations import create_plumbing_tables

revision = "0001"
down_revision = None
SCHEMA = "ingest"


def upgrade() -> None:
    create_plumbing_tables(op, SCHEMA)
    op.create_table(
        "leads",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("email", sa.Text, nullable=False, unique=True),
        sa.Column("account_key", sa.Text, nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "touchpoints",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("payload", JSONB, nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
