"""Notifier clocks may start later than the event that set them (a first meeting, at the
meeting's time): ``set_at`` keeps when they were set, and a stop may be a cancel, ending
the clocks set before it even when their start is still ahead (the lead left sales before
its meeting). Both are additive: services still running the previous version write NULL
(a clock set when it started) and plain stops.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
SCHEMA = "notifier"


def upgrade() -> None:
    op.add_column("sla_clocks", sa.Column("set_at", sa.DateTime(timezone=True)), schema=SCHEMA)
    op.add_column("clock_stops", sa.Column("cancels", sa.Boolean, nullable=False,
                                           server_default=sa.false()), schema=SCHEMA)


def downgrade() -> None:
    # The code before this revision has no first_meeting clock: its timer sweep fails on one
    # (and with it every rung of the sweep's batch), and its clock list answers 500.
    op.execute(f"DELETE FROM {SCHEMA}.sla_clocks WHERE kind = 'first_meeting'")
    op.execute(f"DELETE FROM {SCHEMA}.clock_stops WHERE kind = 'first_meeting'")
    op.drop_column("clock_stops", "cancels", schema=SCHEMA)
    op.drop_column("sla_clocks", "set_at", schema=SCHEMA)
