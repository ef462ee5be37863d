"""Routing's event handlers and sales actions; ``move`` is the one place a lead changes stage."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import TypeAdapter
from sqlalchemy.engine import Row

from baton_runtime.business_time import BusinessCalendar
from baton_runtime.clock import Clock
from baton_runtime.consumer import distinct_runs
from baton_runtime.periodic import holds_exclusive_lock
from baton_runtime.text import clip
from baton_runtime.uow import UnitOfWork, UnitOfWorkFactory
from schemas.events import (
    SHORT_TEXT_LENGTH,
    Account,
    ContactKind,
    DealPhaseChanged,
    DealRecycled,
    LeadProfile,
    LeadPromoted,
    LeadScored,
    LifecycleStage,
    ScoreReason,
    Tier,
    TouchpointType,
)
from services.routing import domain, store

log = structlog.get_logger(__name__)
S = LifecycleStage
TOP_REASONS = 3
QUEUE_PASS_LOCK = "routing.queues"  # a team's pass runs on one replica at a time
SYSTEM = "system"


def _emit(uow: UnitOfWork, lead: Row[Any], *, from_stage: LifecycleStage,
          to_stage: LifecycleStage, reason: str, now: datetime, owner_id: str | None,
          owner_name: str | None, team: str | None, sla_due_at: datetime | None,
          contact: ContactKind | None = None) -> None:
    """Emit lead.promoted for ``lead`` with its profile, score and reasons."""
    uow.emit(LeadPromoted(
        lead_id=lead.lead_id, occurred_at=now, from_stage=from_stage, to_stage=to_stage,
        reason=clip(reason, SHORT_TEXT_LENGTH), owner_id=owner_id, owner_name=owner_name,
        team=team, sla_due_at=sla_due_at,
        profile=LeadProfile.model_validate(lead.profile),
        account=Account.model_validate(lead.account), score=lead.score, tier=Tier(lead.tier),
        top_reasons=[ScoreReason.model_validate(r) for r in lead.top_reasons],
        trigger=TouchpointType(lead.last_touchpoint) if lead.last_touchpoint else None,
        contact=contact,
    ))


async def move(uow: UnitOfWork, lead: Row[Any], target: LifecycleStage, *, reason: str,
               now: datetime, owner_id: str | None, team: str | None,
               sla_due_at: datetime | None, actor: str = SYSTEM,
               deal_id: uuid.UUID | None = None) -> None:
    """Move ``lead`` to ``target`` (refusing illegal moves; ``deal_id`` the deal that moves
    it, if one does) and emit lead.promoted."""
    current = LifecycleStage(lead.stage)
    domain.check_transition(current, target)
    owner_name = await store.record_transition(
        uow.connection, lead.lead_id, from_stage=current.value, to_stage=target.value,
        reason=reason, owner_id=owner_id, team=team, actor=actor, occurred_at=now,
        deal_id=deal_id)
    _emit(uow, lead, from_stage=current, to_stage=target, reason=reason, now=now,
          owner_id=owner_id, owner_name=owner_name, team=team, sla_due_at=sla_due_at)


def _routable(lead: Row[Any]) -> domain.RoutableLead:
    """Return what assignment needs to know about the lead."""
    account = Account.model_validate(lead.account)
    profile = LeadProfile.model_validate(lead.profile)
    # Free-mail "accounts" (gmail.com, ...) group strangers: they have no owner.
    return domain.RoutableLead(
        account_key=None if account.free_mail else account.account_key,
        region=profile.region, industry=profile.industry, employee_band=profile.employee_band)


async def _record(uow: UnitOfWork, lead: Row[Any], stage: LifecycleStage,
                  decision: domain.Decision, now: datetime) -> None:
    """Log the decision, store round-robin positions and make the rep the account owner
    (``domain.Decision.moves_account``)."""
    await store.record_decision(uow.connection, lead.lead_id, stage.value, decision, now,
                                account_key=_routable(lead).account_key)


async def assign(uow: UnitOfWork, lead: Row[Any], team: domain.TeamKind,
                 stage: LifecycleStage, now: datetime, calendar: BusinessCalendar
                 ) -> domain.Decision:
    """Decide who in ``team`` gets the lead, log why, and return the decision."""
    decision = await _decide(uow, lead, team, now, calendar)
    await _record(uow, lead, stage, decision, now)
    return decision


async def _decide(uow: UnitOfWork, lead: Row[Any], team: domain.TeamKind, now: datetime,
                  calendar: BusinessCalendar) -> domain.Decision:
    """Return who in ``team`` gets the lead, the team locked until commit.

    Reps work their own hours, and on none of the days ``calendar`` closes every year.
    """
    connection = uow.connection
    routable = _routable(lead)
    # Locked in a statement of its own: the lineup, read after the lock is granted, then
    # sees the positions the previous assignment committed.
    await store.lock_teams(connection, [team.value])
    lineup = await store.ROSTER.lineup(connection, team.value, routable.account_key,
                                       calendar.closed_days)
    today = await store.assigned_since(connection,
                                       {r.rep_id: r.hours.day_start(now) for r in lineup.reps})
    return domain.assign(routable, team, lineup.reps, account_owner=lineup.account_owner,
                         assigned_today=today, now=now)


async def assign_queued(uow: UnitOfWork, team: domain.TeamKind, now: datetime,
                        calendar: BusinessCalendar, limit: int) -> int:
    """Give up to ``limit`` of the team's queued leads, longest waiting first, to reps who
    can take them now, and announce each new owner; return how many were given.

    Reps become available as their working day starts (their capacity counts anew), they
    come back from leave or they join. A lead nobody can take yet stays queued and no
    decision is logged for it: the queue is tried again at the next pass. While nobody in
    the team can take a lead, only a lead whose account has an owner is looked at (an
    owner back from leave takes their account's leads at any hour).
    """
    connection = uow.connection
    # The team first, holding nothing else: the consumer holds its batch's leads while it
    # waits for the team. Leads are then taken here without waiting (those held are left
    # to the next pass).
    await store.lock_teams(connection, [team.value])
    lineup = await store.ROSTER.lineup(connection, team.value, None, calendar.closed_days)
    today = await store.assigned_since(connection,
                                       {r.rep_id: r.hours.day_start(now) for r in lineup.reps})
    nobody_available = all(
        domain.unavailable_because(rep, now, today.get(rep.rep_id, 0)) is not None
        for rep in lineup.reps)
    given = 0
    for lead in await store.lock_queued(connection, team.value, limit,
                                        owned_accounts_only=nobody_available):
        decision = await _decide(uow, lead, team, now, calendar)
        if decision.rep_id is None:
            continue
        stage = LifecycleStage(lead.stage)
        await _record(uow, lead, stage, decision, now)
        await store.set_owner(connection, lead.lead_id, decision.rep_id)
        _emit(uow, lead, from_stage=stage, to_stage=stage,
              reason=f"assigned from the queue: {decision.summary}", now=now,
              owner_id=decision.rep_id,
              owner_name=await store.rep_name(connection, decision.rep_id),
              team=team.value, sla_due_at=None)
        given += 1
    return given


async def assign_all_queued(unit_of_work: UnitOfWorkFactory, clock: Clock,
                            calendar: BusinessCalendar, limit: int) -> int:
    """Run ``assign_queued`` for every team, each in a transaction of its own, on one
    replica at a time (the others skip the pass); return how many leads were given.

    A team whose pass fails is logged and left to the next pass; the other teams go on.
    """
    given = 0
    for team in domain.TeamKind:
        try:
            async with unit_of_work() as uow:
                if not await holds_exclusive_lock(uow.connection, f"{QUEUE_PASS_LOCK}.{team}"):
                    continue
                given += await assign_queued(uow, team, clock(), calendar, limit)
                await uow.commit()
        except Exception:
            log.exception("queue pass failed for a team; it is tried again next pass",
                          team=team.value)
    return given


async def _take(uow: UnitOfWork, lead: Row[Any], rep: domain.Rep, now: datetime,
                how: str) -> None:
    """Record that ``rep`` took the lead themselves: it counts against their capacity, and
    its account stays with its owner, if it has one."""
    previous = f"assigned to {lead.owner_id}" if lead.owner_id else "from the queue"
    decision = domain.Decision(rep.team, rep.rep_id, domain.Rule.TAKEN,
                               f"{how} by {rep.rep_id} ({previous})")
    await _record(uow, lead, LifecycleStage(lead.stage), decision, now)


# --- events -------------------------------------------------------------------------------


TOP_REASONS_JSON = TypeAdapter(list[ScoreReason])


def _scored(event: LeadScored) -> store.ScoredLead:
    """Return what routing keeps of a scored lead: its score, profile and top reasons."""
    top = sorted(event.reasons, key=lambda r: r.points, reverse=True)[:TOP_REASONS]
    return store.ScoredLead(
        lead_id=event.lead_id, score=event.score, tier=event.tier.value,
        profile=event.profile.model_dump_json(), account=event.account.model_dump_json(),
        top_reasons=TOP_REASONS_JSON.dump_json(top).decode(),
        last_touchpoint=event.last_touchpoint.value if event.last_touchpoint else None,
        source=event.source, partner=event.partner,
        demo_or_quote_requested=event.last_touchpoint in domain.FAST_LANE_TRIGGERS)


async def on_leads_scored(events: Sequence[LeadScored], uow: UnitOfWork, *, clock: Clock,
                          accept_within: timedelta, calendar: BusinessCalendar,
                          outbound_sources: Iterable[str]) -> None:
    """Keep each lead's score; promote hot leads to MQL and assign them in their teams.

    The scores of a run of distinct leads are stored in one statement; the few hot
    leads are then promoted one by one, in the order their events came. The consumer
    has taken the locks they need first (``lock_batch``).
    """
    now = clock()
    for run in distinct_runs(events, key=lambda event: event.lead_id):
        leads = await store.upsert_leads(uow.connection, [_scored(e) for e in run],
                                         now=now)
        for event in run:
            lead = leads[event.lead_id]
            target = domain.promotion_for(LifecycleStage(lead.stage), event.tier,
                                          previous_tier=event.previous_tier,
                                          trigger=event.last_touchpoint)
            if target is None:
                continue
            team = domain.team_for_source(event.source, outbound_sources)
            decision = await assign(uow, lead, team, target, now, calendar)
            await move(uow, lead, target,
                       reason=f"tier {event.tier.value} at score {event.score}; "
                              f"{decision.summary}",
                       now=now, owner_id=decision.rep_id, team=team.value,
                       sla_due_at=domain.acceptance_due(event.last_touchpoint, now,
                                                        accept_within, calendar))


async def lock_batch(events: Sequence[LeadScored | DealRecycled | DealPhaseChanged],
                     uow: UnitOfWork, *, outbound_sources: Iterable[str]) -> None:
    """Lock what a batch's events may need before any is handled: their stored leads in id
    order, then in name order the teams of the hot leads that may become MQLs (new, with
    marketing, or with a deal event in the batch that may send them back to it).

    Taken as the events came, a batch held SDR while a later run waited for a lead that a
    transaction held while it waited for SDR; two replicas took SDR and BDR in opposite
    orders; deal events, keyed by deal, took their leads in any order: deadlocks, each
    aborting one of the transactions. A hot lead already with sales takes no team: it is
    not promoted, and its batch would wait for the queue pass.
    """
    stages = await store.lock_leads(uow.connection, {event.lead_id for event in events})
    followed = {event.lead_id for event in events if not isinstance(event, LeadScored)}
    if teams := {domain.team_for_source(event.source, outbound_sources).value
                 for event in events
                 if isinstance(event, LeadScored) and event.tier is Tier.A and (
                     event.lead_id in followed
                     or stages.get(event.lead_id, S.LEAD) in domain.MARKETING_STAGES)}:
        await store.lock_teams(uow.connection, teams)


async def on_deal_recycled(event: DealRecycled, uow: UnitOfWork, *, clock: Clock) -> None:
    """Send a recycled deal's lead back to nurturing (``domain.after_recycling``); it must
    earn MQL again."""
    lead = await store.get_lead(uow.connection, event.lead_id, lock=True)
    if lead is None or (target := domain.after_recycling(
            LifecycleStage(lead.stage), recycled=event.deal_id, own_deal=lead.deal_id)) is None:
        return
    await move(uow, lead, target, reason=f"deal recycled: {event.reason}",
               now=clock(), owner_id=None, team=None, sla_due_at=None)


async def on_deal_phase_changed(event: DealPhaseChanged, uow: UnitOfWork, *,
                                clock: Clock, calendar: BusinessCalendar) -> None:
    """Follow the deal: an open deal makes the lead an opportunity; closing decides it."""
    lead = await store.get_lead(uow.connection, event.lead_id, lock=True)
    now = clock()
    while lead is not None and (
            target := domain.after_deal(LifecycleStage(lead.stage), event.to_phase)):
        owned = target is not LifecycleStage.NURTURE  # marketing nurtures; no rep owns it
        await move(uow, lead, target, reason=f"deal {event.deal_id} {event.to_phase.value}",
                   now=now, owner_id=lead.owner_id if owned else None,
                   team=lead.team if owned else None,
                   sla_due_at=domain.due_after_move(target, now, calendar),
                   deal_id=event.deal_id if target is LifecycleStage.OPPORTUNITY else None)
        lead = await store.get_lead(uow.connection, event.lead_id, lock=True)


# --- sales actions (the API and Slack share them) -----------------------------------------


async def _lead_and_rep(uow: UnitOfWork, lead_id: uuid.UUID, rep_id: str
                        ) -> tuple[Row[Any], domain.Rep]:
    """Return the locked lead and the acting rep; raise UnknownLead or UnknownRep."""
    lead = await store.get_lead(uow.connection, lead_id, lock=True)
    if lead is None:
        raise domain.UnknownLead(f"no lead {lead_id}")
    row = await store.get_rep(uow.connection, rep_id)
    if row is None:
        raise domain.UnknownRep(f"no rep {rep_id!r}")
    return lead, store.rep_from_row(row)


async def _may_act(uow: UnitOfWork, rep: domain.Rep, lead: Row[Any], action: str, *,
                   guarded: frozenset[LifecycleStage] = domain.WORKED_BY_OWNER) -> None:
    """Return if ``rep`` may ``action`` the lead; raise ActionRefused otherwise.

    Only active reps of the lead's team act on it, and a lead in a ``guarded`` stage only
    its owner, unless they have left the team: inactive, or moved to another team
    (``domain.colleague_refusal``). Routing knows no team leads: a manager acts as a rep.
    """
    owner_present = False
    # Whether the owner is still here matters only where the lead is theirs alone.
    if lead.stage in guarded and lead.owner_id not in (None, rep.rep_id):
        owner_present = await _still_in_team(uow, lead.owner_id, lead.team)
    refusal = domain.actor_refusal(rep, lead.team) or domain.colleague_refusal(
        rep.rep_id, action, lead.lead_id, LifecycleStage(lead.stage), lead.owner_id,
        owner_present=owner_present, guarded=guarded)
    if refusal is not None:
        raise domain.ActionRefused(refusal)


async def _still_in_team(uow: UnitOfWork, rep_id: str, team: str | None) -> bool:
    """Return True if the rep is active in ``team``: one moved to another team may not act
    on its leads (``domain.actor_refusal``), so they are the team's to work."""
    row = await store.get_rep(uow.connection, rep_id)
    return row is not None and row.active and row.team == team


async def accept(uow: UnitOfWork, lead_id: uuid.UUID, rep_id: str, *, now: datetime,
                 actor: str, calendar: BusinessCalendar) -> None:
    """Accept an MQL for the rep (SAL); accepting it again for the same rep changes nothing."""
    lead, rep = await _lead_and_rep(uow, lead_id, rep_id)
    if lead.stage == S.SAL and lead.owner_id == rep_id:
        return
    if lead.stage == S.SAL:
        raise domain.ActionRefused(f"lead {lead_id} was already accepted by {lead.owner_id}")
    # A lead no one may accept (an SQL, an opportunity) says so, not who owns it.
    domain.check_transition(LifecycleStage(lead.stage), S.SAL)
    await _may_act(uow, rep, lead, "accept")
    if lead.owner_id != rep_id:
        await _take(uow, lead, rep, now, "accepted")
    await move(uow, lead, S.SAL, reason=f"accepted by {rep_id}", now=now, owner_id=rep_id,
               team=lead.team, sla_due_at=domain.due_after_move(S.SAL, now, calendar),
               actor=actor)


async def reject(uow: UnitOfWork, lead_id: uuid.UUID, rep_id: str, reason: str, *,
                 now: datetime, actor: str) -> None:
    """Send a lead back to nurturing with the rep's reason; a rejected lead stays rejected.

    The same rep rejecting it again with the same reason changes nothing; any other
    rejection of a nurtured lead is refused with the reason recorded. A lead a rep holds
    (an assigned MQL, an accepted SAL, an SQL handed to field sales) is rejected only by
    them, unless they are inactive; a colleague may take an MQL by accepting it.
    """
    lead, rep = await _lead_and_rep(uow, lead_id, rep_id)
    rejection = domain.rejection(rep_id, reason)
    if lead.stage == S.NURTURE:
        # The nurture move is the lead's latest: only the very same rejection is a repeat.
        recorded = (await store.history(uow.connection, lead_id))[-1].reason
        if recorded != rejection:
            raise domain.ActionRefused(domain.already_nurtured(lead_id, recorded))
        return
    if lead.stage not in domain.REJECTABLE:
        raise domain.ActionRefused(
            f"only an mql, sal or sql can be rejected; lead {lead_id} is {lead.stage}")
    await _may_act(uow, rep, lead, "reject", guarded=domain.ENDED_BY_OWNER)
    await move(uow, lead, S.NURTURE, reason=rejection, now=now,
               owner_id=None, team=None, sla_due_at=None, actor=actor)


async def qualify(uow: UnitOfWork, lead_id: uuid.UUID, rep_id: str, bant: domain.Bant,
                  demo_or_quote_requested: bool, *, now: datetime, actor: str,
                  calendar: BusinessCalendar) -> None:
    """Qualify an accepted lead (SQL) and hand it to field sales; a repeat changes nothing.

    Only the rep who accepted it qualifies it, unless they are inactive.
    """
    lead, rep = await _lead_and_rep(uow, lead_id, rep_id)
    if lead.stage == S.SQL:
        return
    if lead.stage != S.MQL:
        # A lead no one may qualify (an opportunity, a lost one) says so, not who owns it.
        domain.check_transition(LifecycleStage(lead.stage), S.SQL)
    await _may_act(uow, rep, lead, "qualify")
    if lead.stage == S.MQL:
        raise domain.ActionRefused(
            f"lead {lead_id} is an mql nobody has accepted yet: accept it first "
            f"(POST /v1/leads/{lead_id}/accept), then qualify it")
    requested = demo_or_quote_requested or lead.demo_or_quote_requested
    rank = bant.rank
    if not domain.qualifies(rank, requested):
        raise domain.ActionRefused(f"BANT rank {rank.value}: an SQL needs rank A or B, "
                                   "or a demo or quote request")
    await store.save_bant(uow.connection, lead_id, {
        "budget": bant.budget, "authority": bant.authority, "need": bant.need,
        "timeframe": bant.timeframe, "rank": rank.value, "qualified_by": rep_id})
    decision = await assign(uow, lead, domain.TeamKind.FIELD_SALES, S.SQL, now, calendar)
    why = f"BANT rank {rank.value}" + (", demo or quote requested" if requested else "")
    await move(uow, lead, S.SQL, reason=f"qualified by {rep_id} ({why}); {decision.summary}",
               now=now, owner_id=decision.rep_id, team=decision.team.value,
               sla_due_at=domain.due_after_move(S.SQL, now, calendar), actor=actor)


async def disqualify(uow: UnitOfWork, lead_id: uuid.UUID, rep_id: str, reason: str, *,
                     now: datetime, actor: str) -> None:
    """Disqualify a lead for good with the rep's reason.

    The same rep disqualifying it again with the same reason changes nothing; any other
    disqualification of it is refused with the reason recorded. A lead a rep holds (an
    assigned MQL, an accepted SAL, an SQL handed to field sales) is disqualified only by
    them, unless they are inactive; a colleague may take an MQL by accepting it.
    """
    lead, rep = await _lead_and_rep(uow, lead_id, rep_id)
    disqualification = domain.disqualification(rep_id, reason)
    if lead.stage == S.DISQUALIFIED:
        # Disqualified is final, so the move there is the lead's latest.
        recorded = (await store.history(uow.connection, lead_id))[-1].reason
        if recorded != disqualification:
            raise domain.ActionRefused(domain.already_ended(lead_id, recorded))
        return
    # A lead no one may disqualify (an opportunity, a won one) says so, not who owns it.
    domain.check_transition(LifecycleStage(lead.stage), S.DISQUALIFIED)
    await _may_act(uow, rep, lead, "disqualify", guarded=domain.ENDED_BY_OWNER)
    await move(uow, lead, S.DISQUALIFIED, reason=disqualification,
               now=now, owner_id=None, team=None, sla_due_at=None, actor=actor)


async def log_contact(uow: UnitOfWork, lead_id: uuid.UUID, rep_id: str, kind: ContactKind,
                      occurred_at: datetime, note: str | None, *, now: datetime,
                      calendar: BusinessCalendar) -> None:
    """Log a contact with an accepted lead, or a first touch of one marketing holds, and
    emit it; a repeat changes nothing.

    An unowned accepted lead (waiting in its team's queue), or one whose owner has left
    the team, becomes the rep's; a lead marketing holds stays with marketing. Contacts on
    an owned SAL, SQL or opportunity are its owner's to log otherwise: they stop the
    owner's SLA clocks.
    """
    lead, rep = await _lead_and_rep(uow, lead_id, rep_id)
    stage = LifecycleStage(lead.stage)
    if stage not in domain.CONTACT_STAGES:
        raise domain.ActionRefused(
            f"contacts are logged on accepted leads (sal, sql, opportunity) and on leads "
            f"marketing holds (lead, nurture); lead {lead_id} is {stage.value}")
    await _may_act(uow, rep, lead, "log a contact on")
    if not await store.add_contact(uow.connection, lead_id, rep_id=rep_id, kind=kind.value,
                                   occurred_at=occurred_at, note=note, logged_at=now):
        return
    owner, team, due = None, None, None  # a lead marketing holds stays unowned
    if stage in domain.OWNED_STAGES:
        owner, team, due = lead.owner_id, lead.team, domain.due_after_contact(now, calendar)
        if owner != rep_id:  # queued, or its owner left the team (else _may_act refused)
            await _take(uow, lead, rep, now, "first contact" if owner is None
                        else f"contact while its owner {owner} is away")
            await store.set_owner(uow.connection, lead_id, rep_id)
            owner = rep_id
    owner_name = await store.rep_name(uow.connection, owner) if owner else None
    _emit(uow, lead, from_stage=stage, to_stage=stage,
          reason=f"{kind.value} contact logged by {rep_id}", now=now, owner_id=owner,
          owner_name=owner_name, team=team, sla_due_at=due, contact=kind)
