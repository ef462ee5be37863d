"""Scoring's API: a lead's score with its full explanation."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel

from baton_runtime.service import ServiceContext, context_of
from schemas.events import ScoreReason, Tier
from services.scoring import store

router = APIRouter(prefix="/v1", tags=["scores"])


class ScoreExplanation(BaseModel):
    """A lead's current score and every reason behind it."""

    lead_id: uuid.UUID
    score: int
    tier: Tier
    model_version: str
    scored_at: datetime
    reasons: list[ScoreReason]


@router.get("/leads/{lead_id}/score", response_model=ScoreExplanation,
            responses={404: {"description": "The lead has not been scored."}})
async def lead_score(lead_id: uuid.UUID,
                     context: Annotated[ServiceContext, Depends(context_of)]) -> ScoreExplanation:
    """Return the lead's score, tier and explanation."""
    async with context.unit_of_work() as uow:
        row = await store.current(uow.connection, lead_id)
    if row is None or row.score is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"lead {lead_id} has not been scored")
    return ScoreExplanation(lead_id=lead_id, score=row.score, tier=Tier(row.tier),
                            model_version=row.model_version, scored_at=row.scored_at,
                            reasons=[ScoreReason.model_validate(r) for r in row.reasons])
