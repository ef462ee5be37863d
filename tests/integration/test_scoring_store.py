"""Scoring's migrations create exactly the tables store.py describes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from baton import registry
from baton_runtime.db import create_engine
from baton_runtime.migrations import upgrade
from services.scoring import store
from tests.conftest import Infrastructure

pytestmark = pytest.mark.integration


def differences(connection: Connection) -> list[Any]:
    """Return what autogenerate would change to make the database match store.py."""
    context = MigrationContext.configure(connection, opts={
        "include_schemas": True, "compare_type": True, "compare_server_default": True,
        "include_name": lambda name, kind, _: kind != "schema" or name == "scoring",
        "include_object": lambda obj, name, kind, *_: name != "alembic_version",
    })
    return list(compare_metadata(context, store.metadata))


async def test_the_migrations_match_the_store_tables(infrastructure: Infrastructure) -> None:
    await asyncio.to_thread(upgrade, registry.migrations_dir("scoring"),
                            infrastructure.database_url)
    engine = create_engine(infrastructure.database_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()
