"""Producing and reading Baton events in tests, over a real broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from schemas.envelope import KafkaRecord, encode
from schemas.events import Account, Event, LeadCaptured, LeadProfile, Touchpoint, TouchpointType


def lead_captured(email: str, touchpoint: TouchpointType = TouchpointType.PAGE_VIEW_BLOG,
                  lead_id: uuid.UUID | None = None) -> LeadCaptured:
    """Return a realistic lead.captured event for ``email``."""
    domain = email.split("@", 1)[1]
    return LeadCaptured(
        lead_id=lead_id or uuid.uuid4(), source="web-form",
        profile=LeadProfile(email=email, name="山田 太郎", company="株式会社サンプル",
                            title="部長"),
        account=Account(account_key=domain, domain=domain, company_name="株式会社サンプル"),
        touchpoint=Touchpoint(type=touchpoint, occurred_at=datetime.now(UTC)),
    )


async def produce(bootstrap: str, records: Sequence[KafkaRecord | Event],
                  partition: int | None = None) -> None:
    """Send records (events are encoded first), to ``partition`` if given; wait for acks."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for item in records:
            record = item if isinstance(item, KafkaRecord) else encode(item, source="/tests")
            await producer.send_and_wait(record.topic, record.value, key=record.key,
                                         headers=list(record.headers), partition=partition)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 30,
                     until_sentinels: int = 0) -> list[ConsumerRecord]:
    """Return the first ``count`` records of ``topic`` (or up to ``until_sentinels``)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        partitions: set[int] | None = None
        while not partitions:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                if time.monotonic() > deadline:
                    raise AssertionError(f"topic {topic} never appeared")
                await consumer._client.force_metadata_update()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        records: list[ConsumerRecord] = []

        def sentinels() -> int:
            return sum(1 for r in records if SENTINEL_HEADER in dict(r.headers))

        while len(records) < count or sentinels() < until_sentinels:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{topic}: {len(records)} of {count} records in {timeout}s")
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 1) * 1000))
            for messages in batch.values():
                records.extend(messages)
        return records
    finally:
        await consumer.stop()


SENTINEL_HEADER = "test_sentinel"


async def read_all(bootstrap: str, topic: str, timeout: float = 30) -> list[ConsumerRecord]:
    """Return every record ``topic`` holds now, without relying on reported end offsets.

    A sentinel is appended to each partition and the topic read up to it. (The embedded
    broker reports a wrong high watermark after multi-record batches.)
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        partitions = await producer.partitions_for(topic)
        for partition in partitions:
            await producer.send_and_wait(topic, b"", partition=partition,
                                         headers=[(SENTINEL_HEADER, b"1")])
    finally:
        await producer.stop()
    records = await read_topic(bootstrap, topic, count=0, timeout=timeout,
                               until_sentinels=len(partitions))
    return [r for r in records if SENTINEL_HEADER not in dict(r.headers)]


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Return once ``condition`` holds; fail with ``what`` if it does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


async def committed_offsets(bootstrap: str, group: str, topic: str) -> int:
    """Return the sum of ``group``'s committed offsets on ``topic`` (0 where none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        return sum([await consumer.committed(TopicPartition(topic, p)) or 0 for p in partitions])
    finally:
        await consumer.stop()


def as_consumed(record: KafkaRecord, partition: int, offset: int) -> ConsumerRecord:
    """Return ``record`` as a consumer receives it from ``partition`` at ``offset``."""
    return ConsumerRecord(record.topic, partition, offset, 0, 0, record.key, record.value, None,
                          len(record.key), len(record.value), list(record.headers))
