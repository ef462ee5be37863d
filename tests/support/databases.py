"""A service's schema, migrated in a fresh database, with an engine and units of work on it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from baton import registry
from baton_runtime.db import PlumbingTables, create_engine
from baton_runtime.migrations import upgrade
from baton_runtime.uow import UnitOfWorkFactory, unit_of_work_factory
from tests.support.infrastructure import PostgresServer


@dataclass(frozen=True)
class ServiceDatabase:
    """A migrated service schema in a fresh database."""

    url: str
    engine: AsyncEngine
    unit_of_work: UnitOfWorkFactory


@contextlib.asynccontextmanager
async def migrated_database(postgres: PostgresServer, service: str, tables: PlumbingTables,
                            source: str) -> AsyncIterator[ServiceDatabase]:
    """Yield a fresh database with ``service``'s migrations applied; its units of work
    write ``tables``' outbox as ``source``."""
    url = await postgres.create_database()
    await asyncio.to_thread(upgrade, registry.migrations_dir(service), url)
    engine = create_engine(url)
    try:
        yield ServiceDatabase(url, engine, unit_of_work_factory(engine, tables, source))
    finally:
        await engine.dispose()
