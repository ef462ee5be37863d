"""Ingest's start-up and background duties on a real database: keys, and forgetting."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from baton import registry
from baton_runtime import migrations
from baton_runtime.db import create_engine
from baton_runtime.service import ServiceContext
from baton_runtime.uow import unit_of_work_factory
from services.ingest import main, store, workers
from services.ingest.access import KeyRing
from services.ingest.settings import IngestSettings
from tests.support.clock import ManualClock
from tests.support.infrastructure import PostgresServer

pytestmark = pytest.mark.integration
KEY = "upkeep-test-key-0123456789"
START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@pytest.fixture
async def context(postgres: PostgresServer) -> AsyncIterator[ServiceContext]:
    database_url = await postgres.create_database()
    await asyncio.to_thread(migrations.upgrade, registry.migrations_dir("ingest"), database_url)
    settings = IngestSettings(database_url=database_url, kafka_bootstrap_servers="127.0.0.1:9",
                              ingest_api_keys={"trade-show": KEY})
    definition = main.definition(settings)
    engine = create_engine(database_url, pool_size=2)
    yield ServiceContext("ingest", settings, engine, unit_of_work_factory(
        engine, definition.tables, definition.source), ManualClock(START))
    await engine.dispose()


async def test_start_up_stores_configured_keys_once_and_never_revives_a_revoked_one(
        context: ServiceContext) -> None:
    keys = KeyRing()
    await workers.bootstrap_keys(context, keys=keys)
    found = keys.find(KEY)
    assert found is not None and found.source == "trade-show" and found.signing_secret is None
    async with context.engine.begin() as connection:
        await connection.execute(text("UPDATE ingest.api_keys SET revoked_at = now()"))
    await workers.bootstrap_keys(context, keys=keys)
    assert keys.find(KEY) is None, "still revoked after a restart"
    rotated = dataclasses.replace(context, settings=context.settings.model_copy(
        update={"ingest_api_keys": {"trade-show": SecretStr(KEY + "-new")}}))
    await workers.bootstrap_keys(rotated, keys=keys)
    assert keys.find(KEY + "-new") is not None
    async with context.engine.connect() as connection:
        stored = (await connection.execute(text(
            "SELECT count(*) FROM ingest.api_keys"))).scalar_one()
    assert stored == 2


async def test_expired_idempotency_records_and_signatures_are_forgotten(
        context: ServiceContext) -> None:
    async with context.unit_of_work() as uow:
        await store.claim_idempotency_key(uow.connection, source="web", key="form-1",
                                          fingerprint="digest", lead_id=uuid.uuid4())
        assert await store.remember_signature(uow.connection, "key_1", "v1=abc")
        await uow.commit()
    clock = context.clock
    assert isinstance(clock, ManualClock)
    settings: IngestSettings = context.settings
    signature_window = timedelta(seconds=2 * settings.ingest_signature_tolerance_seconds)
    retention = timedelta(hours=settings.ingest_idempotency_retention_hours)

    clock.now = datetime.now(UTC) + signature_window - timedelta(minutes=1)
    await workers.forget_expired(context)
    assert await counts(context) == (1, 1), "both are still inside their windows"
    clock.now = datetime.now(UTC) + signature_window + timedelta(minutes=1)
    await workers.forget_expired(context)
    assert await counts(context) == (1, 0), "a signature is kept only while it could replay"
    clock.now = datetime.now(UTC) + retention + timedelta(minutes=1)
    await workers.forget_expired(context)
    assert await counts(context) == (0, 0)


async def counts(context: ServiceContext) -> tuple[int, int]:
    """Return how many idempotency records and seen signatures are stored."""
    async with context.engine.connect() as connection:
        keys = (await connection.execute(text(
            "SELECT count(*) FROM ingest.idempotency_keys"))).scalar_one()
        signatures = (await connection.execute(text(
            "SELECT count(*) FROM ingest.request_signatures"))).scalar_one()
    return int(keys), int(signatures)
