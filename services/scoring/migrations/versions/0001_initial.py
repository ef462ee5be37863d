"""Scoring's initial tables: leads, activity ledger, model versions, deals.

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
        "leads",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("profile", JSONB, nullable=False),
        sa.Column("account", JSONB, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("partner", sa.Text),
        sa.Column("account_key", sa.Text),
        sa.Column("decision_maker", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("last_engaged_at", sa.DateTime(timezone=True)),
        sa.Column("baseline_at", sa.DateTime(timezone=True)),
        sa.Column("score", sa.Integer),
        sa.Column("tier", sa.Text),
        sa.Column("surge", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("dormancy", sa.Text, nullable=False, server_default="active"),
        sa.Column("high_intent_signals", JSONB, nullable=False, server_default="[]"),
        sa.Column("reasons", JSONB, nullable=False, server_default="[]"),
        sa.Column("model_version", sa.Text),
        sa.Column("scored_at", sa.DateTime(timezone=True)),
        sa.Column("next_review_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_index("ix_scoring_leads_account_engaged", "leads",
                    ["account_key", "last_engaged_at"], schema=SCHEMA)
    op.create_index("ix_scoring_leads_next_review_at", "leads", ["next_review_at"],
                    schema=SCHEMA, postgresql_where=sa.text("next_review_at IS NOT NULL"))
    op.create_table(
        "activities",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("asset_id", sa.Text),
        sa.Column("interacted", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "models",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("version", sa.Text, nullable=False, unique=True),
        sa.Column("definition", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "deals",
        sa.Column("deal_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Integer),
        sa.Column("tier", sa.Text),
        sa.Column("model_version", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
