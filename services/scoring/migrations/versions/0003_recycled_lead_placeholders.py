"""A lead whose deal was recycled before scoring stored it is kept as a placeholder row,
unscored, carrying its behaviour baseline (store.reset_baseline): its capture then finds
the reset in its own row. Leads of deals recycled before this version get theirs here.

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"
SCHEMA = "scoring"


def upgrade() -> None:
    op.execute(f"""
        INSERT INTO {SCHEMA}.leads (lead_id, profile, account, source, baseline_at)
        SELECT lead_id, '{{}}'::jsonb, '{{}}'::jsonb, '', max(closed_at)
        FROM {SCHEMA}.deals WHERE outcome = 'recycled'
        GROUP BY lead_id
        ON CONFLICT (lead_id) DO NOTHING
    """)


def downgrade() -> None:
    # The previous version stores no unscored lead: it reads a new lead's baseline from
    # its recycled deals, which stay.
    op.execute(f"DELETE FROM {SCHEMA}.leads WHERE score IS NULL")
