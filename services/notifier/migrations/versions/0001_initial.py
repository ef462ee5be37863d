"""Notifier's initial tables: leads, deals, SLA clocks, destinations and alerts.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from baton_runtime.migrations import create_plumbing_tables

revision = "0001"
down_revision = None
SCHEMA = "notifier"
OPEN = sa.text("status = 'open'")
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    create_plumbing_tables(op, SCHEMA)
    op.create_table(
        "leads",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("card", JSONB, nullable=False),
        sa.Column("stage", sa.Text),
        sa.Column("owner_id", sa.Text),
        sa.Column("team", sa.Text),
        sa.Column("last_promoted_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "deals",
        sa.Column("deal_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
        sa.Column("owner_id", sa.Text),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("amount", sa.BigInteger),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "sla_clocks",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("remind_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("escalate_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rungs_fired", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_fire_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.Text, nullable=False, server_default="open"),
        sa.Column("stopped_at", sa.DateTime(timezone=True)),
        sa.Column("stop_reason", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.UniqueConstraint("lead_id", "kind", "started_at",
                            name="uq_notifier_sla_clocks_start"),
        schema=SCHEMA,
    )
    op.create_index("uq_notifier_sla_clocks_open", "sla_clocks", ["lead_id", "kind"],
                    unique=True, postgresql_where=OPEN, schema=SCHEMA)
    op.create_index("ix_notifier_sla_clocks_due", "sla_clocks", ["next_fire_at"],
                    postgresql_where=OPEN, schema=SCHEMA)
    op.create_table(
        "destinations",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("next_send_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("lead_id", UUID(as_uuid=True)),
        sa.Column("clock_id", sa.BigInteger),
        sa.Column("message", JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("last_error", sa.Text),
        sa.Column("digest_size", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index("ix_notifier_alerts_pending", "alerts", ["channel", "id"],
                    postgresql_where=PENDING, schema=SCHEMA)
    op.create_index("ix_notifier_alerts_lead", "alerts", ["lead_id"], schema=SCHEMA)


def downgrade() -> None:
    op.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
