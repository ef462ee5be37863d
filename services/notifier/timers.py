"""SLA clocks in the database: started and stopped by events, fired by a sweep on one replica."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_runtime.clock import Clock
from baton_runtime.uow import UnitOfWorkFactory
from schemas.events import LifecycleStage
from services.notifier import alerts, store
from services.notifier.domain import (
    ClockChanges,
    ClockKind,
    ClockPlan,
    EndedClock,
    Outcome,
    Policy,
    Rung,
    SlaRule,
    late_stop_reports_breach,
    plan_clock,
    rungs_to_alert,
    settle_late_start,
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
    from_stage: LifecycleStage | None = None  # a lifecycle event's: the stage it left


async def apply(connection: AsyncConnection, policy: Policy, moves: Sequence[ClockMove]
                ) -> dict[uuid.UUID, dict[ClockKind, ClockPlan]]:
    """Stop, then start, each lead's clocks; report late stops; return the started plans
    by lead. Each lead may appear once, locked by the caller; a few statements whatever
    the number of moves.

    A start whose stop was handled first (the stop came on another topic, or that topic
    was behind) is recorded already stopped, as handling both in time would have ended
    it, and reported once if that stop was late. A scheduled start is set at the move's
    time and starts at its own.
    """
    stopped = await store.stop_clocks(connection, [
        store.ClockStop(move.lead_id, move.changes.stop, move.at, move.reason,
                        move.from_stage.value if move.from_stage else None,
                        cancels=move.changes.cancel, supersedes=move.changes.supersede)
        for move in moves])
    started = {move.lead_id: [
        *((rule, plan_clock(rule, move.at, policy.calendar)) for rule in move.changes.start),
        *_scheduled_plans(policy, move)] for move in moves}
    planned = [(lead_id, rule, plan) for lead_id, plans in started.items()
               for rule, plan in plans]
    late = await store.find_late_starts(connection, planned)
    born_stopped, reported = await _record_late_starts(connection, planned, late)
    for clock in stopped:
        if late_stop_reports_breach(clock.due_at, clock.stopped_at, clock.rungs_fired):
            await _report_late_stop(connection, policy, clock)
    for clock in born_stopped:
        if clock.id in reported:
            await _report_late_stop(connection, policy, clock)
    ended = {start.index for start in late}
    await store.start_clocks(connection, [start for index, start in enumerate(planned)
                                          if index not in ended])
    return {lead_id: {rule.kind: plan for rule, plan in plans}
            for lead_id, plans in started.items()}


def _scheduled_plans(policy: Policy, move: ClockMove) -> list[tuple[SlaRule, ClockPlan]]:
    """Return the plans of the clocks ``move`` sets to start later, leaving out (and logging)
    one whose rungs fall past the last day the calendar can tell (a meeting in the year 9999):
    its lead's other clocks still start, and the event is not dead-lettered for it."""
    plans: list[tuple[SlaRule, ClockPlan]] = []
    for rule, at in move.changes.scheduled:
        try:
            plans.append((rule, plan_clock(rule, at, policy.calendar, set_at=move.at)))
        except OverflowError:
            log.warning("sla clock not started: its due time is past the calendar's end",
                        lead_id=str(move.lead_id), clock=rule.kind.value, starts_at=at.isoformat())
    return plans


async def _record_late_starts(connection: AsyncConnection,
                              planned: Sequence[tuple[uuid.UUID, SlaRule, ClockPlan]],
                              late: Sequence[store.LateStart]
                              ) -> tuple[list[Row[Any]], set[int]]:
    """Record the starts a stop handled earlier ends; return the clocks recorded, and the
    ids of those whose breach is to be reported."""
    if not late:
        return [], set()
    clocks: list[store.StoppedClock] = []
    superseded: list[tuple[int, datetime, str]] = []
    reporting: set[tuple[uuid.UUID, str, datetime]] = set()
    for start in late:
        lead_id, rule, plan = planned[start.index]
        rival = start.rival
        settled = settle_late_start(plan, start.stopped_at, None if rival is None else EndedClock(
            rival.rival_started_at, rival.rival_due_at, Outcome(rival.rival_status)),
            superseded=start.supersedes)
        if settled.outcome is Outcome.SUPERSEDED and rival is not None:
            reason = _superseded_because(rival.rival_rule, rival.rival_started_at,
                                         rival.rival_due_at)
        else:
            reason = start.reason
        if settled.outcome is not None:
            clocks.append(store.StoppedClock(lead_id, rule, plan, settled.outcome,
                                             settled.stopped_at, reason))
        if settled.rival_superseded_at is not None and rival is not None:
            superseded.append((rival.rival_id, settled.rival_superseded_at,
                               _superseded_because(rule.name, plan.started_at, plan.due_at)))
        if settled.reports_breach:
            reporting.add((lead_id, rule.kind.value, plan.started_at))
    recorded = await store.record_stopped_clocks(connection, clocks, superseded)
    return recorded, {clock.id for clock in recorded
                      if (clock.lead_id, clock.kind, clock.started_at) in reporting}


def _superseded_because(rule: str, started_at: datetime, due_at: datetime) -> str:
    """Return why a clock was superseded by a clock of ``rule`` of its kind."""
    return f"superseded by {rule} started {started_at.isoformat()}, due {due_at.isoformat()}"


async def _report_late_stop(connection: AsyncConnection, policy: Policy, clock: Row[Any]
                            ) -> None:
    """Report the breach of a clock that stopped after its due time."""
    RUNGS_FIRED.labels(clock=clock.kind, rung="late_stop").inc()
    await alerts.record_sla_alert(connection, policy, clock, Rung.BREACH,
                                  at=clock.stopped_at, stopped_late=True)


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
                                 due_at=clock.due_at, escalate_at=clock.escalate_at,
                                 set_at=clock.set_at)
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
