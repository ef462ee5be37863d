"""Wake a background worker from PostgreSQL NOTIFY, with polling as the fallback."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from baton_runtime.db import connect_driver

log = structlog.get_logger(__name__)


class Wakeup:
    """An asyncio event set by NOTIFY on ``channel``; ``wait`` also returns on a timeout."""

    def __init__(self, database_url: str, channel: str) -> None:
        self._database_url = database_url
        self._channel = channel
        self._event = asyncio.Event()
        self._connection: asyncpg.Connection | None = None

    async def __aenter__(self) -> Wakeup:
        try:
            self._connection = await connect_driver(self._database_url, f"{self._channel} listener")
            await self._connection.add_listener(self._channel, lambda *_: self._event.set())
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("cannot LISTEN; polling only", channel=self._channel, error=repr(error))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    def set(self) -> None:
        """Wake the waiter now, e.g. to make it notice a stop request."""
        self._event.set()

    async def wait(self, stop: asyncio.Event, poll_seconds: float) -> None:
        """Return on a notification, on ``stop``, or after ``poll_seconds``."""
        waiters = [asyncio.create_task(self._event.wait()), asyncio.create_task(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=poll_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        self._event.clear()
