"""Notifier's alerts can be marked to go alone: Slack refuses a whole digest for one bad
part, and every alert folded into it was then failed, other leads' included.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
SCHEMA = "notifier"


def upgrade() -> None:
    op.add_column("alerts", sa.Column("send_alone", sa.Boolean, nullable=False,
                                      server_default=sa.false()), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("alerts", "send_alone", schema=SCHEMA)
