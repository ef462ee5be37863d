"""Runs one service: HTTP API, consumer loop, outbox relay and workers in one process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import structlog
import uvicorn
import uvloop
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError, KafkaError
from fastapi import APIRouter, Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware import Middleware

from baton_runtime import db
from baton_runtime.clock import Clock, system_clock
from baton_runtime.consumer import (
    Batched,
    BatchHook,
    BatchLock,
    ConsumerLoop,
    Handler,
    RetryPolicy,
)
from baton_runtime.db import PlumbingTables
from baton_runtime.http import ReadinessCheck, create_app
from baton_runtime.kafka import KafkaPublisher, build_consumer
from baton_runtime.logging import configure_logging
from baton_runtime.outbox import OutboxRelay
from baton_runtime.settings import RuntimeSettings, SettingsError, load_settings
from baton_runtime.uow import UnitOfWorkFactory, unit_of_work_factory

log = structlog.get_logger(__name__)
VERSION = "0.1.0"
# What connecting to or using the database raises when it is unreachable, refuses the
# login, or lacks a table the migrations create.
DATABASE_FAILURES = (OSError, DBAPIError)


class StartupFailure(Exception):
    """A service could not use its database or broker at start-up (the cause is ``error``)."""

    def __init__(self, dependency: Literal["database", "broker"], address: str,
                 error: Exception, *, idempotent_producer: bool = False) -> None:
        # The address is left out: a database URL may hold a password.
        super().__init__(f"cannot use the {dependency} at start-up: "
                         f"{type(error).__name__}: {error}")
        self.dependency = dependency
        self.address = address
        self.error = error
        # True when the broker answered but would not start the idempotent producer.
        self.idempotent_producer = idempotent_producer


def consumer_group_of(service: str) -> str:
    """Return the Kafka consumer group of the service named ``service``."""
    return f"baton-{service}"


@dataclass(frozen=True)
class ServiceContext:
    """What handlers' collaborators, routes and workers share inside one process."""

    name: str
    settings: Any
    engine: AsyncEngine
    unit_of_work: UnitOfWorkFactory
    clock: Clock


Worker = Callable[[ServiceContext, asyncio.Event], Coroutine[Any, Any, None]]
StartupHook = Callable[[ServiceContext], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class ServiceDefinition:
    """A service's wiring: the one place its handlers, routes and workers are named."""

    name: str
    tables: PlumbingTables
    handlers: Mapping[str, Handler | Batched] = field(default_factory=dict)
    routers: Sequence[APIRouter] = ()
    workers: Sequence[Worker] = ()
    startup: Sequence[StartupHook] = ()
    middleware: Sequence[Middleware] = ()
    after_db_commit: Sequence[BatchHook] = ()
    lock_first: BatchLock | None = None
    clock: Clock = system_clock

    @property
    def consumer_group(self) -> str:
        """Return the Kafka consumer group of this service."""
        return consumer_group_of(self.name)

    def consumer_loop(self, consumer: AIOKafkaConsumer, unit_of_work: UnitOfWorkFactory, *,
                      retry: RetryPolicy, batch_size: int, lanes: int = 1) -> ConsumerLoop:
        """Return the loop that consumes this service's topics with its handlers and hooks."""
        return ConsumerLoop(consumer, group_id=self.consumer_group, handlers=self.handlers,
                            unit_of_work=unit_of_work, retry=retry, batch_size=batch_size,
                            lanes=lanes, after_db_commit=self.after_db_commit,
                            lock_first=self.lock_first)

    @property
    def source(self) -> str:
        """Return the CloudEvents source of events this service emits."""
        return f"/baton/{self.name}"


async def context_of(request: Request) -> ServiceContext:
    """Return the running service's context, for use as a FastAPI dependency.

    Async on purpose: FastAPI would run a plain function in its thread pool.
    """
    context: ServiceContext = request.app.state.context
    return context


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service runner owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_service(definition: ServiceDefinition, settings: RuntimeSettings) -> None:
    """Run until SIGTERM or SIGINT, then drain: consumer, HTTP, relay, connections.

    Raise StartupFailure, having closed what it opened, if the database or the broker
    cannot be used at start-up.
    """
    engine = db.create_engine(settings.database_url, application_name=definition.name)
    unit_of_work = unit_of_work_factory(engine, definition.tables, definition.source)
    context = ServiceContext(definition.name, settings, engine, unit_of_work, definition.clock)
    publisher = KafkaPublisher(settings, client_id=definition.name)
    try:
        await _start_up(definition, settings, context, publisher)
    except BaseException:
        await publisher.stop()  # else aiokafka warns of an unclosed producer as it exits
        await engine.dispose()
        raise
    consumer: ConsumerLoop | None = None
    stop_requested = asyncio.Event()

    async def accepting_work() -> None:
        if stop_requested.is_set():
            raise RuntimeError("shutting down: finishing the work in hand")

    readiness: dict[str, ReadinessCheck] = {
        "database": lambda: db.ping(engine),
        "broker": publisher.ping,
        # While it drains, a stopping replica takes no new traffic from a balancer that
        # reads readiness; it still answers the requests it gets.
        "shutdown": accepting_work,
    }
    if definition.handlers:
        consumer = definition.consumer_loop(
            build_consumer(settings, definition.consumer_group, definition.name), unit_of_work,
            retry=RetryPolicy(settings.consumer_max_attempts,
                              settings.consumer_retry_backoff_ms / 1000),
            batch_size=settings.consumer_batch_size, lanes=settings.consumer_lanes)
        readiness["consumer"] = _assigned_check(consumer)
    app = create_app(service=definition.name, version=VERSION, routers=definition.routers,
                     readiness=readiness, middleware=definition.middleware)
    app.state.context = context
    settle_garbage_collector()
    relay = OutboxRelay(
        definition.tables, publisher,
        database_url=settings.database_url,
        batch_size=settings.outbox_batch_size,
        poll_interval=settings.outbox_poll_interval_ms / 1000,
        min_interval=settings.outbox_min_interval_ms / 1000,
    )
    server = _Server(uvicorn.Config(app, host=settings.http_host, port=settings.http_port,
                                    log_config=None, access_log=False, lifespan="off",
                                    http="httptools"))
    consuming, relaying = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)

    server_task = asyncio.create_task(server.serve(), name="http")
    consumer_task = asyncio.create_task(
        consumer.run(consuming) if consumer else consuming.wait(), name="consumer")
    relay_task = asyncio.create_task(relay.run(relaying), name="outbox-relay")
    worker_tasks = [
        asyncio.create_task(worker(context, consuming)) for worker in definition.workers
    ]
    log.info("service started", port=settings.http_port, group=definition.consumer_group)
    stop_waiter = asyncio.create_task(stop_requested.wait())
    watched = {server_task, consumer_task, relay_task, *worker_tasks}
    crashed: list[asyncio.Task[Any]] = []
    while not stop_requested.is_set() and not crashed:
        done, _ = await asyncio.wait([stop_waiter, *watched], return_when=asyncio.FIRST_COMPLETED)
        watched -= done
        # A worker may finish its job and return; anything else ending means trouble.
        crashed = [task for task in done if task is not stop_waiter and (
            task.exception() or task not in worker_tasks)]
    for task in crashed:
        log.error("component stopped unexpectedly", component=task.get_name(),
                  error=repr(task.exception()) if task.exception() else "returned")
    log.info("shutting down")
    try:
        async with asyncio.timeout(settings.shutdown_grace_seconds):
            # Order matters: finish and commit the batch, let HTTP answer the requests in
            # flight, then publish what both wrote. A request answered after the relay's
            # final drain would leave its outbox rows unpublished until the next start.
            consuming.set()
            await asyncio.gather(consumer_task, *worker_tasks, return_exceptions=True)
            server.should_exit = True
            await asyncio.gather(server_task, return_exceptions=True)
            relaying.set()
            await asyncio.gather(relay_task, return_exceptions=True)
    except TimeoutError:
        log.error("shutdown grace period exceeded; exiting anyway")
    finally:
        stop_waiter.cancel()
        await publisher.stop()
        await engine.dispose()
    if crashed:
        raise SystemExit(1)


async def _start_up(definition: ServiceDefinition, settings: RuntimeSettings,
                    context: ServiceContext, publisher: KafkaPublisher) -> None:
    """Check the database, start the producer and run the service's start-up hooks; raise
    StartupFailure if the database or the broker cannot be used."""
    # Each fails fast with the cause in one line, rather than in a component's traceback.
    try:
        await db.ping(context.engine)
    except DATABASE_FAILURES as error:
        raise StartupFailure("database", settings.database_url, error) from error
    try:
        await publisher.start()
    except KafkaError as error:
        # With idempotence, start() asks for a producer id once it has reached the broker;
        # a broker that does not support it (tansu) answers with an error such as -1.
        raise StartupFailure(
            "broker", settings.kafka_bootstrap_servers, error,
            idempotent_producer=(settings.kafka_idempotent_producer
                                 and not isinstance(error, KafkaConnectionError))) from error
    for hook in definition.startup:
        try:
            await hook(context)  # e.g. validate configuration against the database; fail fast
        except DBAPIError as error:  # e.g. its tables are not migrated yet
            raise StartupFailure("database", settings.database_url, error) from error


# A young collection once this many more tracked objects are alive than at the last one
# (CPython's default is 700), and a full collection at most once per this many
# collections of the middle generation (CPython's default is 10).
YOUNG_COLLECTION_EVERY = 200_000
FULL_COLLECTION_EVERY = 100


def settle_garbage_collector() -> None:
    """Collect start-up's garbage, freeze what is left, and make full collections rarer.

    Start-up leaves 130,000+ long-lived objects (modules, models, routes). A full
    collection walked them all, 30-110 ms with the event loop stopped (six in one run
    of the ingest benchmark); after the freeze one takes about 3 ms. A consumer's
    batches in flight still kept 50,000 objects alive that every full collection
    walked, about twelve times per 20,000 events scored, 15-30 ms each; a tenth as
    many halved the time scoring spent collecting (0.65-0.72 s to 0.28-0.40 s per
    20,000 events). Young collections then found no garbage at all while scoring
    (1,267 collections, none collected anything) yet took about 7 us of its
    90-110 us of CPU per event, walking every object a batch keeps alive; so
    they wait until a few lanes' batches' worth of objects (about 50,000 each)
    more is alive. In a run of the ingest benchmark none was then needed.
    Garbage in reference cycles, rare in this code, lives longer.
    """
    gc.collect()
    gc.freeze()
    _, middle, _ = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, FULL_COLLECTION_EVERY)


def _assigned_check(consumer: ConsumerLoop) -> ReadinessCheck:
    """Return a readiness check that passes once the consumer has its partitions."""

    async def check() -> None:
        if not consumer.assigned:
            raise RuntimeError("waiting for the consumer group to assign partitions")

    return check


SettingsT = TypeVar("SettingsT", bound=RuntimeSettings)
T = TypeVar("T")


def serve(settings_class: type[SettingsT],
          definition: Callable[[SettingsT], ServiceDefinition]) -> None:
    """Validate settings, build the service and run it; exit 2 naming any bad variable."""
    try:
        settings = load_settings(settings_class)
    except SettingsError as error:
        print(f"baton: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    service = definition(settings)
    configure_logging(service=service.name, level=settings.log_level,
                      log_format=settings.log_format)
    run_on_uvloop(run_service(service, settings))


def run_on_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """Return what ``main`` returns, run to completion on a new uvloop event loop.

    Services run on uvloop: the loop's own work per socket read and write, which every
    request, query and Kafka fetch pays, is several times cheaper than asyncio's.
    """
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
