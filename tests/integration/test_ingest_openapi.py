"""Ingest's OpenAPI document against the app itself: schemathesis, in process, real database.

Every generated request must get an answer the document lists (status and body),
and never a 5xx.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import NullPool
from sqlalchemy.ext.asyncio import create_async_engine

from baton import registry
from baton_runtime import migrations
from baton_runtime.db import asyncpg_url
from baton_runtime.http import create_app
from baton_runtime.service import ServiceContext
from baton_runtime.uow import unit_of_work_factory
from services.ingest import main
from services.ingest.settings import IngestSettings
from tests.support.infrastructure import PostgresServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
API_KEY = "openapi-test-key-0123456789"
HUBSPOT_SECRET = "openapi-hubspot-secret"


# Built at import, as schemathesis wants the app; the fixture gives it a database.
SETTINGS = IngestSettings(
    database_url="postgresql://set-by-the-fixture/", kafka_bootstrap_servers="127.0.0.1:9",
    ingest_api_keys={"web": API_KEY},
    ingest_rate_limit_per_minute=1_000_000)
DEFINITION = main.definition(SETTINGS)
APP = create_app(service="ingest", version="test", routers=DEFINITION.routers, readiness={},
                 middleware=DEFINITION.middleware)


@schemathesis.serializer("application/x-ndjson")
def ndjson(context: Any, value: Any) -> bytes:
    """Send generated NDJSON bodies (strings) as they are."""
    return value.encode() if isinstance(value, str) else str(value).encode()


schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
async def context(postgres: PostgresServer) -> AsyncIterator[ServiceContext]:
    """Give the app a fresh, migrated database and run its start-up hooks."""
    database_url = await postgres.create_database()
    await asyncio.to_thread(migrations.upgrade, registry.migrations_dir("ingest"), database_url)
    # No pool: schemathesis calls the app on an event loop of its own.
    engine = create_async_engine(asyncpg_url(database_url), poolclass=NullPool)
    service_settings = SETTINGS.model_copy(update={"database_url": database_url})
    context = ServiceContext("ingest", service_settings, engine, unit_of_work_factory(
        engine, DEFINITION.tables, DEFINITION.source), DEFINITION.clock)
    for hook in DEFINITION.startup:
        await hook(context)
    APP.state.context = context
    yield context
    await engine.dispose()


@schema.parametrize()
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_every_answer_is_documented_and_none_is_a_server_error(
        case: schemathesis.Case[Any], context: ServiceContext) -> None:
    case.call_and_validate(
        headers={"X-API-Key": API_KEY},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                response_schema_conformance])
