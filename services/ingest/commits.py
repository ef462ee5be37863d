"""Single captures committed in groups, each group's plain captures in one statement.

baton_runtime's GroupCommit shares one transaction among concurrent callers but runs
their works one after another, a round trip each. Here a group is handed to
``handlers.record_all`` whole, which records a run of plain captures (no signature,
no idempotency key, distinct leads) in one round trip: under load, a capture then costs
a share of four round trips (BEGIN, the captures, the outbox rows, COMMIT), not one
of its own plus that share, and a group waits for fewer round trips before it commits.
"""

from __future__ import annotations

import asyncio

from baton_runtime.uow import UnitOfWorkFactory
from services.ingest import handlers
from services.ingest.handlers import Outcome, Submitted

_Waiting = tuple[Submitted, "asyncio.Future[Outcome]"]


class CaptureCommits:
    """Records each caller's capture in a transaction shared with the callers beside it.

    As GroupCommit: a caller gets its outcome only after that transaction has committed.
    If recording a group raises, its transaction is rolled back and every capture is
    recorded again alone, in a transaction of its own, so one failure fails only its
    caller and nothing of it is written. If the commit itself fails, every caller of the
    group gets that error. Groups commit one after another.
    """

    def __init__(self, *, max_group: int = 100) -> None:
        self._max_group = max_group
        self._unit_of_work: UnitOfWorkFactory | None = None
        self._waiting: list[_Waiting] = []
        self._flushing: asyncio.Task[None] | None = None

    async def run(self, unit_of_work: UnitOfWorkFactory, submitted: Submitted) -> Outcome:
        """Return the capture's outcome once its writes and lead.captured are committed.

        Raises what ``handlers.record_all`` raises for this capture alone. Every caller
        of one instance passes the same ``unit_of_work`` (the service's).
        """
        assert self._unit_of_work in (None, unit_of_work), "one factory per CaptureCommits"
        self._unit_of_work = unit_of_work
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((submitted, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush(unit_of_work),
                                                 name="capture-commits")
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
        """Record the group's captures in one transaction and settle each caller's future."""
        group = [(submitted, future) for submitted, future in group if not future.done()]
        if not group:
            return
        try:
            async with unit_of_work() as uow:
                try:
                    outcomes = await handlers.record_all(uow, [item for item, _ in group])
                except Exception as error:
                    failed: Exception | None = error
                else:
                    failed = None
                    await uow.commit()
        except Exception as error:  # no transaction, or its commit failed
            _settle(group, error=error)
            return
        if failed is None:
            _settle(group, outcomes=outcomes)
        elif len(group) == 1:
            _settle(group, error=failed)
        else:
            for waiting in group:
                await self._commit(unit_of_work, [waiting])


def _settle(group: list[_Waiting], *, outcomes: list[Outcome] | None = None,
            error: Exception | None = None) -> None:
    """Give every caller of ``group`` its outcome, or ``error``."""
    for index, (_, future) in enumerate(group):
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            assert outcomes is not None
            future.set_result(outcomes[index])
