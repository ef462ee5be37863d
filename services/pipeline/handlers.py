"""Pipeline's event handlers, and the deal changes the API shares with them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from baton_runtime.clock import Clock
from baton_runtime.uow import UnitOfWork
from schemas.events import DealPhaseChanged, DealRecycled, LeadPromoted, LifecycleStage
from services.pipeline import domain, store
from services.pipeline.domain import Changed, Deal

OPENED_FROM_SQL = "opened from SQL"


def phase_changed(changed: Changed, now: datetime) -> DealPhaseChanged:
    """Return the deal.phase_changed event that announces a change."""
    deal, change = changed.deal, changed.change
    return DealPhaseChanged(
        deal_id=deal.deal_id, lead_id=deal.lead_id, occurred_at=now,
        from_phase=change.from_phase, to_phase=change.to_phase,
        probability=deal.probability, owner_id=deal.owner_id, amount=deal.amount,
        reason=change.reason)


def recycled(changed: Changed, now: datetime) -> DealRecycled:
    """Return the deal.recycled event that hands a zombie's lead back to nurturing."""
    deal = changed.deal
    assert deal.close_reason is not None, "a recycled deal has its reason"
    return DealRecycled(deal_id=deal.deal_id, lead_id=deal.lead_id, recycled_at=now,
                        last_phase=deal.phase, reason=deal.close_reason)


async def on_lead_promoted(event: LeadPromoted, uow: UnitOfWork, *, clock: Clock) -> None:
    """Open one deal in P1, owned by the assigned rep, when a lead becomes an SQL.

    A lead with an open deal keeps it: a repeated promotion changes nothing.
    """
    if event.to_stage is not LifecycleStage.SQL:
        return
    now = clock()
    opened = domain.open_deal(deal_id=uuid.uuid4(), lead_id=event.lead_id,
                              owner_id=event.owner_id, team=event.team,
                              company=event.profile.company, now=now, reason=OPENED_FROM_SQL)
    if await store.insert_deal(uow.connection, opened):
        uow.emit(phase_changed(opened, now))


async def create_deal(uow: UnitOfWork, opened: Changed) -> Deal:
    """Store a deal opened through the API; raise DealConflict if its lead has an open one."""
    if not await store.insert_deal(uow.connection, opened):
        existing = await store.open_deal_of(uow.connection, opened.deal.lead_id)
        raise domain.DealConflict(f"lead {opened.deal.lead_id} already has open deal {existing}")
    uow.emit(phase_changed(opened, opened.deal.opened_at))
    return opened.deal


async def change_deal(uow: UnitOfWork, deal_id: uuid.UUID, now: datetime,
                      change: Callable[[Deal], Changed | None]) -> Deal:
    """Apply ``change`` to the locked deal, record it and announce it; return the deal after.

    A change that changes nothing (None) records and announces nothing.
    """
    deal = await store.get_deal(uow.connection, deal_id, lock=True)
    if deal is None:
        raise domain.UnknownDeal(f"no deal {deal_id}")
    changed = change(deal)
    if changed is None:
        return deal
    await store.save_change(uow.connection, changed, at=now)
    uow.emit(phase_changed(changed, now))
    return changed.deal
