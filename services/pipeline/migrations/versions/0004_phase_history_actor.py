"""Pipeline's phase history records who made each change: the rep the API call named, or
null for a change the service made itself (a lead handed over by routing, the zombie sweep).

Existing entries keep null: who made them was never recorded. The release before writes
entries naming their columns, so it runs beside this one unchanged.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
SCHEMA = "pipeline"


def upgrade() -> None:
    op.add_column("phase_history", sa.Column("actor", sa.Text()), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("phase_history", "actor", schema=SCHEMA)
