"""Scoring's event handlers."""

from __future__ import annotations

from baton_runtime.clock import Clock
from baton_runtime.uow import UnitOfWork
from schemas.events import LeadCaptured, LeadScored, ScoreReason, Tier
from services.scoring import store
from services.scoring.domain import Activity, LeadFacts, ScoringModel, score_lead


async def on_lead_captured(event: LeadCaptured, uow: UnitOfWork, *, model: ScoringModel,
                           clock: Clock) -> None:
    """Add the touchpoint to the ledger, re-score, and emit lead.scored if anything changed."""
    connection = uow.connection
    await store.upsert_profile(connection, event.lead_id, event.profile, event.account,
                               event.source)
    previous = await store.current(connection, event.lead_id, lock=True)
    assert previous is not None  # upserted above
    touchpoint = event.touchpoint
    await store.add_activity(connection, event.lead_id, Activity(
        touchpoint.type, touchpoint.occurred_at, touchpoint.asset_id, touchpoint.interacted))
    now = clock()
    facts = LeadFacts(title=event.profile.title, free_mail=event.account.free_mail,
                      industry=event.profile.industry,
                      employee_band=event.profile.employee_band)
    result = score_lead(facts,
                        await store.ledger(connection, event.lead_id), now, model)
    reasons = [ScoreReason(code=r.code, label=r.label, points=r.points) for r in result.reasons]
    await store.save_score(connection, event.lead_id, score=result.score,
                           tier=result.tier.value,
                           reasons=[r.model_dump(mode="json") for r in reasons],
                           model_version=result.model_version, scored_at=now)
    if previous.score == result.score and previous.tier == result.tier.value:
        return
    uow.emit(LeadScored(
        lead_id=event.lead_id, scored_at=now, score=result.score,
        previous_score=previous.score,
        tier=result.tier, previous_tier=Tier(previous.tier) if previous.tier else None,
        high_intent_signals=list(result.high_intent_signals), reasons=reasons,
        model_version=result.model_version, profile=event.profile, account=event.account,
        source=event.source, last_touchpoint=touchpoint.type,
    ))
