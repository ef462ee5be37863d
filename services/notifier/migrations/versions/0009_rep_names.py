"""Notifier keeps reps' names as routing's lead.promoted gives them (``owner_name``), so
alerts show people, not ids. Additive: services still running the previous version
neither read nor write the table.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
SCHEMA = "notifier"


def upgrade() -> None:
    op.create_table(
        "rep_names",
        sa.Column("rep_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("named_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("rep_names", schema=SCHEMA)
