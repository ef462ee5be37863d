"""Notifier keeps, with a lifecycle event's stops, the stage it moved the lead from: a score
handled after that event (another topic, behind) is judged by the stage the lead was in when
it was scored, so a late first touch is recorded as a breach instead of dropped.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
SCHEMA = "notifier"


def upgrade() -> None:
    op.add_column("clock_stops", sa.Column("from_stage", sa.Text), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("clock_stops", "from_stage", schema=SCHEMA)
