"""Pipeline's event handlers, and the deal changes the API shares with them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from baton_runtime.clock import Clock
from baton_runtime.uow import UnitOfWork
from schemas.events import DealPhaseChanged, DealRecycled, LeadPromoted, LifecycleStage
from services.pipeline import domain, store
from services.pipeline.domain import Changed, Deal

OPENED_FROM_SQL = "opened from SQL"
# The stages in which a lead has its deal, owned by the rep who owns the lead.
DEAL_STAGES = frozenset({LifecycleStage.SQL, LifecycleStage.OPPORTUNITY})


def phase_changed(changed: Changed, now: datetime, probabilities: domain.Probabilities
                  ) -> DealPhaseChanged:
    """Return the deal.phase_changed event that announces a change."""
    deal, change = changed.deal, changed.change
    return DealPhaseChanged(
        deal_id=deal.deal_id, lead_id=deal.lead_id, occurred_at=now,
        from_phase=change.from_phase, to_phase=change.to_phase,
        probability=domain.probability(deal, probabilities), owner_id=deal.owner_id,
        amount=deal.amount, reason=change.reason)


def recycled(changed: Changed, now: datetime) -> DealRecycled:
    """Return the deal.recycled event that hands a zombie's lead back to nurturing."""
    deal = changed.deal
    assert deal.close_reason is not None, "a recycled deal has its reason"
    return DealRecycled(deal_id=deal.deal_id, lead_id=deal.lead_id, recycled_at=now,
                        last_phase=deal.phase, reason=deal.close_reason)


# An SQL's deal: a conflict with an open deal that then closed is met once more at most,
# unless deals keep closing under it (the consumer's retry takes over then).
OPEN_DEAL_ATTEMPTS = 3


async def on_lead_promoted(event: LeadPromoted, uow: UnitOfWork, *, clock: Clock,
                           probabilities: domain.Probabilities) -> None:
    """Open one deal in P1, owned by the assigned rep, when a lead becomes an SQL, and keep
    a lead's open deal with the rep who owns the lead.

    A repeated announcement of one SQL changes nothing. A lead qualified again while a
    deal of it is open keeps that deal (see ``domain.follow_lead``), and a queued SQL's
    deal goes to the rep who takes the lead.
    """
    if event.to_stage not in DEAL_STAGES:
        return
    now = clock()
    deal_id = None
    # An SQL gets a new deal unless one of the lead's is open. The open one found may close
    # (the zombie sweep, a won or lost deal) before its lock is ours: then try again.
    for _ in range(OPEN_DEAL_ATTEMPTS):
        if event.to_stage is LifecycleStage.SQL:
            opened = domain.open_deal(deal_id=uuid.uuid4(), lead_id=event.lead_id,
                                      owner_id=event.owner_id, team=event.team,
                                      company=event.profile.company, now=now,
                                      reason=OPENED_FROM_SQL)
            if await store.insert_deal(uow.connection, opened):
                uow.emit(phase_changed(opened, now, probabilities))
                return
        # Locked first: no change comes between reading when it last changed and using that.
        deal_id = await store.open_deal_of(uow.connection, event.lead_id, lock=True)
        if deal_id is not None or event.to_stage is not LifecycleStage.SQL:
            break
    if deal_id is None:
        if event.to_stage is LifecycleStage.SQL:
            # Never a silent drop: the consumer retries the event, then dead-letters it.
            raise domain.DealConflict(f"lead {event.lead_id}'s open deal closed under each of "
                                      f"{OPEN_DEAL_ATTEMPTS} attempts to open its deal")
        return
    handed_off = event.to_stage is LifecycleStage.SQL and event.from_stage is not event.to_stage
    last_change_at = await store.last_change_at(uow.connection, deal_id)
    # The event does not say which rep moved the lead: the hand-over is the service's own.
    await change_deal(uow, deal_id, now, lambda deal: domain.follow_lead(
        deal, owner_id=event.owner_id, team=event.team,
        qualified_at=event.occurred_at if handed_off else None, last_change_at=last_change_at),
        actor=None, probabilities=probabilities)


async def create_deal(uow: UnitOfWork, opened: Changed, *, actor: str,
                      probabilities: domain.Probabilities) -> Deal:
    """Store a deal ``actor`` opened through the API and return it; raise DealConflict if
    its lead has an open one."""
    opened = domain.made_by(opened, actor)
    if not await store.insert_deal(uow.connection, opened):
        existing = await store.open_deal_of(uow.connection, opened.deal.lead_id)
        raise domain.DealConflict(f"lead {opened.deal.lead_id} already has open deal {existing}")
    uow.emit(phase_changed(opened, opened.deal.opened_at, probabilities))
    return opened.deal


async def change_deal(uow: UnitOfWork, deal_id: uuid.UUID, now: datetime,
                      change: Callable[[Deal], Changed | None], *, actor: str | None,
                      probabilities: domain.Probabilities) -> Deal:
    """Apply ``change`` to the locked deal, record it as made by ``actor`` (None: by the
    service itself) and announce it; return the deal after.

    A change that changes nothing (None) records and announces nothing.
    """
    deal = await store.get_deal(uow.connection, deal_id, lock=True)
    if deal is None:
        raise domain.UnknownDeal(f"no deal {deal_id}")
    changed = change(deal)
    if changed is None:
        return deal
    changed = domain.made_by(changed, actor)
    await store.save_change(uow.connection, changed, at=now)
    uow.emit(phase_changed(changed, now, probabilities))
    return replace(changed.deal, changed_at=now)
