"""Notifier's initial tables.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from baton_runtime.migrations import create_plumbing_tables

revision = "0001"
down_revision = None
SCHEMA = "notifier"


def upgrade() -> None:
    create_plumbing_tables(op, SCHEMA)
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("lead_id", UUID(as_uuid=True)),
        sa.Column("message", JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index("ix_notifier_alerts_due", "alerts", ["status", "next_attempt_at"],
                    schema=SCHEMA)


def downgrade() -> None:
    op.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
