"""The outbox relay: several replicas at once keep each key's order and lose nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_runtime.db import connect_driver, create_engine
from baton_runtime.kafka import MAX_REQUEST_SIZE, KafkaPublisher, ensure_topics, record_size
from baton_runtime.outbox import RELAY_SETTINGS, OutboxRelay, take_statement
from baton_runtime.settings import KafkaSettings
from baton_runtime.uow import EventTooLargeError, UnitOfWorkFactory, unit_of_work_factory
from schemas.envelope import KafkaRecord, encode
from schemas.events import SHORT_TEXT_LENGTH, LeadScored, Tier
from tests.conftest import Infrastructure
from tests.support import probe_service
from tests.support.kafka import lead_captured, read_all, wait_until

pytestmark = pytest.mark.integration
KEYS = [f"lead-{i}".encode() for i in range(25)]
PER_KEY = 40
TOPIC = "lead.captured"


class CountingPublisher(KafkaPublisher):
    """The real publisher, counting what it sent and noting each batch's size; a slow one
    pauses before each batch."""

    def __init__(self, settings: KafkaSettings, client_id: str, pause: float = 0) -> None:
        super().__init__(settings, client_id)  # type: ignore[arg-type]
        self.sent = 0
        self.batches: list[int] = []
        self._pause = pause

    async def send_batch(self, records: Sequence[KafkaRecord]) -> None:
        # A slow replica: without the relay's hold-back, later rows would overtake these.
        await asyncio.sleep(self._pause)
        await super().send_batch(records)
        self.sent += len(records)
        self.batches.append(len(records))


def outbox_drained(engine: AsyncEngine) -> Callable[[], Awaitable[bool]]:
    """Return a check that the probe service's outbox holds no row."""

    async def drained() -> bool:
        async with engine.connect() as connection:
            rows = await connection.exec_driver_sql("SELECT count(*) FROM probe.outbox")
            return bool(rows.scalar_one() == 0)

    return drained


@dataclass
class ProbeDatabase:
    """The probe service's fresh tables: an engine on them and its units of work."""

    engine: AsyncEngine
    unit_of_work: UnitOfWorkFactory


@pytest.fixture
async def probe_database(infrastructure: Infrastructure) -> AsyncIterator[ProbeDatabase]:
    engine = create_engine(infrastructure.database_url)
    await probe_service.create_tables(engine)
    try:
        yield ProbeDatabase(engine, unit_of_work_factory(engine, probe_service.tables, "/tests"))
    finally:
        await engine.dispose()


async def probe_relay(infrastructure: Infrastructure, name: str, *, poll_interval: float,
                      min_interval: float = 0.0) -> tuple[CountingPublisher, OutboxRelay]:
    """Return a counting publisher (not started) and a relay of the probe service's outbox
    through it, in batches of up to 100; the topic exists."""
    settings = KafkaSettings(kafka_bootstrap_servers=infrastructure.bootstrap_servers,
                             kafka_idempotent_producer=False)
    await ensure_topics(settings, [TOPIC])
    publisher = CountingPublisher(settings, name)
    return publisher, OutboxRelay(probe_service.tables, publisher,
                                  database_url=infrastructure.database_url, batch_size=100,
                                  poll_interval=poll_interval, min_interval=min_interval)


async def emit_in_a_transaction(database: ProbeDatabase, key: bytes) -> None:
    """Commit one outbox row of ``key`` in a transaction of its own."""
    async with database.unit_of_work() as uow:
        uow.emit_record(KafkaRecord(TOPIC, key, (), b"a row of its own"))
        await uow.commit()


async def test_three_relays_publish_every_row_once_in_per_key_order(
    infrastructure: Infrastructure,
) -> None:
    settings = KafkaSettings(kafka_bootstrap_servers=infrastructure.bootstrap_servers,
                             kafka_topic_partitions=3, kafka_idempotent_producer=False)
    await ensure_topics(settings)
    engine = create_engine(infrastructure.database_url)
    await probe_service.create_tables(engine)
    unit_of_work = unit_of_work_factory(engine, probe_service.tables, "/tests")
    # Many small transactions interleaving keys, as concurrent handlers would write them.
    for sequence in range(PER_KEY):
        async with unit_of_work() as uow:
            for key in KEYS:
                uow.emit_record(KafkaRecord(TOPIC, key, (), b"%s:%d" % (key, sequence)))
            await uow.commit()

    publishers = [CountingPublisher(settings, f"relay-{i}", pause=0.05 if i == 0 else 0)
                  for i in range(3)]
    relays = [OutboxRelay(probe_service.tables, publisher,
                          database_url=infrastructure.database_url, batch_size=7,
                          poll_interval=0.5) for publisher in publishers]
    stop = asyncio.Event()
    for publisher in publishers:
        await publisher.start()
    tasks = [asyncio.create_task(relay.run(stop)) for relay in relays]

    try:
        await wait_until(outbox_drained(engine), 60, "both relays to drain the outbox")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for publisher in publishers:
            await publisher.stop()
        await engine.dispose()

    records = await read_all(infrastructure.bootstrap_servers, TOPIC)
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key[record.key].append(int(record.value.rsplit(b":", 1)[1]))
    assert len(records) == len(KEYS) * PER_KEY, "every row published exactly once"
    assert all(sequence == list(range(PER_KEY)) for sequence in by_key.values()), (
        "each key's events in the order they were written")
    assert all(publisher.sent > 0 for publisher in publishers), "every replica published"


async def test_a_commit_with_outbox_rows_notifies_the_relays_channel(
    infrastructure: Infrastructure, probe_database: ProbeDatabase,
) -> None:
    listener = await connect_driver(infrastructure.database_url, "tests")
    notified = asyncio.Event()
    await listener.add_listener(probe_service.tables.notify_channel,
                                lambda *_: notified.set())
    try:
        async with probe_database.unit_of_work() as uow:
            uow.emit_record(KafkaRecord(TOPIC, KEYS[0], (), b"wake up"))
            await uow.commit()

        # The outbox's trigger sends it: the unit of work makes no call of its own.
        await asyncio.wait_for(notified.wait(), 30)
    finally:
        await listener.close()


async def test_outbox_rows_are_written_alike_before_and_after_the_transaction_began(
    probe_database: ProbeDatabase,
) -> None:
    unit_of_work = probe_database.unit_of_work
    # Header names and values as a dead letter may carry them from any producer.
    awkward = (("ce_id", b"-id"), ("ce_source", "/テスト".encode()), ('a "quoted", {braced}', b""),
               ("back\\slash\\", bytes(range(256))), ("", b'"\\{,}'), ("NULL", b"NULL"))
    first, second, undone = (
        KafkaRecord(TOPIC, key, ((awkward[0][0], key + awkward[0][1]), *awkward[1:]),
                    b'{"name": "' + key + b'"}') for key in (b"first", b"second", b"undone"))
    async with unit_of_work() as uow:  # nothing ran yet: written through SQLAlchemy
        uow.emit_record(first)
        await uow.commit()
    async with unit_of_work() as uow:  # a statement ran: written through asyncpg itself
        await uow.connection.exec_driver_sql("SELECT 1")
        uow.emit_record(second)
        await uow.commit()
    async with unit_of_work() as uow:  # never committed: nothing written
        await uow.connection.exec_driver_sql("SELECT 1")
        uow.emit_record(undone)
    async with probe_database.engine.connect() as connection:
        rows = await connection.exec_driver_sql(
            "SELECT topic, key, header_names, header_values, value FROM probe.outbox "
            "ORDER BY id")
        written = [(row.topic, row.key, tuple(zip(row.header_names, row.header_values,
                                                  strict=True)), row.value) for row in rows]
    assert written == [(r.topic, r.key, r.headers, r.value) for r in (first, second)]


async def test_a_relay_whose_connection_is_lost_connects_again_and_goes_on(
    infrastructure: Infrastructure, probe_database: ProbeDatabase,
) -> None:
    publisher, relay = await probe_relay(infrastructure, "relay-reconnects", poll_interval=0.2)
    engine, stop = probe_database.engine, asyncio.Event()

    await publisher.start()
    running = asyncio.create_task(relay.run(stop))
    try:
        await emit_in_a_transaction(probe_database, b"before")
        await wait_until(outbox_drained(engine), 30, "the relay to publish the first row")
        async with engine.connect() as connection:
            terminated = await connection.exec_driver_sql(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                "FROM pg_stat_activity WHERE application_name = $1",
                (relay.application_name,))
            assert terminated.scalar_one() == 1, "the relay's own connection was cut"
        await emit_in_a_transaction(probe_database, b"after")
        await wait_until(outbox_drained(engine), 30,
                         "the relay to publish on a new connection")
    finally:
        stop.set()
        await running
        await publisher.stop()
    assert publisher.sent == 2


async def test_rows_committed_within_the_minimum_interval_leave_in_one_batch(
    infrastructure: Infrastructure, probe_database: ProbeDatabase,
) -> None:
    interval = 2.0
    # Polling too seldom to matter: only a wake-up makes this relay look.
    publisher, relay = await probe_relay(infrastructure, "relay-interval", poll_interval=60,
                                         min_interval=interval)
    engine, stop = probe_database.engine, asyncio.Event()

    async def idle() -> bool:
        """Return True once the relay has looked at the empty outbox and is waiting."""
        async with engine.connect() as connection:
            states = await connection.exec_driver_sql(
                "SELECT state FROM pg_stat_activity WHERE application_name = $1",
                (relay.application_name,))
            return states.scalars().all() == ["idle"]

    def batches_observed() -> float:
        return REGISTRY.get_sample_value("baton_outbox_relay_batch_rows_count") or 0.0

    observed_before = batches_observed()
    await publisher.start()
    running = asyncio.create_task(relay.run(stop))
    try:
        await wait_until(idle, 30, "the relay's first batch, of nothing")
        await emit_in_a_transaction(probe_database, b"alone")
        await wait_until(outbox_drained(engine), interval / 2,
                         "the idle relay to publish the row at once")
        began = time.monotonic()
        for number in range(10):  # ten transactions, each waking the relay
            await emit_in_a_transaction(probe_database, b"burst-%d" % number)
        emitted_in = time.monotonic() - began
        await wait_until(outbox_drained(engine), 30, "the relay to publish the ten rows")
        # The relay now waits out most of an interval after that batch; a stop ends it.
        stopping = time.monotonic()
        stop.set()
        await running
        stopped_in = time.monotonic() - stopping
    finally:
        stop.set()
        await running
        await publisher.stop()
    assert publisher.batches[0] == 1
    # A batch for each interval the ten commits spanned, the first perhaps cut short by the
    # wait after the lone row's batch (two at most, unless the machine took over two seconds
    # for them), not one a transaction.
    assert sum(publisher.batches[1:]) == 10
    assert len(publisher.batches) - 1 <= 2 + int(emitted_in / interval), publisher.batches
    assert stopped_in < interval / 4, "a stop ends the relay's wait at once"
    assert batches_observed() - observed_before == len(publisher.batches), (
        "the metric counts the batches that published rows, not the empty ones")


async def test_a_batch_does_not_pass_the_deleted_rows_once_a_row_whatever_the_statistics_say(
    infrastructure: Infrastructure, probe_database: ProbeDatabase,
) -> None:
    # A queue's usual state after a burst: analysed nearly empty while its pages still
    # hold thousands of deleted rows. Planned from those statistics, each batch row's
    # earlier rows were looked up by passing every deleted row (through the primary key,
    # or by a scan of the whole table).
    connection = await connect_driver(infrastructure.database_url, "tests", RELAY_SETTINGS)
    try:
        await connection.execute("ALTER TABLE probe.outbox SET (autovacuum_enabled = false)")
        await connection.execute("DELETE FROM probe.outbox")

        async def write(rows: int) -> None:
            await connection.execute(
                "INSERT INTO probe.outbox (topic, key, header_names, header_values, value) "
                "SELECT $1, convert_to(gen_random_uuid()::text, 'UTF8'), '{}', '{}', '' "
                "FROM generate_series(1, $2)", TOPIC, rows)

        await write(20_000)
        await connection.execute(
            "DELETE FROM probe.outbox WHERE id < (SELECT max(id) - 2 FROM probe.outbox)")
        await connection.execute("ANALYZE probe.outbox")
        await connection.execute("DELETE FROM probe.outbox")
        await write(30)
        table_pages = await connection.fetchval(
            "SELECT pg_relation_size('probe.outbox') / current_setting('block_size')::int")
        transaction = connection.transaction()
        await transaction.start()
        try:
            [plan] = json.loads(await connection.fetchval(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + take_statement("probe"), 500))
        finally:
            await transaction.rollback()
        await connection.execute("DELETE FROM probe.outbox")
    finally:
        await connection.execute("ALTER TABLE probe.outbox RESET (autovacuum_enabled)")
        await connection.close()
    taken = plan["Plan"]["Actual Rows"]
    assert taken == 30
    # A few passes over the table's pages (now about 630 page reads of its 309), not one a
    # batch row: a whole-table scan for each row's earlier rows read 9,699.
    pages = plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"]
    assert pages <= 4 * table_pages, f"{pages} pages read for {taken} rows; the table has " \
        f"{table_pages}"


def scored_of_size(size: int) -> tuple[LeadScored, str]:
    """Return a lead.scored and an event id that make a record of ``size`` bytes as the
    unit of work reckons it (with its source, /tests)."""
    lead = lead_captured("large@example.com")
    signal = "x" * SHORT_TEXT_LENGTH

    def scored(signals: int) -> LeadScored:
        return LeadScored(lead_id=lead.lead_id, scored_at=datetime.now(UTC), score=50,
                          tier=Tier.B, reasons=[], model_version="probe", profile=lead.profile,
                          account=lead.account, source=lead.source,
                          high_intent_signals=[signal] * signals)

    def reckoned(event: LeadScored, event_id: str) -> int:
        return record_size(encode(event, source="/tests", event_id=event_id))

    # Signals fill all but the last few hundred bytes (each adds its text, two quotes and a
    # comma); the event id, written once in a header, fills the rest to the byte.
    event = scored(0)
    event = scored((size - reckoned(event, "e")) // (SHORT_TEXT_LENGTH + 3))
    event_id = "e" * (1 + size - reckoned(event, "e"))
    assert reckoned(event, event_id) == size
    return event, event_id


async def publish_one_batch(infrastructure: Infrastructure, settings: KafkaSettings,
                            name: str) -> int:
    """Return how many outbox rows one batch of a fresh relay published."""
    publisher = CountingPublisher(settings, name)
    relay = OutboxRelay(probe_service.tables, publisher, database_url=infrastructure.database_url,
                        batch_size=100, poll_interval=0.2)
    await publisher.start()
    try:
        return await relay.publish_batch()
    finally:
        await publisher.stop()


async def test_the_largest_event_emit_accepts_is_published_and_a_byte_more_is_refused(
    infrastructure: Infrastructure, probe_database: ProbeDatabase,
) -> None:
    settings = KafkaSettings(kafka_bootstrap_servers=infrastructure.bootstrap_servers,
                             kafka_idempotent_producer=False)
    await ensure_topics(settings, [LeadScored.topic])
    largest, largest_id = scored_of_size(MAX_REQUEST_SIZE)
    too_large, too_large_id = scored_of_size(MAX_REQUEST_SIZE + 1)
    async with probe_database.unit_of_work() as uow:
        with pytest.raises(EventTooLargeError) as refused:
            uow.emit(too_large, event_id=too_large_id)
        uow.emit(largest, event_id=largest_id)
        await uow.commit()
    assert str(refused.value).startswith(
        f"a lead.scored event is {MAX_REQUEST_SIZE + 1} bytes as a Kafka record, over the "
        f"{MAX_REQUEST_SIZE}-byte limit of a Kafka request"), "it names topic, size and limit"

    # The producer and the broker take what the unit of work let into the outbox.
    assert await publish_one_batch(infrastructure, settings, "relay-largest") == 1
    published = await read_all(infrastructure.bootstrap_servers, LeadScored.topic)
    assert [dict(record.headers)["ce_id"].decode() for record in published] == [largest_id]


async def test_the_largest_record_emit_record_accepts_is_published_and_a_byte_more_is_refused(
    infrastructure: Infrastructure, probe_database: ProbeDatabase,
) -> None:
    settings = KafkaSettings(kafka_bootstrap_servers=infrastructure.bootstrap_servers,
                             kafka_idempotent_producer=False)
    await ensure_topics(settings, [TOPIC])
    empty = KafkaRecord(TOPIC, b"largest", (("ce_id", b"largest"),), b"")
    largest = empty._replace(value=b"x" * (MAX_REQUEST_SIZE - record_size(empty)))
    async with probe_database.unit_of_work() as uow:
        with pytest.raises(EventTooLargeError) as refused:
            uow.emit_record(largest._replace(value=largest.value + b"x"))
        uow.emit_record(largest)
        await uow.commit()
    assert str(refused.value).startswith(
        f"a {TOPIC} record is {MAX_REQUEST_SIZE + 1} bytes as a Kafka record, over the "
        f"{MAX_REQUEST_SIZE}-byte limit of a Kafka request"), "it names topic, size and limit"

    assert await publish_one_batch(infrastructure, settings, "relay-largest-record") == 1
    [published] = await read_all(infrastructure.bootstrap_servers, TOPIC)
    assert (published.key, len(published.value)) == (largest.key, len(largest.value))
