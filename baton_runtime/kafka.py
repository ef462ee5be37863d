"""Kafka producing, topic creation and consumer construction with Baton's settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from baton_runtime.settings import KafkaSettings, RuntimeSettings
from schemas.envelope import KafkaRecord
from schemas.events import TOPICS, dead_letter_topic

# The largest request the producer sends (aiokafka's default, within a broker's default
# message.max.bytes), named so that the unit of work refuses an event larger than this
# where it is emitted: in the outbox, it would fail every batch of the relay for ever.
MAX_REQUEST_SIZE = 1024 * 1024
# A record batch's header (61 bytes), and at their largest a record's length, attributes,
# timestamp and offset deltas (21, as aiokafka counts them) and the varints of its key's
# and value's lengths and of its header count (5 each); each header adds two varints.
RECORD_OVERHEAD = 61 + 21 + 3 * 5
HEADER_OVERHEAD = 2 * 5


def record_size(record: KafkaRecord) -> int:
    """Return at least the size the producer reckons ``record`` at, without encoding it again.

    A header name's characters count as bytes: the envelope's header names are ASCII.
    """
    return (RECORD_OVERHEAD + len(record.key) + len(record.value)
            + sum([HEADER_OVERHEAD + len(name) + len(value) for name, value in record.headers]))


class KafkaPublisher:
    """An acks=all producer that sends batches of records and waits for every ack."""

    def __init__(self, settings: RuntimeSettings, client_id: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=settings.kafka_idempotent_producer,
            # send_batch hands over a whole batch before it waits, so lingering gathers
            # nothing more; it only delays the batch and wakes the sender more often.
            linger_ms=0,
            request_timeout_ms=15_000,
            max_request_size=MAX_REQUEST_SIZE,
        )

    async def start(self) -> None:
        """Connect to the cluster."""
        await self._producer.start()

    async def stop(self) -> None:
        """Flush what is in flight and disconnect."""
        await self._producer.stop()

    async def send_batch(self, records: Sequence[KafkaRecord]) -> None:
        """Return once every record is acknowledged; records of one key keep their order."""
        acks = [
            await self._producer.send(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
            for record in records
        ]
        await asyncio.gather(*acks)

    async def ping(self) -> None:
        """Return once the cluster answers a metadata request; raise if it does not."""
        if not await self._producer.client.force_metadata_update():
            raise ConnectionError("Kafka did not answer a metadata request")


def all_topics() -> list[str]:
    """Return every Baton topic with its dead-letter topic."""
    return [name for topic in TOPICS for name in (topic, dead_letter_topic(topic))]


async def ensure_topics(
    settings: KafkaSettings, topics: Iterable[str] | None = None
) -> list[str]:
    """Create the topics that do not exist yet and return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in (topics or all_topics()) if name not in existing]
        if missing:
            # Another replica may create them between our list and our create.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(name, settings.kafka_topic_partitions,
                                 settings.kafka_replication_factor)
                        for name in missing
                    ]
                )
        return missing
    finally:
        await admin.close()


def build_consumer(settings: RuntimeSettings, group_id: str, client_id: str) -> AIOKafkaConsumer:
    """Return an unsubscribed consumer that never commits on its own."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.consumer_batch_size,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        rebalance_timeout_ms=settings.kafka_rebalance_timeout_ms,
        max_poll_interval_ms=max(300_000, settings.kafka_rebalance_timeout_ms),
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        max_partition_fetch_bytes=settings.kafka_max_partition_fetch_bytes,
    )
