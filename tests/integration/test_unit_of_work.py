"""The unit of work's transaction: begun on the driver, ended on every path, never pooled open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import Column, Integer, Table, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_runtime.db import create_engine, driver_of, service_metadata
from baton_runtime.uow import UnitOfWork, UnitOfWorkFactory, unit_of_work_factory
from tests.support.infrastructure import PostgresServer

pytestmark = pytest.mark.integration

metadata, tables = service_metadata("unitofwork")
rows = Table("rows", metadata, Column("n", Integer, primary_key=True))


class Refused(Exception):
    """What a block raises to give up its unit of work."""


@pytest.fixture
async def engine(postgres: PostgresServer) -> AsyncIterator[AsyncEngine]:
    # One pooled connection (and one overflow): the tests below reuse it in turn.
    engine = await postgres.engine_with(metadata, pool_size=1)
    yield engine
    await engine.dispose()


@pytest.fixture
def unit_of_work(engine: AsyncEngine) -> UnitOfWorkFactory:
    return unit_of_work_factory(engine, tables, "/tests")


async def written(engine: AsyncEngine) -> list[int]:
    """Return the committed rows."""
    async with engine.connect() as connection:
        return sorted((await connection.execute(select(rows.c.n))).scalars())


async def write_both_ways(uow: UnitOfWork, first: int) -> None:
    """Insert row ``first`` through SQLAlchemy and row ``first + 1`` through asyncpg."""
    await uow.connection.execute(insert(rows).values(n=first))
    await (await driver_of(uow.connection)).execute(
        "INSERT INTO unitofwork.rows (n) VALUES ($1)", first + 1)


async def ended(postgres: PostgresServer, driver: asyncpg.Connection) -> None:
    """End ``driver``'s server process and return once the driver has seen it end."""
    closed = asyncio.Event()
    driver.add_termination_listener(lambda _: closed.set())
    await postgres.terminate(driver.get_server_pid())
    async with asyncio.timeout(20):
        await closed.wait()


async def test_statements_through_sqlalchemy_and_the_driver_commit_or_roll_back_together(
    engine: AsyncEngine, unit_of_work: UnitOfWorkFactory,
) -> None:
    with pytest.raises(Refused):
        async with unit_of_work() as uow:
            await write_both_ways(uow, 1)
            raise Refused
    async with unit_of_work() as uow:
        await write_both_ways(uow, 3)
        await uow.commit()
    assert await written(engine) == [3, 4]


async def test_a_savepoint_undoes_only_its_block_and_discard_undoes_everything(
    engine: AsyncEngine, unit_of_work: UnitOfWorkFactory,
) -> None:
    async with unit_of_work() as uow:
        await write_both_ways(uow, 1)
        with pytest.raises(Refused):
            async with uow.savepoint():
                await write_both_ways(uow, 3)
                raise Refused
        async with uow.savepoint():
            await write_both_ways(uow, 5)
        await uow.commit()
    assert await written(engine) == [1, 2, 5, 6]
    async with unit_of_work() as uow:
        await write_both_ways(uow, 7)
        await uow.discard()
        await write_both_ways(uow, 9)
        await uow.commit()
    assert await written(engine) == [1, 2, 5, 6, 9, 10]


async def test_after_a_unit_of_work_a_plain_connection_has_its_own_transactions_again(
    engine: AsyncEngine, unit_of_work: UnitOfWorkFactory,
) -> None:
    async with unit_of_work() as uow:
        await write_both_ways(uow, 1)
        await uow.commit()
    # Autocommit was the unit of work's; a block of the engine's own still rolls back.
    with pytest.raises(Refused):
        async with engine.begin() as connection:
            await connection.execute(insert(rows).values(n=3))
            raise Refused
    assert await written(engine) == [1, 2]


async def test_a_unit_of_work_cancelled_mid_statement_leaves_no_transaction_open(
    engine: AsyncEngine, unit_of_work: UnitOfWorkFactory, postgres: PostgresServer,
) -> None:
    started = asyncio.Event()

    async def stalled() -> None:
        async with unit_of_work() as uow:
            await write_both_ways(uow, 1)
            started.set()
            await uow.connection.execute(text("SELECT pg_sleep(30)"))

    task = asyncio.create_task(stalled())
    await started.wait()
    watcher = create_engine(postgres.admin_url, pool_size=1)
    try:
        async with asyncio.timeout(20), watcher.connect() as connection:
            # The sleep has reached the server once its backend runs it.
            while not (await connection.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' "
                    "AND state = 'active'"))).scalar_one():
                await connection.rollback()  # a fresh snapshot of the activity view
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The pool's one connection is usable: a new unit of work begins and commits.
        async with unit_of_work() as uow:
            await write_both_ways(uow, 3)
            await uow.commit()
        assert await written(engine) == [3, 4]
        async with watcher.connect() as connection:
            open_transactions = (await connection.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' "
                "AND datname = :database"), {"database": engine.url.database})).scalar_one()
        assert open_transactions == 0
    finally:
        await watcher.dispose()


async def test_a_unit_of_work_whose_connection_died_at_commit_is_not_pooled_again(
    engine: AsyncEngine, unit_of_work: UnitOfWorkFactory, postgres: PostgresServer,
) -> None:
    with pytest.raises(asyncpg.InterfaceError, match="connection is closed"):
        async with unit_of_work() as uow:
            await write_both_ways(uow, 1)
            await ended(postgres, await driver_of(uow.connection))
            await uow.commit()
    async with unit_of_work() as uow:  # on a new connection, not the dead one
        await write_both_ways(uow, 3)
        await uow.commit()
    assert await written(engine) == [3, 4]


async def test_a_connection_that_died_in_the_pool_fails_one_unit_of_work_only(
    engine: AsyncEngine, unit_of_work: UnitOfWorkFactory, postgres: PostgresServer,
) -> None:
    async with unit_of_work() as uow:
        driver = await driver_of(uow.connection)
        await uow.commit()
    await ended(postgres, driver)
    with pytest.raises(asyncpg.InterfaceError, match="connection is closed"):
        async with unit_of_work():
            pass
    async with unit_of_work() as uow:
        await write_both_ways(uow, 1)
        await uow.commit()
    assert await written(engine) == [1, 2]


async def test_a_connection_found_dead_gets_the_others_pooled_before_it_replaced_too(
    postgres: PostgresServer,
) -> None:
    engine = await postgres.engine_with(metadata, pool_size=2)
    unit_of_work = unit_of_work_factory(engine, tables, "/tests")
    try:
        drivers = []
        async with unit_of_work() as first, unit_of_work() as second:  # two connections
            drivers = [await driver_of(first.connection), await driver_of(second.connection)]
        for driver in drivers:  # as a database restart would
            await ended(postgres, driver)
        with pytest.raises(asyncpg.InterfaceError, match="connection is closed"):
            async with unit_of_work():
                pass
        async with unit_of_work() as uow:  # the other dead one was replaced as well
            await write_both_ways(uow, 1)
            await uow.commit()
        assert await written(engine) == [1, 2]
    finally:
        await engine.dispose()
