"""A service's OpenAPI document against the service itself: schemathesis calls its app in
process, over a fresh migrated database, after the service's own start-up hooks.

Holds no tests: each ``tests/integration/test_<service>_openapi.py`` uses it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from baton import registry
from baton_runtime import migrations
from baton_runtime.consumer import dispatch
from baton_runtime.db import create_engine
from baton_runtime.http import create_app
from baton_runtime.service import ServiceContext, ServiceDefinition
from baton_runtime.settings import RuntimeSettings
from baton_runtime.uow import unit_of_work_factory
from schemas.events import Event
from tests.support.infrastructure import PostgresServer

# Every answer is one the document lists, with the body it lists, and none is a 5xx.
CHECKS: list[CheckFunction] = [not_a_server_error, status_code_conformance,
                               content_type_conformance, response_schema_conformance]
# Nothing listens there: settings need a broker, and these tests publish nothing.
NO_BROKER = "127.0.0.1:9"
FunctionT = TypeVar("FunctionT", bound=Callable[..., Any])


def generated(max_examples: int) -> Callable[[FunctionT], FunctionT]:
    """Return hypothesis settings for ``max_examples`` requests per operation, without
    deadlines: a request's time depends on the database and the machine."""
    return settings(max_examples=max_examples, deadline=None, suppress_health_check=[
        HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
        HealthCheck.filter_too_much])


@dataclass(frozen=True)
class InProcessService:
    """One service's wiring and app, built at import as schemathesis wants the app; the
    database comes later, from ``running``."""

    name: str
    settings: RuntimeSettings
    definition: ServiceDefinition
    app: FastAPI

    @classmethod
    def build(cls, name: str, **settings_values: Any) -> InProcessService:
        """Return the service ``name`` with these settings (a database set by ``running``)."""
        settings_class, definition_of = registry.load(name)
        service_settings: RuntimeSettings = settings_class(**{
            "database_url": "postgresql://set-by-running/",
            "kafka_bootstrap_servers": NO_BROKER, **settings_values})
        definition = definition_of(service_settings)
        app = create_app(service=name, version="test", routers=definition.routers,
                         readiness={}, middleware=definition.middleware)
        return cls(name, service_settings, definition, app)

    def schema(self) -> OpenApiSchema:
        """Return the app's own OpenAPI document, loaded in process."""
        return schemathesis.openapi.from_asgi("/openapi.json", self.app)

    @asynccontextmanager
    async def running(self, postgres: PostgresServer) -> AsyncIterator[ServiceContext]:
        """Yield the context the app runs with: a fresh, migrated database, after the
        service's start-up hooks."""
        database_url = await postgres.create_database()
        await asyncio.to_thread(migrations.upgrade, registry.migrations_dir(self.name),
                                database_url)
        # No pool: schemathesis calls the app on an event loop of its own, and an asyncpg
        # connection only works on the loop that opened it.
        engine = create_engine(database_url, pool_size=None, application_name=self.name)
        running_settings = self.settings.model_copy(update={"database_url": database_url})
        context = ServiceContext(self.name, running_settings, engine, unit_of_work_factory(
            engine, self.definition.tables, self.definition.source), self.definition.clock)
        try:
            for hook in self.definition.startup:
                await hook(context)
            self.app.state.context = context
            yield context
        finally:
            await engine.dispose()

    def context_fixture(self, seed: Callable[[ServiceContext], Awaitable[None]] | None = None
                        ) -> Any:
        """Return the module's ``context`` fixture: the app's context over its own database,
        ``seed`` run on it first. Assign it to ``context`` in the test module."""

        async def context(postgres: PostgresServer) -> AsyncIterator[ServiceContext]:
            async with self.running(postgres) as running:
                if seed is not None:
                    await seed(running)
                yield running

        return pytest.fixture(scope="module", name="context")(context)

    def client(self) -> httpx.AsyncClient:
        """Return a client of the app on the caller's event loop, to seed through the API."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                 base_url=f"http://{self.name}")

    async def handle(self, context: ServiceContext, *events: Event) -> None:
        """Run the handler of the events' topic on them in one unit of work, as the consumer
        loop runs a batch."""
        async with context.unit_of_work() as uow:
            await dispatch(self.definition.handlers[events[0].topic], events, uow)
            await uow.commit()


class KnownValues:
    """Values of seeded rows by parameter or field name: generated requests mostly use them,
    so that reads and changes by id find a row instead of answering 404."""

    def __init__(self) -> None:
        self._values: defaultdict[str, list[Any]] = defaultdict(list)

    def add(self, name: str, *values: Any) -> None:
        """Remember ``values`` as known values of parameters and body fields named ``name``."""
        self._values[name].extend(values)

    def values(self, name: str) -> list[Any]:
        """Return the known values of ``name`` (empty before the fixture seeded any)."""
        return list(self._values.get(name, ()))

    def mostly_known(self, fields: Any) -> st.SearchStrategy[Any]:
        """Return a strategy of ``fields`` in which each field with known values mostly
        takes one of them; of anything but a mapping (no parameters, a list body), just it."""
        if not isinstance(fields, Mapping):
            return st.just(fields)
        # Called as the value is drawn, after seeding: the lists are complete by then.
        choices = {name: self._mostly(self._values[name], value)
                   for name, value in fields.items() if self._values.get(name)}
        return st.fixed_dictionaries(choices).map(lambda chosen: {**fields, **chosen})

    @staticmethod
    def _mostly(known: list[Any], value: Any) -> st.SearchStrategy[Any]:
        """Return a strategy of one of ``known`` three times in four, else of ``value``."""
        # A generated id finds no row: one request in four is enough to see that answer.
        return st.integers(0, 3).flatmap(
            lambda draw: st.just(value) if draw == 0 else st.sampled_from(known))

    def install(self, schema: OpenApiSchema) -> None:
        """Make the path parameters, query parameters and object bodies ``schema``
        generates take known values."""

        def flatmap_path_parameters(context: schemathesis.HookContext,
                                    path_parameters: Any) -> st.SearchStrategy[Any]:
            return self.mostly_known(path_parameters)

        def flatmap_query(context: schemathesis.HookContext,
                          query: Any) -> st.SearchStrategy[Any]:
            return self.mostly_known(query)

        def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
            return self.mostly_known(body)

        for hook in (flatmap_path_parameters, flatmap_query, flatmap_body):
            schema.hook(hook)
