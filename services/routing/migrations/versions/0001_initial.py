"""Routing's initial tables.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from baton_runtime.migrations import create_plumbing_tables

revision = "0001"
down_revision = None
SCHEMA = "routing"
TEAMS = (
    ("sdr", "Inside sales (SDR)"),
    ("bdr", "Business development (BDR)"),
    ("field_sales", "Field sales"),
)


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
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("partner", sa.Text),
        sa.Column("demo_or_quote_requested", sa.Boolean, nullable=False,
                  server_default="false"),
        sa.Column("bant", JSONB),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
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
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    teams = op.create_table(
        "teams",
        sa.Column("team", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("manager_channel", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.bulk_insert(teams, [{"team": team, "name": name} for team, name in TEAMS])
    op.create_table(
        "reps",
        sa.Column("rep_id", sa.Text, primary_key=True),
        sa.Column("team", sa.Text, nullable=False, index=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("email", sa.Text),
        sa.Column("slack_user_id", sa.Text, unique=True),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("daily_capacity", sa.Integer, nullable=False),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("work_starts", sa.Time, nullable=False),
        sa.Column("work_ends", sa.Time, nullable=False),
        sa.Column("workdays", ARRAY(sa.Integer), nullable=False),
        sa.Column("holidays", sa.Text),
        sa.Column("out_of_office", JSONB, nullable=False),
        sa.Column("territory", JSONB),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("position", sa.Float, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("team", sa.Text, nullable=False),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("rep_id", sa.Text),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("considered", JSONB, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_routing_assignments_rep_decided", "rep_id", "decided_at"),
        schema=SCHEMA,
    )
    op.create_table(
        "account_owners",
        sa.Column("account_key", sa.Text, primary_key=True),
        sa.Column("team", sa.Text, primary_key=True),
        sa.Column("rep_id", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "contacts",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
        sa.Column("rep_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("lead_id", "rep_id", "kind", "occurred_at",
                            name="uq_routing_contacts_once"),
        schema=SCHEMA,
    )
    op.create_table(
        "slack_requests",
        sa.Column("signature", sa.Text, primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, index=True),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
