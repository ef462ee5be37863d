"""The delivery worker: sends recorded alerts once, retrying with backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_runtime.clock import Clock
from baton_runtime.wakeup import Wakeup
from services.notifier import store
from services.notifier.channels import Channel, DeliveryFailed

log = structlog.get_logger(__name__)
BATCH = 20
MAX_BACKOFF_SECONDS = 300.0


def backoff(attempt: int) -> float:
    """Return the wait after failed ``attempt`` (1-based): exponential, capped, jittered."""
    return float(min(MAX_BACKOFF_SECONDS, 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0))


class DeliveryWorker:
    """Claims due alerts with SKIP LOCKED, so that several replicas never send one twice."""

    def __init__(self, engine: AsyncEngine, channels: Mapping[str, Channel], *,
                 database_url: str, max_attempts: int, clock: Clock) -> None:
        self._engine = engine
        self._channels = channels
        self._database_url = database_url
        self._max_attempts = max_attempts
        self._clock = clock

    async def deliver_due(self) -> int:
        """Send the alerts that are due now and return how many were attempted."""
        async with self._engine.begin() as connection:
            due = await store.claim_due(connection, BATCH)
            for alert in due:
                channel = self._channels.get(alert.channel)
                try:
                    if channel is None:
                        raise DeliveryFailed(f"channel {alert.channel} is not configured",
                                             permanent=True)
                    await channel.send(alert.message)
                except DeliveryFailed as failure:
                    attempt = alert.attempts + 1
                    give_up = failure.permanent or attempt >= self._max_attempts
                    wait = failure.retry_after if failure.retry_after is not None else backoff(
                        attempt)
                    await store.mark_failed_attempt(
                        connection, alert.id, error=str(failure),
                        retry_at=None if give_up else self._clock() + timedelta(seconds=wait))
                    log.warning("alert delivery failed", alert_id=alert.id, attempt=attempt,
                                gave_up=give_up, error=str(failure))
                else:
                    await store.mark_delivered(connection, alert.id, self._clock())
        return len(due)

    async def run(self, stop: asyncio.Event, poll_seconds: float = 1.0) -> None:
        """Deliver until ``stop`` is set, woken by NOTIFY, polling for retries that fall due."""
        async with Wakeup(self._database_url, store.ALERTS_CHANNEL) as wakeup:
            while not stop.is_set():
                try:
                    attempted = await self.deliver_due()
                except Exception:
                    log.exception("delivery batch failed; retrying")
                    attempted = 0
                if attempted < BATCH:
                    await wakeup.wait(stop, poll_seconds=poll_seconds)
