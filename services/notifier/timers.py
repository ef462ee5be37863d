"""SLA clocks in the database: started and stopped by events, fired by a sweep on one replica."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ClockMove:
    """What one event does to one lead's clocks, at the event's time."""

    lead_id: uuid.UUID
    changes: ClockChanges
    at: datetime
    reason: str


async def apply(connection: AsyncConnection, policy: Policy, moves: Sequence[ClockMove]
                ) -> dict[uuid.UUID, dict[ClockKind, ClockPlan]]:
    """Stop, then start, each lead's clocks; report late stops; return the started plans
    by lead. Each lead may appear once, locked by the caller; a few statements whatever
    the number of moves.

    A start whose stop was handled first (the stop came on another topic, or that topic
    was behind) is recorded already stopped, and reported if that stop was late.
    """
    stopped = await store.stop_clocks(connection, [
        store.ClockStop(move.lead_id, move.changes.stop, move.at, move.reason)
        for move in moves])
    started = {move.lead_id: [(rule, plan_clock(rule, move.at, policy.calendar))
                              for rule in move.changes.start] for move in moves}
    planned = [(lead_id, rule, plan) for lead_id, plans in started.items()
               for rule, plan in plans]
    born_stopped = await store.start_stopped_clocks(connection, planned)
    for clock in [*stopped, *born_stopped]:
        if late_stop_reports_breach(clock.due_at, clock.stopped_at, clock.rungs_fired):
            RUNGS_FIRED.labels(clock=clock.kind, rung="late_stop").inc()
            await alerts.record_sla_alert(connection, policy, clock, Rung.BREACH,
                                          at=clock.stopped_at, stopped_late=True)
    await store.start_clocks(connection, planned)
    return {lead_id: {rule.kind: plan for rule, plan in plans}
            for lead_id, plans in started.items()}


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
