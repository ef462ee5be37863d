"""POST /v1/leads: ingest's throughput and latency beside a bare FastAPI endpoint.

Run: ``uv run python -m bench.ingest`` (about five minutes) or ``--quick``.

Both servers run as processes of their own under the same uvicorn settings:
``baton serve ingest`` (embedded PostgreSQL with fsync off, as the local stack
runs it, and the embedded broker; its outbox relay publishes as it goes), and a
bare FastAPI app whose one route validates the same ``LeadSubmission`` model and
answers 202 without touching a database. Load comes from a third process: an
asyncio client on uvloop and raw keep-alive HTTP/1.1 connections (cheap per request,
so that the servers, not the client, are what saturates), posting lead bodies of
the demo generator, a new person each.

Saturation: connections send back to back for ``--seconds``; throughput = answers /
time. How many connections saturate a server is measured first, for each: ingest
commits concurrent requests together, so it answers more a second the more requests
wait at once (in one run 839 r/s with 32 connections, 1,017 with 64, 1,061 with 128),
while the bare endpoint was flat from 32 to 128. So each server is first run briefly
with 32 connections, then twice as many, up to ``--most-connections`` (256), and then
measured with the count that answered most.

Latency: an open loop sends at half the measured saturating rate on a schedule, and
each latency counts from the request's scheduled time, so a stalled server cannot
hide its queue. The machine's cores are shared by the client, the servers and
PostgreSQL. The four phases (each server saturated, then each at half its rate) are
measured in ``--rounds`` rounds, and the targets judged on medians: the bare
endpoint's own p99 ranged from 4 to 124 ms between runs of this machine (2 to 24 ms
once the load generator stopped collecting garbage during a phase), and a pair
measured together drifts together. A p99 is the hundred-and-twentieth slowest of
about 12,000 requests, so one short stall of the shared machine moves a round's by
10 ms or more (ingest's ranged from 19 to 39 ms within runs): five rounds by default,
as the median of three still swung across the target between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import multiprocessing
import os
import queue
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
import uvloop
from fastapi import FastAPI, status

from baton import registry
from baton.demo import TrafficGenerator
from baton_runtime import migrations
from baton_runtime.db import create_engine
from baton_runtime.embedded import LOOPBACK, embedded_kafka, embedded_postgres, free_port
from baton_runtime.kafka import ensure_topics
from baton_runtime.settings import KafkaSettings
from bench.harness import Measurement, machine, middle, report, summary
from services.ingest.domain import lead_id_for
from services.ingest.submissions import Accepted, LeadSubmission

API_KEY = "bench-ingest-key-0123456789"
TARGET_RATIO = 0.5
TARGET_P99_MS = 25.0
# Enough new leads a second for ingest's closed loop; the bare endpoint reuses them.
CLOSED_LOOP_BODIES_PER_SECOND = 1500
FEWEST_CONNECTIONS = 32


def bare_app() -> FastAPI:
    """Return the baseline: the same route and model, and no database."""
    app = FastAPI(title="bare baseline")

    @app.post("/v1/leads", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
    async def capture_lead(submission: LeadSubmission) -> Accepted:
        return Accepted(lead_id=lead_id_for(submission.email), event_id=str(uuid.uuid4()))

    return app


def serve_bare(port: int) -> None:
    """Serve the baseline as ``baton serve`` serves a service (same uvicorn settings)."""
    uvicorn.run(bare_app(), host=LOOPBACK, port=port, log_config=None, access_log=False,
                lifespan="off", http="httptools", loop="uvloop")


@dataclass(frozen=True)
class Phase:
    """One measurement: closed loop (``rate`` None) or open loop at ``rate`` a second."""

    url: str
    seconds: float
    connections: int
    rate: float | None = None
    seed: int = 0


@dataclass(frozen=True)
class Result:
    """What a phase measured."""

    answered: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]

    @property
    def throughput(self) -> float:
        """Return answers a second."""
        return self.answered / self.seconds


def requests_for(phase: Phase, count: int) -> list[bytes]:
    """Return ``count`` whole HTTP requests, each a new lead of the demo mix."""
    host = phase.url.removeprefix("http://")
    bodies = TrafficGenerator(phase.seed).lead_forms()
    built = []
    for body in (next(bodies) for _ in range(count)):
        payload = json.dumps(body, ensure_ascii=False).encode()
        built.append(f"POST /v1/leads HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {API_KEY}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                     f"\r\n".encode() + payload)
    return built


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a request and reads its answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        """Return a connection to ``url``."""
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def exchange(self, request: bytes) -> int:
        """Send ``request``; return the answer's status once the whole answer is read."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(head[9:12])

    def close(self) -> None:
        """Close the connection."""
        self.writer.close()


async def closed_loop(phase: Phase, requests: Sequence[bytes]) -> Result:
    """Keep every connection busy for the phase; return what was answered."""
    connections = [await Connection.open(phase.url) for _ in range(phase.connections)]
    pending: Iterator[bytes] = itertools.cycle(requests)  # a repeat merges into its lead
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + phase.seconds

    async def worker(connection: Connection) -> None:
        for request in pending:
            if time.perf_counter() >= deadline:
                return
            sent = time.perf_counter()
            statuses[await connection.exchange(request)] += 1
            latencies.append((time.perf_counter() - sent) * 1000)

    await asyncio.gather(*(worker(connection) for connection in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return Result(sum(statuses.values()), elapsed, latencies, dict(statuses))


async def open_loop(phase: Phase, requests: Sequence[bytes]) -> Result:
    """Send on a fixed schedule at ``phase.rate``; latency counts from the scheduled time."""
    rate = phase.rate
    assert rate is not None
    idle = [await Connection.open(phase.url) for _ in range(phase.connections)]
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    count = min(len(requests), int(rate * phase.seconds))
    started = time.perf_counter()

    async def send(index: int) -> None:
        scheduled = started + index / rate
        connection = idle.pop() if idle else await Connection.open(phase.url)
        try:
            status = await connection.exchange(requests[index])
        except asyncio.IncompleteReadError as closed:
            if closed.partial:
                raise
            # The server closed a connection idle past its keep-alive: reconnect, resend.
            connection = await Connection.open(phase.url)
            status = await connection.exchange(requests[index])
        statuses[status] += 1
        latencies.append((time.perf_counter() - scheduled) * 1000)
        idle.append(connection)

    tasks = []
    for index in range(count):
        await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(send(index)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for connection in idle:
        connection.close()
    return Result(sum(statuses.values()), elapsed, latencies, dict(statuses))


def load(phase: Phase, results: Any) -> None:
    """In the load process: build the requests, run the phase, send back the result."""
    expected = int((phase.rate or CLOSED_LOOP_BODIES_PER_SECOND) * phase.seconds * 1.2) + 100
    requests = requests_for(phase, expected)
    # No collection during the phase: latency counts from each request's scheduled time,
    # so a pause of the client's counts as the server's. A full collection of the client's
    # heap took 70-100 ms; in three half-rate phases of ingest the slowest requests took
    # 100-147 ms with the collector on and 29-42 ms with it off. A phase's garbage fits in
    # memory.
    gc.collect()
    gc.freeze()
    gc.disable()
    run = open_loop if phase.rate is not None else closed_loop
    # On uvloop, as the servers: about 90 us of the client's CPU a request against 115 on
    # asyncio's own loop, left to the servers sharing the machine's cores.
    results.put(uvloop.run(run(phase, requests)))


def measure(phase: Phase) -> Result:
    """Run one phase in a process of its own and return its result."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=load, args=(phase, results))
    process.start()
    while True:
        try:
            result: Result = results.get(timeout=1)
        except queue.Empty:
            if not process.is_alive():
                raise SystemExit(f"the load generator failed (exit {process.exitcode})") from None
            continue
        process.join(30)
        return result


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running(command: list[str], url: str, env: dict[str, str]
            ) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until the block ends; wait until it answers."""
    process = subprocess.Popen(command, env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not start")
            time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        process.wait(30)


def check(name: str, result: Result) -> None:
    """Stop the run if any request was not accepted."""
    if set(result.statuses) != {202}:
        raise SystemExit(f"{name}: not every request was accepted: {result.statuses}")


@dataclass(frozen=True)
class Round:
    """Both servers saturated, then both at half their saturating rate, back to back."""

    saturated: dict[str, Result]
    half: dict[str, Result]
    cpu_ms: dict[str, float]  # the server's CPU per request while saturated
    half_cpu_ms: dict[str, float]  # and at half its saturating rate

    @property
    def ratio(self) -> float:
        """Return ingest's saturating throughput over the bare endpoint's."""
        return self.saturated["ingest"].throughput / self.saturated["bare"].throughput

    def p99(self, server: str) -> float:
        """Return ``server``'s p99 latency at half its saturating rate, in ms."""
        return summary(self.half[server].latencies_ms)["p99"]


def saturating_connections(name: str, url: str, *, seconds: float, fewest: int, most: int,
                           seed: int) -> int:
    """Return how many closed-loop connections saturate ``url``: of ``fewest`` doubled up
    to ``most``, the count that answered most requests a second."""
    tried: dict[int, float] = {}
    connections = fewest
    while connections <= most:
        result = measure(Phase(url, seconds, connections, seed=seed + connections))
        check(name, result)
        tried[connections] = result.throughput
        connections *= 2
    chosen = max(tried, key=tried.__getitem__)
    print(f"{name}, closed loop: " + ", ".join(
        f"{count} connections {rate:,.0f} r/s" for count, rate in tried.items())
        + f"; measured with {chosen}", flush=True)
    return chosen


def measure_server(name: str, process: subprocess.Popen[bytes], phase: Phase
                   ) -> tuple[Result, float]:
    """Return what ``phase`` measured of server ``name`` and its CPU ms per request."""
    used = cpu_seconds(process.pid)
    result = measure(phase)
    check(name, result)
    return result, (cpu_seconds(process.pid) - used) * 1000 / result.answered


def measure_round(servers: dict[str, tuple[str, subprocess.Popen[bytes]]], seconds: float,
                  connections: dict[str, int], number: int) -> Round:
    """Return one round of measurements of both servers, printing its line."""
    saturated: dict[str, Result] = {}
    cpu_ms: dict[str, float] = {}
    for seed, (name, (url, process)) in enumerate(servers.items()):
        saturated[name], cpu_ms[name] = measure_server(
            name, process, Phase(url, seconds, connections[name], seed=10 * number + seed))
    half: dict[str, Result] = {}
    half_cpu_ms: dict[str, float] = {}
    for seed, (name, (url, process)) in enumerate(servers.items()):
        half[name], half_cpu_ms[name] = measure_server(
            name, process, Phase(url, seconds, connections[name],
                                 rate=saturated[name].throughput / 2,
                                 seed=200 + 10 * number + seed))
    done = Round(saturated, half, cpu_ms, half_cpu_ms)
    print(f"round {number + 1}: bare {saturated['bare'].throughput:,.0f} r/s, ingest "
          f"{saturated['ingest'].throughput:,.0f} r/s, ratio {done.ratio:.2f}; p99 at half "
          f"rate: bare {done.p99('bare'):.1f} ms, ingest {done.p99('ingest'):.1f} ms",
          flush=True)
    return done


def run(*, seconds: float, warmup: float, fewest: int, most: int, rounds: int) -> str:
    """Measure both servers in ``rounds`` rounds; return the report.

    Each round measures both servers back to back, so what the shared machine's speed
    does during a run affects both alike. The ratio is the median round's, the p99 the
    median of the rounds' p99s.
    """
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(embedded_postgres()).url("baton")
        bootstrap = stack.enter_context(embedded_kafka())
        migrations.upgrade(registry.migrations_dir("ingest"), database_url)
        asyncio.run(ensure_topics(KafkaSettings(kafka_bootstrap_servers=bootstrap)))
        ingest_url = f"http://{LOOPBACK}:{free_port()}"
        bare_url = f"http://{LOOPBACK}:{free_port()}"
        env = {"BATON_DATABASE_URL": database_url, "BATON_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
               "BATON_KAFKA_IDEMPOTENT_PRODUCER": "false", "BATON_HTTP_HOST": LOOPBACK,
               "BATON_HTTP_PORT": ingest_url.rsplit(":", 1)[1], "BATON_LOG_LEVEL": "WARNING",
               "BATON_INGEST_API_KEYS": f"bench={API_KEY}",
               "BATON_INGEST_RATE_LIMIT_PER_MINUTE": "1000000"}
        servers = {
            "bare": (bare_url, stack.enter_context(running(
                [sys.executable, "-m", "bench.ingest", "--serve-bare",
                 bare_url.rsplit(":", 1)[1]], bare_url, {}))),
            "ingest": (ingest_url, stack.enter_context(running(
                [sys.executable, "-m", "baton", "serve", "ingest"], ingest_url, env))),
        }
        load_before = os.getloadavg()[0]
        # Finding how many connections saturate each server also warms both up.
        connections = {name: saturating_connections(name, url, seconds=warmup, fewest=fewest,
                                                    most=most, seed=1000 * (1 + seed))
                       for seed, (name, (url, _)) in enumerate(servers.items())}
        measured = [measure_round(servers, seconds, connections, number)
                    for number in range(rounds)]
        committed = asyncio.run(touchpoints(database_url))
    accepted = sum(sum(result.statuses.values()) for done in measured
                   for result in (done.saturated["ingest"], done.half["ingest"]))
    typical = middle(measured, key=lambda done: done.ratio)
    ratio = typical.ratio
    ingest_p99 = statistics.median(done.p99("ingest") for done in measured)
    bare_p99 = statistics.median(done.p99("bare") for done in measured)
    throughput = report(
        "POST /v1/leads throughput, closed loop (bare "
        f"{connections['bare']}, ingest {connections['ingest']} connections, {seconds:g} s "
        "each), the round of the median ratio",
        Measurement("bare FastAPI, same model, no database",
                    typical.saturated["bare"].throughput, "r/s"),
        [Measurement("ingest (commit + outbox + relay)", typical.saturated["ingest"].throughput,
                     "r/s")],
        targets=[f"ingest / bare >= {TARGET_RATIO}: {ratio:.2f} "
                 f"{'met' if ratio >= TARGET_RATIO else 'NOT MET'}"])
    half = typical.half
    latency = report(
        "p99 latency at half the saturating rate, open loop: medians of the rounds' p99s "
        f"(bare {half['bare'].throughput:.0f} r/s, ingest {half['ingest'].throughput:.0f} r/s "
        "in the round above; its other percentiles below)",
        Measurement("bare p99", bare_p99, "ms", higher_is_better=False),
        [Measurement("ingest p99", ingest_p99, "ms", higher_is_better=False),
         *(Measurement(f"ingest {key}", value, "ms", higher_is_better=False)
           for key, value in summary(half["ingest"].latencies_ms).items() if key != "p99")],
        targets=[f"ingest p99 <= {TARGET_P99_MS:g} ms: {ingest_p99:.1f} ms "
                 f"{'met' if ingest_p99 <= TARGET_P99_MS else 'NOT MET'}"])
    cpu_ms, half_cpu_ms = typical.cpu_ms, typical.half_cpu_ms
    # At half rate ingest commits smaller groups, each with its fixed costs (a transaction,
    # a share of a relay batch), and its process sleeps and wakes between requests: one
    # profile at 1,300 r/s against saturation found every part of the request path, the
    # HTTP layer it shares with the bare endpoint included, taking up to twice the CPU per
    # request. So its process stays busy, and the p99 is its queueing.
    cpu = report(
        "server process CPU per request, saturated and at half rate (PostgreSQL's own CPU "
        "not included)",
        Measurement("bare, saturated", cpu_ms["bare"], "ms", higher_is_better=False),
        [Measurement("ingest, saturated", cpu_ms["ingest"], "ms", higher_is_better=False),
         Measurement("bare, at half rate", half_cpu_ms["bare"], "ms", higher_is_better=False),
         Measurement("ingest, at half rate", half_cpu_ms["ingest"], "ms",
                     higher_is_better=False)])
    integrity = (f"every 202 committed: {committed} touchpoints for {accepted} accepted "
                 f"requests (+ warm-up) {'ok' if committed >= accepted else 'MISSING ROWS'}\n"
                 f"1-minute load average before: {load_before:.1f}; after: {machine()}")
    print(integrity, flush=True)
    return "\n".join((throughput, latency, cpu, integrity))


async def touchpoints(database_url: str) -> int:
    """Return how many touchpoints ingest committed."""
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            return int((await connection.exec_driver_sql(
                "SELECT count(*) FROM ingest.touchpoints")).scalar_one())
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, with --serve-bare, the baseline server)."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds, for tests")
    parser.add_argument("--seconds", type=float, default=8.0, help="each phase (8)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of four phases (5)")
    parser.add_argument("--most-connections", type=int, default=256,
                        help="the closed loop's most connections (256)")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.serve_bare:
        serve_bare(arguments.serve_bare)
        return
    seconds = 1.5 if arguments.quick else arguments.seconds
    run(seconds=seconds, warmup=0.5 if arguments.quick else 3.0,
        fewest=8 if arguments.quick else FEWEST_CONNECTIONS,
        most=8 if arguments.quick else arguments.most_connections,
        rounds=1 if arguments.quick else arguments.rounds)


if __name__ == "__main__":
    main()
