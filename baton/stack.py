"""``baton run``: the whole stack on one machine, each service in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from typing import Annotated

import httpx
from pydantic import TypeAdapter, ValidationError

from baton import registry
from baton.cli import create_topics, migrate
from baton_runtime.embedded import LOOPBACK, embedded_kafka, embedded_postgres
from baton_runtime.settings import RuntimeSettings

# What a laptop stack wants unless the environment says otherwise.
LOCAL_DEFAULTS = {
    "BATON_HTTP_HOST": LOOPBACK,
    "BATON_LOG_FORMAT": "console",
    "BATON_KAFKA_SESSION_TIMEOUT_MS": "3000",
    "BATON_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
    "BATON_KAFKA_REBALANCE_TIMEOUT_MS": "2000",
    "BATON_KAFKA_FETCH_MAX_WAIT_MS": "100",
    "BATON_KAFKA_TOPIC_PARTITIONS": "3",
    "BATON_OUTBOX_POLL_INTERVAL_MS": "500",
    "BATON_SHUTDOWN_GRACE_SECONDS": "10",
    "BATON_INGEST_API_KEYS": "demo=local-demo-key-change-me",
}
READY_TIMEOUT_SECONDS = 90
COLOURS = ("\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m")
RESET = "\033[0m"


def run_stack(*, base_port: int, broker_port: int) -> int:
    """Run the stack until Ctrl-C or SIGTERM; return the exit code."""
    environment = {**LOCAL_DEFAULTS, **os.environ}
    try:
        grace = _grace_seconds(environment)
    except ValidationError as error:
        print(f"baton run: BATON_SHUTDOWN_GRACE_SECONDS {error.errors()[0]['msg']}",
              file=sys.stderr)
        return 2
    ports = {name: registry.default_port(name, base_port) for name in registry.SERVICES}
    busy = [f"{name} ({port})" for name, port in ports.items() if not _port_free(port)]
    if busy:
        print(f"baton run: ports in use: {', '.join(busy)}; stop what uses them or pass "
              "--base-port", file=sys.stderr)
        return 2
    # SIGTERM while the embedded servers start must still clean them up.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    notes: list[str] = []
    try:
        with contextlib.ExitStack() as embedded:
            if "BATON_DATABASE_URL" not in os.environ:
                server = embedded.enter_context(embedded_postgres())
                environment["BATON_DATABASE_URL"] = server.url("baton")
                notes.append("database is embedded and deleted on exit")
            if "BATON_KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
                environment["BATON_KAFKA_BOOTSTRAP_SERVERS"] = embedded.enter_context(
                    embedded_kafka(port=broker_port))
                environment.setdefault("BATON_KAFKA_IDEMPOTENT_PRODUCER", "false")
                notes.append("broker is embedded tansu, memory only")
            os.environ.update(environment)  # migrate and topics read the same settings
            migrate([])
            create_topics()
            return asyncio.run(_supervise(environment, ports, notes, grace))
    except KeyboardInterrupt:
        return 130


def _port_free(port: int) -> bool:
    """Return True if nothing listens on ``port`` on the loopback address."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((LOOPBACK, port)) != 0


def _grace_seconds(environment: Mapping[str, str]) -> float:
    """Return the services' shutdown grace in seconds, checked as the services check it;
    raise ValidationError if it is not a valid one."""
    field = RuntimeSettings.model_fields["shutdown_grace_seconds"]
    return float(TypeAdapter(Annotated[float, field]).validate_python(
        environment["BATON_SHUTDOWN_GRACE_SECONDS"]))


async def _supervise(environment: Mapping[str, str], ports: Mapping[str, int],
                     notes: list[str], grace: float) -> int:
    """Start the services, report where they are, and stop them all on a signal, giving
    each ``grace`` seconds (and 5 more) to finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    processes: dict[str, asyncio.subprocess.Process] = {}
    pumps = []
    for index, (name, port) in enumerate(ports.items()):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "baton", "serve", name,
            env={**environment, "BATON_HTTP_PORT": str(port)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
        )
        processes[name] = process
        pumps.append(asyncio.create_task(_prefix_output(name, COLOURS[index], process)))
    exited = [asyncio.create_task(process.wait()) for process in processes.values()]
    stopping = asyncio.create_task(stop.wait())
    code = 0
    try:
        ready = asyncio.create_task(_wait_ready(ports))
        done, _ = await asyncio.wait([ready, stopping, *exited],
                                     return_when=asyncio.FIRST_COMPLETED)
        if ready in done and ready.exception() is None:
            _print_addresses(environment, ports, notes)
            done, _ = await asyncio.wait([stopping, *exited],
                                         return_when=asyncio.FIRST_COMPLETED)
        else:
            ready.cancel()
        crashed = [name for name, process in processes.items()
                   if process.returncode is not None]
        if crashed:
            print(f"baton run: {', '.join(crashed)} stopped unexpectedly; stopping the stack",
                  file=sys.stderr)
            code = 1
    finally:
        await _stop_all(processes, grace + 5)
        await asyncio.gather(*pumps, return_exceptions=True)
        stopping.cancel()
    print("baton run: stopped", flush=True)
    return code


async def _prefix_output(name: str, colour: str, process: asyncio.subprocess.Process) -> None:
    """Copy a service's output to ours, each line prefixed with its name."""
    assert process.stdout is not None
    prefix = f"{colour}{name:<8}|{RESET} " if sys.stdout.isatty() else f"{name:<8}| "
    async for line in process.stdout:
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def _wait_ready(ports: Mapping[str, int]) -> None:
    """Return once every service answers /readyz with 200."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    pending = dict(ports)
    async with httpx.AsyncClient(timeout=2) as client:
        while pending:
            for name, port in list(pending.items()):
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"http://{LOOPBACK}:{port}/readyz")
                    if response.status_code == 200:
                        del pending[name]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {READY_TIMEOUT_SECONDS}s: {list(pending)}")
            await asyncio.sleep(0.2)


async def _stop_all(processes: Mapping[str, asyncio.subprocess.Process], grace: float) -> None:
    """SIGTERM every service, wait for their drain, and SIGKILL what is left."""
    for process in processes.values():
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    waits = [process.wait() for process in processes.values()]
    try:
        await asyncio.wait_for(asyncio.gather(*waits), grace)
    except TimeoutError:
        for name, process in processes.items():
            if process.returncode is None:
                print(f"baton run: {name} did not stop in {grace}s; killing it",
                      file=sys.stderr)
                process.kill()
        await asyncio.gather(*(process.wait() for process in processes.values()))


def _print_addresses(environment: Mapping[str, str], ports: Mapping[str, int],
                     notes: list[str]) -> None:
    """Print every address the stack started, and how to try it."""
    key = environment["BATON_INGEST_API_KEYS"].split(",")[0].partition("=")[2]
    alerts = (environment.get("BATON_SLACK_WEBHOOK_URL")
              or "the console (set BATON_SLACK_WEBHOOK_URL for Slack)")
    lines = [
        "",
        "Baton is up.",
        f"  broker     {environment['BATON_KAFKA_BOOTSTRAP_SERVERS']}",
        f"  database   {environment['BATON_DATABASE_URL']}",
        *(f"  {name:<10} http://{LOOPBACK}:{port}  (API docs: /docs)"
          for name, port in ports.items()),
        f"  alerts go to {alerts}",
        *(f"  note: {note}" for note in notes),
        "",
        "Post a hot lead:",
        f"  curl -s -X POST http://{LOOPBACK}:{ports['ingest']}/v1/leads "
        f"-H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\",
        """    -d '{"email": "taro.yamada@example.co.jp", "name": "山田 太郎", """
        """"company": "株式会社サンプル", "title": "部長", """
        """"touchpoint": {"type": "inquiry.demo_request"}}'""",
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)
