"""Pipeline's initial tables.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from baton_runtime.migrations import create_plumbing_tables

revision = "0001"
down_revision = None
SCHEMA = "pipeline"
OPEN = sa.text("closed_at IS NULL")


def upgrade() -> None:
    create_plumbing_tables(op, SCHEMA)
    op.create_table(
        "deals",
        sa.Column("deal_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("owner_id", sa.Text),
        sa.Column("team", sa.Text),
        sa.Column("company", sa.Text),
        sa.Column("amount", sa.BigInteger),
        sa.Column("expected_close_date", sa.Date),
        sa.Column("next_action_date", sa.Date),
        sa.Column("next_action_text", sa.Text),
        sa.Column("next_action_entered_at", sa.DateTime(timezone=True)),
        sa.Column("criteria", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("hold_until", sa.Date),
        sa.Column("hold_reason", sa.Text),
        sa.Column("hold_placed_at", sa.DateTime(timezone=True)),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("phase_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.Text),
        sa.Column("close_reason", sa.Text),
        schema=SCHEMA,
    )
    op.create_index("uq_pipeline_deals_open_lead", "deals", ["lead_id"], unique=True,
                    postgresql_where=OPEN, schema=SCHEMA)
    op.create_index("ix_pipeline_deals_open_phase_changed_at", "deals", ["phase_changed_at"],
                    postgresql_where=OPEN, schema=SCHEMA)
    op.create_index("ix_pipeline_deals_open_next_action_clock", "deals",
                    [sa.text("coalesce(next_action_entered_at, opened_at)")],
                    postgresql_where=OPEN, schema=SCHEMA)
    op.create_index("ix_pipeline_deals_open_next_action_date", "deals", ["next_action_date"],
                    postgresql_where=OPEN, schema=SCHEMA)
    op.create_index("ix_pipeline_deals_open_expected_close", "deals", ["expected_close_date"],
                    postgresql_where=OPEN, schema=SCHEMA)
    op.create_index("ix_pipeline_deals_open_owner", "deals", ["owner_id", "phase_changed_at"],
                    postgresql_where=OPEN, schema=SCHEMA)
    op.create_index("ix_pipeline_deals_open_team", "deals", ["team", "phase_changed_at"],
                    postgresql_where=OPEN, schema=SCHEMA)
    op.create_index("ix_pipeline_deals_closed_at", "deals", ["closed_at"],
                    postgresql_where=sa.text("closed_at IS NOT NULL"), schema=SCHEMA)
    op.create_table(
        "phase_history",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("deal_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("from_phase", sa.Text),
        sa.Column("to_phase", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "targets",
        sa.Column("period", sa.Text, primary_key=True),
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
