"""The consumer loop against real PostgreSQL and a real Kafka-protocol broker."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import cast

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_runtime.consumer import ConsumerLoop, RetryPolicy
from baton_runtime.db import create_engine
from baton_runtime.embedded import free_port
from baton_runtime.kafka import KafkaPublisher, build_consumer, ensure_topics
from baton_runtime.outbox import OutboxRelay
from baton_runtime.settings import RuntimeSettings
from baton_runtime.uow import UnitOfWork, unit_of_work_factory
from schemas.envelope import KafkaRecord, decode, encode
from schemas.events import DealPhase, DealRecycled, LeadCaptured, LeadScored, TouchpointType
from tests.conftest import Infrastructure
from tests.support import probe_service
from tests.support.kafka import (
    as_consumed,
    committed_offsets,
    lead_captured,
    produce,
    read_all,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.integration
NO_VALUE = cast(bytes, None)  # how aiokafka sends a header without a value


@pytest.fixture
async def engine(infrastructure: Infrastructure) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(infrastructure.database_url)
    await probe_service.create_tables(engine)
    yield engine
    await engine.dispose()


@pytest.mark.slow
async def test_sigkill_between_database_commit_and_offset_commit_loses_and_duplicates_nothing(
    infrastructure: Infrastructure, engine: AsyncEngine
) -> None:
    settings = infrastructure.settings(RuntimeSettings)
    await ensure_topics(settings)
    inputs = [lead_captured(f"user{i}@example.co.jp") for i in range(40)]
    await produce(infrastructure.bootstrap_servers, inputs)

    crashing = probe_service.spawn(infrastructure.environment(), free_port(),
                                   kill_after_commit=True)
    assert await asyncio.to_thread(crashing.wait, 60) == -signal.SIGKILL

    rows_at_crash, _ = await received_counts(engine)
    assert rows_at_crash > 0, "the first batch's database commit happened before the kill"
    assert await committed_offsets(infrastructure.bootstrap_servers, "baton-probe",
                                   LeadCaptured.topic) == 0, "no offset was committed"

    port = free_port()
    restarted = probe_service.spawn(infrastructure.environment(), port)
    bootstrap = infrastructure.bootstrap_servers
    try:
        async def all_offsets_committed() -> bool:
            return await committed_offsets(bootstrap, "baton-probe", LeadCaptured.topic) == 40

        await wait_until(all_offsets_committed, 60, "the restarted probe to commit every offset")
        assert await received_counts(engine) == (40, 40), "every lead recorded exactly once"
        await wait_until(lambda: outbox_empty(engine), 30, "the outbox to drain")
        outputs = await read_all(bootstrap, LeadScored.topic)
        assert len(outputs) == 40, "exactly one lead.scored per lead.captured"
        decoded = [decode(r.topic, r.key, r.headers, r.value).event for r in outputs]
        scored = {event.lead_id for event in decoded if isinstance(event, LeadScored)}
        assert scored == {event.lead_id for event in inputs}
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        assert metric_value(metrics, "lead.captured", "duplicate") == rows_at_crash, (
            "the redelivered first batch was recognised by the inbox")
        assert metric_value(metrics, "lead.captured", "processed") == 40 - rows_at_crash
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(restarted.wait, 30) == 0


def metric_value(exposition: str, topic: str, outcome: str) -> float:
    """Return baton_consumer_messages_total for one topic and outcome (0 if absent)."""
    prefix = f'baton_consumer_messages_total{{outcome="{outcome}",topic="{topic}"}} '
    for line in exposition.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0


async def received_counts(engine: AsyncEngine) -> tuple[int, int]:
    """Return (rows, distinct leads) the probe recorded."""
    return await probe_service.received_counts(engine)


async def outbox_empty(engine: AsyncEngine) -> bool:
    """Return True once the probe's outbox holds no unpublished rows."""
    async with engine.connect() as connection:
        remaining: int = (await connection.exec_driver_sql("SELECT count(*) FROM probe.outbox")
                          ).scalar_one()
        return remaining == 0


async def test_poison_message_goes_to_its_dead_letter_topic_and_the_partition_moves_on(
    infrastructure: Infrastructure, engine: AsyncEngine
) -> None:
    settings = infrastructure.settings(RuntimeSettings, consumer_max_attempts=3,
                            consumer_retry_backoff_ms=10)
    await ensure_topics(settings)
    same_key = lead_captured("first@example.com").lead_id
    first = lead_captured("first@example.com", lead_id=same_key)
    poison = lead_captured("poison@example.com", lead_id=same_key)
    good = encode(lead_captured("ok@example.com", lead_id=same_key), source="/tests")
    garbage = KafkaRecord(topic=good.topic, key=good.key, headers=good.headers,
                          value=b'{"not": "a lead"')
    after = [lead_captured(f"after{i}@example.com", TouchpointType.EMAIL_OPEN, same_key)
             for i in range(3)]
    await produce(infrastructure.bootstrap_servers, [first, poison, garbage, good, *after])

    definition = probe_service.definition()
    loop = ConsumerLoop(
        build_consumer(settings, "baton-probe", "probe"),
        group_id="baton-probe",
        handlers=definition.handlers,
        unit_of_work=unit_of_work_factory(engine, definition.tables, definition.source),
        retry=RetryPolicy(settings.consumer_max_attempts, 0.01),
        batch_size=100,
    )
    publisher = KafkaPublisher(settings, "probe")
    await publisher.start()
    relay = OutboxRelay(definition.tables, publisher,
                        database_url=infrastructure.database_url, batch_size=100,
                        poll_interval=1.0)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop.run(stop)), asyncio.create_task(relay.run(stop))]
    try:
        dead = await read_topic(infrastructure.bootstrap_servers, "lead.captured.dlq", 2)
        expected = ["first@example.com", "ok@example.com",
                    *(f"after{i}@example.com" for i in range(3))]
        await wait_until(lambda: _emails_are(engine, expected), 30, "the five good messages")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await publisher.stop()

    errors = {dict(record.headers)["baton_error_type"].decode(): dict(record.headers)
              for record in dead}
    assert set(errors) == {"PoisonPill", "EnvelopeError"}
    assert errors["PoisonPill"]["baton_attempts"] == b"3"
    assert b"poison@example.com" in errors["PoisonPill"]["baton_error"]
    assert errors["EnvelopeError"]["baton_attempts"] == b"1"
    assert {headers["baton_original_topic"] for headers in errors.values()} == {
        b"lead.captured"}
    poison_record = next(r for r in dead if dict(r.headers)["baton_error_type"] == b"PoisonPill")
    assert decode("lead.captured.dlq", poison_record.key, poison_record.headers,
                  poison_record.value).event == poison, "the dead letter keeps the original"


async def test_a_handler_emitting_an_event_too_large_to_publish_dead_letters_its_input(
    infrastructure: Infrastructure, engine: AsyncEngine
) -> None:
    settings = infrastructure.settings(RuntimeSettings, consumer_max_attempts=2)
    await ensure_topics(settings)
    same_key = lead_captured("first@example.com").lead_id
    first, huge, *after = (lead_captured(email, lead_id=same_key) for email in (
        "first@example.com", "huge@example.com", "after0@example.com", "after1@example.com"))
    await produce(infrastructure.bootstrap_servers, [first, huge, *after])

    async def handle(event: LeadCaptured, uow: UnitOfWork) -> None:
        if event.profile.email.startswith("huge"):
            # About 1.1 MB of JSON: more than one Kafka request may carry.
            uow.emit(probe_service.scored(event.lead_id, event.profile, event.account,
                                          event.source).model_copy(
                update={"high_intent_signals": ["x" * 500] * 2_200}))
        await probe_service.on_lead_captured(event, uow)

    definition = probe_service.definition()
    loop = ConsumerLoop(
        build_consumer(settings, "baton-probe", "probe"), group_id="baton-probe",
        handlers={LeadCaptured.topic: handle},
        unit_of_work=unit_of_work_factory(engine, definition.tables, definition.source),
        retry=RetryPolicy(settings.consumer_max_attempts, 0.01), batch_size=100)
    publisher = KafkaPublisher(settings, "probe")
    await publisher.start()
    relay = OutboxRelay(definition.tables, publisher, database_url=infrastructure.database_url,
                        batch_size=100, poll_interval=1.0)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop.run(stop)), asyncio.create_task(relay.run(stop))]
    bootstrap = infrastructure.bootstrap_servers
    try:
        dead = await read_topic(bootstrap, "lead.captured.dlq", 1)
        scored = await read_topic(bootstrap, LeadScored.topic, 3)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await publisher.stop()

    headers = dict(dead[0].headers)
    assert headers["baton_error_type"] == b"EventTooLargeError"
    assert headers["baton_attempts"] == b"2", "retried as any handler error is"
    assert b"lead.scored event is" in headers["baton_error"]
    assert decode("lead.captured.dlq", dead[0].key, dead[0].headers,
                  dead[0].value).event == huge, "the input is what was dead-lettered"
    handled = [event.profile.email for event in (first, *after)]
    assert await _emails_are(engine, handled)
    relayed = [decode(r.topic, r.key, r.headers, r.value).event for r in scored]
    assert [event.profile.email for event in relayed if isinstance(event, LeadScored)] == (
        handled), "the messages after it were handled and their events relayed"


async def test_messages_with_headers_that_have_no_value_do_not_block_their_partition(
    infrastructure: Infrastructure, engine: AsyncEngine
) -> None:
    # Kafka lets a header have no value (some tracing libraries send such headers).
    settings = infrastructure.settings(RuntimeSettings, consumer_max_attempts=2)
    await ensure_topics(settings)
    same_key = lead_captured("poison@example.com").lead_id
    poison = encode(lead_captured("poison@example.com", lead_id=same_key), source="/tests")
    valueless_trace = poison._replace(headers=(*poison.headers, ("traceparent", NO_VALUE)))
    unreadable = encode(lead_captured("unreadable@example.com", lead_id=same_key),
                        source="/tests")
    valueless_id = unreadable._replace(headers=tuple(
        (name, NO_VALUE if name == "ce_id" else value) for name, value in unreadable.headers))
    good = lead_captured("ok@example.com", lead_id=same_key)
    await produce(infrastructure.bootstrap_servers, [valueless_trace, valueless_id, good])

    definition = probe_service.definition()
    loop = ConsumerLoop(
        build_consumer(settings, "baton-probe", "probe"), group_id="baton-probe",
        handlers=definition.handlers,
        unit_of_work=unit_of_work_factory(engine, definition.tables, definition.source),
        retry=RetryPolicy(settings.consumer_max_attempts, 0.01), batch_size=100)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        await wait_until(lambda: _emails_are(engine, ["ok@example.com"]), 30,
                         "the message after the two to be handled")
    finally:
        stop.set()
        await running
    async with engine.connect() as connection:
        queued = (await connection.exec_driver_sql(
            "SELECT topic FROM probe.outbox WHERE topic LIKE '%.dlq' ORDER BY id")).all()
    assert [row[0] for row in queued] == ["lead.captured.dlq"] * 2, "both dead-lettered"


async def _emails_are(engine: AsyncEngine, expected: list[str]) -> bool:
    """Return True once the probe recorded exactly ``expected``, in that order."""
    async with engine.connect() as connection:
        rows = await connection.exec_driver_sql("SELECT email FROM probe.received ORDER BY id")
        return [row[0] for row in rows] == expected


async def test_lanes_handle_their_partitions_concurrently_each_partition_in_order(
    infrastructure: Infrastructure, engine: AsyncEngine
) -> None:
    settings = infrastructure.settings(RuntimeSettings, kafka_topic_partitions=2)
    await ensure_topics(settings)
    # Two lanes, two partitions: one each. The first event of partition 0 cannot finish
    # until partition 1's event was handled, which only a concurrent lane can do.
    waiting = [lead_captured(f"p0-{i}@example.co.jp") for i in range(3)]
    releasing = [lead_captured(f"p1-{i}@example.co.jp") for i in range(2)]
    await produce(infrastructure.bootstrap_servers, waiting, partition=0)
    await produce(infrastructure.bootstrap_servers, releasing, partition=1)
    released = asyncio.Event()
    handled: list[str] = []

    async def handle(event: LeadCaptured, _: UnitOfWork) -> None:
        if event.profile.email.startswith("p0-0"):
            await asyncio.wait_for(released.wait(), 20)
        else:
            released.set()
        handled.append(event.profile.email)

    definition = probe_service.definition()
    loop = ConsumerLoop(
        build_consumer(settings, "baton-lanes", "probe"), group_id="baton-lanes",
        handlers={LeadCaptured.topic: handle},
        unit_of_work=unit_of_work_factory(engine, definition.tables, definition.source),
        retry=RetryPolicy(1, 0.01), batch_size=100, lanes=2)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    bootstrap = infrastructure.bootstrap_servers

    async def all_committed() -> bool:
        return await committed_offsets(bootstrap, "baton-lanes", LeadCaptured.topic) == 5

    try:
        await wait_until(all_committed, 60, "both partitions' offsets to be committed")
    finally:
        stop.set()
        await running
    assert [email for email in handled if email.startswith("p0-")] == [
        event.profile.email for event in waiting], "a partition keeps its order"
    assert handled.index("p1-0@example.co.jp") < handled.index("p0-0@example.co.jp")
    async with engine.connect() as connection:
        claimed = (await connection.exec_driver_sql(
            "SELECT count(*) FROM probe.inbox WHERE consumer_group = 'baton-lanes'")).scalar_one()
    assert claimed == 5, "every event was handled once, none dead-lettered"


class RecordingConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """A consumer that is never started: its assignment is set by the test, and the
    offsets it is asked to commit are recorded."""

    def __init__(self) -> None:
        super().__init__(bootstrap_servers="127.0.0.1:9", group_id="baton-probe")
        self.assigned: set[TopicPartition] = set()
        self.committed: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        self.committed.append(dict(offsets or {}))


def consumer_record(partition: TopicPartition, event: LeadCaptured) -> ConsumerRecord:
    """Return ``event`` as the first record of ``partition``."""
    return as_consumed(encode(event, source="/tests"), partition.partition, 0)


async def test_a_lane_starts_no_batch_from_a_revocation_until_the_next_assignment(
    engine: AsyncEngine,
) -> None:
    kept, moved = (TopicPartition(LeadCaptured.topic, p) for p in (1, 0))
    consumer = RecordingConsumer()
    consumer.assigned = {kept, moved}
    busy, release = asyncio.Event(), asyncio.Event()
    handled: list[str] = []

    async def handle(event: LeadCaptured, _: UnitOfWork) -> None:
        handled.append(event.profile.email)
        if event.profile.email.startswith("busy"):
            busy.set()
            await release.wait()

    definition = probe_service.definition()
    loop = ConsumerLoop(
        consumer, group_id="baton-probe", handlers={LeadCaptured.topic: handle},
        unit_of_work=unit_of_work_factory(engine, definition.tables, definition.source),
        retry=RetryPolicy(1, 0.01), batch_size=100, lanes=2)
    rebalance, stop = loop._rebalance, asyncio.Event()
    await rebalance.on_partitions_assigned(consumer.assigned)
    # Lane 0 handles a batch of the partition it keeps; the group starts a rebalance.
    lane_0 = asyncio.create_task(loop._handle_when_settled(
        0, {kept: [consumer_record(kept, lead_captured("busy@example.co.jp"))]}, stop))
    await asyncio.wait_for(busy.wait(), 30)
    revoking = asyncio.create_task(rebalance.on_partitions_revoked(consumer.assigned))
    await wait_until(lambda: _true(not rebalance.settled.is_set()), 30, "the revocation")
    # Lane 1 fetched a batch of the partition that moves; its lock is free, the gate is not.
    lane_1 = asyncio.create_task(loop._handle_when_settled(
        1, {moved: [consumer_record(moved, lead_captured("moved@example.co.jp"))]}, stop))
    release.set()
    await asyncio.wait_for(revoking, 30)
    assert consumer.committed == [{kept: 1}], "the batch in progress committed first"
    assert handled == ["busy@example.co.jp"], "no lane started a batch during the rebalance"

    consumer.assigned = {kept}
    await rebalance.on_partitions_assigned(consumer.assigned)
    await asyncio.wait_for(asyncio.gather(lane_0, lane_1), 30)
    assert handled == ["busy@example.co.jp"], "the moved partition's batch was dropped"
    assert consumer.committed == [{kept: 1}]


class ScriptedConsumer(RecordingConsumer):
    """A consumer whose fetches return records the test feeds, one partition per fetch
    as aiokafka drains them; it notes every fetch that asks for a partition whose
    fetched batch is not committed yet."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[TopicPartition, list[ConsumerRecord]] = {}
        self.fed = asyncio.Event()
        self.in_hand: set[TopicPartition] = set()
        self.fetched_twice: list[TopicPartition] = []

    def feed(self, partition: TopicPartition, event: LeadCaptured) -> None:
        self.pending.setdefault(partition, []).append(consumer_record(partition, event))
        self.fed.set()
        self.fed = asyncio.Event()

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[ConsumerRecord]]:
        self.fetched_twice += [tp for tp in partitions if tp in self.in_hand]
        ready = [tp for tp in partitions if self.pending.get(tp)]
        if not ready:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.fed.wait(), timeout_ms / 1000)
            return {}
        self.in_hand.add(ready[0])
        return {ready[0]: self.pending.pop(ready[0])}

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        await super().commit(offsets)
        self.in_hand.difference_update(offsets or {})


async def test_a_lane_lends_out_the_partitions_it_fetched_nothing_from_and_only_those(
    engine: AsyncEngine,
) -> None:
    first, second, third = (TopicPartition(LeadCaptured.topic, p) for p in range(3))
    consumer = ScriptedConsumer()
    consumer.assigned = {first, second, third}  # two lanes: two partitions each at most
    gates = {"first": asyncio.Event(), "second": asyncio.Event()}
    entered: dict[str, asyncio.Event] = {name: asyncio.Event() for name in gates}

    async def handle(event: LeadCaptured, _: UnitOfWork) -> None:
        name = event.profile.email.partition("@")[0]
        entered[name].set()
        await gates[name].wait()

    definition = probe_service.definition()
    loop = ConsumerLoop(
        consumer, group_id="baton-probe", handlers={LeadCaptured.topic: handle},
        unit_of_work=unit_of_work_factory(engine, definition.tables, definition.source),
        retry=RetryPolicy(1, 0.01), batch_size=100, lanes=2)
    await loop._rebalance.on_partitions_assigned(consumer.assigned)

    def milestones() -> set[str]:
        return ({name for name, event in entered.items() if event.is_set()}
                | ({"first commit"} if consumer.committed[:1] == [{first: 1}] else set())
                | ({"every commit"} if len(consumer.committed) == 3 else set()))

    async def reached(milestone: str) -> None:
        async def check() -> bool:
            assert consumer.fetched_twice == [], "a partition was fetched while in hand"
            return milestone in milestones()
        await wait_until(check, 30, milestone)

    stop = asyncio.Event()
    consumer.feed(first, lead_captured("first@example.co.jp"))
    lanes = asyncio.gather(*(loop._run_lane(lane, stop) for lane in range(2)))
    try:
        # One lane fetched the first partition together with the second, got only the
        # first's batch and is held up handling it; the other lane takes the second.
        await reached("first")
        consumer.feed(second, lead_captured("second@example.co.jp"))
        await reached("second")
        gates["first"].set()  # the first lane finishes while the other holds the second
        await reached("first commit")
        gates["third"], entered["third"] = asyncio.Event(), asyncio.Event()
        consumer.feed(third, lead_captured("third@example.co.jp"))  # both lanes fetch again
        await reached("third")
        gates["second"].set()
        gates["third"].set()
        await reached("every commit")
    finally:
        stop.set()
        await asyncio.wait_for(lanes, 30)


async def probe_loop(consumer: RecordingConsumer, engine: AsyncEngine) -> ConsumerLoop:
    """Return a one-lane loop of the probe service's handlers over ``consumer``, its
    partitions assigned."""
    definition = probe_service.definition()
    loop = ConsumerLoop(
        consumer, group_id="baton-probe", handlers=definition.handlers,
        unit_of_work=unit_of_work_factory(engine, definition.tables, definition.source),
        retry=RetryPolicy(1, 0.01), batch_size=100, lanes=1)
    await loop._rebalance.on_partitions_assigned(consumer.assigned)
    return loop


class LockingProbe:
    """A loop over a batch of two lead.captured events and a deal.recycled, noting each
    lock_first and handler call; its handler fails the first ``failures`` calls."""

    def __init__(self, engine: AsyncEngine, failures: int = 0,
                 failing_locks: frozenset[int] = frozenset(),
                 lock_error: Exception | None = None) -> None:
        captured, recycled = (TopicPartition(LeadCaptured.topic, 0),
                              TopicPartition(DealRecycled.topic, 0))
        self.consumer = RewindingConsumer()
        self.lock_error = lock_error or RuntimeError("lock timeout, say")
        self.consumer.assigned = {captured, recycled}
        self.calls: list[tuple[str, list[uuid.UUID]]] = []
        self.failures = failures
        self.failing_locks = failing_locks  # which lock_first calls fail, counted from 1
        self.locks = 0
        definition = probe_service.definition()
        self.loop = ConsumerLoop(
            self.consumer, group_id="baton-probe",
            handlers={LeadCaptured.topic: self.handle, DealRecycled.topic: self.handle},
            unit_of_work=unit_of_work_factory(engine, definition.tables, definition.source),
            retry=RetryPolicy(1, 0.01), batch_size=100, lock_first=self.lock_first)
        first, second = (lead_captured("first@example.co.jp"),
                         lead_captured("second@example.co.jp"))
        deal = DealRecycled(deal_id=uuid.uuid4(), lead_id=uuid.uuid4(),
                            recycled_at=datetime.now(UTC), last_phase=DealPhase.P2,
                            reason="no phase change for 90 days")
        self.lead_ids = [first.lead_id, second.lead_id, deal.lead_id]
        self.records = {captured: [as_consumed(encode(first, source="/tests"), 0, 0),
                                   as_consumed(encode(second, source="/tests"), 0, 1)],
                        recycled: [as_consumed(encode(deal, source="/tests"), 0, 0)]}

    async def lock_first(self, events: Sequence[LeadCaptured | DealRecycled], _: UnitOfWork
                         ) -> None:
        self.calls.append(("lock", [event.lead_id for event in events]))
        self.locks += 1
        if self.locks in self.failing_locks:
            raise self.lock_error

    async def handle(self, event: LeadCaptured | DealRecycled, _: UnitOfWork) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("deadlock detected, say")
        self.calls.append((event.topic, [event.lead_id]))

    async def handle_batch(self) -> None:
        """Handle the batch as a lane does."""
        await self.loop._rebalance.on_partitions_assigned(self.consumer.assigned)
        await self.loop._handle_when_settled(0, self.records, asyncio.Event())

    def handled_in_order(self) -> list[tuple[str, list[uuid.UUID]]]:
        """Return the handler calls expected of the batch, in order."""
        first, second, deal = self.lead_ids
        return [(LeadCaptured.topic, [first]), (LeadCaptured.topic, [second]),
                (DealRecycled.topic, [deal])]


async def test_lock_first_sees_a_batch_s_new_events_of_every_topic_before_any_handler(
    engine: AsyncEngine,
) -> None:
    probe = LockingProbe(engine)
    await probe.handle_batch()
    assert probe.calls == [("lock", probe.lead_ids), *probe.handled_in_order()]
    probe.calls.clear()
    await probe.handle_batch()  # fetched again
    assert probe.calls == [], "duplicates are neither locked for nor handled"


async def test_a_batch_handled_message_by_message_takes_its_locks_first_again(
    engine: AsyncEngine,
) -> None:
    # A batch that failed as a whole, by a deadlock say, goes message by message in a fresh
    # transaction: without its locks first, it could meet the same deadlock there.
    probe = LockingProbe(engine, failures=1)
    await probe.handle_batch()
    assert probe.calls == [("lock", probe.lead_ids), ("lock", probe.lead_ids),
                           *probe.handled_in_order()]


async def test_a_batch_whose_locks_fail_message_by_message_is_still_handled(
    engine: AsyncEngine,
) -> None:
    # The locks must not keep the messages from their retries and dead letters.
    probe = LockingProbe(engine, failures=1, failing_locks=frozenset({2}))
    await probe.handle_batch()
    assert probe.calls == [("lock", probe.lead_ids), ("lock", probe.lead_ids),
                           *probe.handled_in_order()]
    assert probe.consumer.committed, "the batch committed"


async def test_a_batch_whose_locks_deadlock_message_by_message_is_fetched_again(
    engine: AsyncEngine,
) -> None:
    # Handled unlocked, it would meet more deadlocks, and use up its messages' retries.
    probe = LockingProbe(engine, failures=1, failing_locks=frozenset({2}),
                         lock_error=asyncpg.DeadlockDetectedError("deadlock detected"))
    await probe.handle_batch()
    assert probe.calls == [("lock", probe.lead_ids), ("lock", probe.lead_ids)]
    assert sorted(offset for _, offset in probe.consumer.seeks) == [0, 0], "rewound"
    assert not probe.consumer.committed


class OutvotedConsumer(RecordingConsumer):
    """A consumer the group has moved on from: every commit fails."""

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        raise CommitFailedError("the group has rebalanced")


async def test_a_batch_whose_offsets_the_group_refuses_stays_committed_and_the_lane_goes_on(
    engine: AsyncEngine,
) -> None:
    partition = TopicPartition(LeadCaptured.topic, 0)
    consumer = OutvotedConsumer()
    consumer.assigned = {partition}
    loop = await probe_loop(consumer, engine)
    event = lead_captured("outvoted@example.co.jp")
    await loop._handle_when_settled(0, {partition: [consumer_record(partition, event)]},
                                    asyncio.Event())
    assert await received_counts(engine) == (1, 1), "the database kept the batch"


class OutvotedOnceConsumer(RecordingConsumer):
    """A consumer whose first commit fails, as when the group moved on; later ones pass."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = False

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        if not self.refused:
            self.refused = True
            raise CommitFailedError("the group has rebalanced")
        await super().commit(offsets)


class RewindingConsumer(RecordingConsumer):
    """A consumer that records where it is told to fetch from next."""

    def __init__(self) -> None:
        super().__init__()
        self.seeks: list[tuple[TopicPartition, int]] = []

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))


def consumed(topic: str) -> Counter[str]:
    """Return baton_consumer_messages_total of ``topic`` by outcome, as counted so far."""
    return Counter({outcome: REGISTRY.get_sample_value(
        "baton_consumer_messages_total", {"topic": topic, "outcome": outcome}) or 0.0
        for outcome in ("processed", "duplicate", "retried", "dead_lettered")})


async def test_a_batch_fetched_again_after_its_offset_commit_failed_is_counted_once(
    engine: AsyncEngine,
) -> None:
    partition = TopicPartition(LeadCaptured.topic, 0)
    consumer = OutvotedOnceConsumer()
    consumer.assigned = {partition}
    loop = await probe_loop(consumer, engine)
    batch = {partition: [consumer_record(partition, lead_captured("refetched@example.co.jp"))]}
    before = consumed(LeadCaptured.topic)
    await loop._handle_when_settled(0, batch, asyncio.Event())  # its offsets are refused
    await loop._handle_when_settled(0, batch, asyncio.Event())  # fetched again: committed
    counted = consumed(LeadCaptured.topic)
    counted.subtract(before)
    assert consumer.committed == [{partition: 1}]
    assert await received_counts(engine) == (1, 1), "handled once, then found in the inbox"
    assert +counted == Counter({"duplicate": 1}), "counted once, by the commit that passed"


async def test_a_batch_fetched_again_after_its_transaction_failed_to_commit_is_counted_once(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as connection:
        # PostgreSQL refuses the first transaction that recorded a lead, at its COMMIT
        # (a sequence's value survives the rollback).
        for statement in (
            "CREATE SEQUENCE probe.commits_refused",
            "CREATE FUNCTION probe.refuse_first_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN IF nextval('probe.commits_refused') = 1 THEN "
            "RAISE EXCEPTION 'the first commit is refused'; END IF; RETURN NULL; END $$",
            "CREATE CONSTRAINT TRIGGER refuse_first_commit AFTER INSERT ON probe.received "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "EXECUTE FUNCTION probe.refuse_first_commit()",
        ):
            await connection.exec_driver_sql(statement)
    partition = TopicPartition(LeadCaptured.topic, 0)
    consumer = RewindingConsumer()
    consumer.assigned = {partition}
    loop = await probe_loop(consumer, engine)
    batch = {partition: [consumer_record(partition, lead_captured("rewound@example.co.jp"))]}
    before = consumed(LeadCaptured.topic)
    await loop._handle_when_settled(0, batch, asyncio.Event())  # the commit is refused
    assert consumer.seeks == [(partition, 0)], "the batch was rewound to be fetched again"
    await loop._handle_when_settled(0, batch, asyncio.Event())  # fetched again: committed
    counted = consumed(LeadCaptured.topic)
    counted.subtract(before)
    assert consumer.committed == [{partition: 1}]
    assert await received_counts(engine) == (1, 1)
    assert +counted == Counter({"processed": 1}), "counted once, by the commit that passed"


async def _true(value: bool) -> bool:
    """Return ``value``: a condition for wait_until."""
    return value
