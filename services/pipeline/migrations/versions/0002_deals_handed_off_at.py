"""Pipeline's deals record their latest hand-off to a new SQL: a deal kept for a lead
qualified again restarts its idle clocks there, instead of having its last phase change
and next-action entry overwritten with a time neither happened at.

The zombie and health indexes stay as they are: the rules test each clock against its
own index and the hand-off beside it. Existing deals keep null (no hand-off recorded).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
SCHEMA = "pipeline"


def upgrade() -> None:
    op.add_column("deals", sa.Column("handed_off_at", sa.DateTime(timezone=True)),
                  schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("deals", "handed_off_at", schema=SCHEMA)
