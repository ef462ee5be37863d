"""Routing's event handlers and the one place a lifecycle move is made."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Row

from baton_runtime.clock import Clock
from baton_runtime.uow import UnitOfWork
from schemas.events import (
    Account,
    DealPhase,
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

TOP_REASONS = 3


async def move(uow: UnitOfWork, lead: Row[Any], target: LifecycleStage, *, reason: str,
               now: datetime, owner_id: str | None, team: str | None,
               sla_due_at: datetime | None) -> None:
    """Move ``lead`` to ``target`` (refusing illegal moves) and emit lead.promoted."""
    current = LifecycleStage(lead.stage)
    domain.check_transition(current, target)
    await store.record_transition(uow.connection, lead.lead_id, from_stage=current.value,
                                  to_stage=target.value, reason=reason, owner_id=owner_id,
                                  team=team, occurred_at=now)
    uow.emit(LeadPromoted(
        lead_id=lead.lead_id, occurred_at=now, from_stage=current, to_stage=target,
        reason=reason, owner_id=owner_id, team=team, sla_due_at=sla_due_at,
        profile=LeadProfile.model_validate(lead.profile),
        account=Account.model_validate(lead.account), score=lead.score, tier=Tier(lead.tier),
        top_reasons=[ScoreReason.model_validate(r) for r in lead.top_reasons],
        trigger=TouchpointType(lead.last_touchpoint) if lead.last_touchpoint else None,
    ))


async def on_lead_scored(event: LeadScored, uow: UnitOfWork, *, clock: Clock,
                         accept_within: timedelta) -> None:
    """Keep the lead's score and promote a hot lead to MQL for the inbound team."""
    top = sorted(event.reasons, key=lambda r: r.points, reverse=True)[:TOP_REASONS]
    lead = await store.upsert_lead(
        uow.connection, event.lead_id, score=event.score, tier=event.tier.value,
        profile=event.profile.model_dump(mode="json"),
        account=event.account.model_dump(mode="json"),
        top_reasons=[r.model_dump(mode="json") for r in top],
        last_touchpoint=event.last_touchpoint.value if event.last_touchpoint else None,
    )
    target = domain.promotion_for(LifecycleStage(lead.stage), event.tier)
    if target is None:
        return
    now = clock()
    await move(uow, lead, target, reason=f"tier {event.tier.value} at score {event.score}",
               now=now, owner_id=None, team=domain.INBOUND_TEAM,
               sla_due_at=domain.acceptance_due(event.last_touchpoint, now, accept_within))


async def on_deal_recycled(event: DealRecycled, uow: UnitOfWork, *, clock: Clock) -> None:
    """Send a recycled deal's lead back to nurturing; it must earn MQL again."""
    lead = await store.get_lead(uow.connection, event.lead_id, lock=True)
    if lead is None or lead.stage == LifecycleStage.NURTURE:
        return
    await move(uow, lead, LifecycleStage.NURTURE, reason=f"deal recycled: {event.reason}",
               now=clock(), owner_id=None, team=None, sla_due_at=None)


DEAL_OUTCOMES = {
    DealPhase.P1: (LifecycleStage.SQL, LifecycleStage.OPPORTUNITY),
    DealPhase.WON: (LifecycleStage.OPPORTUNITY, LifecycleStage.WON),
    DealPhase.LOST: (LifecycleStage.OPPORTUNITY, LifecycleStage.LOST),
}


async def on_deal_phase_changed(event: DealPhaseChanged, uow: UnitOfWork, *,
                                clock: Clock) -> None:
    """Follow the deal: an opened deal makes the lead an opportunity; closing decides it."""
    expected = DEAL_OUTCOMES.get(event.to_phase)
    lead = await store.get_lead(uow.connection, event.lead_id, lock=True)
    if expected is None or lead is None or lead.stage != expected[0]:
        return
    await move(uow, lead, expected[1], reason=f"deal {event.deal_id} {event.to_phase.value}",
               now=clock(), owner_id=lead.owner_id, team=lead.team, sla_due_at=None)
