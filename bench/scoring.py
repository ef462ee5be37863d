"""Benchmark: scoring throughput through the real consumer loop and database, in events/s.

Beside it, measured in the same run on the same topic: raw aiokafka consumption,
the consumer loop with a handler that does nothing (the runtime's own cost per
event), and a bare asyncpg batch write of exactly the rows the scoring handler
wrote (inbox, activity ledger, lead upserts, outbox, review requests), as many events
a transaction as scoring's batches hold (BATON_CONSUMER_BATCH_SIZE, 1,000 by default).
Scoring and the bare write are measured in nine rounds, each pair back to back,
and judged on the round of the median ratio. After each round the decay sweep
re-scores every lead it made (leads/s, the median): the same scoring code, with
its database round trips paid per batch instead of per event.

    uv run python -m bench.scoring            # 10,000 lead.captured events, 1,000 leads
    uv run python -m bench.scoring --quick    # 500 events, one round, a few seconds

Uses the PostgreSQL server and broker of BATON_DATABASE_URL and
BATON_KAFKA_BOOTSTRAP_SERVERS if set (in scratch databases it drops afterwards),
else starts embedded ones.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import func, select

from baton_runtime.clock import system_clock
from baton_runtime.consumer import ConsumerLoop, Handler, RetryPolicy
from baton_runtime.db import connect_driver, create_engine
from baton_runtime.kafka import build_consumer, ensure_topics
from baton_runtime.logging import configure_logging
from baton_runtime.service import ServiceContext, run_on_uvloop, settle_garbage_collector
from baton_runtime.uow import UnitOfWork, unit_of_work_factory
from bench.harness import Measurement, machine, middle, report, scratch_database, servers
from schemas.envelope import encode
from schemas.events import Account, LeadCaptured, LeadProfile, Touchpoint, TouchpointType
from services.scoring import handlers, main, store
from services.scoring.model import ActiveModel
from services.scoring.settings import ScoringSettings

FULL_EVENTS = 10_000
QUICK_EVENTS = 500
# Each consumer loop stops here if it has not finished: the run stays within a few
# minutes (a few seconds quick) even on a busy machine, and rates count only committed
# events.
FULL_BUDGET = 40.0
QUICK_BUDGET = 8.0
# Rounds of one run have ranged from 0.31 to 0.62 of the bare write on this shared
# machine: the median of five moved less between runs than that of three, and still
# 0.44 to 0.51 in one hour; nine rounds take about 75 seconds.
FULL_ROUNDS = 9
EVENTS_PER_LEAD = 10
LEADS_PER_ACCOUNT = 4
TARGET_EVENTS_PER_SECOND = 5_000
T = TouchpointType
# A plausible inbound mix: mostly views and e-mail, a few downloads, webinars, inquiries.
MIX = {T.PAGE_VIEW_BLOG: 20, T.PAGE_VIEW_OTHER: 12, T.PAGE_VIEW_PRICING: 8,
       T.PAGE_VIEW_CASE_STUDY: 6, T.EMAIL_OPEN: 22, T.EMAIL_CLICK: 10,
       T.DOWNLOAD_BEGINNER_GUIDE: 4, T.DOWNLOAD_INDUSTRY_REPORT: 3,
       T.DOWNLOAD_IMPLEMENTATION_GUIDE: 2, T.WEBINAR_TREND_SEMINAR: 3, T.WEBINAR_ARCHIVE: 3,
       T.WEBINAR_PRODUCT_DEMO: 2, T.INQUIRY_GENERAL: 2, T.INQUIRY_DEMO_REQUEST: 1,
       T.INQUIRY_QUOTE_REQUEST: 1, T.APPOINTMENT_SET: 1}
TITLES = ("部長", "課長", "担当", "代表取締役", "Manager", "Engineer", None)
INDUSTRIES = ("製造業", "情報通信業", "小売業", "金融業", None)
BANDS = ("1-9", "10-99", "100-499", "500-999", "1000+", None)


def workload(count: int, now: datetime, seed: int = 4) -> list[LeadCaptured]:
    """Return ``count`` lead.captured events: leads in accounts, each lead's in time order."""
    rng = random.Random(seed)
    leads = max(1, count // EVENTS_PER_LEAD)
    people = []
    for number in range(leads):
        domain = f"company{number // LEADS_PER_ACCOUNT:05d}.co.jp"
        people.append((
            uuid.UUID(int=rng.getrandbits(128), version=4),
            LeadProfile(email=f"person{number}@{domain}", name=f"山田 太郎{number}",
                        company=f"株式会社サンプル{number // LEADS_PER_ACCOUNT}",
                        title=rng.choice(TITLES), industry=rng.choice(INDUSTRIES),
                        employee_band=rng.choice(BANDS)),
            Account(account_key=f"domain:{domain}", domain=domain,
                    company_name=f"株式会社サンプル{number // LEADS_PER_ACCOUNT}")))
    kinds, weights = list(MIX), list(MIX.values())
    events: list[LeadCaptured] = []
    for step in range(count // leads + 1):
        for lead_id, profile, account in people:
            if len(events) == count:
                return events
            occurred_at = now - timedelta(days=60) + timedelta(days=6) * step
            events.append(LeadCaptured(
                lead_id=lead_id, source="bench", profile=profile, account=account,
                touchpoint=Touchpoint(type=rng.choices(kinds, weights)[0],
                                      occurred_at=occurred_at + timedelta(hours=rng.random()),
                                      asset_id=f"asset-{rng.randrange(5)}")))
    return events


async def publish(bootstrap: str, events: Sequence[LeadCaptured]) -> None:
    """Put the events on their topic, keyed by lead, and wait for every ack."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        acks = []
        for item in events:
            record = encode(item, source="/bench")
            acks.append(await producer.send(record.topic, record.value, key=record.key,
                                            headers=list(record.headers)))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def raw_consumption(bootstrap: str, count: int) -> float:
    """Return events/s of a bare aiokafka consumer reading the topic from the start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_poll_records=500)
    await consumer.start()
    try:
        partitions = [TopicPartition(LeadCaptured.topic, p)
                      for p in consumer.partitions_for_topic(LeadCaptured.topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen, started = 0, time.perf_counter()
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            seen += sum(len(records) for records in batch.values())
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class LoopRun:
    """One consumer loop's pass over the topic (or as much of it as its time allowed)."""

    events: int
    events_per_second: float
    cpu_share: float


async def consume_with(settings: ScoringSettings, group: str, count: int, budget: float,
                       handlers: Mapping[str, Handler] | None = None) -> LoopRun:
    """Consume the topic in a group of its own, from assignment until done or out of time.

    The clock stops when the transaction holding the topic's last event commits; out of
    time, the loop finishes and commits its batch first. The events counted are those
    whose inbox rows committed. Without ``handlers`` it is scoring as deployed: its
    start-up hooks and handlers.
    """
    definition = main.definition(settings)
    engine = create_engine(settings.database_url)
    unit_of_work = unit_of_work_factory(engine, definition.tables, definition.source)
    if handlers is None:
        context = ServiceContext("scoring", settings, engine, unit_of_work, definition.clock)
        for hook in definition.startup:
            await hook(context)
    # As a deployed service's start-up ends (unfrozen, this process's start-up heap made
    # each full collection during the run walk 130,000+ objects, about 140 ms each).
    settle_garbage_collector()
    # The group is new and the topic holds exactly ``count`` events from offset 0, so the
    # committed offsets add up to the events whose transactions committed.
    committed: dict[TopicPartition, int] = {}
    all_committed = asyncio.Event()
    clock_stopped: tuple[float, float] | None = None  # (wall, CPU) once all committed

    async def note_commit(offsets: Mapping[TopicPartition, int]) -> None:
        """Note a batch's committed offsets; stop the clock once all events committed."""
        nonlocal clock_stopped
        committed.update(offsets)
        if clock_stopped is None and sum(committed.values()) >= count:
            clock_stopped = (time.perf_counter(), time.process_time())
            all_committed.set()

    loop = ConsumerLoop(build_consumer(settings, group, "bench"), group_id=group,
                        handlers=handlers or definition.handlers, unit_of_work=unit_of_work,
                        retry=RetryPolicy(settings.consumer_max_attempts, 0.01),
                        batch_size=settings.consumer_batch_size, lanes=settings.consumer_lanes,
                        after_db_commit=[note_commit])
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        try:
            while not loop.assigned:  # noqa: ASYNC110 - the loop offers no event to wait on
                await asyncio.sleep(0.01)
            started, cpu_started = time.perf_counter(), time.process_time()
            waiting = asyncio.create_task(all_committed.wait())
            await asyncio.wait([waiting, running], timeout=budget,
                               return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if running.done():
                running.result()  # the loop died: raise why
        finally:
            stop.set()
            await running  # it finishes and commits its batch
        # Leaving the group (after a fetch of up to 200 ms notices the stop) is not
        # consuming: when every event committed in time, the clock stopped then.
        ended, cpu_ended = clock_stopped or (time.perf_counter(), time.process_time())
        async with engine.connect() as connection:
            done = (await connection.execute(
                select(func.count()).select_from(store.plumbing.inbox)
                .where(store.plumbing.inbox.c.consumer_group == group))).scalar_one()
    finally:
        await engine.dispose()
    elapsed = ended - started
    return LoopRun(done, done / elapsed, (cpu_ended - cpu_started) / elapsed)


async def sweep_everything(settings: ScoringSettings) -> float:
    """Return leads/s of the decay sweep re-scoring every lead at once: the batched path."""
    definition = main.definition(settings)
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            leads = (await connection.execute(
                store.leads.update().values(next_review_at=func.now()))).rowcount
        unit_of_work = unit_of_work_factory(engine, definition.tables, definition.source)
        active = ActiveModel(settings.scoring_model(), settings.scoring_reason_locale)
        started = time.perf_counter()
        swept = await handlers.sweep(unit_of_work, active, system_clock,
                                     settings.scoring_sweep_batch_size)
        elapsed = time.perf_counter() - started
    finally:
        await engine.dispose()
    # A lead whose review time comes again while the sweep runs (its next change a second
    # away, say) is swept again: of 30,000 events' 3,000 leads, one was.
    assert swept >= leads, f"swept {swept} of {leads} leads"
    return leads / elapsed


async def nothing(_: LeadCaptured, __: UnitOfWork) -> None:
    """Handle an event by doing nothing: what is left is the runtime's own work."""


TABLES = ("inbox", "activities", "leads", "outbox", "review_requests")


async def written_rows(database_url: str) -> dict[str, list[asyncpg.Record]]:
    """Return, in write order, the rows the scoring handler left in its tables."""
    connection = await connect_driver(database_url, "bench")
    try:
        rows = {
            "inbox": await connection.fetch(
                "SELECT consumer_group, event_id, topic, partition, \"offset\" "
                "FROM scoring.inbox ORDER BY processed_at, partition, \"offset\""),
            "activities": await connection.fetch(
                "SELECT lead_id, type, occurred_at, asset_id, interacted "
                "FROM scoring.activities ORDER BY id"),
            "outbox": await connection.fetch(
                "SELECT topic, key, header_names, header_values, value "
                "FROM scoring.outbox ORDER BY id"),
            "review_requests": await connection.fetch(
                "SELECT lead_id, requested_at FROM scoring.review_requests ORDER BY id"),
        }
        final = {row["lead_id"]: row for row in await connection.fetch(
            "SELECT * FROM scoring.leads")}
        # The handler writes a lead's row once per batch the lead is in, and a batch's
        # activities share their transaction's recorded_at: the bare write writes each
        # lead's final row as often, in the order the batches wrote them.
        rows["leads"] = [final[row["lead_id"]] for row in await connection.fetch(
            "SELECT lead_id FROM scoring.activities GROUP BY recorded_at, lead_id "
            "ORDER BY min(id)")]
        return rows
    finally:
        await connection.close()


LEAD_COLUMNS = ("lead_id", "profile", "account", "source", "partner", "account_key",
                "decision_maker", "last_engaged_at", "baseline_at", "score", "tier", "surge",
                "dormancy", "high_intent_signals", "reasons", "model_version", "scored_at",
                "next_review_at")


def upsert_sql(table: str, columns: Sequence[str], key: str | None = None) -> str:
    """Return an INSERT (an upsert on ``key``) of ``columns`` into ``scoring.table``."""
    quoted = ", ".join(f'"{c}"' for c in columns)
    values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    sql = f"INSERT INTO scoring.{table} ({quoted}) VALUES ({values})"
    if key:
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c != key)
        sql += f" ON CONFLICT ({key}) DO UPDATE SET {updates}"
    return sql


async def bare_write(rows: Mapping[str, Sequence[asyncpg.Record]], database_url: str,
                     events: int, batch: int) -> float:
    """Return events/s of writing the same rows with asyncpg executemany, a batch per commit."""
    columns = {"inbox": ("consumer_group", "event_id", "topic", "partition", "offset"),
               "activities": ("lead_id", "type", "occurred_at", "asset_id", "interacted"),
               "leads": LEAD_COLUMNS,
               "outbox": ("topic", "key", "header_names", "header_values", "value"),
               "review_requests": ("lead_id", "requested_at")}
    statements = {table: upsert_sql(table, columns[table],
                                    "lead_id" if table == "leads" else None)
                  for table in TABLES}
    connection = await connect_driver(database_url, "bench")
    try:
        started = time.perf_counter()
        for first in range(0, events, batch):
            async with connection.transaction():
                for table in TABLES:
                    share = len(rows[table]) / events  # the outbox holds fewer rows
                    chunk = rows[table][round(first * share):round((first + batch) * share)]
                    if chunk:
                        await connection.executemany(
                            statements[table], [tuple(r[c] for c in columns[table])
                                                for r in chunk])
        return events / (time.perf_counter() - started)
    finally:
        await connection.close()


@dataclass(frozen=True)
class Round:
    """One scoring run and the bare write of the rows it wrote, measured back to back."""

    scored: LoopRun
    bare: float
    written: dict[str, int]

    @property
    def ratio(self) -> float:
        """Return the scoring rate over the bare write rate."""
        return self.scored.events_per_second / self.bare


async def scoring_round(admin_url: str, settings: ScoringSettings, number: int, count: int,
                        budget: float) -> tuple[Round, float]:
    """Score the topic in fresh databases, write the same rows bare, then let the decay
    sweep re-score every lead scored; return the round and the sweep's leads/s."""
    async with (scratch_database(admin_url, f"handler{number}", service="scoring") as handler_db,
                scratch_database(admin_url, f"bare{number}", service="scoring") as bare_db):
        scoring = settings.model_copy(update={"database_url": handler_db})
        scored = await consume_with(scoring, f"bench-scoring-{number}", count, budget)
        rows = await written_rows(handler_db)
        bare = await bare_write(rows, bare_db, scored.events, settings.consumer_batch_size)
        swept = await sweep_everything(scoring)
    return Round(scored, bare, {table: len(found) for table, found in rows.items()}), swept


async def run(count: int, budget: float, rounds: int) -> str:
    """Publish the workload, take the measurements, and print and return the table.

    The scoring handler and the bare write are measured ``rounds`` times, each pair
    back to back in fresh databases, and compared by their medians: on a shared
    machine the speed of both drifts during a run (the bare write alone has varied
    2x between runs), and a pair measured together drifts together.
    """
    with servers() as (admin_url, bootstrap):
        async with scratch_database(admin_url, "noop", service="scoring") as noop_db:
            settings = ScoringSettings(
                database_url=noop_db, kafka_bootstrap_servers=bootstrap,
                kafka_idempotent_producer=False, kafka_topic_partitions=6)
            await ensure_topics(settings, [LeadCaptured.topic])
            events = workload(count, datetime.now(UTC))
            await publish(bootstrap, events)
            leads = len({e.lead_id for e in events})
            del events  # a deployed service holds no workload for its collector to walk
            print(f"published {count:,} lead.captured events for {leads:,} leads", flush=True)

            raw = await raw_consumption(bootstrap, count)
            runtime = await consume_with(settings, "bench-noop", count, budget,
                                         {LeadCaptured.topic: nothing})
            measured, sweeps = [], []
            for number in range(rounds):
                done, swept = await scoring_round(admin_url, settings, number, count, budget)
                measured.append(done)
                sweeps.append(swept)
                print(f"round {number + 1}: scoring {done.scored.events_per_second:,.0f} e/s, "
                      f"bare write {done.bare:,.0f} e/s, ratio {done.ratio:.2f}", flush=True)
    typical = middle(measured, key=lambda done: done.ratio)
    rate, bare, ratio = typical.scored.events_per_second, typical.bare, typical.ratio
    for name, loop_run in (("scoring handler", typical.scored), ("no-op handler", runtime)):
        if loop_run.events < count:
            print(f"{name}: {loop_run.events:,} of {count:,} events within the "
                  f"{budget:.0f} s budget")
    print(f"rows written by the handler: {typical.written} "
          f"(the bare write writes the same, {settings.consumer_batch_size} events a commit)")
    print(f"benchmark process CPU per event: handler path "
          f"{typical.scored.cpu_share / rate * 1e6:.0f} us, no-op handler "
          f"{runtime.cpu_share / runtime.events_per_second * 1e6:.0f} us; busy "
          f"{typical.scored.cpu_share:.0%} of the handler run")
    print(f"machine at the end: {machine()} (shared machines: compare the lines with "
          "each other, not across runs)")
    return report(
        f"scoring {count:,} lead.captured events ({leads:,} leads), events/s; "
        f"scoring and the bare write of the round of the median ratio ({rounds} round(s))",
        Measurement("bare asyncpg batch write of the same rows", bare, "e/s"),
        [Measurement("raw aiokafka consumption of the topic", raw, "e/s"),
         Measurement("consumer loop + no-op handler (runtime)", runtime.events_per_second,
                     "e/s"),
         Measurement("consumer loop + scoring handler + db", rate, "e/s"),
         Measurement("decay sweep re-scoring the same leads", statistics.median(sweeps),
                     "l/s")],
        targets=[
            f">= {TARGET_EVENTS_PER_SECOND:,} events/s: "
            f"{'met' if rate >= TARGET_EVENTS_PER_SECOND else 'NOT met'} ({rate:,.0f})",
            f">= half the bare write rate: {'met' if ratio >= 0.5 else 'NOT met'} "
            f"({ratio:.2f} of it)"])


def main_cli() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_EVENTS:,} events instead of {FULL_EVENTS:,}")
    parser.add_argument("--events", type=int, help="how many events to score")
    parser.add_argument("--budget", type=float, help="seconds each consumer loop may take "
                        f"(default {QUICK_BUDGET:.0f} quick, {FULL_BUDGET:.0f} full)")
    parser.add_argument("--rounds", type=int, help="scoring and bare-write pairs to measure "
                        f"(default 1 quick, {FULL_ROUNDS} full)")
    arguments = parser.parse_args()
    configure_logging(service="bench", level="WARNING", log_format="console")
    count = arguments.events or (QUICK_EVENTS if arguments.quick else FULL_EVENTS)
    # On the event loop the services run on, so the loop's costs are the deployed ones.
    run_on_uvloop(run(count, arguments.budget or (QUICK_BUDGET if arguments.quick
                                                  else FULL_BUDGET),
                      arguments.rounds or (1 if arguments.quick else FULL_ROUNDS)))


if __name__ == "__main__":
    main_cli()
