"""Benchmark: the zombie sweep over 1,000,000 deals (loaded with COPY), 1% of them zombies,
until every deal.recycled is acknowledged by the broker; beside a bare SELECT count(*).

    uv run python -m bench.pipeline_sweep            # 1,000,000 deals
    uv run python -m bench.pipeline_sweep --quick    # 20,000 deals, a few seconds

Uses the PostgreSQL server and broker of BATON_DATABASE_URL and
BATON_KAFKA_BOOTSTRAP_SERVERS if set (in a scratch database it drops afterwards),
else starts embedded ones.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition

from baton_runtime.clock import system_clock
from baton_runtime.db import connect_driver, create_engine
from baton_runtime.kafka import KafkaPublisher, ensure_topics
from baton_runtime.outbox import OutboxRelay
from baton_runtime.uow import unit_of_work_factory
from bench.harness import Measurement, machine, report, scratch_database, servers
from schemas.envelope import KafkaRecord
from schemas.events import DealRecycled
from services.pipeline import main
from services.pipeline.settings import PipelineSettings
from services.pipeline.sweep import sweep_zombies

FULL_DEALS = 1_000_000
QUICK_DEALS = 20_000
ZOMBIE_EVERY = 100  # 1% of the deals
HELD_EVERY = 250  # stale but on hold: the sweep must look at them and leave them
TARGET_MS = 5_000
COLUMNS = ("deal_id", "lead_id", "phase", "owner_id", "team", "amount", "expected_close_date",
           "next_action_date", "next_action_text", "next_action_entered_at", "hold_until",
           "hold_reason", "hold_placed_at", "opened_at", "phase_changed_at")
PHASES = ("P1", "P2", "P3", "P4", "P5")
COPY_CHUNK = 50_000


class CountingPublisher(KafkaPublisher):
    """The real publisher; sets ``done`` once ``expected`` records are acknowledged."""

    def __init__(self, settings: PipelineSettings, expected: int) -> None:
        super().__init__(settings, client_id="bench-pipeline")
        self.expected = expected
        self.sent = 0
        self.done = asyncio.Event()

    async def send_batch(self, records: Sequence[KafkaRecord]) -> None:
        await super().send_batch(records)
        self.sent += len(records)
        if self.sent >= self.expected:
            self.done.set()


def deal_rows(first: int, count: int, now: datetime) -> bytes:
    """Return deals ``first``..``first + count`` as COPY text rows: 1% zombies, some stale
    deals on hold, the rest recently moved with a recent next action."""
    ids = os.urandom(32 * count).hex()  # PostgreSQL reads 32 hex digits as a uuid
    today = now.date()
    # Pools of rendered values, picked by a cheap hash of the row number.
    recent = [f"{now - timedelta(minutes=m * 113)}" for m in range(1000)]  # up to ~79 days
    stale = [f"{now - timedelta(days=120 + d)}" for d in range(280)]
    days = [f"{today + timedelta(days=d)}" for d in range(-30, 300)]
    hold_until = f"{today + timedelta(days=30)}"
    lines = []
    for offset in range(count):
        number = first + offset
        spread = number * 7919
        zombie, held = number % ZOMBIE_EVERY == 0, number % HELD_EVERY == 1
        age = spread % 1000
        changed = stale[spread % 280] if zombie or held else recent[age]
        entered = recent[(spread // 7) % (min(age, 640) + 1)]  # since opening, <= ~50 days
        lines.append("\t".join((
            ids[64 * offset:64 * offset + 32], ids[64 * offset + 32:64 * offset + 64],
            PHASES[spread % 5], f"rep-{number % 200:03d}", f"team-{number % 7}",
            str(1_000_000 + spread % 4_900 * 10_000), days[spread % 330],
            days[25 + spread % 35], "次回打ち合わせ", entered,
            hold_until if held else "\\N", "予算凍結" if held else "\\N",
            entered if held else "\\N", changed, changed)))
    return ("\n".join(lines) + "\n").encode()


async def load(database_url: str, count: int, now: datetime) -> float:
    """COPY ``count`` deals into the table, analyse it, and return the seconds it took.

    As in any bulk load, the secondary indexes (as the migration made them) are dropped
    first and built again afterwards: one sort each instead of a million inserts.
    """
    async def chunks() -> AsyncIterator[bytes]:
        for first in range(0, count, COPY_CHUNK):
            yield deal_rows(first, min(COPY_CHUNK, count - first), now)

    started = time.perf_counter()
    connection = await connect_driver(database_url, "bench")
    try:
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'pipeline' "
            "AND tablename = 'deals' AND indexname <> 'deals_pkey'")
        for index in indexes:
            await connection.execute(f'DROP INDEX pipeline."{index["indexname"]}"')
        await connection.copy_to_table("deals", schema_name="pipeline", columns=COLUMNS,
                                       source=chunks(), format="text")
        for index in indexes:
            await connection.execute(index["indexdef"])
        await connection.execute("ANALYZE pipeline.deals")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def count_ms(database_url: str, runs: int = 5) -> float:
    """Return the median milliseconds of a bare SELECT count(*) over the deals, warmed up."""
    connection = await connect_driver(database_url, "bench")
    try:
        await connection.fetchval("SELECT count(*) FROM pipeline.deals")
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            await connection.fetchval("SELECT count(*) FROM pipeline.deals")
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def recycled_topic(bootstrap: str) -> AsyncIterator[AIOKafkaConsumer]:
    """Yield a consumer assigned to every partition of deal.recycled."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(DealRecycled.topic) or set()
        consumer.assign([TopicPartition(DealRecycled.topic, p) for p in partitions])
        yield consumer
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str) -> dict[TopicPartition, int]:
    """Return where deal.recycled ends now, so that only this run's events are counted."""
    async with recycled_topic(bootstrap) as consumer:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(consumer.assignment()))
        return ends


async def events_on_broker(bootstrap: str, start: dict[TopicPartition, int], expected: int,
                           timeout: float = 60) -> int:
    """Return how many deal.recycled records follow ``start`` (reading until ``expected``)."""
    async with recycled_topic(bootstrap) as consumer:
        for partition, offset in start.items():
            consumer.seek(partition, offset)
        seen, deadline = 0, time.monotonic() + timeout
        while seen < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            seen += sum(len(records) for records in batch.values())
        return seen


async def run(deals: int) -> str:
    """Load, sweep and publish; print and return the report."""
    zombies = len(range(0, deals, ZOMBIE_EVERY))
    with servers() as (admin_url, bootstrap):
        async with scratch_database(admin_url, "pipeline", service="pipeline") as database_url:
            settings = PipelineSettings(
                database_url=database_url, kafka_bootstrap_servers=bootstrap,
                kafka_idempotent_producer=False)
            await ensure_topics(settings, [DealRecycled.topic])
            now = system_clock()
            loaded = await load(database_url, deals, now)
            print(f"loaded {deals:,} deals with COPY in {loaded:.1f} s", flush=True)
            baseline = await count_ms(database_url)

            definition = main.definition(settings)
            engine = create_engine(database_url)
            publisher = CountingPublisher(settings, zombies)
            await publisher.start()
            relay = OutboxRelay(definition.tables, publisher, database_url=database_url,
                                batch_size=settings.outbox_batch_size,
                                poll_interval=settings.outbox_poll_interval_ms / 1000,
                                min_interval=settings.outbox_min_interval_ms / 1000)
            start = await end_offsets(bootstrap)
            stop = asyncio.Event()
            relaying = asyncio.create_task(relay.run(stop))
            try:
                unit_of_work = unit_of_work_factory(engine, definition.tables, definition.source)
                started, cpu_started = time.perf_counter(), time.process_time()
                recycled = await sweep_zombies(unit_of_work, settings.rules(), system_clock,
                                               batch_size=settings.zombie_sweep_batch_size)
                swept = time.perf_counter()
                await asyncio.wait_for(publisher.done.wait(), 120)
                published, cpu_used = time.perf_counter(), time.process_time() - cpu_started
            finally:
                stop.set()
                await relaying
                await publisher.stop()
                await engine.dispose()
            on_broker = await events_on_broker(bootstrap, start, zombies)
    if recycled != zombies or on_broker != zombies:
        raise SystemExit(f"expected {zombies} recycled deals and events, got {recycled} "
                         f"recycled and {on_broker} events on the broker")
    total_ms = (published - started) * 1000
    print(f"{machine()}; CPU time of this process (sweep and relay) during "
          f"sweep + publish: {cpu_used * 1000:.0f} ms", flush=True)
    return report(
        f"zombie sweep over {deals:,} open deals, {zombies:,} recycled "
        f"({zombies:,} deal.recycled read back from the broker)",
        Measurement("SELECT count(*) FROM pipeline.deals", baseline, "ms",
                    higher_is_better=False),
        [Measurement("sweep: find, recycle, write outbox", (swept - started) * 1000, "ms",
                     higher_is_better=False),
         Measurement("sweep + publish every event (acks)", total_ms, "ms",
                     higher_is_better=False)],
        targets=[f"sweep + publish over 1,000,000 deals <= {TARGET_MS:,} ms "
                 f"({'met' if total_ms <= TARGET_MS else 'NOT met'} here at {deals:,})"])


def main_cli() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_DEALS:,} deals instead of {FULL_DEALS:,}")
    parser.add_argument("--deals", type=int, help="how many deals to load")
    arguments = parser.parse_args()
    asyncio.run(run(arguments.deals or (QUICK_DEALS if arguments.quick else FULL_DEALS)))


if __name__ == "__main__":
    main_cli()
