"""Waiting for a transaction to block on another's lock, without sleeping for it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine


async def waiting_for_a_lock(engine: AsyncEngine) -> bool:
    """Return True while some session of ``engine``'s database waits for a lock."""
    async with engine.connect() as connection:
        return bool((await connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()")).scalar_one())
