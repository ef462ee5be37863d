"""Group commit: concurrent units of work share a transaction, and a failure stays its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from sqlalchemy import Column, Integer, Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_runtime.db import service_metadata
from baton_runtime.group_commit import GroupCommit, Work, run_each
from baton_runtime.uow import UnitOfWork, unit_of_work_factory
from schemas.envelope import KafkaRecord
from tests.support.infrastructure import PostgresServer

pytestmark = pytest.mark.integration

metadata, tables = service_metadata("grouped")
rows = Table("rows", metadata, Column("n", Integer, primary_key=True))


class Refused(Exception):
    """What a work raises for a request it turns down."""


@pytest.fixture
async def engine(postgres: PostgresServer) -> AsyncIterator[AsyncEngine]:
    engine = await postgres.engine_with(metadata)
    yield engine
    await engine.dispose()




async def write(uow: UnitOfWork, n: int) -> int:
    """Insert row ``n`` and queue one outbox record; return the transaction's id."""
    await uow.connection.execute(insert(rows).values(n=n))
    uow.emit_record(KafkaRecord(topic="t", key=str(n).encode(), headers=(), value=b"{}"))
    return int((await uow.connection.execute(text("SELECT txid_current()"))).scalar_one())


async def committed(engine: AsyncEngine) -> tuple[list[int], int]:
    """Return the committed rows and the number of outbox rows."""
    async with engine.connect() as connection:
        found = sorted((await connection.execute(select(rows.c.n))).scalars())
        outbox = (await connection.execute(select(func.count()).select_from(tables.outbox)))
        return found, int(outbox.scalar_one())


async def test_concurrent_callers_share_one_transaction_and_get_answers_after_commit(
    engine: AsyncEngine,
) -> None:
    commits: GroupCommit[Work[int], int] = GroupCommit(run_each)
    unit_of_work = unit_of_work_factory(engine, tables, "/test")

    async def caller(n: int) -> int:
        transaction = await commits.run(unit_of_work, lambda uow: write(uow, n))
        assert n in (await committed(engine))[0]  # visible to others by the time it answers
        return transaction

    transactions = await asyncio.gather(*(caller(n) for n in range(10)))
    assert len(set(transactions)) == 1  # all ten were waiting when the first group began
    assert await committed(engine) == (list(range(10)), 10)


async def test_a_failing_work_fails_only_its_caller_and_writes_nothing(
    engine: AsyncEngine,
) -> None:
    commits, unit_of_work = GroupCommit(run_each), unit_of_work_factory(engine, tables, "/test")

    def work(n: int) -> Callable[[UnitOfWork], Awaitable[int]]:
        async def run(uow: UnitOfWork) -> int:
            result = await write(uow, n)
            if n == 5:
                raise Refused(n)
            return result

        return run

    outcomes = await asyncio.gather(*(commits.run(unit_of_work, work(n)) for n in range(10)),
                                    return_exceptions=True)
    assert [type(outcome) for outcome in outcomes].count(Refused) == 1
    assert isinstance(outcomes[5], Refused)
    assert await committed(engine) == ([n for n in range(10) if n != 5], 9)


async def test_a_group_handler_gets_the_waiting_callers_items_in_one_call_in_order(
    engine: AsyncEngine,
) -> None:
    calls: list[list[int]] = []

    async def insert_all(uow: UnitOfWork, numbers: Sequence[int]) -> list[int]:
        calls.append(list(numbers))
        await uow.connection.execute(insert(rows), [{"n": n} for n in numbers])
        return [n * 10 for n in numbers]

    commits, unit_of_work = GroupCommit(insert_all), unit_of_work_factory(engine, tables, "/t")
    results = await asyncio.gather(*(commits.run(unit_of_work, n) for n in range(10)))
    assert results == [n * 10 for n in range(10)], "each caller gets its own item's result"
    assert calls == [list(range(10))]
    assert await committed(engine) == (list(range(10)), 0)
