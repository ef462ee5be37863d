"""The outbox relay: publishes committed outbox rows to Kafka, then deletes them."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from operator import itemgetter

import asyncpg
import structlog

from baton_runtime.db import PlumbingTables, connect_driver
from baton_runtime.kafka import KafkaPublisher
from baton_runtime.metrics import OUTBOX_BATCH_ROWS, OUTBOX_PUBLISHED, OUTBOX_RELAY_ERRORS
from baton_runtime.wakeup import Wakeup
from schemas.envelope import KafkaRecord

log = structlog.get_logger(__name__)
# The relay's connection runs only the statement of ``take_statement``; see there.
RELAY_SETTINGS = {"enable_seqscan": "off"}


class OutboxRelay:
    """Moves outbox rows to Kafka in id order, one batch per transaction.

    Several replicas may run at once: ``FOR UPDATE SKIP LOCKED`` splits the rows
    between them, and a row is held back while an earlier row with the same topic
    and key is still unpublished in another replica's batch, so one key's events
    keep their order. Publishing is at least once; consumers dedupe by event id.

    A batch that publishes rows is followed by the next no sooner than ``min_interval``
    seconds after it began; rows committed meanwhile wait and leave together. A batch
    costs three database round trips and a produce request, about 0.7 ms of CPU for one
    row, and every commit wakes the relay: at 900 requests a second, ingest commits
    groups of one to three captures and ran 250-350 batches a second, its process 87-88%
    busy; 10 ms apart, 81-82%. After an empty batch (the relay was idle) the next starts
    as soon as it is woken, so a quiet service waits for nothing.

    The relay keeps a connection of its own and sends its statement to asyncpg itself:
    a batch through SQLAlchemy's pool and execute cost about 500 us of CPU against
    about 175 us, and a busy service runs up to a hundred batches a second. A lost
    connection is replaced at the next batch.
    """

    def __init__(
        self,
        tables: PlumbingTables,
        publisher: KafkaPublisher,
        *,
        database_url: str,
        batch_size: int,
        poll_interval: float,
        min_interval: float = 0.0,
    ) -> None:
        self._tables = tables
        self._publisher = publisher
        self._database_url = database_url
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._min_interval = min_interval
        self._connection: asyncpg.Connection | None = None
        schema = tables.schema
        self.application_name = f"{schema} outbox relay"
        self._take = take_statement(schema)

    async def _connected(self) -> asyncpg.Connection:
        """Return the relay's connection, connecting first if it has none or lost it."""
        if self._connection is None or self._connection.is_closed():
            self._connection = await connect_driver(self._database_url, self.application_name,
                                                    RELAY_SETTINGS)
        return self._connection

    async def publish_batch(self) -> int:
        """Publish one batch of pending rows and return how many were published."""
        connection = await self._connected()
        async with connection.transaction():
            rows = sorted(await connection.fetch(self._take, self._batch_size),
                          key=itemgetter(0))
            if not rows:
                return 0
            records = [
                KafkaRecord(topic=topic, key=key,
                            headers=tuple(zip(header_names, header_values, strict=True)),
                            value=value)
                for _, topic, key, header_names, header_values, value in rows
            ]
            await self._publisher.send_batch(records)
        for topic, published in Counter(record.topic for record in records).items():
            OUTBOX_PUBLISHED.labels(topic=topic).inc(published)
        OUTBOX_BATCH_ROWS.observe(len(records))
        return len(records)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set, woken by NOTIFY and polling as a fallback."""
        try:
            loop = asyncio.get_running_loop()
            async with Wakeup(self._database_url, self._tables.notify_channel) as wakeup:
                while not stop.is_set():
                    began = loop.time()
                    try:
                        published = await self.publish_batch()
                    except Exception:
                        OUTBOX_RELAY_ERRORS.inc()
                        log.exception("outbox relay batch failed; retrying")
                        published = 0
                    if published < self._batch_size:
                        if published:
                            await _unless_stopped(stop,
                                                  began + self._min_interval - loop.time())
                        await wakeup.wait(stop, poll_seconds=self._poll_interval)
            # Publish what the consumer's last batch and the last HTTP requests committed
            # before the process goes (the service stops the relay after both).
            with contextlib.suppress(Exception):
                while await self.publish_batch() == self._batch_size:
                    pass
        finally:
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()
                self._connection = None


async def _unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    """Return after ``seconds`` (none if not positive), or as soon as ``stop`` is set."""
    if seconds > 0 and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


# Rows leave the table in the transaction that publishes them: until its commit they
# stay locked (other replicas skip them), and a failed send rolls them back.
# The plan must not hang on the table's statistics: a queue's size swings, and autovacuum
# analyses it whenever. Analysed near empty while its pages still held thousands of
# deleted rows, the planner looked up each batch row's earlier rows by ``id < b.id``
# through the primary key, passing every deleted row once a batch row, and deleted the
# batch through the (topic, key, id) index, passing them all again: 4-8 ms of database
# time a batch instead of under 1, for 570 batches of one 8-second phase of the ingest
# benchmark, on cores the service shares. So the earlier rows are found by a row
# comparison that only the (topic, key, id) index answers, the batch leaves by row
# address (locked, its rows cannot move), and the relay's connection plans no sequential
# scan (RELAY_SETTINGS): from such statistics, a scan of the whole table looked cheaper
# than the index, once a batch row.
def take_statement(schema: str) -> str:
    """Return the statement that takes a batch of up to $1 rows out of ``schema``'s outbox."""
    return f"""
        WITH batch AS (
            SELECT ctid, id, topic, key FROM {schema}.outbox
            ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        DELETE FROM {schema}.outbox o
        WHERE o.ctid = ANY(ARRAY(
            SELECT b.ctid FROM batch b
            WHERE (SELECT earlier.id FROM {schema}.outbox earlier
                   WHERE earlier.topic = b.topic AND earlier.key = b.key
                     AND (earlier.topic, earlier.key, earlier.id) < (b.topic, b.key, b.id)
                     AND earlier.id NOT IN (SELECT id FROM batch)
                   LIMIT 1) IS NULL))
        RETURNING o.id, o.topic, o.key, o.header_names, o.header_values, o.value
        """
