"""Routing's reps keep a place in their territory's rotation of its own, apart from their
place in the team's round robin: a territory's leads are no round-robin turns. Existing
reps start without one, level with each other at their territory's next lead.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
SCHEMA = "routing"


def upgrade() -> None:
    op.add_column("reps", sa.Column("territory_position", sa.Float), schema=SCHEMA)


def downgrade() -> None:
    # The previous version rotates a territory's reps by their round-robin places.
    op.drop_column("reps", "territory_position", schema=SCHEMA)
