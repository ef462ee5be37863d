"""Dead letters listed and replayed with ``baton dlq``, against real PostgreSQL and a broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from baton import registry
from baton_runtime import migrations
from baton_runtime.consumer import ConsumerLoop, Handler, RetryPolicy
from baton_runtime.db import PlumbingTables, connect_driver, create_engine
from baton_runtime.dead_letters import (
    DeadLetter,
    DeadLetters,
    dead_letter,
    read_dead_letters,
    replay,
    undecodable_event_id,
)
from baton_runtime.kafka import (
    MAX_REQUEST_SIZE,
    KafkaPublisher,
    build_consumer,
    ensure_topics,
    record_size,
)
from baton_runtime.outbox import OutboxRelay
from baton_runtime.settings import RuntimeSettings
from baton_runtime.uow import UnitOfWork, unit_of_work_factory
from schemas.envelope import EnvelopeError, KafkaRecord, encode
from schemas.events import LeadCaptured, LeadScored, dead_letter_topic
from services.scoring import store as scoring_store
from tests.conftest import Infrastructure
from tests.support import probe_service
from tests.support.cli import run_baton
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
GIVING_UP = "baton-scoring"  # a real service's group: ``baton dlq`` knows its inbox
HANDLING = "baton-probe"  # another group on the same topic, which handles every event


class NotYetFixed(RuntimeError):
    """What the handler of the group that gives up raises until it is fixed."""


@contextlib.asynccontextmanager
async def consuming(settings: RuntimeSettings, engine: AsyncEngine, group: str,
                    tables: PlumbingTables, handler: Handler) -> AsyncIterator[None]:
    """Run a consumer loop of ``group`` and its outbox relay for the duration of the block."""
    loop = ConsumerLoop(build_consumer(settings, group, group), group_id=group,
                        handlers={LeadCaptured.topic: handler},
                        unit_of_work=unit_of_work_factory(engine, tables, "/tests"),
                        retry=RetryPolicy(2, 0.01), batch_size=10)
    publisher = KafkaPublisher(settings, group)
    await publisher.start()
    relay = OutboxRelay(tables, publisher, database_url=settings.database_url,
                        batch_size=10, poll_interval=0.2)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop.run(stop)), asyncio.create_task(relay.run(stop))]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await publisher.stop()


async def baton(infrastructure: Infrastructure, *arguments: str) -> tuple[int | None, str, str]:
    """Return the exit code, output and error output of the ``baton`` command."""
    done = await asyncio.to_thread(run_baton, infrastructure.environment(), *arguments)
    return done.returncode, done.stdout, done.stderr


async def test_a_replayed_dead_letter_is_handled_by_the_group_that_gave_up_and_only_by_it(
        infrastructure: Infrastructure) -> None:
    settings = infrastructure.settings(RuntimeSettings)
    await ensure_topics(settings)
    await asyncio.to_thread(migrations.upgrade, registry.migrations_dir("scoring"),
                            infrastructure.database_url)
    engine = create_engine(infrastructure.database_url)
    await probe_service.create_tables(engine)
    fixed, handled_elsewhere, handled_at_last = False, [], []

    async def until_fixed(event: LeadCaptured, uow: UnitOfWork) -> None:
        if not fixed:
            raise NotYetFixed(f"cannot handle {event.profile.email}\nyet")
        handled_at_last.append(event.lead_id)

    async def every_event(event: LeadCaptured, uow: UnitOfWork) -> None:
        handled_elsewhere.append(event.lead_id)

    event = lead_captured("山田@example.co.jp")
    record = encode(event, source="/tests")
    event_id = dict(record.headers)["ce_id"].decode()
    await produce(infrastructure.bootstrap_servers, [record])
    dead_letters = [dead_letter_topic(LeadCaptured.topic)]
    try:
        async with (consuming(settings, engine, GIVING_UP, scoring_store.plumbing, until_fixed),
                    consuming(settings, engine, HANDLING, probe_service.tables, every_event)):

            async def dead_lettered() -> bool:
                return bool((await read_dead_letters(settings.kafka_bootstrap_servers,
                                                     dead_letters)).letters)

            await wait_until(dead_lettered, 30, "the event's dead letter")
            [letter] = (await read_dead_letters(settings.kafka_bootstrap_servers,
                                                dead_letters)).letters
            assert (letter.consumer_group, letter.event_id, letter.attempts,
                    letter.error_type) == (GIVING_UP, event_id, 2, "NotYetFixed")
            assert letter.original == record, "the letter keeps the message as it was sent"
            code, out, _ = await baton(infrastructure, "dlq", "list")
            assert code == 0
            header, line = out.splitlines()
            assert header.split() == ["GROUP", "EVENT", "ID", "MESSAGE", "ATTEMPTS", "ERROR"]
            assert line.split()[:4] == [GIVING_UP, event_id,
                                        f"lead.captured[{letter.partition}]@0", "2"]
            assert line.endswith("NotYetFixed: cannot handle 山田@example.co.jp yet")

            fixed = True
            assert await baton(infrastructure, "dlq", "replay", event_id) == (
                0, f"replayed {event_id} to lead.captured for {GIVING_UP}\n", "")

            async def both_groups_past_the_replay() -> bool:
                return all([await committed_offsets(infrastructure.bootstrap_servers, group,
                                                    LeadCaptured.topic) == 2
                            for group in (GIVING_UP, HANDLING)])

            await wait_until(both_groups_past_the_replay, 30, "both groups to read the replay")
            assert handled_at_last == [event.lead_id], "the group that gave up handled it"
            assert handled_elsewhere == [event.lead_id], "the other group skipped the replay"

            assert await baton(infrastructure, "dlq", "replay", "--all") == (
                0, f"skipped {event_id} (lead.captured for {GIVING_UP}): handled or "
                "dead-lettered again since\n", "")
            assert len(await read_all(infrastructure.bootstrap_servers,
                                      LeadCaptured.topic)) == 2, "nothing published again"
    finally:
        await engine.dispose()


async def test_a_record_that_is_no_dead_letter_is_skipped_and_named(
        infrastructure: Infrastructure) -> None:
    await ensure_topics(infrastructure.settings(RuntimeSettings))
    stray = encode(lead_captured("stray@example.co.jp"), source="/tests")
    await produce(infrastructure.bootstrap_servers,
                  [stray._replace(topic=dead_letter_topic(stray.topic))], partition=1)
    code, out, err = await baton(infrastructure, "dlq", "list")
    assert (code, out.split()) == (0, ["GROUP", "EVENT", "ID", "MESSAGE", "ATTEMPTS", "ERROR"])
    assert err == ("baton dlq: skipped a record that is not a dead letter: "
                   "lead.captured.dlq[1]@0 has no baton_consumer_group, baton_original_topic, "
                   "baton_original_partition, baton_original_offset, baton_error_type, "
                   "baton_error, baton_attempts header\n")


async def test_topics_that_do_not_exist_hold_no_dead_letters(
        infrastructure: Infrastructure) -> None:
    found = await read_dead_letters(infrastructure.bootstrap_servers,
                                    [f"never-created-{uuid.uuid4()}.dlq"])
    assert found == DeadLetters([], [])


async def test_replaying_an_event_that_has_no_dead_letter_fails_and_says_so(
        infrastructure: Infrastructure) -> None:
    await ensure_topics(infrastructure.settings(RuntimeSettings))
    code, out, err = await baton(infrastructure, "dlq", "replay", "no-such-event")
    assert (code, out) == (1, "")
    assert err == "baton dlq replay: no dead letter of event no-such-event\n"


async def test_a_message_two_groups_gave_up_on_is_published_once(
        infrastructure: Infrastructure) -> None:
    # Undecodable, it has no event id of its own: each copy would be new to every group.
    original = encode(lead_captured("壊れ@example.co.jp"), source="/tests")._replace(
        value=b'{"not": "a lead"')
    event_id = undecodable_event_id(original.topic, 3, 41)
    letters = [DeadLetter.from_record(as_consumed(dead_letter(
        as_consumed(original, 3, 41), consumer_group=group, event_id=event_id,
        error=EnvelopeError("no lead"), attempts=1), 0, number))
        for number, group in enumerate(("baton-probe", "baton-other"))]
    engine = create_engine(infrastructure.database_url)
    await probe_service.create_tables(engine)
    await engine.dispose()
    connection = await connect_driver(infrastructure.database_url, "test")
    published: list[KafkaRecord] = []

    async def publish(records: Sequence[KafkaRecord]) -> None:
        published.extend(records)

    try:
        await connection.executemany(
            "INSERT INTO probe.inbox (consumer_group, event_id, topic, partition, \"offset\") "
            "VALUES ($1, $2, 'lead.captured', 3, 41)",
            [(letter.consumer_group, event_id) for letter in letters])
        assert await replay(letters, connection=connection, schema_of=lambda group: "probe",
                            publish=publish) == [True, True]
        assert await connection.fetchval("SELECT count(*) FROM probe.inbox") == 0
    finally:
        await connection.close()
    assert published == [original]


def padded_to(record: KafkaRecord, size: int) -> KafkaRecord:
    """Return ``record`` with blanks after its JSON value (still the same event), ``size``
    bytes as a Kafka record."""
    return record._replace(value=record.value + b" " * (size - record_size(record)))


def scoring_outbox_drained(engine: AsyncEngine) -> Callable[[], Awaitable[bool]]:
    """Return a check that the scoring service's outbox holds no row."""

    async def drained() -> bool:
        async with engine.connect() as connection:
            rows = await connection.exec_driver_sql("SELECT count(*) FROM scoring.outbox")
            return bool(rows.scalar_one() == 0)

    return drained


async def test_a_message_too_large_to_dead_letter_whole_leaves_its_value_on_its_topic(
        infrastructure: Infrastructure) -> None:
    settings = infrastructure.settings(RuntimeSettings)
    bootstrap = infrastructure.bootstrap_servers
    await ensure_topics(settings)
    await asyncio.to_thread(migrations.upgrade, registry.migrations_dir("scoring"),
                            infrastructure.database_url)
    engine = create_engine(infrastructure.database_url)
    fixed, handled_at_last = False, []

    async def until_fixed(event: LeadCaptured, uow: UnitOfWork) -> None:
        if not fixed:
            raise NotYetFixed("cannot handle it yet")
        handled_at_last.append(event.lead_id)

    async def handled() -> bool:
        return bool(handled_at_last)

    event = lead_captured("大きい@example.co.jp")
    # The broker takes it as it is; with a dead letter's headers added, no producer would.
    record = padded_to(encode(event, source="/tests"), MAX_REQUEST_SIZE - 100)
    event_id = dict(record.headers)["ce_id"].decode()
    await produce(bootstrap, [record])
    later = KafkaRecord(LeadScored.topic, b"later", (), b"queued after the dead letter")
    try:
        async with consuming(settings, engine, GIVING_UP, scoring_store.plumbing, until_fixed):

            async def dead_lettered() -> bool:
                async with engine.connect() as connection:
                    claims = await connection.exec_driver_sql(
                        "SELECT count(*) FROM scoring.inbox WHERE event_id = $1", (event_id,))
                    return bool(claims.scalar_one() == 1)

            await wait_until(dead_lettered, 30, "the message to be dead-lettered")
            async with unit_of_work_factory(engine, scoring_store.plumbing, "/tests")() as uow:
                uow.emit_record(later)
                await uow.commit()
            await wait_until(scoring_outbox_drained(engine), 15,
                             "the relay to publish the dead letter and the row after it")
            [published] = await read_all(bootstrap, LeadScored.topic)
            assert (published.key, published.value) == (later.key, later.value)
            [written] = await read_topic(bootstrap, dead_letter_topic(LeadCaptured.topic), 1)
            headers = dict(written.headers)
            assert (written.key, written.value) == (record.key, b"")
            assert headers["baton_value_omitted"] == str(len(record.value)).encode()
            assert "ce_id" not in headers, "the message's headers stay with it on its topic"

            [letter] = (await read_dead_letters(bootstrap, [written.topic])).letters
            assert (letter.event_id, letter.value_omitted, letter.message) == (
                event_id, len(record.value), (LeadCaptured.topic, letter.partition, 0))
            code, out, _ = await baton(infrastructure, "dlq", "list")
            assert code == 0
            assert out.splitlines()[1].split()[:6] == [
                GIVING_UP, event_id, f"lead.captured[{letter.partition}]@0",
                f"({len(record.value)}-byte", "value", "omitted)"]

            fixed = True
            assert await baton(infrastructure, "dlq", "replay", event_id) == (
                0, f"replayed {event_id} to lead.captured for {GIVING_UP}\n", "")
            await wait_until(handled, 30, "the group to handle the replayed message")
        assert handled_at_last == [event.lead_id]
        first, again = await read_all(bootstrap, LeadCaptured.topic)
        assert [(r.key, tuple(r.headers), r.value) for r in (first, again)] == [
            (record.key, record.headers, record.value)] * 2, (
            "the message read back from its topic was published again as it was")
    finally:
        await engine.dispose()


async def test_a_letter_whose_message_its_topic_no_longer_holds_is_refused_alone(
        infrastructure: Infrastructure) -> None:
    await ensure_topics(infrastructure.settings(RuntimeSettings))
    await asyncio.to_thread(migrations.upgrade, registry.migrations_dir("scoring"),
                            infrastructure.database_url)
    kept = encode(lead_captured("kept@example.co.jp"), source="/tests")
    lost = padded_to(encode(lead_captured("lost@example.co.jp"), source="/tests"),
                     MAX_REQUEST_SIZE)
    # Neither is on lead.captured: the whole letter is replayable, the cut one is not.
    places = {"kept": (0, 3), "lost": (1, 7)}
    ids = {name: dict(record.headers)["ce_id"].decode()
           for name, record in (("kept", kept), ("lost", lost))}
    letters = [dead_letter(as_consumed(record, *places[name]), consumer_group=GIVING_UP,
                           event_id=ids[name], error=NotYetFixed("no"), attempts=2)
               for name, record in (("kept", kept), ("lost", lost))]
    await produce(infrastructure.bootstrap_servers, letters, partition=0)
    connection = await connect_driver(infrastructure.database_url, "test")
    try:
        await connection.executemany(
            'INSERT INTO scoring.inbox (consumer_group, event_id, topic, partition, "offset") '
            "VALUES ($1, $2, 'lead.captured', $3, $4)",
            [(GIVING_UP, ids[name], *places[name]) for name in ("kept", "lost")])
        code, out, _ = await baton(infrastructure, "dlq", "list", "--json")
        assert code == 0
        listed = [json.loads(line) for line in out.splitlines()]
        assert [(line["original"], line["value_omitted"]) for line in listed] == [
            ("lead.captured[0]@3", None), ("lead.captured[1]@7", len(lost.value))]

        assert await baton(infrastructure, "dlq", "replay", "--all") == (
            1, f"replayed {ids['kept']} to lead.captured for {GIVING_UP}\n",
            f"baton dlq replay: cannot replay {ids['lost']} (lead.captured for {GIVING_UP}): "
            f"its letter omits the message's {len(lost.value)}-byte value, and "
            "lead.captured[1]@7 no longer holds the message\n")
        claims = await connection.fetch("SELECT event_id FROM scoring.inbox")
        assert [claim["event_id"] for claim in claims] == [ids["lost"]], (
            "the refused letter's claim is kept: it was not replayed")

        async def publish(records: Sequence[KafkaRecord]) -> None:
            raise AssertionError(f"published {records}")

        [cut] = [DeadLetter.from_record(as_consumed(letter, 0, 1)) for letter in letters
                 if not letter.value]
        with pytest.raises(ValueError, match="left out their messages' values"):
            await replay([cut], connection=connection, schema_of=lambda group: "scoring",
                         publish=publish)
        assert await connection.fetchval("SELECT count(*) FROM scoring.inbox") == 1
    finally:
        await connection.close()
    [republished] = await read_all(infrastructure.bootstrap_servers, LeadCaptured.topic)
    assert (republished.key, republished.value) == (kept.key, kept.value)
