"""The delivery worker: sends recorded alerts once, paced per destination, retrying with backoff."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from baton_runtime.wakeup import Wakeup
from services.notifier import store
from services.notifier.channels import Channel, DeliveryFailed
from services.notifier.messages import DIGEST_MAX_ALERTS, AlertMessage, digest

log = structlog.get_logger(__name__)
DESTINATIONS_PER_BATCH = 50
MAX_BACKOFF_SECONDS = 300.0
MIN_WAIT_SECONDS = 0.02  # when the due work is locked by another replica: do not spin
DELIVERIES = Counter("baton_notifier_deliveries_total",
                     "Messages sent by the notifier, by outcome.", ["outcome"])


def together(alerts: Sequence[Row[Any]]) -> list[Row[Any]]:
    """Return the oldest of a destination's sendable alerts that go out as one message.

    An alert whose digest was refused goes alone; the others fold up to the next such.
    """
    if alerts[0].send_alone:
        return [alerts[0]]
    return list(itertools.takewhile(lambda alert: not alert.send_alone, alerts))


def backoff(attempt: int) -> float:
    """Return the wait after failed ``attempt`` (1-based): exponential, capped, jittered."""
    return float(min(MAX_BACKOFF_SECONDS, 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0))


class DeliveryWorker:
    """Sends each destination's due alerts, one message at a time, at the destination's pace.

    A destination is locked with SKIP LOCKED for the whole send, so several
    replicas never send one alert twice nor break one destination's rate limit.
    Alerts that pile up while a destination must wait go out together as a digest;
    a digest refused as a message is sent again one alert at a time, at the same pace,
    so that one bad alert cannot take the others down with it.
    """

    def __init__(self, engine: AsyncEngine, channels: Mapping[str, Channel], *,
                 database_url: str, max_attempts: int, locale: str) -> None:
        self._engine = engine
        self._channels = channels
        self._database_url = database_url
        self._max_attempts = max_attempts
        self._locale = locale

    async def deliver_due(self) -> int:
        """Send what is due now and return how many alerts were attempted."""
        async with self._engine.begin() as connection:
            keys = await store.claim_destinations(connection, DESTINATIONS_PER_BATCH)
            if not keys:
                return 0
            sendable: dict[str, list[Row[Any]]] = defaultdict(list)
            for alert in await store.sendable_alerts(connection, keys, DIGEST_MAX_ALERTS):
                sendable[alert.channel].append(alert)
            due = {key: together(alerts) for key, alerts in sendable.items()}
            failures = dict(zip(due, await asyncio.gather(
                *(self._send(key, alerts) for key, alerts in due.items())), strict=True))
            sent = [key for key, failure in failures.items() if failure is None]
            await store.mark_delivered(connection, [[alert.id for alert in due[key]]
                                                    for key in sent])
            pauses = {key: pace for key in sent if (pace := self._pace(key))}
            for key, failure in failures.items():
                if failure is not None:
                    pauses.update(await self._failed(connection, key, due[key], failure))
            await store.hold_destinations(connection, pauses)
        DELIVERIES.labels(outcome="delivered").inc(len(sent))
        DELIVERIES.labels(outcome="failed").inc(len(due) - len(sent))
        return sum(len(alerts) for alerts in due.values())

    async def _send(self, key: str, alerts: Sequence[Row[Any]]) -> DeliveryFailed | None:
        """Send one message (a digest if several alerts wait) and return its failure, if any."""
        channel = self._channels.get(key)
        if channel is None:
            return DeliveryFailed(f"destination {key} is not configured", permanent=True)
        message = digest([AlertMessage.from_json(alert.message) for alert in alerts],
                         self._locale)
        try:
            await channel.send(message)
        except DeliveryFailed as failure:
            return failure
        except Exception as error:  # a bug in one channel must not undo the others' sends
            log.exception("channel raised unexpectedly", destination=key)
            return DeliveryFailed(f"{type(error).__name__}: {error}")
        return None

    def _pace(self, key: str) -> timedelta | None:
        """Return how long ``key`` rests after a message, None if it need not."""
        channel = self._channels.get(key)
        return (channel.min_interval or None) if channel is not None else None

    async def _failed(self, connection: AsyncConnection, key: str,
                      alerts: Sequence[Row[Any]], failure: DeliveryFailed) -> dict[str, timedelta]:
        """Record a failed send of ``alerts``; return the pause ``key`` needs, if any: its pace,
        or longer if the server asked to wait."""
        if failure.message_refused and len(alerts) > 1:
            # Slack refuses the whole digest for one bad part: the others must still go out.
            # (Only a configured channel's send refuses a message.)
            await store.unfold(connection, [alert.id for alert in alerts], error=str(failure))
            log.warning("digest refused; its alerts are sent one by one", destination=key,
                        alerts=len(alerts), error=str(failure))
            return {key: pace} if (pace := self._pace(key)) else {}
        asked_to_wait = failure.retry_after is not None
        for alert in alerts:
            # Being asked to wait is not the message's fault: it never uses up attempts.
            attempt = alert.attempts + (0 if asked_to_wait else 1)
            give_up = failure.permanent or (not asked_to_wait and attempt >= self._max_attempts)
            wait = failure.retry_after if failure.retry_after is not None else backoff(attempt)
            await store.mark_failed_attempt(
                connection, alert.id, error=str(failure), counted=not asked_to_wait,
                retry_in=None if give_up else timedelta(seconds=wait))
            log.warning("alert delivery failed", alert_id=alert.id, destination=key,
                        attempt=attempt, gave_up=give_up, error=str(failure))
        # A refused request still counts against the destination's rate limit.
        pause = max(self._pace(key) or timedelta(0),
                    timedelta(seconds=failure.retry_after or 0))
        return {key: pause} if pause else {}

    async def next_wait(self, poll_seconds: float) -> float:
        """Return how long to sleep before something may be due: at most ``poll_seconds``."""
        async with self._engine.connect() as connection:
            seconds = await store.seconds_until_sendable(connection)
        if seconds is None:
            return poll_seconds
        return min(poll_seconds, max(MIN_WAIT_SECONDS, seconds))

    async def run(self, stop: asyncio.Event, poll_seconds: float = 1.0) -> None:
        """Deliver until ``stop`` is set, woken by NOTIFY or when paced work falls due."""
        async with Wakeup(self._database_url, store.ALERTS_CHANNEL) as wakeup:
            while not stop.is_set():
                try:
                    if await self.deliver_due():
                        continue
                    wait = await self.next_wait(poll_seconds)
                except Exception:
                    log.exception("delivery batch failed; retrying")
                    wait = poll_seconds
                await wakeup.wait(stop, poll_seconds=wait)
