"""Scoring's API: a lead's score with its explanation, the model, and calibration."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from baton_runtime.service import ServiceContext, context_of
from schemas.events import ScoreReason, Tier
from services.scoring import store
from services.scoring.domain import MIN_CLOSED, Dormancy, calibrate
from services.scoring.model import ActiveModel, ModelOrigin, ScoringModel

router = APIRouter(prefix="/v1", tags=["scores"])
Context = Annotated[ServiceContext, Depends(context_of)]


class ScoreExplanation(BaseModel):
    """A lead's current score and every reason behind it."""

    lead_id: uuid.UUID
    score: int
    tier: Tier
    surge: bool
    dormancy: Dormancy
    high_intent_signals: list[str]
    model_version: str
    scored_at: datetime
    behaviour_counted_since: datetime | None
    next_review_at: datetime | None
    reasons: list[ScoreReason]


@router.get("/leads/{lead_id}/score", response_model=ScoreExplanation,
            responses={404: {"description": "The lead has not been scored."}})
async def lead_score(lead_id: uuid.UUID, context: Context) -> ScoreExplanation:
    """Return the lead's score, tier and explanation as last computed."""
    async with context.unit_of_work() as uow:
        row = await store.lead(uow.connection, lead_id)
    if row is None or row.score is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"lead {lead_id} has not been scored")
    return ScoreExplanation(
        lead_id=lead_id, score=row.score, tier=Tier(row.tier), surge=row.surge,
        dormancy=Dormancy(row.dormancy), high_intent_signals=row.high_intent_signals,
        model_version=row.model_version, scored_at=row.scored_at,
        behaviour_counted_since=row.baseline_at, next_review_at=row.next_review_at,
        reasons=[ScoreReason.model_validate(r) for r in row.reasons])


class Bucket(BaseModel):
    """Deals of one score band or tier, by outcome."""

    model_config = ConfigDict(from_attributes=True)

    label: str
    deals: int
    won: int
    lost: int
    open: int
    recycled: int
    win_rate: float | None


class CalibrationSample(BaseModel):
    """The closed deals the figures rest on, and the fewest each needs.

    ``score_auc`` and ``tier_auc`` need ``min_closed`` won and ``min_closed`` lost deals,
    ``tier_a_lift`` also ``min_closed`` closed tier A deals; with fewer they are null and
    ``warnings`` says why.
    """

    won: int
    lost: int
    tier_a_closed: int
    min_closed: int


class CalibrationReport(BaseModel):
    """Conversion by score band and tier, and how well the tiers separate won from lost.

    Each deal counts with the lead's score and tier when the deal was first seen.
    ``win_rate`` is won / (won + lost). ``score_auc`` and ``tier_auc`` are the
    chance that a won deal's lead ranked above a lost one's (0.5: no separation,
    1.0: perfect); ``tier_a_lift`` is tier A's win rate over the overall one.
    """

    model_config = ConfigDict(from_attributes=True)

    model_version: str | None
    band_width: int
    overall: Bucket
    by_band: list[Bucket]
    by_tier: list[Bucket]
    score_auc: float | None
    tier_auc: float | None
    tier_a_lift: float | None
    sample: CalibrationSample
    warnings: list[str]


@router.get("/calibration", response_model=CalibrationReport, tags=["calibration"],
            responses={404: {"description": "No such model version (it is named)."}})
async def calibration(
    context: Context,
    model_version: Annotated[str | None, Query(max_length=50,
                                               description="Only deals scored by it.")] = None,
    band_width: Annotated[int, Query(ge=5, le=50, description="Points per band.")] = 20,
) -> CalibrationReport:
    """Return conversion by score band and tier, checked against won and lost deals.

    Below the minimum sample (``sample.min_closed``) the AUCs and the lift are null and
    ``warnings`` names the counts; a ``model_version`` never stored is a 404.
    """
    async with context.unit_of_work() as uow:
        deals = await store.deal_records(uow.connection, model_version)
        unknown = (model_version is not None and not deals
                   and await store.model_version(uow.connection, model_version) is None)
    if unknown:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no scoring model version {model_version!r}")
    result = calibrate(deals, band_width)
    return CalibrationReport(
        model_version=model_version, band_width=band_width,
        overall=Bucket.model_validate(result.overall),
        by_band=[Bucket.model_validate(b) for b in result.by_band],
        by_tier=[Bucket.model_validate(b) for b in result.by_tier],
        score_auc=result.score_auc, tier_auc=result.tier_auc, tier_a_lift=result.tier_a_lift,
        sample=CalibrationSample(won=result.overall.won, lost=result.overall.lost,
                                 tier_a_closed=result.tier_a_closed, min_closed=MIN_CLOSED),
        warnings=list(result.warnings))


class ModelVersion(BaseModel):
    """A stored scoring model, where it came from and when it became the active one."""

    version: str
    # Text, not the enum: a row a later version stored may name an origin this one lacks.
    origin: str = Field(description=(
        "packaged: the model a release ships, replaced by the next release's; file: "
        "BATON_SCORING_MODEL_FILE; api: PUT /v1/model. A model from a file or the API stays "
        "active when a release brings a new packaged model."))
    activated_at: datetime
    model: ScoringModel


def model_router(active: ActiveModel) -> APIRouter:
    """Return the routes that show and replace the model ``active`` holds for the handlers."""
    models = APIRouter(prefix="/v1", tags=["model"])

    @models.get("/model", response_model=ModelVersion,
                responses={404: {"description": "No model is stored yet."}})
    async def current_model(context: Context) -> ModelVersion:
        """Return the model new scores use."""
        async with context.unit_of_work() as uow:
            row = await store.latest_model(uow.connection)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no scoring model is stored yet")
        return ModelVersion(version=row.version, origin=row.origin,
                            activated_at=row.created_at,
                            model=ScoringModel.model_validate(row.definition))

    @models.put(
        "/model", response_model=ModelVersion, status_code=status.HTTP_201_CREATED,
        responses={
            200: {"description": "The same model is already the active one; nothing changed.",
                  "model": ModelVersion},
            409: {"description": "The version exists with other rules, or is not the latest."},
            422: {"description": "The model is invalid; each error names its field."},
        })
    async def replace_model(model: ScoringModel, context: Context,
                            response: Response) -> ModelVersion:
        """Store the model as a new version and score with it from now on.

        Scores already given keep the version that computed them.
        """
        async with context.unit_of_work() as uow:
            await store.lock_models(uow.connection)
            row = await store.add_model(uow.connection, model.version,
                                        model.model_dump(mode="json"), ModelOrigin.API)
            if row is None:
                latest = await store.latest_model(uow.connection)
                assert latest is not None  # the conflicting version is stored
                if (latest.version != model.version
                        or ScoringModel.model_validate(latest.definition) != model):
                    raise HTTPException(
                        status.HTTP_409_CONFLICT,
                        f"model version {model.version} already exists; give the new rules "
                        "a new version")
                response.status_code = status.HTTP_200_OK
                row = latest
            await uow.commit()
        active.replace(model)
        return ModelVersion(version=row.version, origin=row.origin,
                            activated_at=row.created_at, model=model)

    return models
