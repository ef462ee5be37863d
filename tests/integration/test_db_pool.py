"""The engine's pool: idle connections are checked before use, busy ones are not; the
connections it makes take JSON parameters as bytes; an unpooled engine serves any loop."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_runtime.db import create_engine, driver_of, json_text
from tests.support.infrastructure import PostgresServer

pytestmark = pytest.mark.integration


async def backend_pid(engine: AsyncEngine) -> int:
    """Return the server process id of the connection the pool hands out next."""
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_that_died_while_idle_is_replaced_before_use(
    postgres: PostgresServer,
) -> None:
    database_url = await postgres.create_database()
    engine = create_engine(database_url, pool_size=1, ping_after_idle_seconds=0)
    try:
        dead = await backend_pid(engine)
        await postgres.terminate(dead)
        assert await backend_pid(engine) != dead
    finally:
        await engine.dispose()


async def test_a_recently_used_connection_is_not_pinged_and_a_dead_one_fails_only_once(
    postgres: PostgresServer,
) -> None:
    database_url = await postgres.create_database()
    engine = create_engine(database_url, pool_size=1, ping_after_idle_seconds=3600)
    try:
        dead = await backend_pid(engine)
        await postgres.terminate(dead)
        with pytest.raises(DBAPIError) as failed:
            await backend_pid(engine)
        assert failed.value.connection_invalidated
        assert await backend_pid(engine) != dead
    finally:
        await engine.dispose()


@pytest.mark.parametrize("json_type", ["json", "jsonb"])
async def test_json_parameters_go_as_bytes_or_text_and_json_results_decode(
    postgres: PostgresServer, json_type: str,
) -> None:
    engine = create_engine(await postgres.create_database(), pool_size=1)
    document = {"会社": "株式会社サンプル", "points": [1.5, 2]}
    try:
        async with engine.connect() as connection:
            for given in (json_text(document), json_text(document).decode()):
                stored = (await connection.execute(
                    text(f"SELECT CAST(:given AS {json_type}) ->> '会社'"),
                    {"given": given})).scalar_one()
                assert stored == "株式会社サンプル"
                assert (await connection.execute(
                    text(f"SELECT CAST(:given AS {json_type})"), {"given": given}
                )).scalar_one() == document
            driver = await driver_of(connection)  # the same codec on the driver's own calls
            assert await driver.fetchval(f"SELECT $1::{json_type}",
                                         json_text(document)) == document
    finally:
        await engine.dispose()


async def test_an_unpooled_engine_serves_callers_on_other_event_loops(
    postgres: PostgresServer,
) -> None:
    engine = create_engine(await postgres.create_database(), pool_size=None)

    async def stored_company() -> str:
        async with engine.connect() as connection:
            return str((await connection.execute(
                text("SELECT CAST(:given AS jsonb) ->> '会社'"),
                {"given": json_text({"会社": "株式会社サンプル"})})).scalar_one())

    try:
        # Each asyncio.run is a loop of its own; a pooled connection would outlive its loop.
        for _ in range(2):
            assert await asyncio.to_thread(asyncio.run, stored_company()) == "株式会社サンプル"
        assert await stored_company() == "株式会社サンプル"
    finally:
        await engine.dispose()
