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
    MeetingClock,
    Outcome,
    Policy,
    Rung,
    SlaRule,
    breach_reported,
    end_before_replacement,
    late_stop_reports_breach,
    outcome,
    outcome_taken_over,
    plan_clock,
    rungs_to_alert,
    settle_late_start,
    stop_clears_breach,
)

log = structlog.get_logger(__name__)
SWEEP_BATCH = 200
RUNGS_FIRED = Counter("baton_notifier_sla_rungs_total",
                      "SLA escalation rungs fired, breaches reported by late stops, and "
                      "breaches alerted before a stop in time was known (cleared).",
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
    time and starts at its own. A stop in time handled after the sweep alerted the breach
    sends word that the clock was met after all.
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
            await _report_late_stop(connection, policy, clock, completed=not clock.superseded)
        elif stop_clears_breach(Outcome(clock.status), breach_reported=breach_reported(
                store.OPEN, clock.rungs_fired)):
            await _report_cleared_breach(connection, policy, clock)
    await _end_replaced_meetings_earlier(connection, policy, moves)
    for clock in born_stopped:
        if clock.id in reported:
            await _report_late_stop(connection, policy, clock, completed=reported[clock.id])
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
                              ) -> tuple[list[Row[Any]], dict[int, bool]]:
    """Record the starts a stop handled earlier ends; return the clocks recorded, and by id
    those whose breach is to be reported, each with whether what it waited for was done
    (not taken over by another clock)."""
    if not late:
        return [], {}
    clocks: list[store.StoppedClock] = []
    superseded: list[tuple[int, datetime, str]] = []
    reporting: dict[tuple[uuid.UUID, str, datetime], bool] = {}
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
            reporting[lead_id, rule.kind.value, plan.started_at] = not start.supersedes
    recorded = await store.record_stopped_clocks(connection, clocks, superseded)
    return recorded, {clock.id: reporting[key] for clock in recorded
                      if (key := (clock.lead_id, clock.kind, clock.started_at)) in reporting}


def _superseded_because(rule: str, started_at: datetime, due_at: datetime) -> str:
    """Return why a clock was superseded by a clock of ``rule`` of its kind."""
    return f"superseded by {rule} started {started_at.isoformat()}, due {due_at.isoformat()}"


async def _report_late_stop(connection: AsyncConnection, policy: Policy, clock: Row[Any], *,
                            completed: bool = True) -> None:
    """Report the breach of a clock that stopped after its due time (``completed``: by what
    it waited for, or the lead leaving sales; not by a meeting set again, nor by another
    clock taking it over, as the promotion to MQL takes over the first touch)."""
    RUNGS_FIRED.labels(clock=clock.kind, rung="late_stop").inc()
    await alerts.record_sla_alert(connection, policy, clock, Rung.BREACH,
                                  at=clock.stopped_at, stopped_late=completed)


async def _report_cleared_breach(connection: AsyncConnection, policy: Policy,
                                 clock: Row[Any]) -> None:
    """Tell whoever heard of a clock's breach that a stop in time, handled after that alert,
    ended it met."""
    RUNGS_FIRED.labels(clock=clock.kind, rung="cleared").inc()
    await alerts.record_sla_cleared(connection, policy, clock)


def meeting_clocks(rows: Sequence[Row[Any]]) -> list[MeetingClock]:
    """Return the first-meeting clocks ``store.clocks_of_leads`` found, as the rules see them."""
    return [MeetingClock(row.set_at, row.started_at, row.stopped_at, row.replaced, row.recorded)
            for row in rows]


async def _end_clocks(connection: AsyncConnection, policy: Policy,
                      ends: Sequence[tuple[Row[Any], store.ClockEnd]], *, completed: bool
                      ) -> None:
    """End clocks as given (each with its row as read, locked); report a breach this records
    and nobody reported before, once, and clear one reported before that this ends met."""
    before = {row.id: row for row, _ in ends}
    for clock in await store.end_clocks(connection, [end for _, end in ends]):
        read = before[clock.id]
        reported = breach_reported(read.status, read.rungs_fired)
        if clock.status == Outcome.BREACHED.value and not reported:
            await _report_late_stop(connection, policy, clock, completed=completed)
        elif stop_clears_breach(Outcome(clock.status), breach_reported=reported):
            await _report_cleared_breach(connection, policy, clock)


async def replace_meeting_clocks(connection: AsyncConnection, policy: Policy,
                                 replaced: Sequence[tuple[uuid.UUID, datetime, datetime, str]]
                                 ) -> None:
    """End the leads' first-meeting clocks given by (lead, start) as replaced by a meeting set
    again, at the moment and for the reason given: superseded, or breached if they fell due
    first or their breach was reported (``outcome_taken_over``). Call with the leads locked.

    A clock a stop handled first ended after that moment is ended again, at it: handled in
    time, the meeting set again would have ended it.
    """
    if not replaced:
        return
    found = await store.clocks_of_leads(connection, ClockKind.FIRST_MEETING,
                                        {lead_id for lead_id, _, _, _ in replaced})
    rows = {(row.lead_id, row.started_at): row for rows in found.values() for row in rows}
    ends: list[tuple[Row[Any], store.ClockEnd]] = []
    for lead_id, started_at, at, reason in replaced:
        row = rows.get((lead_id, started_at))
        if row is None or row.replaced:
            continue
        status = outcome_taken_over(row.due_at, at,
                                    breach_reported=breach_reported(row.status, row.rungs_fired))
        ends.append((row, store.ClockEnd(row.id, status, at, reason, replaced=True)))
    await _end_clocks(connection, policy, ends, completed=False)


async def _end_replaced_meetings_earlier(connection: AsyncConnection, policy: Policy,
                                         moves: Sequence[ClockMove]) -> None:
    """Apply the first-meeting stops among ``moves`` to the clocks a meeting set again after
    them replaced already (the appointment was handled first): each ends the clock it would
    have ended in time, and the clocks set since stand for no first meeting
    (``end_before_replacement``)."""
    stopping = [move for move in moves if ClockKind.FIRST_MEETING in move.changes.stop
                or ClockKind.FIRST_MEETING in move.changes.cancel]
    if not stopping:
        return
    found = await store.clocks_of_leads(connection, ClockKind.FIRST_MEETING,
                                        {move.lead_id for move in stopping})
    ends: list[tuple[Row[Any], store.ClockEnd]] = []
    for move in stopping:
        rows = found.get(move.lead_id, [])
        change = end_before_replacement(
            move.at, cancels=ClockKind.FIRST_MEETING in move.changes.cancel,
            clocks=meeting_clocks(rows))
        if change is None:
            continue
        by_start = {row.started_at: row for row in rows}
        ended = by_start[change.ends]
        ends.append((ended, store.ClockEnd(ended.id, outcome(ended.due_at, move.at), move.at,
                                           move.reason, replaced=False)))
        for started_at in change.voids:
            void = by_start[started_at]
            status = outcome_taken_over(void.due_at, void.set_at, breach_reported=breach_reported(
                void.status, void.rungs_fired))
            ends.append((void, store.ClockEnd(
                void.id, status, void.stopped_at or void.set_at,
                f"no first meeting: the lead's first meeting ended {move.at.isoformat()} "
                f"({move.reason})", replaced=True)))
    await _end_clocks(connection, policy, ends, completed=True)


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
