"""Hot-lead alert latency end to end: ingest's 202 to the Slack receiver, under mixed load.

Run: ``uv run python -m bench.notifier_latency`` (50, 200 and 500 leads/s for 60 s each,
about five minutes with start-up) or ``--quick`` (a few seconds at 5 leads/s).

The whole stack runs as ``baton run`` does (embedded PostgreSQL and broker, five
service processes). The notifier is configured from YAML with a team channel and
one webhook per rep; routing gets that many SDR reps working around the clock, so
its round robin spreads hot leads over enough channels that the one-message-a-second
limit per webhook is not what is measured. All webhooks point at one fake Slack in
a process of its own, which notes when each lead's alert first arrives.

Load: the demo traffic mix (``baton.demo.TrafficGenerator``: web forms, activities,
partner appointments; one request in ten a hot lead) posted open loop on keep-alive
connections. Latency = first arrival of the lead's alert - the moment its 202 was read.

Baseline, in the same run and under the same load: a raw aiokafka producer and
consumer on the stack's broker (acks=all, a message every 100 ms: 600 round trips
a stage, at half the CPU every 50 ms took from the stack), produce to consume.
A hot lead crosses the broker three times (lead.captured, lead.scored, lead.promoted),
each behind a database commit and an outbox relay, then a delivery worker posts it.
The machine's two cores are shared by the load generator, five services, PostgreSQL,
the broker and the receiver.

Where the time goes, per hot lead, from the notifier's tables: 202 -> routing's MQL
(the event's time), MQL -> the notifier's delivery record (its consumer batch's
start), record -> delivered. When a stage asks for more than the stack takes, what
could not be sent on time is dropped and the achieved rate says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from baton.demo import TrafficGenerator
from baton.stack import LOCAL_DEFAULTS
from baton_runtime.db import connect_driver
from baton_runtime.embedded import LOOPBACK
from bench.harness import Measurement, machine, report, summary
from bench.ingest import Connection
from services.ingest.domain import lead_id_for, normalise_email
from tests.support.fake_slack import FakeSlack
from tests.support.stack import running_stack

API_KEY = "bench-notifier-key-0123456789"
TARGET_RATE, TARGET_P99_MS = 200, 250.0
PROBE_TOPIC = "bench.roundtrip"
PROBE_INTERVAL_SECONDS = 0.1
MAX_CONNECTIONS = 64
DRAIN_SECONDS = 60.0


# --- the fake Slack, in a process of its own ------------------------------------------------


async def receive() -> None:
    """Serve a fake Slack; print ``ready <port>``, then ``alert <arrival> <lead id>`` lines."""
    async with FakeSlack().running() as slack:
        print(f"ready {slack.port}", flush=True)
        seen = 0
        while True:
            messages = await slack.wait_for(seen + 1, timeout=24 * 3600)
            for message in messages[seen:]:
                for block in message.body.get("blocks", []):
                    if block.get("type") == "actions":
                        channel = message.path.rsplit("/", 2)[-2]
                        print(f"alert {message.arrived_at:.6f} {channel} "
                              f"{block['block_id'].removeprefix('lead:')}", flush=True)
            seen = len(messages)


# --- the raw Kafka baseline, in a process of its own -----------------------------------------


def stack_fetch_wait_ms() -> int:
    """Return the fetch wait the stack's consumers use: the environment's, or baton run's."""
    name = "BATON_KAFKA_FETCH_MAX_WAIT_MS"
    return int(os.environ.get(name, LOCAL_DEFAULTS[name]))


async def probe_kafka(bootstrap: str, seconds: float) -> None:
    """Produce a timestamped message every 100 ms for ``seconds``; print each round trip."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    with contextlib.suppress(TopicAlreadyExistsError):
        await admin.create_topics([NewTopic(PROBE_TOPIC, 1, 1)])
    await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=stack_fetch_wait_ms())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    partition = TopicPartition(PROBE_TOPIC, 0)
    consumer.assign([partition])
    await consumer.seek_to_end(partition)
    deadline = time.time() + seconds

    async def consume() -> None:
        while time.time() < deadline + 2:
            batches = await consumer.getmany(timeout_ms=200)
            arrived = time.time()
            for records in batches.values():
                for record in records:
                    print(f"kafka {arrived - float(record.value):.6f}", flush=True)

    consuming = asyncio.create_task(consume())
    try:
        while time.time() < deadline:
            await producer.send_and_wait(PROBE_TOPIC, f"{time.time():.6f}".encode())
            # Jittered: sent on a fixed period equal to the fetch wait, messages would
            # land at the same phase of every fetch and measure that phase only.
            await asyncio.sleep(PROBE_INTERVAL_SECONDS * random.uniform(0.5, 1.5))
        await consuming
    finally:
        await producer.stop()
        await consumer.stop()


# --- the load and the measurement ----------------------------------------------------------


@dataclass
class Receiver:
    """The fake Slack's process and the first arrival of each lead's alert."""

    process: asyncio.subprocess.Process
    port: int
    first: dict[str, tuple[float, str]] = field(default_factory=dict)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def webhook(self, channel: str) -> str:
        """Return a webhook URL on the receiver named after ``channel``."""
        return f"http://{LOOPBACK}:{self.port}/services/{channel}/hook"

    async def follow(self) -> None:
        """Note the first arrival of every lead's alert, as the receiver reports them."""
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            _, arrived, channel, lead_id = line.decode().split()
            async with self.arrived:
                self.first.setdefault(lead_id, (float(arrived), channel))
                self.arrived.notify_all()


@contextlib.asynccontextmanager
async def subprocess_of(*arguments: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``python -m bench.notifier_latency ARGUMENTS`` for the block."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.notifier_latency", *arguments,
        stdout=asyncio.subprocess.PIPE)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    """Start the fake Slack and follow what it receives."""
    async with subprocess_of("receive") as process:
        assert process.stdout is not None
        ready = (await process.stdout.readline()).decode().split()
        running = Receiver(process, int(ready[1]))
        following = asyncio.create_task(running.follow())
        try:
            yield running
        finally:
            following.cancel()


def notifier_config(slack: Receiver, reps: Sequence[str]) -> str:
    """Return the notifier's YAML: the SDR team's channel and one webhook per rep."""
    lines = ["channels:", "  teams:", f"    sdr: {{slack_webhook_url: {slack.webhook('team')}}}",
             "  reps:"]
    lines += [f"    {rep}: {{slack_webhook_url: {slack.webhook(rep)}}}" for rep in reps]
    return "\n".join(lines) + "\n"


async def add_reps(routing: str, reps: Sequence[str]) -> int:
    """Give routing SDR reps who work around the clock; return how many it accepted."""
    body = {"team": "sdr", "daily_capacity": 1000,
            "working_hours": {"starts": "00:00", "ends": "23:59",
                              "workdays": [1, 2, 3, 4, 5, 6, 7], "holidays": None}}
    accepted = 0
    async with httpx.AsyncClient(base_url=routing, timeout=10) as client:
        for rep in reps:
            response = await client.put(f"/v1/reps/{rep}", json={**body, "name": rep})
            accepted += response.status_code == 200
            if response.status_code != 200 and accepted == 0:
                print(f"routing refused a rep ({response.status_code} {response.text[:300]}): "
                      "hot leads will go to the team channel only", flush=True)
                return 0
    return accepted


@dataclass(frozen=True)
class Request:
    """One prepared HTTP request, and the lead id when it is a hot lead."""

    raw: bytes
    hot_lead: str | None


def prepare(ingest: str, count: int, seed: int) -> list[Request]:
    """Return ``count`` requests of the demo mix, one in ten a hot lead."""
    host = ingest.removeprefix("http://")
    stream = TrafficGenerator(seed, hot_share=0.1)
    prepared = []
    for index in range(count):
        submission = stream.next()
        body = submission.body
        if submission.hot:
            # An account of its own: the mix has a dozen companies, and routing gives an
            # account's leads to its owner, which would send most hot leads to a few reps.
            local, domain = body["email"].rsplit("@", 1)
            body = {**body, "email": f"{local}@a{seed}x{index}.{domain}"}
        payload = json.dumps(body, ensure_ascii=False).encode()
        raw = (f"POST {submission.path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {API_KEY}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
               f"\r\n").encode() + payload
        email = normalise_email(body["email"])
        hot = str(lead_id_for(email)) if submission.hot else None
        prepared.append(Request(raw, hot))
    return prepared


@dataclass
class Stage:
    """What one rate's load did: 202s read per hot lead, statuses, what it could not send."""

    rate: float
    accepted_at: dict[str, float] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    unsent: int = 0
    seconds: float = 0.0


async def load(ingest: str, requests: Sequence[Request], stage: Stage) -> None:
    """Send ``requests`` on a fixed schedule at ``stage.rate``, open loop."""
    idle: list[Connection] = []
    started = time.perf_counter()

    async def send(request: Request) -> None:
        connection = idle.pop() if idle else await Connection.open(ingest)
        try:
            status = await connection.exchange(request.raw)
        except (asyncio.IncompleteReadError, ConnectionError):
            # The server closed the keep-alive connection while it sat idle: a new one.
            connection.close()
            connection = await Connection.open(ingest)
            status = await connection.exchange(request.raw)
        answered = time.time()
        stage.statuses[status] += 1
        if status == 202 and request.hot_lead:
            stage.accepted_at[request.hot_lead] = answered
        idle.append(connection)

    in_flight = asyncio.Semaphore(MAX_CONNECTIONS)
    deadline = started + len(requests) / stage.rate

    async def limited(request: Request) -> None:
        async with in_flight:
            # When the stack cannot keep up, what could not be sent in time is dropped,
            # so that a stage lasts what it says; the achieved rate shows the shortfall.
            if time.perf_counter() < deadline:
                await send(request)
            else:
                stage.unsent += 1

    tasks = []
    for index, request in enumerate(requests):
        await asyncio.sleep(max(0.0, started + index / stage.rate - time.perf_counter()))
        tasks.append(asyncio.create_task(limited(request)))
    await asyncio.gather(*tasks)
    stage.seconds = time.perf_counter() - started
    for connection in idle:
        connection.close()


async def drain(slack: Receiver, stage: Stage) -> None:
    """Wait until every accepted hot lead's alert arrived, or DRAIN_SECONDS passed."""
    with contextlib.suppress(TimeoutError):
        async with slack.arrived:
            await asyncio.wait_for(slack.arrived.wait_for(
                lambda: set(stage.accepted_at) <= set(slack.first)), DRAIN_SECONDS)


async def kafka_round_trips(bootstrap: str, seconds: float) -> list[float]:
    """Run the raw Kafka probe for ``seconds`` and return its round trips in ms."""
    async with subprocess_of("probe-kafka", bootstrap, str(seconds)) as process:
        assert process.stdout is not None
        lines = (await process.stdout.read()).decode().split("\n")
        await process.wait()
    return [float(line.split()[1]) * 1000 for line in lines if line.startswith("kafka ")]


@dataclass(frozen=True)
class Milestones:
    """Per hot lead (epoch seconds): routing's MQL, the notifier's record, its delivery."""

    promoted: dict[str, float]
    recorded: dict[str, float]
    delivered: dict[str, float]


async def milestones(database_url: str, lead_ids: Sequence[str]) -> Milestones:
    """Return when each lead was promoted, its alert recorded and first delivered."""
    connection = await connect_driver(database_url, "bench")
    try:
        leads = await connection.fetch(
            "SELECT lead_id::text AS lead, last_promoted_at FROM notifier.leads "
            "WHERE lead_id = ANY($1::uuid[])", lead_ids)
        alerts = await connection.fetch(
            "SELECT lead_id::text AS lead, min(created_at) AS recorded, "
            "min(delivered_at) AS delivered FROM notifier.alerts "
            "WHERE kind = 'hot_lead' AND lead_id = ANY($1::uuid[]) GROUP BY lead_id", lead_ids)
    finally:
        await connection.close()
    return Milestones(
        promoted={row["lead"]: row["last_promoted_at"].timestamp() for row in leads},
        recorded={row["lead"]: row["recorded"].timestamp() for row in alerts},
        delivered={row["lead"]: row["delivered"].timestamp() for row in alerts
                   if row["delivered"]})


def gaps_ms(earlier: dict[str, float], later: dict[str, float]) -> list[float]:
    """Return, for every lead in both, the milliseconds from ``earlier`` to ``later``."""
    return [(later[lead] - moment) * 1000 for lead, moment in earlier.items() if lead in later]


def percentiles(name: str, samples: Sequence[float]) -> list[Measurement]:
    """Return p50, p95 and p99 of ``samples`` (NaN when there are none)."""
    found = summary(samples) if samples else {}
    return [Measurement(f"{name} {key}", found.get(key, float("nan")), "ms",
                        higher_is_better=False) for key in ("p50", "p95", "p99")]


def stage_report(stage: Stage, slack: Receiver, kafka_ms: Sequence[float],
                 marks: Milestones) -> str:
    """Print and return one rate's table, with where the time went."""
    arrived = {lead: moment for lead, (moment, _) in slack.first.items()}
    latencies = gaps_ms(stage.accepted_at, arrived)
    via = Counter("team channel" if slack.first[lead][1] == "team" else "rep channel"
                  for lead in stage.accepted_at if lead in slack.first)
    sent = sum(stage.statuses.values())
    kafka_p50, *kafka_tail = percentiles("raw aiokafka produce->consume", kafka_ms)
    alerts = percentiles("hot lead 202 -> Slack", latencies)
    p99 = alerts[-1].value
    targets = [f"p99 <= {TARGET_P99_MS:g} ms at {TARGET_RATE} leads/s: {p99:.0f} ms "
               f"{'met' if p99 <= TARGET_P99_MS else 'NOT MET'}"
               ] if stage.rate == TARGET_RATE else []
    return report(
        f"hot-lead alert latency at {stage.rate:g} leads/s: {sent / stage.seconds:.0f} "
        f"requests/s achieved ({stage.unsent} not sent in time), statuses "
        f"{dict(stage.statuses)}, {len(stage.accepted_at)} hot leads, "
        f"{len(stage.accepted_at) - len(latencies)} alerts missing, first seen via "
        f"{dict(via)}; {machine()}",
        kafka_p50,
        [*kafka_tail, *alerts,
         *percentiles("  202 -> routing's MQL (ingest, scoring, routing)",
                      gaps_ms(stage.accepted_at, marks.promoted)),
         *percentiles("  MQL -> notifier's record (relay, broker, consumer)",
                      gaps_ms(marks.promoted, marks.recorded)),
         *percentiles("  record -> delivered (delivery worker, POST)",
                      gaps_ms(marks.recorded, marks.delivered))],
        targets)


async def run(rates: Sequence[float], seconds: float, reps: int) -> str:
    """Start the stack, run each rate, and return the reports."""
    rep_ids = [f"bench-rep-{index:03d}" for index in range(reps)]
    reports = []
    async with receiver() as slack:
        with tempfile.TemporaryDirectory() as directory:
            config = Path(directory) / "notifier.yaml"
            config.write_text(notifier_config(slack, rep_ids), encoding="utf-8")
            async with running_stack({
                "BATON_INGEST_API_KEYS": f"bench={API_KEY}",
                "BATON_INGEST_RATE_LIMIT_PER_MINUTE": "1000000",
                "BATON_NOTIFIER_CONFIG_FILE": str(config),
                "BATON_LOG_LEVEL": "WARNING",
            }) as stack:
                print(f"{await add_reps(stack.url('routing'), rep_ids)} SDR reps added",
                      flush=True)
                ingest = stack.url("ingest")
                bootstrap = f"{LOOPBACK}:{stack.broker_port}"
                [database_url] = [line.split()[-1] for line in stack.output
                                  if line.split()[:1] == ["database"]]
                warm_up = Stage(rate=2)
                await load(ingest, prepare(ingest, 20, seed=uuid.uuid4().int % 1000),
                           warm_up)
                await drain(slack, warm_up)
                for rate in rates:
                    stage = Stage(rate=rate)
                    requests = prepare(ingest, int(rate * seconds), seed=int(rate))
                    kafka, _ = await asyncio.gather(kafka_round_trips(bootstrap, seconds),
                                                    load(ingest, requests, stage))
                    await drain(slack, stage)
                    marks = await milestones(database_url, list(stage.accepted_at))
                    reports.append(stage_report(stage, slack, kafka, marks))
    return "\n".join(reports)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, or one of its helper processes."""
    parser = argparse.ArgumentParser(prog="python -m bench.notifier_latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds at 5 leads/s")
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 200, 500],
                        help="leads a second, one stage each (50 200 500)")
    parser.add_argument("--seconds", type=float, default=60.0, help="each stage (60)")
    parser.add_argument("--reps", type=int, default=100, help="SDR reps and their webhooks")
    parser.add_argument("helper", nargs="*", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.helper[:1] == ["receive"]:
        asyncio.run(receive())
    elif arguments.helper[:1] == ["probe-kafka"]:
        asyncio.run(probe_kafka(arguments.helper[1], float(arguments.helper[2])))
    elif arguments.quick:
        asyncio.run(run([5], seconds=4, reps=5))
    else:
        asyncio.run(run(arguments.rates, arguments.seconds, arguments.reps))


if __name__ == "__main__":
    main()
