"""Stopping a consumer: finish the batch in hand, commit it, then leave."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_runtime.consumer import ConsumerLoop, RetryPolicy
from baton_runtime.db import create_engine
from baton_runtime.embedded import free_port
from baton_runtime.kafka import build_consumer, ensure_topics
from baton_runtime.settings import RuntimeSettings
from baton_runtime.uow import UnitOfWork, unit_of_work_factory
from schemas.events import LeadCaptured, LeadScored
from tests.conftest import Infrastructure
from tests.support import probe_service
from tests.support.kafka import (
    committed_offsets,
    lead_captured,
    produce,
    read_all,
    wait_until,
)
from tests.support.locks import waiting_for_a_lock

pytestmark = pytest.mark.integration


async def probe_database(infrastructure: Infrastructure) -> AsyncEngine:
    """Return an engine on the database, with the topics and the probe's tables created."""
    await ensure_topics(infrastructure.settings(RuntimeSettings))
    engine = create_engine(infrastructure.database_url)
    await probe_service.create_tables(engine)
    return engine

async def test_a_stop_during_a_batch_finishes_and_commits_that_batch(
    infrastructure: Infrastructure,
) -> None:
    settings = infrastructure.settings(RuntimeSettings)
    await ensure_topics(settings)
    await produce(infrastructure.bootstrap_servers,
                  [lead_captured(f"drain{i}@example.com") for i in range(12)])
    engine = create_engine(infrastructure.database_url)
    await probe_service.create_tables(engine)
    handling, release = asyncio.Event(), asyncio.Event()

    async def gated(event: LeadCaptured, uow: UnitOfWork) -> None:
        handling.set()
        await release.wait()  # the stop request arrives while we are here
        await probe_service.on_lead_captured(event, uow)

    definition = probe_service.definition()
    loop = ConsumerLoop(build_consumer(settings, "baton-probe", "probe"), group_id="baton-probe",
                        handlers={LeadCaptured.topic: gated},
                        unit_of_work=unit_of_work_factory(engine, definition.tables, "/tests"),
                        retry=RetryPolicy(1, 0.01), batch_size=100)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    await asyncio.wait_for(handling.wait(), 30)
    stop.set()
    release.set()
    await asyncio.wait_for(running, 30)

    rows, _ = await probe_service.received_counts(engine)
    await engine.dispose()
    assert rows > 0, "the batch in hand was finished"
    committed = await committed_offsets(infrastructure.bootstrap_servers, "baton-probe",
                                        LeadCaptured.topic)
    assert committed == rows, "and exactly its offsets were committed before leaving"


@pytest.mark.slow
async def test_sigterm_drains_and_exits_zero_and_the_service_answers_its_probes(
    infrastructure: Infrastructure,
) -> None:
    engine = await probe_database(infrastructure)
    await produce(infrastructure.bootstrap_servers,
                  [lead_captured(f"term{i}@example.com") for i in range(20)])
    port = free_port()
    process = probe_service.spawn(infrastructure.environment(), port)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            async def ready() -> bool:
                try:
                    return (await client.get(f"{base}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, 60, "the probe to be ready")
            assert (await client.get(f"{base}/healthz")).json()["status"] == "ok"
            checks = (await client.get(f"{base}/readyz")).json()["checks"]
            assert checks == {"database": "ok", "broker": "ok", "shutdown": "ok",
                              "consumer": "ok"}
            assert "baton_consumer_messages_total" in (await client.get(f"{base}/metrics")).text
            assert "/readyz" in (await client.get(f"{base}/openapi.json")).json()["paths"]

        async def all_recorded() -> bool:
            return await probe_service.received_counts(engine) == (20, 20)

        await wait_until(all_recorded, 60, "all 20 leads to be recorded")
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(process.wait, 30)
        await engine.dispose()
    assert exit_code == 0
    assert await committed_offsets(infrastructure.bootstrap_servers, "baton-probe",
                                   LeadCaptured.topic) == 20


@pytest.mark.slow
async def test_a_stopping_service_reports_not_ready_while_it_finishes_its_batch(
    infrastructure: Infrastructure,
) -> None:
    engine = await probe_database(infrastructure)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_lock(:key)"),
                             {"key": probe_service.HOLD_LOCK})
        process = probe_service.spawn(infrastructure.environment(), port)
        try:
            await produce(infrastructure.bootstrap_servers,
                          [lead_captured(f"{probe_service.HOLD_PREFIX}@example.com")])
            await wait_until(lambda: waiting_for_a_lock(engine), 60,
                             "the probe's batch to wait for the held lock")
            process.send_signal(signal.SIGTERM)
            async with httpx.AsyncClient() as client:
                async def not_ready() -> bool:
                    try:
                        return (await client.get(f"{base}/readyz")).status_code == 503
                    except httpx.TransportError:  # not listening yet
                        return False

                await wait_until(not_ready, 30, "readiness to fail once the stop began")
                answer = (await client.get(f"{base}/readyz")).json()
                assert answer["checks"]["shutdown"].startswith("failed: RuntimeError: shutting")
                assert (await client.get(f"{base}/healthz")).status_code == 200, "still live"
        finally:
            await holder.execute(text("SELECT pg_advisory_unlock(:key)"),
                                 {"key": probe_service.HOLD_LOCK})
            exit_code = await asyncio.to_thread(process.wait, 30)
    try:
        assert exit_code == 0
        assert await probe_service.received_counts(engine) == (1, 1), "the batch was finished"
    finally:
        await engine.dispose()


@pytest.mark.slow
async def test_events_a_request_commits_while_the_service_stops_are_published_before_it_exits(
    infrastructure: Infrastructure,
) -> None:
    engine = await probe_database(infrastructure)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    email = f"{probe_service.HOLD_PREFIX}-request@example.com"
    async with engine.connect() as holder, httpx.AsyncClient(timeout=60) as client:
        await holder.execute(text("SELECT pg_advisory_lock(:key)"),
                             {"key": probe_service.REQUEST_HOLD_LOCK})
        process = probe_service.spawn(infrastructure.environment(), port)
        try:
            async def ready() -> bool:
                try:
                    return (await client.get(f"{base}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            async def listening() -> bool:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except ConnectionRefusedError:
                    return False
                writer.close()
                await writer.wait_closed()
                return True

            await wait_until(ready, 60, "the probe to be ready")
            request = asyncio.create_task(
                client.post(f"{base}/probe/scores", params={"email": email}))
            await wait_until(lambda: waiting_for_a_lock(engine), 30,
                             "the request to wait for the held lock")
            process.send_signal(signal.SIGTERM)
            # Released once the listener is closed, the request commits after the consumer
            # stopped, while HTTP stops: only a final drain of the outbox after that
            # publishes its event.
            await wait_until(lambda: _not(listening), 30, "the probe to stop listening")
        finally:
            process.send_signal(signal.SIGTERM)  # again if the test failed before: harmless
            await holder.execute(text("SELECT pg_advisory_unlock(:key)"),
                                 {"key": probe_service.REQUEST_HOLD_LOCK})
            exit_code = await asyncio.to_thread(process.wait, 30)
        answer = await request
    try:
        assert answer.status_code == 202, "the request in flight was answered"
        assert exit_code == 0
        async with engine.connect() as connection:
            left = (await connection.exec_driver_sql("SELECT count(*) FROM probe.outbox")
                    ).scalar_one()
        assert left == 0, "the outbox was drained after the request committed"
        published = await read_all(infrastructure.bootstrap_servers, LeadScored.topic)
        ids = [dict(record.headers)["ce_id"].decode() for record in published]
        assert ids == [answer.json()["event_id"]], "its event was published before the exit"
    finally:
        await engine.dispose()


async def _not(condition: Callable[[], Awaitable[bool]]) -> bool:
    """Return True while ``condition`` does not hold."""
    return not await condition()
