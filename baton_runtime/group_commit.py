"""Group commit: the units of work of concurrent callers share one transaction and one commit.

A request that writes a few rows spends most of its database time on the
transaction around them (checkout, BEGIN, the outbox rows, NOTIFY, COMMIT).
Under load, the callers that arrive while one group commits form the next group,
so each pays for its own statements and a share of one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from baton_runtime.uow import UnitOfWork, UnitOfWorkFactory

T = TypeVar("T")
Work = Callable[[UnitOfWork], Awaitable[T]]
_Waiting = tuple[Work[Any], "asyncio.Future[Any]"]


class GroupCommit:
    """Runs each caller's work in a transaction shared with the callers waiting beside it.

    A caller gets its result only after that transaction has committed. If any work in a
    group raises, the group's transaction is rolled back and every work runs again alone,
    in a transaction of its own, so one failure fails only its caller and nothing of it
    is written. If the commit itself fails, every caller of the group gets that error (as
    each would from its own commit: whether it committed is unknown). Groups commit one
    after another, so two groups never wait for each other's row locks.
    """

    def __init__(self, *, max_group: int = 100) -> None:
        self._max_group = max_group
        self._unit_of_work: UnitOfWorkFactory | None = None
        self._waiting: list[_Waiting] = []
        self._flushing: asyncio.Task[None] | None = None

    async def run(self, unit_of_work: UnitOfWorkFactory, work: Work[T]) -> T:
        """Return what ``work`` returned, once its writes and emitted events are committed.

        Every caller of one instance passes the same ``unit_of_work`` (the service's).
        """
        assert self._unit_of_work in (None, unit_of_work), "one factory per GroupCommit"
        self._unit_of_work = unit_of_work
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((work, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush(unit_of_work), name="group-commit")
        return await future

    async def _flush(self, unit_of_work: UnitOfWorkFactory) -> None:
        """Commit groups until nobody waits."""
        group: list[_Waiting] = []
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

    async def _commit(self, unit_of_work: UnitOfWorkFactory, group: list[_Waiting]) -> None:
        """Run the group's works in one transaction and settle each caller's future."""
        group = [(work, future) for work, future in group if not future.done()]  # gone callers
        if not group:
            return
        try:
            async with unit_of_work() as uow:
                try:
                    results = [await work(uow) for work, _ in group]
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


def _settle(group: list[_Waiting], *, results: list[Any] | None = None,
            error: Exception | None = None) -> None:
    """Give every caller of ``group`` its result, or ``error``."""
    for index, (_, future) in enumerate(group):
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            assert results is not None
            future.set_result(results[index])
