"""Pipeline's deals record when they last changed, so that the deal list can show the most
recently changed first and page through them by that time.

Existing deals take the time of their phase history's latest entry (the same instant every
change records). The column's default keeps inserts by the previous release working while
it still runs beside this one (it sets no value).

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
SCHEMA = "pipeline"


def upgrade() -> None:
    op.add_column("deals", sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False,
                                     server_default=sa.func.now()), schema=SCHEMA)
    # A deal without history (none should exist) takes the latest time it recorded itself.
    op.execute(f"""
        UPDATE {SCHEMA}.deals AS d
        SET changed_at = coalesce(
            (SELECT max(h.occurred_at) FROM {SCHEMA}.phase_history AS h
             WHERE h.deal_id = d.deal_id),
            greatest(d.opened_at, d.phase_changed_at, d.next_action_entered_at,
                     d.hold_placed_at, d.handed_off_at, d.closed_at))
    """)
    op.create_index("ix_pipeline_deals_changed", "deals", ["changed_at", "deal_id"],
                    schema=SCHEMA)
    op.create_index("ix_pipeline_deals_owner_changed", "deals",
                    ["owner_id", "changed_at", "deal_id"], schema=SCHEMA)
    op.create_index("ix_pipeline_deals_team_changed", "deals",
                    ["team", "changed_at", "deal_id"], schema=SCHEMA)


def downgrade() -> None:
    for name in ("ix_pipeline_deals_team_changed", "ix_pipeline_deals_owner_changed",
                 "ix_pipeline_deals_changed"):
        op.drop_index(name, "deals", schema=SCHEMA)
    op.drop_column("deals", "changed_at", schema=SCHEMA)
