"""Single captures recorded in groups write and emit what one capture at a time did.

The reference is the path captures took before: baton_runtime's GroupCommit running
``handlers.record_submitted`` for each capture in turn. The same captures go through
GroupCommit with ``handlers.record_all`` on a second database, and both databases must
then hold the same leads, touchpoints, idempotency records and outbox rows.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton import registry
from baton.demo import TrafficGenerator
from baton_runtime import migrations
from baton_runtime.db import create_engine, driver_of
from baton_runtime.group_commit import GroupCommit, Work, run_each
from baton_runtime.uow import UnitOfWork, UnitOfWorkFactory, unit_of_work_factory
from services.ingest import handlers, main
from services.ingest.handlers import Capture, Outcome, Submitted
from services.ingest.settings import IngestSettings
from services.ingest.submissions import ActivitySubmission, LeadSubmission
from tests.support.infrastructure import PostgresServer

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=UTC)


@dataclass(frozen=True)
class Database:
    """A migrated ingest database and the unit of work the service opens on it."""

    engine: AsyncEngine
    unit_of_work: UnitOfWorkFactory


async def database(postgres: PostgresServer) -> Database:
    """Return a fresh, migrated ingest database."""
    url = await postgres.create_database()
    await asyncio.to_thread(migrations.upgrade, registry.migrations_dir("ingest"), url)
    definition = main.definition(IngestSettings(database_url=url,
                                                kafka_bootstrap_servers="127.0.0.1:9"))
    engine = create_engine(url, pool_size=2)
    return Database(engine, unit_of_work_factory(engine, definition.tables, definition.source))


@pytest.fixture
async def databases(postgres: PostgresServer) -> AsyncIterator[tuple[Database, Database]]:
    one, other = await database(postgres), await database(postgres)
    yield one, other
    await one.engine.dispose()
    await other.engine.dispose()


def lead(body: dict[str, Any], *, source: str = "web", key: str | None = None) -> Capture:
    """Return the capture of a /v1/leads body."""
    return handlers.lead_capture(LeadSubmission.model_validate(body), source=source, now=NOW,
                                 idempotency_key=key)


def activity(body: dict[str, Any], *, source: str = "ma-tool", key: str | None = None
             ) -> Capture:
    """Return the capture of a /v1/activities body."""
    return handlers.activity_capture(ActivitySubmission.model_validate(body), source=source,
                                     now=NOW, idempotency_key=key)


def demo_captures(seed: int, count: int) -> list[Submitted]:
    """Return the demo generator's mix: new leads, and activities of leads seen before."""
    stream = iter(TrafficGenerator(seed, now=NOW))
    captures = []
    for _ in range(count):
        submission = next(stream)
        make = lead if submission.path == "/v1/leads" else activity
        captures.append(Submitted(make(submission.body)))
    return captures


def awkward_captures() -> list[Submitted]:
    """Return captures of the same few leads: Japanese text, full-width digits, time zones,
    free mail whose company becomes known, repeated and conflicting idempotency keys,
    signed requests, replayed signatures and a signed request resent with its key."""
    # Full width, and one lead with the next capture's address.
    taro = "ｔａｒｏ．ｙａｍａｄａ＠Ｅｘａｍｐｌｅ．ｃｏ．ｊｐ"
    hanako = "hanako.suzuki@gmail.com"
    return [
        Submitted(lead({"email": taro, "name": "山田　太郎", "phone": "０３－１２３４－５６７８",
                        "company": "株式会社　サンプル", "title": "部長",
                        "touchpoint": {"type": "download.industry_report",
                                       "occurred_at": "2026-11-20T18:30:00.000001+09:00"}})),
        Submitted(lead({"email": "taro.yamada@example.co.jp", "department": "営業本部",
                        "consent": False, "utm_source": "ｎｅｗｓｌｅｔｔｅｒ"})),
        Submitted(lead({"email": hanako, "name": "鈴木 花子", "source": "展示会"})),
        Submitted(activity({"email": hanako, "type": "page_view.pricing", "asset_id": "/pricing",
                            "occurred_at": "2026-11-19T23:59:59.999999-03:30"})),
        Submitted(lead({"email": hanako, "company": "ＡＢＣ商事(株)", "campaign": "秋の展示会"})),
        Submitted(lead({"email": hanako, "company_domain": "https://www.ABC-shoji.co.jp/"})),
        Submitted(lead({"email": "kenji@yahoo.co.jp", "company": "サンプル"}, key="form-1")),
        Submitted(lead({"email": "kenji@yahoo.co.jp", "company": "サンプル"}, key="form-1")),
        Submitted(lead({"email": "kenji@yahoo.co.jp", "company": "別会社"}, key="form-1")),
        Submitted(activity({"email": taro, "type": "webinar.product_demo", "interacted": True,
                            "occurred_at": "2026-11-20T10:00:00+05:45"}, key="evt-9")),
        Submitted(activity({"email": "taro.yamada@example.co.jp", "type": "appointment.set",
                            "partner_notes": {"budget": "年間５００万円", "need": "ＳＦＡ連携"}}),
                  signature=("key_partner", "v1=aaaa")),
        Submitted(lead({"email": hanako, "title": "Manager"}), signature=("key_partner", "v1=bb")),
        Submitted(lead({"email": hanako, "title": "Director"}),
                  signature=("key_partner", "v1=aaaa")),  # replayed
        Submitted(lead({"email": hanako, "title": "Director"}, source="partner", key="p-1"),
                  signature=("key_partner", "v1=cc")),
        Submitted(lead({"email": hanako, "title": "Director"}, source="partner", key="p-1"),
                  signature=("key_partner", "v1=cc")),  # resent: the first answer
        Submitted(lead({"email": hanako, "title": "Director"}, source="partner", key="p-2"),
                  signature=("key_partner", "v1=cc")),  # resent under an unknown key
        Submitted(lead({"email": taro, "region": "関東"})),
    ]


Answer = tuple[str, Any]


def answer(result: Outcome | BaseException) -> Answer:
    """Return what a caller got, comparable across databases (event ids differ)."""
    if isinstance(result, BaseException):
        return "raised", type(result).__name__
    return "accepted", (result.accepted.lead_id, result.replayed, result.resent)


async def through_group_commit(db: Database, captures: Sequence[Submitted],
                               group: int) -> list[Outcome | BaseException]:
    """Record the captures as the service did before: each caller's work in turn."""
    commits: GroupCommit[Work[Outcome], Outcome] = GroupCommit(run_each, max_group=group)

    def work(item: Submitted) -> Work[Outcome]:
        async def record(uow: UnitOfWork) -> Outcome:
            return await handlers.record_submitted(uow, item)
        return record

    return await asyncio.gather(*(commits.run(db.unit_of_work, work(item))
                                  for item in captures), return_exceptions=True)


async def through_record_all(db: Database, captures: Sequence[Submitted],
                                  group: int) -> list[Outcome | BaseException]:
    """Record the captures as the service does, concurrently: a group to record_all."""
    commits = GroupCommit(handlers.record_all, max_group=group)
    return await asyncio.gather(*(commits.run(db.unit_of_work, item) for item in captures),
                                return_exceptions=True)


async def contents(db: Database) -> dict[str, Any]:
    """Return what a database holds, with each event id replaced by its position in the
    outbox (ids are random; which touchpoint carries which event's id is kept)."""
    async with db.engine.connect() as connection:
        async def rows(query: str) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in await connection.execute(text(query))]

        outbox = await rows("SELECT topic, key, header_names, header_values, value "
                            "FROM ingest.outbox ORDER BY id")
        position = {}
        events = []
        for index, (topic, key, names, values, value) in enumerate(outbox):
            headers = dict(zip(names, (bytes(v) for v in values), strict=True))
            position[headers.pop("ce_id").decode()] = index
            headers.pop("ce_time")
            events.append((topic, bytes(key), headers, json.loads(bytes(value))))
        touchpoints = sorted(
            (position[event_id], lead_id, source, type_, occurred_at, payload)
            for event_id, lead_id, source, type_, occurred_at, payload in await rows(
                "SELECT event_id, lead_id, source, type, occurred_at, payload "
                "FROM ingest.touchpoints"))
        keys = sorted(
            (source, key, fingerprint, lead_id, None if event_id is None else position[event_id])
            for source, key, fingerprint, lead_id, event_id in await rows(
                "SELECT source, key, fingerprint, lead_id, event_id "
                "FROM ingest.idempotency_keys"))
        return {
            "leads": await rows("SELECT lead_id, email, account_key, profile "
                                "FROM ingest.leads ORDER BY lead_id"),
            "touchpoints": touchpoints, "events": events, "idempotency_keys": keys,
            "signatures": await rows("SELECT scope, signature FROM ingest.request_signatures "
                                     "ORDER BY scope, signature"),
        }


async def check_same(databases: tuple[Database, Database], captures: Sequence[Submitted],
                     group: int) -> list[Outcome | BaseException]:
    """Record ``captures`` both ways; check answers and databases are the same; return
    the answers of the grouped path."""
    before, now = databases
    emitted = len((await contents(now))["events"])
    expected = await through_group_commit(before, captures, group)
    got = await through_record_all(now, captures, group)
    assert [answer(result) for result in got] == [answer(result) for result in expected]
    expected_contents, got_contents = await contents(before), await contents(now)
    assert got_contents == expected_contents
    assert len(got_contents["events"]) - emitted == sum(
        1 for result in got if isinstance(result, Outcome) and not result.replayed)
    # Each answer names the event (and touchpoint) its capture wrote.
    async with now.engine.connect() as connection:
        stored = {event_id: lead_id for event_id, lead_id in await connection.execute(
            text("SELECT event_id, lead_id FROM ingest.touchpoints"))}
    for result in got:
        if isinstance(result, Outcome) and not result.replayed:
            assert stored[result.accepted.event_id] == result.accepted.lead_id
    return got


@pytest.mark.parametrize("group", [100, 7, 2])
async def test_groups_of_captures_write_and_emit_what_captures_one_by_one_did(
        databases: tuple[Database, Database], group: int) -> None:
    captures = demo_captures(seed=group, count=300)
    awkward = awkward_captures()
    mixed = list(captures)
    for index, item in enumerate(awkward):  # spread among the demo's, in their order
        mixed.insert(index * 21, item)
    await check_same(databases, mixed, group)


async def test_many_captures_of_few_leads_in_shuffled_orders(
        databases: tuple[Database, Database]) -> None:
    shuffler = random.Random(7)
    captures = demo_captures(seed=11, count=120) + awkward_captures()
    for _ in range(3):
        shuffler.shuffle(captures)
        await check_same(databases, captures, 100)


async def test_a_capture_the_database_refuses_fails_alone_and_writes_nothing(
        databases: tuple[Database, Database]) -> None:
    # JSONB refuses the NUL character the name carries: the statement of the whole group
    # fails, and each capture is then recorded alone. (Validation refuses a NUL too; the
    # copy, not validated, stands for anything only the database refuses.)
    valid = LeadSubmission.model_validate({"email": "nul@example.com", "name": "ab"})
    refused = Submitted(handlers.lead_capture(valid.model_copy(update={"name": "a\x00b"}),
                                              source="web", now=NOW, idempotency_key=None))
    captures = demo_captures(seed=3, count=20)
    captures.insert(5, refused)
    results = await check_same(databases, captures, 100)
    assert isinstance(results[5], Exception)
    assert all(isinstance(result, Outcome) for index, result in enumerate(results)
               if index != 5)
    async with databases[1].engine.connect() as connection:
        written = (await connection.execute(text(
            "SELECT count(*) FROM ingest.leads WHERE email = 'nul@example.com'"))).scalar_one()
    assert written == 0


async def test_a_resent_signed_batch_is_answered_with_one_query_whatever_its_size(
        postgres: PostgresServer) -> None:
    # Whoever saw a signed batch may send it again within the signature's five minutes,
    # as often as they like (a resend spends no rate limit): answering it must cost what
    # refusing it did, not a query per line.
    db = await database(postgres)
    captures = [lead({"email": f"resent-{n}@example.co.jp"}, key=f"evt-{n}") for n in range(50)]
    other = lead({"email": "resent-other@example.co.jp"}, key="evt-7")  # line 7, other body
    try:
        async with db.unit_of_work() as uow:
            first = [await handlers.record(uow, capture) for capture in captures]
            await uow.commit()
        # Statements go to the database through SQLAlchemy (counted by its event) or to the
        # driver directly (baton_runtime.db.fetchrow, logged by the driver).
        queries: list[str] = []

        def through_sqlalchemy(*arguments: Any) -> None:
            queries.append(arguments[2])

        def through_the_driver(record: Any) -> None:
            if record.query.split()[0] not in {"BEGIN", "COMMIT", "ROLLBACK"}:
                queries.append(record.query)

        async with db.unit_of_work() as uow:
            driver = await driver_of(uow.connection)
            driver.add_query_logger(through_the_driver)
            event.listen(db.engine.sync_engine, "before_cursor_execute", through_sqlalchemy)
            try:
                answers = await handlers.earlier_answers(
                    uow, [*captures[:7], other, *captures[8:]])
            finally:
                event.remove(db.engine.sync_engine, "before_cursor_execute",
                             through_sqlalchemy)
                driver.remove_query_logger(through_the_driver)
        assert len(queries) == 1, queries
        assert [a.accepted if a else None for a in answers] == [
            o.accepted if n != 7 else None for n, o in enumerate(first)]
        async with db.unit_of_work() as uow:
            with pytest.raises(handlers.ReplayedSignature):
                await handlers.earlier_answers(uow, [*captures, lead(
                    {"email": "resent-new@example.co.jp"}, key="evt-never-recorded")])
    finally:
        await db.engine.dispose()
