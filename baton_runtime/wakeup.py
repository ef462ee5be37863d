"""Wake a background worker from PostgreSQL NOTIFY, with polling as the fallback."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from baton_runtime.db import connect_driver

log = structlog.get_logger(__name__)
# While it cannot LISTEN, a waiter tries again this often (its poll may be much longer).
RELISTEN_SECONDS = 1.0


class Wakeup:
    """An asyncio event set by NOTIFY on ``channel``; ``wait`` also returns on a timeout.

    A lost listening connection (a database restart, a failover) wakes the waiter, since
    what was notified while nobody listened is gone, and waits LISTEN again.
    """

    def __init__(self, database_url: str, channel: str) -> None:
        self._database_url = database_url
        self._channel = channel
        self._event = asyncio.Event()
        self._connection: asyncpg.Connection | None = None
        self._warned = False  # said once that it cannot LISTEN, until it can again

    async def __aenter__(self) -> Wakeup:
        await self._listen()
        return self

    async def __aexit__(self, *_: object) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            await connection.close()

    def _listening(self) -> bool:
        """Return True while the connection that LISTENs is open."""
        return self._connection is not None and not self._connection.is_closed()

    async def _listen(self) -> bool:
        """Return True once a new connection LISTENs; log and return False if none can."""
        try:
            async with asyncio.timeout(RELISTEN_SECONDS * 10):
                connection = await connect_driver(self._database_url,
                                                  f"{self._channel} listener")
                try:
                    await connection.add_listener(self._channel, lambda *_: self._event.set())
                except BaseException:
                    connection.terminate()
                    raise
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            if not self._warned:
                log.warning("cannot LISTEN; polling until it can", channel=self._channel,
                            error=repr(error))
            self._connection, self._warned = None, True
            return False
        connection.add_termination_listener(lambda *_: self._event.set())
        self._connection, self._warned = connection, False
        return True

    def set(self) -> None:
        """Wake the waiter now, e.g. to make it notice a stop request."""
        self._event.set()

    async def wait(self, stop: asyncio.Event, poll_seconds: float) -> None:
        """Return on a notification, on ``stop``, or after ``poll_seconds``."""
        deadline = asyncio.get_running_loop().time() + poll_seconds
        while not self._listening():
            if await self._listen():
                break  # what was notified before this LISTEN is unknown: look again now
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or await self._woken(stop, min(RELISTEN_SECONDS, remaining)):
                break
        else:
            await self._woken(stop, deadline - asyncio.get_running_loop().time())
        self._event.clear()

    async def _woken(self, stop: asyncio.Event, seconds: float) -> bool:
        """Return True on a notification or ``stop`` within ``seconds``, else False."""
        waiters = [asyncio.create_task(self._event.wait()), asyncio.create_task(stop.wait())]
        try:
            done, _ = await asyncio.wait(waiters, timeout=max(0.0, seconds),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return bool(done)
