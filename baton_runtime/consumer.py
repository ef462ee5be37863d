"""The consumer loop: batched, idempotent, dead-lettering, rebalance- and SIGTERM-safe."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from itertools import groupby
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError

from baton_runtime.db import RETRYABLE_SQLSTATES, sqlstate_of
from baton_runtime.dead_letters import dead_letter, undecodable_event_id
from baton_runtime.metrics import CONSUMED, CONSUMER_BATCH_SECONDS
from baton_runtime.uow import UnitOfWork, UnitOfWorkFactory
from schemas.envelope import decode

log = structlog.get_logger(__name__)

Handler = Callable[[Any, UnitOfWork], Awaitable[None]]
BatchHandler = Callable[[Sequence[Any], UnitOfWork], Awaitable[None]]
BatchHook = Callable[[Mapping[TopicPartition, int]], Awaitable[None]]
# Takes, before any handler runs, the locks a batch's new events (of every topic, in order)
# will need, in one order: a handler taking them as its events come can wait for one while
# holding another that a transaction waiting for it holds.
BatchLock = Callable[[Sequence[Any], UnitOfWork], Awaitable[None]]
EventT = TypeVar("EventT")
# A batch's messages by topic and outcome: added to CONSUMED once its offsets are committed.
Outcomes = Counter[tuple[str, str]]


async def _first_of(*events: asyncio.Event) -> None:
    """Return once any of ``events`` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing message is retried, and how long to wait between tries."""

    max_attempts: int
    backoff_seconds: float

    def delay(self, attempt: int) -> float:
        """Return the wait after failed ``attempt`` (1-based): exponential with jitter."""
        return float(self.backoff_seconds * 2 ** (attempt - 1) * random.uniform(0.5, 1.0))


@dataclass(frozen=True)
class Batched:
    """Marks a handler that takes a batch's new events of its topic in one call, in order.

    Handling many events at once lets a handler read and write with a few set-based
    statements per batch instead of a few round trips per event. The events of one
    key keep their order; a failing batch is retried event by event, each alone.
    """

    handle: BatchHandler


def distinct_runs(events: Sequence[EventT], key: Callable[[EventT], Hashable]
                  ) -> Iterator[list[EventT]]:
    """Yield ``events`` in order, cut into runs in which no key appears twice.

    A batched handler can write a run's rows in one statement (an upsert may touch
    a row once per statement) and still see each key's events in order.
    """
    run: list[EventT] = []
    keys: set[Hashable] = set()
    for event in events:
        if key(event) in keys:
            yield run
            run, keys = [], set()
        run.append(event)
        keys.add(key(event))
    if run:
        yield run


async def dispatch(handler: Handler | Batched, events: Sequence[Any], uow: UnitOfWork) -> None:
    """Run ``handler`` on ``events`` in order: once if it is batched, else once per event."""
    if isinstance(handler, Batched):
        await handler.handle(events, uow)
        return
    for event in events:
        await handler(event, uow)


def _decodable_events(messages: Iterable[ConsumerRecord]) -> list[Any]:
    """Return the events of the messages that decode, in order (the others are dead-lettered
    one by one)."""
    events = []
    for message in messages:
        try:
            events.append(decode(message.topic, message.key, message.headers, message.value).event)
        except Exception:  # as in _handle: what fails to decode has no event to lock for
            continue
    return events


async def handle_in_order(handlers: Mapping[str, Handler | Batched],
                          events: Sequence[tuple[str, Any]], uow: UnitOfWork,
                          lock_first: BatchLock | None = None) -> None:
    """Run ``lock_first`` on all the (topic, event) pairs, then each topic's handler on each
    run of its consecutive events, in order."""
    if lock_first is not None and events:
        await lock_first([event for _, event in events], uow)
    for topic, run in groupby(events, key=lambda item: item[0]):
        await dispatch(handlers[topic], [event for _, event in run], uow)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Holds a rebalance until every lane's batch in progress has committed its offsets,
    keeps lanes from starting a batch until the group has assigned partitions again,
    and wakes the lanes waiting for partitions when it does."""

    def __init__(self, lanes: int) -> None:
        self.locks = [asyncio.Lock() for _ in range(lanes)]
        self.assigned = asyncio.Event()
        self.settled = asyncio.Event()  # clear from a revocation until the next assignment
        self.reassigned = asyncio.Event()  # replaced by a fresh one at each assignment

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # First close the gate: a lane that gets its lock after another lane's batch
        # could otherwise start a batch whose offsets would be committed after the
        # group moved on.
        self.settled.clear()
        for lock in self.locks:
            async with lock:
                pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned.set()
        self.settled.set()
        self.reassigned.set()
        self.reassigned = asyncio.Event()


class PartitionCheckout:
    """The assigned partitions that no lane is fetching from or handling a batch of.

    A lane takes up to its share of the free ones of each topic (the topic's assigned
    partitions over the lanes, rounded up), those given back longest ago first,
    fetches from them, keeps those its batch came from until that batch is committed
    and gives the others back at once. A partition is in one lane's hands at a time,
    so its events keep their order; a lane that is idle takes partitions a busy lane
    is not using, so a backlog on a few partitions still keeps every lane working; and
    a partition just handled waits behind the others, so none is left unfetched while
    lanes keep taking the rest. A share per topic keeps a quiet topic's partitions
    from filling a lane's share while a busy topic waits.
    """

    def __init__(self, lanes: int) -> None:
        self._lanes = lanes
        self._held: set[TopicPartition] = set()
        self._given_back: dict[TopicPartition, int] = {}  # when, counted in give-backs
        self._give_backs = 0
        self.returned = asyncio.Event()  # replaced by a fresh one at each give-back

    def take(self, assignment: Collection[TopicPartition]) -> list[TopicPartition]:
        """Return (and hold) up to a lane's share of each topic's assigned partitions
        that nobody holds, those given back longest ago first."""
        taken: list[TopicPartition] = []
        for _, partitions in groupby(sorted(assignment), key=lambda tp: tp.topic):
            of_topic = list(partitions)
            share = -(-len(of_topic) // self._lanes)
            free = [tp for tp in of_topic if tp not in self._held]
            taken += sorted(free, key=lambda tp: self._given_back.get(tp, 0))[:share]
        self._held.update(taken)
        return taken

    def give_back(self, partitions: Iterable[TopicPartition]) -> None:
        """Free ``partitions`` for any lane, and wake the lanes waiting for some."""
        freed = self._held.intersection(partitions)
        if not freed:
            return
        self._give_backs += 1
        for partition in freed:
            self._given_back[partition] = self._give_backs
        self._held -= freed
        self.returned.set()
        self.returned = asyncio.Event()


class ConsumerLoop:
    """Consumes ``handlers``' topics for one consumer group.

    ``lanes`` fetch and handle batches concurrently, each in database transactions of
    its own: while one lane waits for the database, another's handlers run. Lanes take
    partitions from a ``PartitionCheckout``, so a partition's messages keep their order;
    different partitions never had one (two replicas interleave them too).

    Each batch is handled in one transaction: its event ids are claimed in the inbox
    at once, so redelivered events are skipped, and the handlers run (after
    ``lock_first``, if given, has taken the locks the new events need). If anything
    fails, the transaction's work is undone and the batch is handled again message
    by message, each in a savepoint, so a failing one is undone alone. A failure is
    retried with backoff; after the last attempt the message goes to ``<topic>.dlq``
    through the outbox with the error in its headers, and the partition moves on.
    Offsets are committed only after the transaction commits, and a batch's messages
    are counted (``CONSUMED``) only once its offsets are: a batch fetched again, after
    its transaction or its offset commit failed, is counted once.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        *,
        group_id: str,
        handlers: Mapping[str, Handler | Batched],
        unit_of_work: UnitOfWorkFactory,
        retry: RetryPolicy,
        batch_size: int,
        lanes: int = 1,
        after_db_commit: Sequence[BatchHook] = (),
        lock_first: BatchLock | None = None,
    ) -> None:
        self._consumer = consumer
        self._group_id = group_id
        self._handlers = dict(handlers)
        self._lock_first = lock_first
        self._unit_of_work = unit_of_work
        self._retry = retry
        self._batch_size = batch_size
        self._lanes = lanes
        self._after_db_commit = list(after_db_commit)
        self._rebalance = _Rebalance(lanes)
        self._checkout = PartitionCheckout(lanes)

    @property
    def assigned(self) -> bool:
        """Return True once the group has given this member its partitions."""
        return self._rebalance.assigned.is_set()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then finish the batches, commit and leave the group."""
        self._consumer.subscribe(topics=list(self._handlers), listener=self._rebalance)
        await self._consumer.start()
        try:
            await asyncio.gather(*(self._run_lane(lane, stop) for lane in range(self._lanes)))
        finally:
            await self._consumer.stop()  # leaves the group so partitions move at once

    async def _run_lane(self, lane: int, stop: asyncio.Event) -> None:
        """Fetch and handle batches of partitions no other lane holds, until ``stop``."""
        checkout = self._checkout
        while not stop.is_set():
            reassigned, returned = self._rebalance.reassigned, checkout.returned
            taken = checkout.take(self._consumer.assignment())
            if not taken:  # not assigned yet, or other lanes hold every partition
                await _first_of(reassigned, returned, stop)
                continue
            holding = taken
            try:
                batch = await self._consumer.getmany(*taken, timeout_ms=200,
                                                     max_records=self._batch_size)
                # Another lane may take these at once: only the batch's stay held here.
                checkout.give_back(tp for tp in taken if tp not in batch)
                holding = list(batch)
                if batch:
                    await self._handle_when_settled(lane, batch, stop)
            finally:
                checkout.give_back(holding)

    async def _handle_when_settled(self, lane: int,
                                   batch: dict[TopicPartition, list[ConsumerRecord]],
                                   stop: asyncio.Event) -> None:
        """Handle what of ``batch`` is still assigned, once no rebalance is under way.

        Dropped records were not committed: whoever holds their partitions fetches them.
        """
        rebalance = self._rebalance
        while not stop.is_set():
            if not rebalance.settled.is_set():
                await _first_of(rebalance.settled, stop)
            async with rebalance.locks[lane]:
                if not rebalance.settled.is_set():
                    continue  # a rebalance began while this lane waited for its lock
                assignment = self._consumer.assignment()
                batch = {tp: messages for tp, messages in batch.items() if tp in assignment}
                if batch:
                    await self._process_or_rewind(batch)
                return

    async def _process_or_rewind(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Handle and commit a batch; on an infrastructure error, rewind to re-fetch it."""
        started = time.perf_counter()
        outcomes: Outcomes = Counter()
        try:
            offsets = await self._process(batch, outcomes)
        except Exception:
            log.exception("batch failed before commit; re-fetching it", group=self._group_id)
            for partition, messages in batch.items():
                self._consumer.seek(partition, messages[0].offset)
            await asyncio.sleep(self._retry.delay(1) + 0.5)
            return
        for hook in self._after_db_commit:
            await hook(offsets)
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The group moved on (this member was too slow, say). The events are
            # committed in the database: whoever consumes them next skips them by the inbox.
            log.warning("offsets not committed: the group rebalanced", group=self._group_id,
                        error=repr(error))
            return
        log.debug("offsets committed", offsets={f"{tp.topic}/{tp.partition}": offset
                                                for tp, offset in offsets.items()})
        for (topic, outcome), count in outcomes.items():
            CONSUMED.labels(topic=topic, outcome=outcome).inc(count)
        CONSUMER_BATCH_SECONDS.observe(time.perf_counter() - started)

    async def _process(
        self, batch: dict[TopicPartition, list[ConsumerRecord]], outcomes: Outcomes
    ) -> dict[TopicPartition, int]:
        """Handle every message in one transaction, count each in ``outcomes``, and return
        the offsets to commit."""
        messages = [message for partition in batch.values() for message in partition]
        async with self._unit_of_work() as uow:
            try:
                outcomes.update(await self._handle_all_at_once(uow, messages))
            except Exception as error:
                # Something in the batch failed: undo it all and go message by message, so
                # only the failing one is retried and, in the end, dead-lettered.
                log.info("batch failed as a whole; handling it message by message",
                         error=repr(error), messages=len(messages))
                await uow.discard()
                if self._lock_first is not None:
                    await self._lock_before_one_by_one(uow, messages)
                for message in messages:
                    await self._handle(uow, message, outcomes)
            await uow.commit()
        return {partition: messages[-1].offset + 1 for partition, messages in batch.items()}

    async def _lock_before_one_by_one(self, uow: UnitOfWork,
                                      messages: list[ConsumerRecord]) -> None:
        """Take the batch's locks before it is handled message by message, or go on without
        them if that fails.

        A batch that failed by a deadlock would otherwise meet it again here; but a failure
        of the locks themselves must not keep its messages from their retries and, in the
        end, their dead letters. The database aborting them to break a deadlock is raised:
        the batch is fetched again, rather than handled unlocked into more deadlocks.
        """
        assert self._lock_first is not None
        try:
            await self._lock_first(_decodable_events(messages), uow)
        except Exception as error:
            if sqlstate_of(error) in RETRYABLE_SQLSTATES:
                raise
            log.warning("batch locks failed; handling it message by message without them",
                        error=repr(error), messages=len(messages))
            await uow.discard()

    async def _handle_all_at_once(self, uow: UnitOfWork, messages: list[ConsumerRecord]
                                  ) -> Outcomes:
        """Claim every event id in one statement, run the handlers and return each message's
        outcome; raise on any failure.

        The common case costs one round trip for the inbox per batch, not three per message;
        consecutive new events of a topic with a batched handler go to it in one call.
        """
        envelopes = [decode(m.topic, m.key, m.headers, m.value) for m in messages]
        fresh = await uow.claim_many(self._group_id, [
            (envelope.event_id, m.topic, m.partition, m.offset)
            for m, envelope in zip(messages, envelopes, strict=True)])
        outcomes: Outcomes = Counter()
        new: list[tuple[str, Any]] = []
        for message, envelope in zip(messages, envelopes, strict=True):
            if envelope.event_id in fresh:
                fresh.discard(envelope.event_id)  # the same event twice in a batch runs once
                new.append((message.topic, envelope.event))
                outcomes[message.topic, "processed"] += 1
            else:
                outcomes[message.topic, "duplicate"] += 1
        await handle_in_order(self._handlers, new, uow, self._lock_first)
        return outcomes

    async def _handle(self, uow: UnitOfWork, message: ConsumerRecord, outcomes: Outcomes
                      ) -> None:
        """Handle one message inside the batch's transaction, dead-lettering it if it fails;
        count its outcome in ``outcomes``."""
        topic = message.topic
        try:
            envelope = decode(topic, message.key, message.headers, message.value)
        except Exception as error:  # EnvelopeError, or what a header without a value raises
            # Decoding does no I/O: a malformed message fails the same way every time, so
            # no retries, and an error it raises must not rewind the batch for ever.
            event_id = undecodable_event_id(topic, message.partition, message.offset)
            await self._dead_letter(uow, message, event_id, error, attempts=1,
                                    outcomes=outcomes)
            return
        for attempt in range(1, self._retry.max_attempts + 1):
            try:
                async with uow.savepoint():
                    if not await uow.claim(self._group_id, envelope.event_id, topic,
                                           message.partition, message.offset):
                        outcomes[topic, "duplicate"] += 1
                        return
                    await dispatch(self._handlers[topic], [envelope.event], uow)
                outcomes[topic, "processed"] += 1
                return
            except Exception as error:
                log.warning("handler failed", topic=topic, event_id=envelope.event_id,
                            attempt=attempt, error=repr(error))
                if attempt == self._retry.max_attempts:
                    await self._dead_letter(uow, message, envelope.event_id, error, attempt,
                                            outcomes)
                    return
                outcomes[topic, "retried"] += 1
                await asyncio.sleep(self._retry.delay(attempt))

    async def _dead_letter(self, uow: UnitOfWork, message: ConsumerRecord, event_id: str,
                           error: Exception, attempts: int, outcomes: Outcomes) -> None:
        """Queue ``message`` for its dead-letter topic, mark it consumed and count it in
        ``outcomes``."""
        async with uow.savepoint():
            if not await uow.claim(self._group_id, event_id, message.topic, message.partition,
                                   message.offset):
                return
            uow.emit_record(dead_letter(message, consumer_group=self._group_id,
                                        event_id=event_id, error=error, attempts=attempts))
        outcomes[message.topic, "dead_lettered"] += 1
        log.error("message dead-lettered", topic=message.topic, partition=message.partition,
                  offset=message.offset, event_id=event_id, error=repr(error))
