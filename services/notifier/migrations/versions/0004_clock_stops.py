"""Notifier keeps every clock stop it handled: a start handled after a stop that follows it
(the two came on different topics, one behind) is then recorded as already stopped.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0004"
down_revision = "0003"
SCHEMA = "notifier"


def upgrade() -> None:
    op.create_table(
        "clock_stops",
        sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("clock_stops", schema=SCHEMA)
