"""Pipeline's API: deals."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel

from baton_runtime.service import ServiceContext, context_of
from schemas.events import DealPhase
from services.pipeline import store
from services.pipeline.domain import PROBABILITY

router = APIRouter(prefix="/v1", tags=["deals"])


class Deal(BaseModel):
    """A deal's current phase and owner."""

    deal_id: uuid.UUID
    lead_id: uuid.UUID
    phase: DealPhase
    probability: int
    owner_id: str | None
    company: str | None
    opened_at: datetime


@router.get("/deals/{deal_id}", response_model=Deal,
            responses={404: {"description": "No such deal."}})
async def get_deal(deal_id: uuid.UUID,
                   context: Annotated[ServiceContext, Depends(context_of)]) -> Deal:
    """Return the deal."""
    async with context.unit_of_work() as uow:
        row = await store.get_deal(uow.connection, deal_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no deal {deal_id}")
    phase = DealPhase(row.phase)
    return Deal(deal_id=row.deal_id, lead_id=row.lead_id, phase=phase,
                probability=PROBABILITY[phase], owner_id=row.owner_id, company=row.company,
                opened_at=row.opened_at)
