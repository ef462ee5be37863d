"""Scoring's models say where each came from (the packaged file, a model file, the API), so
that a release's packaged model is not installed over a model someone chose.

The packaged versions are 2026.1 and this release's 2026.2 (stored already if the schema
is upgraded again after a downgrade); other stored versions were chosen through the API or
a model file.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
SCHEMA = "scoring"


def upgrade() -> None:
    op.add_column("models", sa.Column("origin", sa.Text, nullable=False, server_default="api"),
                  schema=SCHEMA)
    op.execute(f"UPDATE {SCHEMA}.models SET origin = 'packaged' "
               "WHERE version IN ('2026.1', '2026.2')")


def downgrade() -> None:
    op.drop_column("models", "origin", schema=SCHEMA)
