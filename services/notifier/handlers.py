"""Notifier's event handlers: keep what alerts need, move SLA clocks, record alerts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from baton_runtime.consumer import distinct_runs
from baton_runtime.uow import UnitOfWork
from schemas.events import (
    DealPhase,
    DealPhaseChanged,
    DealRecycled,
    LeadPromoted,
    LeadScored,
    LifecycleStage,
    Tier,
)
from services.notifier import alerts, domain, messages, store, timers
from services.notifier.domain import AlertKind, ClockKind, Policy
from services.notifier.messages import DealNotice, LeadCard


def _is_hot_lead_alert(event: LeadPromoted) -> bool:
    """Return True when the move makes a tier-A lead an MQL, or gives a queued one its owner
    (routing's queue pass): a hot-lead alert, to the owner as well."""
    if event.to_stage is not LifecycleStage.MQL or event.tier is not Tier.A:
        return False
    return event.from_stage is not LifecycleStage.MQL or (
        event.owner_id is not None and event.contact is None)


def _names_heard(events: Sequence[LeadPromoted]) -> dict[str, tuple[str, datetime]]:
    """Return each named owner's latest name in ``events`` (of equal times, the last one),
    with the time it was given."""
    names: dict[str, tuple[str, datetime]] = {}
    for event in events:
        if event.owner_id is None or event.owner_name is None:
            continue
        known = names.get(event.owner_id)
        if known is None or known[1] <= event.occurred_at:
            names[event.owner_id] = (event.owner_name, event.occurred_at)
    return names


async def on_leads_promoted(events: Sequence[LeadPromoted], uow: UnitOfWork, *,
                            policy: Policy) -> None:
    """Follow lifecycle moves: clocks stop and start; a tier-A MQL is a hot-lead alert.

    A run of distinct leads is recorded, and its clocks moved, in a few statements;
    hot-lead alerts are then recorded in the order their events came.
    """
    await store.lock_leads(uow.connection, {event.lead_id for event in events})
    await store.record_rep_names(uow.connection, _names_heard(events))
    for run in distinct_runs(events, key=lambda event: event.lead_id):
        await store.record_promotions(uow.connection, [
            {"lead_id": event.lead_id, "card": LeadCard.of(event).to_json(),
             "stage": event.to_stage.value, "owner_id": event.owner_id, "team": event.team,
             "last_promoted_at": event.occurred_at} for event in run])
        plans = await timers.apply(uow.connection, policy, [timers.ClockMove(
            event.lead_id,
            domain.on_promotion(policy.rules, from_stage=event.from_stage,
                                to_stage=event.to_stage, tier=event.tier,
                                trigger=event.trigger, owner_id=event.owner_id,
                                contact=event.contact),
            at=event.occurred_at,
            reason=f"lead {event.from_stage.value} -> {event.to_stage.value}: {event.reason}",
            from_stage=event.from_stage)
            for event in run])
        for event in filter(_is_hot_lead_alert, run):
            plan = plans[event.lead_id].get(ClockKind.MQL_ACCEPTANCE)
            # Given from the queue, the lead's clock runs on from when it became an MQL.
            due_at = plan.due_at if plan else (
                await _acceptance_due(uow, event.lead_id) or event.sla_due_at)
            message = messages.hot_lead(event, due_at, policy.locale,
                                        str(policy.display_timezone))
            await alerts.record(uow.connection, policy, AlertKind.HOT_LEAD, message,
                                key=f"hot_lead:{event.lead_id}:{event.occurred_at.isoformat()}",
                                lead_id=event.lead_id, owner_id=event.owner_id, team=event.team)


async def _acceptance_due(uow: UnitOfWork, lead_id: uuid.UUID) -> datetime | None:
    """Return when the lead's open MQL acceptance clock is due, None without one."""
    clocks = (await store.clocks_of_leads(uow.connection, ClockKind.MQL_ACCEPTANCE,
                                          {lead_id})).get(lead_id, [])
    return next((clock.due_at for clock in reversed(clocks) if clock.status == store.OPEN),
                None)


async def on_leads_scored(events: Sequence[LeadScored], uow: UnitOfWork, *,
                          policy: Policy) -> None:
    """Start the first-touch clock for a new tier B or a surge, and the first meeting's
    clock at the time of the lead's first meeting a partner set (moved with that meeting
    when it is set again before its record is logged), keeping the lead's card.

    Whether the lead still waited for its first touch is judged at the score's time, not
    by what was handled first: a lifecycle event after the score, handled before it,
    ends the clock as it starts (met, or a breach reported once). Most scores start
    nothing whatever the lead's state, and cost no database work; the others of a batch
    are locked, read, and their clocks started, in a few statements. The lock makes the
    read wait for a lifecycle event of the lead being handled beside.
    """
    def changes(event: LeadScored, awaiting_touch: bool, first_meeting: bool
                ) -> domain.ClockChanges:
        return domain.on_score(policy.rules, tier=event.tier, previous_tier=event.previous_tier,
                               surge=event.surge, awaiting_touch=awaiting_touch,
                               meeting_at=event.meeting_at, first_meeting=first_meeting)

    candidates = [event for event in events if changes(event, True, True).starts]
    if not candidates:
        return
    lead_ids = {event.lead_id for event in candidates}
    await store.lock_leads(uow.connection, lead_ids)
    known = await store.get_leads(uow.connection, lead_ids)
    meetings = {lead_id: timers.meeting_clocks(rows)
                for lead_id, rows in (await store.clocks_of_leads(
                    uow.connection, ClockKind.FIRST_MEETING,
                    {event.lead_id for event in candidates if event.meeting_at is not None})
                ).items()}

    def moved_at(event: LeadScored) -> datetime | None:
        lead = known.get(event.lead_id)
        return lead.last_promoted_at if lead is not None else None

    def handled_since(event: LeadScored) -> bool:
        at = moved_at(event)
        return at is not None and at >= event.scored_at

    # A lifecycle event not older than the score was handled: the stage then is the one
    # the first such event left, kept with the first-touch stop every lifecycle event makes.
    handled = [event for event in candidates if handled_since(event)]
    found = await store.first_stops(uow.connection, ClockKind.FIRST_TOUCH,
                                    [(event.lead_id, event.scored_at) for event in handled])
    next_moves = {(event.lead_id, event.scored_at): domain.LifecycleMove(
        stop.stopped_at, LifecycleStage(stop.from_stage) if stop.from_stage else None)
        for event, stop in zip(handled, found, strict=True) if stop is not None}

    def stage(event: LeadScored) -> LifecycleStage | None:
        lead = known.get(event.lead_id)
        return LifecycleStage(lead.stage) if lead and lead.stage else None

    def awaiting_touch(event: LeadScored) -> bool:
        return domain.awaited_touch_at(
            event.scored_at, stage=stage(event), moved_at=moved_at(event),
            next_move=next_moves.get((event.lead_id, event.scored_at)))

    def schedule(event: LeadScored) -> domain.MeetingSchedule:
        if event.meeting_at is None:
            return domain.MeetingSchedule(first=False)
        return domain.schedule_meeting(event.scored_at, event.meeting_at,
                                       meetings.get(event.lead_id, ()))

    starting: list[tuple[LeadScored, domain.ClockChanges, tuple[datetime, ...]]] = []
    for event in candidates:
        meeting = schedule(event)
        change = changes(event, awaiting_touch(event), domain.meeting_owed(
            event.scored_at, clocked_before=not meeting.first, stage=stage(event),
            moved_at=moved_at(event)))
        moves = meeting.moves if change.scheduled else ()
        if change.scheduled and event.meeting_at is not None:
            # A later meeting of the lead in the batch sees this one, and those it replaced.
            meetings[event.lead_id] = [
                *(replace(clock, stopped_at=event.scored_at, replaced=True)
                  if clock.started_at in moves else clock
                  for clock in meetings.get(event.lead_id, ())),
                domain.MeetingClock(event.scored_at, event.meeting_at)]
        if change.starts:
            starting.append((event, change, moves))
    # The card of a lifecycle event newer than the score is kept.
    await store.record_scores(uow.connection, {event.lead_id: LeadCard.scored(event).to_json()
                                               for event, _, _ in starting
                                               if not handled_since(event)})
    for run in distinct_runs(starting, key=lambda start: start[0].lead_id):
        # A meeting set again (moved, or a no-show rescheduled): its clock gives way to the
        # new time's.
        await timers.replace_meeting_clocks(uow.connection, policy, [
            (event.lead_id, started_at, event.scored_at,
             f"meeting set again for {event.meeting_at.isoformat()} by a partner's appointment")
            for event, _, moves in run if event.meeting_at is not None
            for started_at in moves])
        await timers.apply(uow.connection, policy, [timers.ClockMove(
            event.lead_id, change, at=event.scored_at,
            reason=f"lead scored {event.tier.value}") for event, change, _ in run])


async def on_deal_phase_changed(event: DealPhaseChanged, uow: UnitOfWork, *,
                                policy: Policy) -> None:
    """Follow a deal: a rep moving it is activity on the lead; a won deal is an alert.

    A change of a deal already recycled was made before the recycling and delivered after
    it (the two are on different topics): it moves no clock of a lead gone to nurture.
    """
    await store.lock_leads(uow.connection, {event.lead_id})
    if not await store.record_deal(uow.connection, event.deal_id, lead_id=event.lead_id,
                                   owner_id=event.owner_id, phase=event.to_phase.value):
        return
    card = alerts.card_of(await store.get_lead(uow.connection, event.lead_id), event.lead_id)
    owner_id = event.owner_id or card.owner_id
    changes = domain.on_deal_phase(policy.rules, from_phase=event.from_phase,
                                   to_phase=event.to_phase, owner_id=owner_id)
    await timers.apply(uow.connection, policy, [timers.ClockMove(
        event.lead_id, changes, at=event.occurred_at,
        reason=f"deal {event.deal_id} -> {event.to_phase.value}")])
    if event.to_phase is DealPhase.WON:
        notice = DealNotice(kind=AlertKind.DEAL_WON, deal_id=event.deal_id, lead=card,
                            owner_id=owner_id,
                            owner_name=await alerts.name_of(uow.connection, owner_id, card),
                            amount=event.amount)
        await alerts.record(uow.connection, policy, AlertKind.DEAL_WON,
                            messages.deal_alert(notice, policy.locale),
                            key=f"deal_won:{event.deal_id}", lead_id=event.lead_id,
                            owner_id=owner_id, team=card.team)


async def on_deal_recycled(event: DealRecycled, uow: UnitOfWork, *, policy: Policy) -> None:
    """Tell the owner and team that a zombie deal went back to nurturing, and keep the deal
    as recycled."""
    await store.lock_leads(uow.connection, {event.lead_id})
    deal = await store.get_deal(uow.connection, event.deal_id)
    await store.record_deal(uow.connection, event.deal_id, lead_id=event.lead_id,
                            owner_id=deal.owner_id if deal else None, phase=store.RECYCLED)
    card = alerts.card_of(await store.get_lead(uow.connection, event.lead_id), event.lead_id)
    owner_id = (deal.owner_id if deal else None) or card.owner_id
    await timers.apply(uow.connection, policy, [timers.ClockMove(
        event.lead_id, domain.on_deal_recycled(), at=event.recycled_at,
        reason=f"deal {event.deal_id} recycled")])
    notice = DealNotice(kind=AlertKind.DEAL_RECYCLED, deal_id=event.deal_id, lead=card,
                        owner_id=owner_id,
                        owner_name=await alerts.name_of(uow.connection, owner_id, card),
                        phase=event.last_phase.value, reason=event.reason)
    await alerts.record(uow.connection, policy, AlertKind.DEAL_RECYCLED,
                        messages.deal_alert(notice, policy.locale),
                        key=f"deal_recycled:{event.deal_id}:{event.recycled_at.isoformat()}",
                        lead_id=event.lead_id, owner_id=owner_id, team=card.team)
