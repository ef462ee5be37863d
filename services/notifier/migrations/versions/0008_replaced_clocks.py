"""Notifier keeps whether a first meeting's clock was replaced: its meeting was set again
(moved before it, or rescheduled after a no-show) or turned out not to be the lead's first.
Such a clock is superseded, or breached when its breach stood (it fell due, or its breach
alert went out, before the meeting was set again); either way it no longer stands for the
lead's meeting. The clocks the previous version superseded for a moved meeting are marked.
Additive: services still running the previous version write clocks not replaced.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
SCHEMA = "notifier"


def upgrade() -> None:
    op.add_column("sla_clocks", sa.Column("replaced", sa.Boolean, nullable=False,
                                          server_default=sa.false()), schema=SCHEMA)
    op.execute(f"UPDATE {SCHEMA}.sla_clocks SET replaced = true "
               "WHERE kind = 'first_meeting' AND status = 'superseded'")


def downgrade() -> None:
    # The previous version tells a replaced clock by its status alone: one whose breach stood
    # reads as a meeting that took place, so later appointments of its lead start no clock,
    # as that version did for every appointment after a meeting's time.
    op.drop_column("sla_clocks", "replaced", schema=SCHEMA)
