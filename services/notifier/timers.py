"""SLA clocks in the database: started and stopped by events, fired by a sweep on one replica."""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_runtime.clock import Clock
from baton_runtime.uow import UnitOfWorkFactory
from services.notifier import alerts, store
from services.notifier.domain import (
    ClockChanges,
    ClockKind,
    ClockPlan,
    Policy,
    Rung,
    late_stop_reports_breach,
    plan_clock,
    rungs_to_alert,
)

log = structlog.get_logger(__name__)
SWEEP_BATCH = 200
RUNGS_FIRED = Counter("baton_notifier_sla_rungs_total",
                      "SLA escalation rungs fired, and breaches reported by late stops.",
                      ["clock", "rung"])


async def apply(connection: AsyncConnection, policy: Policy, lead_id: uuid.UUID,
                changes: ClockChanges, *, at: datetime, reason: str) -> dict[ClockKind, ClockPlan]:
    """Stop, then start, the lead's clocks; report late stops; return the started plans."""
    for clock in await store.stop_clocks(connection, lead_id, changes.stop, at=at,
                                         reason=reason):
        if late_stop_reports_breach(clock.due_at, at, clock.rungs_fired):
            RUNGS_FIRED.labels(clock=clock.kind, rung="late_stop").inc()
            await alerts.record_sla_alert(connection, policy, clock, Rung.BREACH, at=at,
                                          stopped_late=True)
    started = [(rule, plan_clock(rule, at, policy.calendar)) for rule in changes.start]
    await store.start_clocks(connection, [(lead_id, rule, plan) for rule, plan in started])
    return {rule.kind: plan for rule, plan in started}


class TimerSweeper:
    """Fires the rungs of clocks that fell due; row locks make each fire on one replica once."""

    def __init__(self, unit_of_work: UnitOfWorkFactory, policy: Policy, clock: Clock) -> None:
        self._unit_of_work = unit_of_work
        self._policy = policy
        self._clock = clock

    async def fire_due(self) -> int:
        """Fire every rung due by now and return how many clocks were advanced."""
        advanced = 0
        while True:
            batch = await self._fire_batch(self._clock())
            advanced += batch
            if batch < SWEEP_BATCH:
                return advanced

    async def _fire_batch(self, now: datetime) -> int:
        """Fire one batch of due clocks in one transaction and return its size."""
        async with self._unit_of_work() as uow:
            clocks = await store.claim_due_clocks(uow.connection, now, SWEEP_BATCH)
            for clock in clocks:
                plan = ClockPlan(started_at=clock.started_at, remind_at=clock.remind_at,
                                 due_at=clock.due_at, escalate_at=clock.escalate_at)
                crossed = plan.rungs_due(clock.rungs_fired, now)
                for rung in rungs_to_alert(crossed):
                    RUNGS_FIRED.labels(clock=clock.kind, rung=rung.name.lower()).inc()
                    await alerts.record_sla_alert(uow.connection, self._policy, clock, rung,
                                                  at=now)
                fired = max([clock.rungs_fired, *crossed])
                await store.advance_clock(uow.connection, clock.id, rungs_fired=fired,
                                          next_fire_at=plan.next_fire_at(fired))
            await uow.commit()
        if clocks:
            log.info("sla timers fired", clocks=len(clocks))
        return len(clocks)
