"""Group commit: the units of work of concurrent callers share one transaction and one commit.

A request that writes a few rows spends most of its database time on the
transaction around them (checkout, BEGIN, the outbox rows, NOTIFY, COMMIT).
Under load, the callers that arrive while one group commits form the next group,
so each pays for its own statements and a share of one transaction. The group's
items go to one handler, which may write them with a few set-based statements;
``run_each`` runs callers' own works one after another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from baton_runtime.uow import UnitOfWork, UnitOfWorkFactory

T = TypeVar("T")
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
Work = Callable[[UnitOfWork], Awaitable[T]]
GroupHandler = Callable[[UnitOfWork, Sequence[ItemT]], Awaitable[Sequence[ResultT]]]


async def run_each(uow: UnitOfWork, works: Sequence[Work[Any]]) -> list[Any]:
    """Return what each of ``works`` returned, run one after another in ``uow``."""
    return [await work(uow) for work in works]


class GroupCommit(Generic[ItemT, ResultT]):
    """Handles each caller's item in a transaction shared with the callers waiting beside it.

    ``handle`` gets a group's items in arrival order and returns a result for each. A
    caller gets its result only after that transaction has committed. If handling a
    group raises, its transaction is rolled back and every item is handled again alone,
    in a transaction of its own, so one failure fails only its caller and nothing of it
    is written. If the commit itself fails, every caller of the group gets that error (as
    each would from its own commit: whether it committed is unknown). Groups commit one
    after another, so two groups never wait for each other's row locks.
    """

    def __init__(self, handle: GroupHandler[ItemT, ResultT], *, max_group: int = 100) -> None:
        self._handle = handle
        self._max_group = max_group
        self._unit_of_work: UnitOfWorkFactory | None = None
        self._waiting: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def run(self, unit_of_work: UnitOfWorkFactory, item: ItemT) -> ResultT:
        """Return ``item``'s result once its writes and emitted events are committed.

        Raises what handling ``item`` alone raises. Every caller of one instance passes
        the same ``unit_of_work`` (the service's).
        """
        assert self._unit_of_work in (None, unit_of_work), "one factory per GroupCommit"
        self._unit_of_work = unit_of_work
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush(unit_of_work), name="group-commit")
        return await future

    async def _flush(self, unit_of_work: UnitOfWorkFactory) -> None:
        """Commit groups until nobody waits."""
        group: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        try:
            while self._waiting:
                group = self._waiting[:self._max_group]
                del self._waiting[:self._max_group]
                await self._commit(unit_of_work, group)
        except BaseException:  # cancelled (shutdown): nobody must wait for an answer forever
            for _, future in (*group, *self._waiting):
                future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._flushing = None

    async def _commit(self, unit_of_work: UnitOfWorkFactory,
                      group: list[tuple[ItemT, asyncio.Future[ResultT]]]) -> None:
        """Handle the group's items in one transaction and settle each caller's future."""
        group = [(item, future) for item, future in group if not future.done()]  # gone callers
        if not group:
            return
        try:
            async with unit_of_work() as uow:
                try:
                    results = await self._handle(uow, [item for item, _ in group])
                except Exception as error:
                    failed: Exception | None = error
                else:
                    failed = None
                    await uow.commit()
        except Exception as error:  # no transaction, or its commit failed
            _settle(group, error=error)
            return
        if failed is None:
            _settle(group, results=results)
        elif len(group) == 1:
            _settle(group, error=failed)
        else:
            for waiting in group:
                await self._commit(unit_of_work, [waiting])


def _settle(group: Sequence[tuple[Any, asyncio.Future[Any]]], *,
            results: Sequence[Any] | None = None, error: Exception | None = None) -> None:
    """Give every caller of ``group`` its result, or ``error``."""
    for index, (_, future) in enumerate(group):
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            assert results is not None
            future.set_result(results[index])
