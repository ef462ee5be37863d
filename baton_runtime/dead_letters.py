"""Dead letters: the messages a consumer group gave up on, listed, and replayed once fixed.

When a message keeps failing, the consumer loop claims its event id in the group's inbox
(so the partition moves on and a redelivery is skipped) and the outbox publishes it to
``<topic>.dlq``, with headers saying which group gave up, where the message was and why.
Replaying one releases that claim and publishes the original message to its topic again:
the group that gave up handles it anew, and every other group, which handled it the first
time, skips it as a duplicate. A letter is never larger than a Kafka request may be: one
that would be leaves the message's value on its topic, and replaying it reads the message
back from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from baton_runtime.kafka import MAX_REQUEST_SIZE, record_size
from schemas.envelope import EnvelopeError, KafkaRecord
from schemas.events import dead_letter_topic

MAX_ERROR_HEADER_BYTES = 4000
HEADER_PREFIX = "baton_"  # the dead-letter headers; the original message's follow none
REQUIRED_HEADERS = ("baton_consumer_group", "baton_original_topic",
                    "baton_original_partition", "baton_original_offset", "baton_error_type",
                    "baton_error", "baton_attempts")
# In a letter that left them out: the size in bytes of the message's value, and of its key.
VALUE_OMITTED = "baton_value_omitted"
KEY_OMITTED = "baton_key_omitted"


def undecodable_event_id(topic: str, partition: int, offset: int) -> str:
    """Return the event id the inbox claims for a message that could not be decoded."""
    return f"undecodable:{topic}:{partition}:{offset}"


def dead_letter(message: ConsumerRecord, *, consumer_group: str, event_id: str,
                error: Exception, attempts: int) -> KafkaRecord:
    """Return ``message`` as its dead-letter topic keeps it: as it was, plus why and where.

    A letter is never larger than ``MAX_REQUEST_SIZE``: the relay could not publish it,
    and would retry it, with every outbox row after it, for ever. When the whole message
    would make it so, the letter keeps the message's key and the ``baton_`` headers and
    leaves out the message's value and headers, saying so in ``baton_value_omitted`` (the
    value's size in bytes); the message stays on its topic at the partition and offset the
    letter names, for as long as the topic retains it. The headers always go with the
    value: they may be what is huge (a message of large headers and a small value). A key
    too large even then is left out too (``baton_key_omitted``, its size): what remains,
    the ``baton_`` headers, is bounded by MAX_ERROR_HEADER_BYTES and an event id's length.
    """
    description = f"{type(error).__name__}: {error}".encode()[:MAX_ERROR_HEADER_BYTES]
    why_and_where: tuple[tuple[str, bytes], ...] = (
        ("baton_error", description),
        ("baton_error_type", type(error).__name__.encode()),
        ("baton_attempts", str(attempts).encode()),
        ("baton_consumer_group", consumer_group.encode()),
        ("baton_event_id", event_id.encode()),
        ("baton_original_topic", message.topic.encode()),
        ("baton_original_partition", str(message.partition).encode()),
        ("baton_original_offset", str(message.offset).encode()),
    )
    topic, key, value = dead_letter_topic(message.topic), message.key or b"", message.value or b""
    # A header may have no value (None), kept as empty as a missing key or value is.
    headers = tuple((name, bytes(header or b"")) for name, header in message.headers or ())
    whole = KafkaRecord(topic=topic, key=key, headers=(*headers, *why_and_where), value=value)
    if record_size(whole) <= MAX_REQUEST_SIZE:
        return whole
    why_and_where += ((VALUE_OMITTED, str(len(value)).encode()),)
    without_value = KafkaRecord(topic=topic, key=key, headers=why_and_where, value=b"")
    if record_size(without_value) <= MAX_REQUEST_SIZE:
        return without_value
    return KafkaRecord(topic=topic, key=b"", value=b"",
                       headers=(*why_and_where, (KEY_OMITTED, str(len(key)).encode())))


class NotADeadLetter(ValueError):
    """A record on a dead-letter topic lacks what the consumer loop writes there."""


@dataclass(frozen=True)
class DeadLetter:
    """A message a consumer group gave up on, where its dead-letter topic keeps it."""

    dead_letter_topic: str
    dead_letter_partition: int
    dead_letter_offset: int
    consumer_group: str
    event_id: str
    partition: int  # where the original message was
    offset: int
    error_type: str
    error: str
    attempts: int
    # The message as it was first published; if ``value_omitted``, only its topic and key.
    original: KafkaRecord
    value_omitted: int | None = None  # the size of the value the letter left out

    @classmethod
    def from_record(cls, record: ConsumerRecord) -> DeadLetter:
        """Return the dead letter in ``record``; raise NotADeadLetter if it is not one."""
        headers = [(name, bytes(value or b"")) for name, value in record.headers or ()]
        ours = {name: value.decode(errors="replace") for name, value in headers
                if name.startswith(HEADER_PREFIX)}
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        if missing := [name for name in REQUIRED_HEADERS if name not in ours]:
            raise NotADeadLetter(f"{where} has no {', '.join(missing)} header")
        try:
            partition, offset, attempts = (int(ours[f"baton_{name}"]) for name in
                                           ("original_partition", "original_offset", "attempts"))
            value_omitted = int(ours[VALUE_OMITTED]) if VALUE_OMITTED in ours else None
        except ValueError:
            raise NotADeadLetter(f"{where} has a partition, offset, attempt count or omitted "
                                 "value's size that is not a number") from None
        topic = ours["baton_original_topic"]
        original = KafkaRecord(
            topic=topic, key=record.key or b"", value=record.value or b"",
            headers=tuple((name, value) for name, value in headers
                          if not name.startswith(HEADER_PREFIX)))
        event_id = ours.get("baton_event_id") or _claimed_before(
            original, ours["baton_error_type"], partition, offset)
        return cls(record.topic, record.partition, record.offset, ours["baton_consumer_group"],
                   event_id, partition, offset, ours["baton_error_type"], ours["baton_error"],
                   attempts, original, value_omitted)

    @property
    def message(self) -> tuple[str, int, int]:
        """Return where the original message was: topic, partition, offset."""
        return self.original.topic, self.partition, self.offset


def _claimed_before(original: KafkaRecord, error_type: str, partition: int,
                    offset: int) -> str:
    """Return the event id the consumer claimed for a letter written before letters named it:
    the message's ``ce_id``, or for a message it could not decode, one made of its place."""
    ce_id = dict(original.headers).get("ce_id")
    if ce_id and error_type != EnvelopeError.__name__:
        return ce_id.decode(errors="replace")
    return undecodable_event_id(original.topic, partition, offset)


class DeadLetters(NamedTuple):
    """What dead-letter topics hold: the letters, and what was not one (``NotADeadLetter``)."""

    letters: list[DeadLetter]
    unreadable: list[str]


@contextlib.asynccontextmanager
async def _reading(bootstrap_servers: str) -> AsyncIterator[AIOKafkaConsumer]:
    """Yield a started consumer of no group, which commits nothing; stop it after the block."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        await consumer.start()  # inside: a consumer that failed to start is stopped too
        yield consumer
        # Not stopped straight after starting: stop() awaits a task of the consumer's
        # own, which raises CancelledError if it is cancelled before its first step.
        await asyncio.sleep(0)
    finally:
        await consumer.stop()


async def read_dead_letters(bootstrap_servers: str, topics: Iterable[str], *,
                            timeout: float = 30.0) -> DeadLetters:
    """Return every dead letter ``topics`` hold now, in each partition's order.

    Reads without a consumer group, so nothing is committed and a letter is never used
    up. Topics that do not exist hold none. Raises TimeoutError if the broker does not
    hand over what it reported within ``timeout`` seconds.
    """
    found = DeadLetters([], [])
    async with _reading(bootstrap_servers) as consumer:
        partitions = [TopicPartition(topic, partition) for topic in topics
                      for partition in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return found
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while [p for p in partitions if await consumer.position(p) < ends[p]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"dead-letter topics not read to their end in {timeout:g} s")
            fetched = await consumer.getmany(*partitions, timeout_ms=1000)
            records += [record for batch in fetched.values() for record in batch]
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        try:
            found.letters.append(DeadLetter.from_record(record))
        except NotADeadLetter as error:
            found.unreadable.append(str(error))
    return found


async def read_originals(bootstrap_servers: str, letters: Sequence[DeadLetter], *,
                         timeout: float = 30.0) -> list[DeadLetter]:
    """Return ``letters``, each that left out its message's value now holding the message
    read back from its topic; one whose topic no longer holds it is returned as it was.

    Reads without a consumer group, as ``read_dead_letters`` does. A message is taken for
    the original only if its value is as large as the letter says: where a topic was
    deleted and created again, another message may be at that offset. Raises TimeoutError
    if the broker does not hand over a message it holds within ``timeout`` seconds.
    """
    sizes = {letter.message: letter.value_omitted for letter in letters
             if letter.value_omitted is not None}
    if not sizes:
        return list(letters)
    found: dict[tuple[str, int, int], KafkaRecord] = {}
    deadline = time.monotonic() + timeout
    async with _reading(bootstrap_servers) as consumer:
        partitions = sorted({TopicPartition(topic, partition) for topic, partition, _ in sizes
                             if partition in (consumer.partitions_for_topic(topic) or ())})
        if not partitions:
            return list(letters)
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        for (topic, partition, offset), size in sorted(sizes.items()):
            where = TopicPartition(topic, partition)
            if where not in starts or not starts[where] <= offset < ends[where]:
                continue  # its topic was deleted, or no longer retains it
            record = await _record_at(consumer, where, offset, deadline)
            if record is not None and len(record.value or b"") == size:
                found[topic, partition, offset] = KafkaRecord(
                    topic=topic, key=record.key or b"", value=record.value or b"",
                    headers=tuple((name, bytes(value or b"")) for name, value in record.headers))
    return [dataclasses.replace(letter, original=found[letter.message], value_omitted=None)
            if letter.value_omitted is not None and letter.message in found else letter
            for letter in letters]


async def _record_at(consumer: AIOKafkaConsumer, where: TopicPartition, offset: int,
                     deadline: float) -> ConsumerRecord | None:
    """Return the record at ``offset`` of an assigned partition, or None if compaction
    removed it; raise TimeoutError if none comes by ``deadline`` (a monotonic time)."""
    consumer.seek(where, offset)
    while not (fetched := await consumer.getmany(where, timeout_ms=1000, max_records=1)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{where.topic}[{where.partition}]@{offset} not read in time")
    [record] = fetched[where]
    return record if record.offset == offset else None


def release_statement(schema: str) -> str:
    """Return the statement releasing a dead letter's claim in ``schema``'s inbox.

    It answers whether the letter may be replayed: its claim was there and is gone, or
    no claim is there at all (an earlier replay released it and its message is not
    handled yet; the inbox lets one copy through). A claim from another message means the
    event was handled, or dead-lettered anew, since this letter was written.
    """
    return f"""
        WITH released AS (
            DELETE FROM "{schema}".inbox
            WHERE consumer_group = $1 AND event_id = $2 AND topic = $3
              AND partition = $4 AND "offset" = $5
            RETURNING 1)
        SELECT EXISTS (SELECT 1 FROM released) OR NOT EXISTS (
            SELECT 1 FROM "{schema}".inbox WHERE consumer_group = $1 AND event_id = $2)
    """


async def replay(letters: Sequence[DeadLetter], *, connection: asyncpg.Connection,
                 schema_of: Callable[[str], str],
                 publish: Callable[[Sequence[KafkaRecord]], Awaitable[None]]) -> list[bool]:
    """Replay each letter whose claim is still its own; return which were replayed.

    ``schema_of`` names the schema of a consumer group's inbox. Each claim is released
    and committed before its message is published, so a failed publish leaves nothing
    claimed, and replaying again sends it. A message several groups gave up on is
    published once: an undecodable one has no event id of its own, and each copy would
    be new to every group. Raises ValueError, before releasing anything, if a letter
    left out its message's value: its empty value is not the event (``read_originals``
    reads the message back).
    """
    if omitted := [letter.event_id for letter in letters if letter.value_omitted is not None]:
        raise ValueError(f"the letters of {', '.join(omitted)} left out their messages' "
                         "values: read the messages back from their topics first")
    replayed, published = [], set()
    for letter in letters:
        released = await connection.fetchval(
            release_statement(schema_of(letter.consumer_group)), letter.consumer_group,
            letter.event_id, letter.original.topic, letter.partition, letter.offset)
        if released and letter.message not in published:
            await publish([letter.original])
            published.add(letter.message)
        replayed.append(bool(released))
    return replayed
