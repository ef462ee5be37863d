"""Pipeline's initial tables.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

from baton_runtime.migrations import create_plumbing_tables

revision = "0001"
down_revision = None
SCHEMA = "pipeline"


def upgrade() -> None:
    create_plumbing_tables(op, SCHEMA)
    op.create_table(
        "deals",
        sa.Column("deal_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("lead_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("owner_id", sa.Text),
        sa.Column("company", sa.Text),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("phase_changed_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "phase_history",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("deal_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("from_phase", sa.Text),
        sa.Column("to_phase", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
