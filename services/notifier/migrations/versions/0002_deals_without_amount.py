"""Notifier's deals lose their amount: nothing read it, and a bigint refused amounts the
deal.phase_changed contract allows (any non-negative integer), so such an event failed
every attempt.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
SCHEMA = "notifier"


def upgrade() -> None:
    op.drop_column("deals", "amount", schema=SCHEMA)


def downgrade() -> None:
    op.add_column("deals", sa.Column("amount", sa.BigInteger), schema=SCHEMA)
