"""Every service's migrations create exactly the tables, columns and indexes its store declares."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from baton import registry
from baton_runtime.db import create_engine
from baton_runtime.migrations import upgrade
from tests.support.infrastructure import PostgresServer

pytestmark = pytest.mark.integration


def differences(connection: Connection, metadata: MetaData, schema: str) -> list[Any]:
    """Return what autogenerate would change to make ``schema`` match ``metadata``."""
    context = MigrationContext.configure(connection, opts={
        "include_schemas": True, "compare_type": True, "compare_server_default": True,
        "include_name": lambda name, kind, _parent: (
            name == schema if kind == "schema" else name != "alembic_version"),
    })
    return list(compare_metadata(context, metadata))


@pytest.mark.parametrize("service", registry.SERVICES)
async def test_the_migrations_create_what_the_store_declares(postgres: PostgresServer,
                                                             service: str) -> None:
    database_url = await postgres.create_database()
    await asyncio.to_thread(upgrade, registry.migrations_dir(service), database_url)
    store = importlib.import_module(f"services.{service}.store")
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            found = await connection.run_sync(differences, store.metadata,
                                              store.plumbing.schema)
    finally:
        await engine.dispose()
    assert found == []
