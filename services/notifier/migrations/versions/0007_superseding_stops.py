"""Notifier keeps whether a stop supersedes rather than stops: the automatic promotion of a
lead to MQL hands its first-touch clock over to the MQL clock, recorded superseded, not met
(nobody touched the lead). Additive: services still running the previous version write
plain stops.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
SCHEMA = "notifier"


def upgrade() -> None:
    op.add_column("clock_stops", sa.Column("supersedes", sa.Boolean, nullable=False,
                                           server_default=sa.false()), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("clock_stops", "supersedes", schema=SCHEMA)
