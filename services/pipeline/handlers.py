"""Pipeline's event handlers."""

from __future__ import annotations

import uuid

from baton_runtime.clock import Clock
from baton_runtime.uow import UnitOfWork
from schemas.events import DealPhase, DealPhaseChanged, LeadPromoted, LifecycleStage
from services.pipeline import store
from services.pipeline.domain import PROBABILITY


async def on_lead_promoted(event: LeadPromoted, uow: UnitOfWork, *, clock: Clock) -> None:
    """Open one deal in P1 when a lead becomes an SQL; a repeat changes nothing."""
    if event.to_stage is not LifecycleStage.SQL:
        return
    now = clock()
    deal_id = uuid.uuid4()
    opened = await store.open_deal(uow.connection, deal_id=deal_id, lead_id=event.lead_id,
                                   phase=DealPhase.P1.value, owner_id=event.owner_id,
                                   company=event.profile.company, now=now)
    if opened:
        uow.emit(DealPhaseChanged(
            deal_id=deal_id, lead_id=event.lead_id, occurred_at=now, from_phase=None,
            to_phase=DealPhase.P1, probability=PROBABILITY[DealPhase.P1],
            owner_id=event.owner_id, reason="opened from SQL",
        ))
