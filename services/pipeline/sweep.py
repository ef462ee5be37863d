"""The zombie sweep: recycles open deals nobody moved, in batches that replicas share."""

from __future__ import annotations

import structlog

from baton_runtime.clock import Clock
from baton_runtime.uow import UnitOfWorkFactory
from services.pipeline import domain, handlers, store
from services.pipeline.domain import PipelineRules

log = structlog.get_logger(__name__)


async def sweep_zombies(unit_of_work: UnitOfWorkFactory, rules: PipelineRules, clock: Clock, *,
                        batch_size: int) -> int:
    """Recycle every zombie deal, one batch per transaction; return how many were recycled.

    The zombies are found in one pass, then claimed in batches with SKIP LOCKED and
    checked again: replicas sweeping at once split the work and never recycle a deal
    twice, and a deal a rep is changing right now is left for the next sweep.
    """
    async with unit_of_work() as uow:
        candidates = await store.zombie_ids(uow.connection, rules.cutoffs(clock()))
    total = 0
    for start in range(0, len(candidates), batch_size):
        async with unit_of_work() as uow:
            now = clock()
            claimed = await store.claim_zombies(uow.connection, rules.cutoffs(now),
                                                candidates[start:start + batch_size])
            changes = [domain.recycle(deal, now, reason) for deal in claimed
                       if (reason := domain.zombie_reason(deal, now, rules))]
            if changes:
                await store.save_recycled(uow.connection, changes, at=now)
                for changed in changes:
                    uow.emit(handlers.recycled(changed, now))
                await uow.commit()
        total += len(changes)
    if total:
        log.info("zombie deals recycled", count=total)
    return total
