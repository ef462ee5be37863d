"""``baton run``: the whole stack on one machine, each service in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Iterator, Mapping

import httpx

from baton import registry
from baton.cli import create_topics, migrate
from baton.failures import without_password
from baton_runtime.embedded import (
    LOOPBACK,
    EmbeddedServerError,
    embedded_kafka,
    embedded_postgres,
)
from baton_runtime.settings import RuntimeSettings, SettingsError, load_settings

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
# Where the embedded database will be, as far as checking the settings before it starts
# needs to know (its port is chosen when it starts).
EMBEDDED_DATABASE_URL = f"postgresql://postgres@{LOOPBACK}/baton"
# What the printed curl posts: tier A under the packaged scoring model (an executive of a
# company in its industries and size bands asking for a demo: 15 + 10 + 10 + 50 points, and
# the inquiry is the high-intent signal tier A also needs), so it raises a hot-lead alert.
HOT_LEAD = {
    "email": "taro.yamada@example.co.jp", "name": "山田 太郎", "company": "株式会社サンプル",
    "title": "代表取締役社長", "industry": "製造業", "employee_band": "100-499",
    "touchpoint": {"type": "inquiry.demo_request"},
}
COLOURS = ("\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m")
RESET = "\033[0m"


def run_stack(*, base_port: int, broker_port: int) -> int:
    """Run the stack until Ctrl-C or SIGTERM; return the exit code."""
    try:
        return _run_stack(base_port=base_port, broker_port=broker_port)
    except KeyboardInterrupt:  # what was started has been stopped on the way out
        return 130


def _run_stack(*, base_port: int, broker_port: int) -> int:
    """Check the settings and ports, start what is not configured, then run the services;
    return the exit code."""
    environment = {**LOCAL_DEFAULTS, **os.environ}
    # An empty variable counts as unset, as it does for the services' settings.
    embed_database = not os.environ.get("BATON_DATABASE_URL")
    embed_broker = not os.environ.get("BATON_KAFKA_BOOTSTRAP_SERVERS")
    if embed_broker and not environment.get("BATON_KAFKA_IDEMPOTENT_PRODUCER"):
        environment["BATON_KAFKA_IDEMPOTENT_PRODUCER"] = "false"  # tansu cannot
    ports = {name: registry.default_port(name, base_port) for name in registry.SERVICES}
    planned = {**environment}
    if embed_database:
        planned["BATON_DATABASE_URL"] = EMBEDDED_DATABASE_URL
    if embed_broker:
        planned["BATON_KAFKA_BOOTSTRAP_SERVERS"] = f"{LOOPBACK}:{broker_port}"
    # Each service would refuse a bad setting only after the embedded servers, the
    # migrations and the other services had started.
    try:
        settings = _service_settings(planned, ports)
    except SettingsError as error:
        print(f"baton run: {error}", file=sys.stderr)
        return 2
    refusals = _ports_in_use(ports, broker_port if embed_broker else None)
    if refusals:
        print("\n".join(f"baton run: {refusal}" for refusal in refusals), file=sys.stderr)
        return 2
    grace = max(service.shutdown_grace_seconds for service in settings.values())
    # SIGTERM while the embedded servers start must still clean them up.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    notes: list[str] = []
    with contextlib.ExitStack() as embedded:
        starting = "database"
        try:
            if embed_database:
                server = embedded.enter_context(embedded_postgres())
                environment["BATON_DATABASE_URL"] = server.url("baton")
                notes.append("database is embedded and deleted on exit")
            starting = "broker"
            if embed_broker:
                environment["BATON_KAFKA_BOOTSTRAP_SERVERS"] = embedded.enter_context(
                    embedded_kafka(port=broker_port))
                notes.append("broker is embedded tansu, memory only")
        except EmbeddedServerError as error:
            print(f"baton run: the embedded {starting} did not start: {error}", file=sys.stderr)
            return 1
        os.environ.update(environment)  # migrate and topics read the same settings
        migrate([])
        create_topics()
        return asyncio.run(_supervise(environment, ports, notes, grace))


def _service_settings(environment: Mapping[str, str], ports: Mapping[str, int]
                     ) -> dict[str, RuntimeSettings]:
    """Return each service's settings as it loads them from the environment the stack gives
    it; raise SettingsError naming each bad variable, and which services refuse it unless
    all do."""
    settings: dict[str, RuntimeSettings] = {}
    refused_by: dict[str, list[str]] = {}
    for name, port in ports.items():
        settings_class, _ = registry.load(name)
        try:
            with _environ(_service_environment(environment, port)):
                settings[name] = load_settings(settings_class)
        except SettingsError as error:
            for problem in error.problems:
                refused_by.setdefault(problem, []).append(name)
    if refused_by:
        raise SettingsError([problem if len(names) == len(ports)
                             else f"{problem} ({', '.join(names)})"
                             for problem, names in refused_by.items()])
    return settings


def _service_environment(environment: Mapping[str, str], port: int) -> dict[str, str]:
    """Return the environment of the service the stack runs on ``port``."""
    return {**environment, "BATON_HTTP_PORT": str(port)}


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """Run the body with ``values`` set in os.environ, then put back what was there."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _ports_in_use(ports: Mapping[str, int], broker_port: int | None) -> list[str]:
    """Return why the stack cannot listen where it would: the services' ports and, when
    it embeds the broker (``broker_port`` not None), the broker's."""
    refusals = []
    busy = [f"{name} ({port})" for name, port in ports.items() if not _port_free(port)]
    if busy:
        refusals.append(f"ports in use: {', '.join(busy)}; stop what uses them or pass "
                        "--base-port")
    # tansu would fail to bind it, and the services would use whatever holds it: with
    # another stack's broker, both stacks' services join the same consumer groups.
    if broker_port is not None and not _port_free(broker_port):
        refusals.append(f"port {broker_port} of the embedded broker is in use (by another "
                        "baton run?); stop what uses it, pass --broker-port, or set "
                        "BATON_KAFKA_BOOTSTRAP_SERVERS to a broker of your own")
    return refusals


def _port_free(port: int) -> bool:
    """Return True if nothing listens on ``port`` on the loopback address."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((LOOPBACK, port)) != 0


class NotReady(Exception):
    """Some services did not become ready in time; the message says which and why."""


async def _supervise(environment: Mapping[str, str], ports: Mapping[str, int],
                     notes: list[str], grace: float,
                     ready_timeout: float = READY_TIMEOUT_SECONDS) -> int:
    """Start the services, report where they are, and stop them all on a signal, giving
    each ``grace`` seconds (and 5 more) to finish; return the exit code (1 if a service
    stopped on its own or was not ready within ``ready_timeout`` seconds)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    processes: dict[str, asyncio.subprocess.Process] = {}
    pumps = []
    for index, (name, port) in enumerate(ports.items()):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "baton", "serve", name,
            env=_service_environment(environment, port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
        )
        processes[name] = process
        pumps.append(asyncio.create_task(_prefix_output(name, COLOURS[index], process)))
    exited = [asyncio.create_task(process.wait()) for process in processes.values()]
    stopping = asyncio.create_task(stop.wait())
    code = 0
    try:
        ready = asyncio.create_task(_wait_ready(ports, ready_timeout))
        done, _ = await asyncio.wait([ready, stopping, *exited],
                                     return_when=asyncio.FIRST_COMPLETED)
        if ready in done and ready.exception() is None:
            _print_addresses(environment, ports, notes)
            done, _ = await asyncio.wait([stopping, *exited],
                                         return_when=asyncio.FIRST_COMPLETED)
        elif ready in done:
            print(f"baton run: {ready.exception()}; stopping the stack", file=sys.stderr)
            code = 1
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
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    print("baton run: stopped", flush=True)
    return code


async def _prefix_output(name: str, colour: str, process: asyncio.subprocess.Process) -> None:
    """Copy a service's output to ours, each line prefixed with its name."""
    assert process.stdout is not None
    prefix = f"{colour}{name:<8}|{RESET} " if sys.stdout.isatty() else f"{name:<8}| "
    async for line in process.stdout:
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def _wait_ready(ports: Mapping[str, int], timeout: float) -> None:
    """Return once every service answers /readyz with 200; raise NotReady naming those that
    did not within ``timeout`` seconds, and why."""
    deadline = time.monotonic() + timeout
    pending = dict(ports)
    why: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=2) as client:
        while pending:
            for name, port in list(pending.items()):
                url = f"http://{LOOPBACK}:{port}/readyz"
                try:
                    response = await client.get(url)
                except httpx.HTTPError:
                    why[name] = f"no answer at {url}"
                    continue
                if response.status_code == 200:
                    del pending[name]
                else:
                    why[name] = _unready_checks(response)
            if pending and time.monotonic() > deadline:
                raise NotReady(f"not ready after {timeout:g} s: " + ", ".join(
                    f"{name} ({why[name]})" for name in pending))
            await asyncio.sleep(0.2)


def _unready_checks(response: httpx.Response) -> str:
    """Return what a /readyz answer other than 200 says is not ready."""
    with contextlib.suppress(ValueError, AttributeError, KeyError, TypeError):
        failing = [f"{check}: {result}" for check, result in response.json()["checks"].items()
                   if result != "ok"]
        if failing:
            return "; ".join(failing)
    return f"/readyz answered {response.status_code}"


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


def _this_command() -> str:
    """Return how to run this baton command again: the path it was started by, if known."""
    started_by = sys.argv[0]
    return started_by if os.path.basename(started_by) == "baton" else "baton"


def _print_addresses(environment: Mapping[str, str], ports: Mapping[str, int],
                     notes: list[str]) -> None:
    """Print every address the stack started, and how to try it."""
    key = environment["BATON_INGEST_API_KEYS"].split(",")[0].partition("=")[2]
    database, broker = (environment["BATON_DATABASE_URL"],
                        environment["BATON_KAFKA_BOOTSTRAP_SERVERS"])
    # A database of your own keeps its password off the screen: you set its URL, so the
    # export names the broker alone (the embedded server has no password).
    exported = {"BATON_KAFKA_BOOTSTRAP_SERVERS": broker}
    if without_password(database) == database:
        exported = {"BATON_DATABASE_URL": database, **exported}
    alerts = (environment.get("BATON_SLACK_WEBHOOK_URL")
              or "the console (set BATON_SLACK_WEBHOOK_URL for Slack)")
    lines = [
        "",
        "Baton is up.",
        f"  broker     {broker}",
        f"  database   {without_password(database)}",
        *(f"  {name:<10} http://{LOOPBACK}:{port}  (API docs: /docs)"
          for name, port in ports.items()),
        f"  alerts go to {alerts}",
        *(f"  note: {note}" for note in notes),
        "",
        "Post a hot lead:",
        f"  curl -s -X POST http://{LOOPBACK}:{ports['ingest']}/v1/leads "
        f"-H 'X-API-Key: {key}' -H 'Content-Type: application/json' \\",
        f"    -d '{json.dumps(HOT_LEAD, ensure_ascii=False)}'",
        "  Leads go to reps: run `make demo` first to set some up (or add yours at "
        f"http://{LOOPBACK}:{ports['routing']}/v1/reps);",
        "  without one, the lead waits in its team's queue for the first rep who can take "
        "it (tried every minute).",
        "Use the baton command (keys, dlq, demo) against it from another terminal:",
        "  export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in exported.items())
        + ("" if "BATON_DATABASE_URL" in exported else "  # and your BATON_DATABASE_URL"),
        f"  {shlex.quote(_this_command())} keys list",
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)
