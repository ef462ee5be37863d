"""Periodic jobs (sweeps, timers) that run on one replica at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

log = structlog.get_logger(__name__)


async def holds_exclusive_lock(connection: AsyncConnection, name: str) -> bool:
    """Return True if this transaction now holds the lock ``name``; False if another does.

    The lock is a transaction-scoped advisory lock: it is released when the
    transaction ends, so a crashed replica never keeps it.
    """
    result = await connection.execute(text("SELECT pg_try_advisory_xact_lock(hashtext(:name))"),
                                      {"name": name})
    return bool(result.scalar_one())


async def run_periodically(name: str, job: Callable[[], Awaitable[object]], *,
                           interval_seconds: float, stop: asyncio.Event) -> None:
    """Run ``job`` every ``interval_seconds`` until ``stop`` is set; log and go on if it fails."""
    while not stop.is_set():
        try:
            await job()
        except Exception:
            log.exception("periodic job failed; it runs again next interval", job=name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)
