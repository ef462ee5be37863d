"""Routing's API: a lead's lifecycle state and the sales team's actions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from baton_runtime.service import ServiceContext, context_of
from schemas.events import LifecycleStage
from services.routing import domain, store
from services.routing.handlers import move

router = APIRouter(prefix="/v1", tags=["lifecycle"])


class Transition(BaseModel):
    """One lifecycle move of a lead."""

    from_stage: LifecycleStage
    to_stage: LifecycleStage
    reason: str
    owner_id: str | None
    team: str | None
    occurred_at: datetime


class LeadState(BaseModel):
    """Where a lead is, who owns it, and how it got there."""

    lead_id: uuid.UUID
    stage: LifecycleStage
    owner_id: str | None
    team: str | None
    score: int
    tier: str
    history: list[Transition]


class Acceptance(BaseModel):
    """A rep accepting an MQL."""

    model_config = ConfigDict(extra="forbid")

    rep_id: Annotated[str, Field(min_length=1, max_length=100)]


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such lead."}}


@router.get("/leads/{lead_id}", response_model=LeadState, responses=NOT_FOUND)
async def lead_state(lead_id: uuid.UUID,
                     context: Annotated[ServiceContext, Depends(context_of)]) -> LeadState:
    """Return the lead's stage, owner and transition history."""
    async with context.unit_of_work() as uow:
        lead = await store.get_lead(uow.connection, lead_id)
        if lead is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead {lead_id}")
        transitions = await store.history(uow.connection, lead_id)
    return LeadState(lead_id=lead_id, stage=lead.stage, owner_id=lead.owner_id, team=lead.team,
                     score=lead.score, tier=lead.tier,
                     history=[Transition.model_validate(t, from_attributes=True)
                              for t in transitions])


@router.post("/leads/{lead_id}/accept", response_model=LeadState,
             responses={**NOT_FOUND, 409: {"description": "The lead cannot be accepted now."}})
async def accept_lead(lead_id: uuid.UUID, acceptance: Acceptance,
                      context: Annotated[ServiceContext, Depends(context_of)]) -> LeadState:
    """Accept an MQL for a rep (SAL); accepting it again for the same rep changes nothing."""
    async with context.unit_of_work() as uow:
        lead = await store.get_lead(uow.connection, lead_id, lock=True)
        if lead is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead {lead_id}")
        already = lead.stage == LifecycleStage.SAL and lead.owner_id == acceptance.rep_id
        if not already:
            try:
                await move(uow, lead, LifecycleStage.SAL, reason="accepted by rep",
                           now=context.clock(), owner_id=acceptance.rep_id,
                           team=lead.team, sla_due_at=None)
            except domain.IllegalTransition as error:
                raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
            await uow.commit()
    return await lead_state(lead_id, context)

