"""``baton`` refuses arguments it cannot honour in one line and an exit code, not a traceback."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import pytest

from baton import cli
from baton_runtime.embedded import LOOPBACK, free_port, free_port_block
from baton_runtime.kafka import ensure_topics
from baton_runtime.settings import RuntimeSettings
from schemas.envelope import encode
from schemas.events import dead_letter_topic
from services.ingest.settings import MOST_REQUESTS_PER_MINUTE
from tests.conftest import Infrastructure
from tests.support.cli import run_baton
from tests.support.kafka import lead_captured, produce

# Nothing listens here: a request to it fails at once.
# Port 1 (tcpmux): nothing here ever listens on it. A free port picked at import could be
# taken later in the session by a server another test (or worker) starts.
NOWHERE = f"{LOOPBACK}:1"
# Set, these would keep ``baton run`` from starting its embedded servers.
SERVER_VARIABLES = ("BATON_DATABASE_URL", "BATON_KAFKA_BOOTSTRAP_SERVERS")


def run_stack_command(environment: dict[str, str], *arguments: str
                      ) -> subprocess.CompletedProcess[str]:
    """Return how ``baton run`` on free ports ended, with embedded servers and ``environment``."""
    base = os.environ | environment
    return subprocess.run(
        [sys.executable, "-m", "baton", "run", "--base-port", str(free_port_block(5)),
         *arguments], capture_output=True, text=True, timeout=60,
        env={key: value for key, value in base.items() if key not in SERVER_VARIABLES})


def refused(*arguments: str, environment: dict[str, str] | None = None) -> str:
    """Return the error output of ``baton arguments``, which must stop at parsing."""
    done = run_baton(environment or {}, *arguments)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    return done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("rate", ["0", "-1", "0.0", "nan", "inf", "fast"])
def test_demo_refuses_a_rate_that_is_not_above_0_before_sending_anything(rate: str) -> None:
    assert refused("demo", "--url", f"http://{NOWHERE}", "--rate", rate) == (
        "baton demo: error: argument --rate: must be a number of requests a second above 0")


@pytest.mark.parametrize("count", ["-1", "0", "many"])
def test_demo_refuses_a_count_below_one(count: str) -> None:
    assert refused("demo", "--url", f"http://{NOWHERE}", "--count", count) == (
        "baton demo: error: argument --count: must be a whole number of requests, at least 1")


def test_demo_accepts_a_fractional_rate() -> None:
    assert cli._parser().parse_args(["demo", "--rate", "0.5"]).rate == 0.5


@pytest.mark.parametrize("port", ["70000", "-3", "0", "65532", "65536", "8o01"])
def test_run_refuses_a_base_port_without_room_for_every_service(port: str) -> None:
    assert refused("run", "--base-port", port) == (
        "baton run: error: argument --base-port: must be a port from 1 to 65531")


@pytest.mark.parametrize("port", ["1", "65531"])
def test_run_accepts_a_base_port_whose_services_all_fit(port: str) -> None:
    assert cli._parser().parse_args(["run", "--base-port", port]).base_port == int(port)


@pytest.mark.parametrize("port", ["70000", "-3", "0"])
def test_run_refuses_a_broker_port_that_is_not_a_port(port: str) -> None:
    assert refused("run", "--broker-port", port) == (
        "baton run: error: argument --broker-port: must be a port from 1 to 65535")


@pytest.mark.parametrize("limit", ["3000000000", "1000001", "0", "-5", "ten"])
def test_keys_create_refuses_a_rate_limit_ingest_would_not_take_as_its_default(
        limit: str) -> None:
    error = refused("keys", "create", "big", "--rate-limit", limit,
                    environment={"BATON_DATABASE_URL": f"postgresql://baton@{NOWHERE}/baton"})
    assert error == ("baton keys create: error: argument --rate-limit: "
                     "must be a whole number from 1 to 1000000")


def test_a_keys_rate_limit_has_the_bounds_of_ingests_default() -> None:
    for limit in ("1", str(MOST_REQUESTS_PER_MINUTE)):
        parsed = cli._parser().parse_args(["keys", "create", "big", "--rate-limit", limit])
        assert parsed.rate_limit == int(limit)


@pytest.mark.parametrize("arguments", [("list",), ("list", "--json"), ("replay", "--all")])
def test_dlq_names_an_unreachable_broker_in_one_line(arguments: tuple[str, ...]) -> None:
    done = run_baton({"BATON_KAFKA_BOOTSTRAP_SERVERS": NOWHERE,
                      "BATON_DATABASE_URL": f"postgresql://baton@{NOWHERE}/baton"},
                     "dlq", *arguments)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert (f"baton dlq {arguments[0]}: cannot reach the broker at {NOWHERE} "
            "(BATON_KAFKA_BOOTSTRAP_SERVERS): KafkaConnectionError: Unable to bootstrap"
            in done.stderr)


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "soon"])
def test_dlq_refuses_a_timeout_that_is_not_above_0(timeout: str) -> None:
    assert refused("dlq", "list", "--timeout", timeout) == (
        "baton dlq list: error: argument --timeout: must be a number of seconds above 0")


@pytest.mark.integration
@pytest.mark.parametrize("arguments", [("list",), ("replay", "--all")])
async def test_dlq_names_a_broker_it_timed_out_reading_in_one_line(
        infrastructure: Infrastructure, arguments: tuple[str, ...]) -> None:
    await ensure_topics(infrastructure.settings(RuntimeSettings))
    stray = encode(lead_captured("stray@example.co.jp"), source="/tests")
    await produce(infrastructure.bootstrap_servers,
                  [stray._replace(topic=dead_letter_topic(stray.topic))])
    # A nanosecond is over before the first check of what is left to read.
    done = await asyncio.to_thread(run_baton, infrastructure.environment(), "dlq", *arguments,
                                   "--timeout", "1e-9")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"baton dlq {arguments[0]}: timed out reading the broker at "
        f"{infrastructure.bootstrap_servers} (BATON_KAFKA_BOOTSTRAP_SERVERS): dead-letter "
        "topics not read to their end in 1e-09 s (see --timeout)"]


@pytest.mark.integration
async def test_dlq_replay_names_an_unreachable_database_in_one_line_without_its_password(
        infrastructure: Infrastructure) -> None:
    await ensure_topics(infrastructure.settings(RuntimeSettings))  # no letters to replay
    environment = {**infrastructure.environment(),
                   "BATON_DATABASE_URL": f"postgresql://baton:s3cret@{NOWHERE}/baton"}
    done = await asyncio.to_thread(run_baton, environment, "dlq", "replay", "--all")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"baton dlq replay: cannot connect to the database at postgresql://baton:***@{NOWHERE}"
        "/baton (BATON_DATABASE_URL): ConnectionRefusedError: [Errno 111] Connect call failed "
        f"('{LOOPBACK}', {NOWHERE.rsplit(':', 1)[1]})"]


@pytest.mark.parametrize("arguments", [("keys", "list"), ("keys", "revoke", "k1"),
                                       ("migrate", "ingest")])
def test_database_commands_name_an_unreachable_database_in_one_line_without_its_password(
        arguments: tuple[str, ...]) -> None:
    done = run_baton({"BATON_DATABASE_URL": f"postgresql://baton:s3cret@{NOWHERE}/baton"},
                     *arguments)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"baton {arguments[0]}: cannot use the database at postgresql://baton:***@{NOWHERE}"
        "/baton (BATON_DATABASE_URL): ConnectionRefusedError: [Errno 111] Connect call failed "
        f"('{LOOPBACK}', {NOWHERE.rsplit(':', 1)[1]})"]


def test_topics_names_an_unreachable_broker_in_one_line() -> None:
    done = run_baton({"BATON_KAFKA_BOOTSTRAP_SERVERS": NOWHERE}, "topics")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1].startswith(
        f"baton topics: cannot reach the broker at {NOWHERE} (BATON_KAFKA_BOOTSTRAP_SERVERS): "
        "KafkaConnectionError: Unable to bootstrap")


@pytest.mark.parametrize(("grace", "why"), [
    ("abc", "Input should be a valid number, unable to parse string as a number"),
    ("0", "Input should be greater than 0")])
def test_run_refuses_a_bad_shutdown_grace_in_one_line_before_starting_anything(
        grace: str, why: str) -> None:
    done = run_baton({"BATON_SHUTDOWN_GRACE_SECONDS": grace}, "run")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.splitlines() == [
        f"baton run: invalid configuration: BATON_SHUTDOWN_GRACE_SECONDS {why}"]


@pytest.mark.parametrize(("variable", "value", "why"), [
    ("BATON_FISCAL_YEAR_START_MONTH", "13",
     "Input should be less than or equal to 12 (routing, pipeline)"),
    ("BATON_LOG_FORMAT", "xml", "Input should be 'json' or 'console'"),
    ("BATON_INGEST_API_KEYS", "demo",
     "expected source=key pairs separated by commas, keys of 16+ characters (ingest)")])
def test_run_refuses_a_bad_service_setting_naming_it_before_starting_anything(
        variable: str, value: str, why: str) -> None:
    done = run_stack_command({variable: value}, "--broker-port", str(free_port()))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""  # no database, migration, broker or service was started
    assert done.stderr.splitlines() == [f"baton run: invalid configuration: {variable} {why}"]


def test_run_refuses_a_broker_port_in_use_before_starting_anything() -> None:
    port = free_port()
    with socket.socket() as other_stacks_broker:
        other_stacks_broker.bind((LOOPBACK, port))
        other_stacks_broker.listen()
        done = run_stack_command({}, "--broker-port", str(port))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"baton run: port {port} of the embedded broker is in use (by another baton run?); "
        "stop what uses it, pass --broker-port, or set BATON_KAFKA_BOOTSTRAP_SERVERS to a "
        "broker of your own"]


def test_ctrl_c_while_baton_starts_ends_it_with_130_and_no_traceback() -> None:
    environment = {key: value for key, value in os.environ.items()
                   if key not in SERVER_VARIABLES}
    # -X importtime reports each module as its import ends: aiokafka's comes while the
    # command is still importing what it needs.
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "baton", "run",
         "--base-port", str(free_port_block(5)), "--broker-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if line.split("|")[-1].strip() == "aiokafka":
                process.send_signal(signal.SIGINT)
                break
        _, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert "Traceback" not in errors and "KeyboardInterrupt" not in errors


def test_serve_names_an_unreachable_database_in_one_line_without_its_password() -> None:
    done = run_baton({"BATON_DATABASE_URL": f"postgresql://baton:s3cret@{NOWHERE}/baton",
                      "BATON_KAFKA_BOOTSTRAP_SERVERS": NOWHERE}, "serve", "pipeline")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.splitlines() == [
        f"baton serve: cannot use the database at postgresql://baton:***@{NOWHERE}/baton "
        "(BATON_DATABASE_URL): ConnectionRefusedError: [Errno 111] Connection refused"]


@pytest.mark.integration
async def test_serve_names_an_unreachable_broker_in_one_line_and_closes_its_producer(
        infrastructure: Infrastructure) -> None:
    environment = {**infrastructure.environment(), "BATON_KAFKA_BOOTSTRAP_SERVERS": NOWHERE}
    done = await asyncio.to_thread(run_baton, environment, "serve", "pipeline")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.splitlines() == [
        f"baton serve: cannot reach the broker at {NOWHERE} (BATON_KAFKA_BOOTSTRAP_SERVERS): "
        f"KafkaConnectionError: Unable to bootstrap from [('{LOOPBACK}', "
        f"{NOWHERE.rsplit(':', 1)[1]}, <AddressFamily.AF_INET: 2>)]"]
    assert "Unclosed" not in done.stdout


@pytest.mark.integration
async def test_serve_names_the_variable_an_embedded_broker_needs_for_its_producer(
        infrastructure: Infrastructure, shared_kafka: str | None) -> None:
    if shared_kafka is not None:
        pytest.skip("the shared broker is Apache Kafka, which takes idempotent producers")
    environment = {**infrastructure.environment(), "BATON_KAFKA_IDEMPOTENT_PRODUCER": "true"}
    done = await asyncio.to_thread(run_baton, environment, "serve", "pipeline")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.splitlines() == [
        f"baton serve: the broker at {infrastructure.bootstrap_servers} "
        "(BATON_KAFKA_BOOTSTRAP_SERVERS) would not start an idempotent producer: "
        "UnknownError: [Error -1] UnknownError; a broker without idempotent producing (such "
        "as the embedded tansu) needs BATON_KAFKA_IDEMPOTENT_PRODUCER=false"]
    assert "Unclosed" not in done.stdout
