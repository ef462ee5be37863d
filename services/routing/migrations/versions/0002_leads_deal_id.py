"""Routing's leads remember the deal that made them an opportunity: a recycled deal sends
back to nurture only the lead it belongs to, whatever order the deal and lead events
arrive in. Existing leads keep null (their deal unknown: any recycling applies, as before).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0002"
down_revision = "0001"
SCHEMA = "routing"


def upgrade() -> None:
    op.add_column("leads", sa.Column("deal_id", UUID(as_uuid=True)), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("leads", "deal_id", schema=SCHEMA)
