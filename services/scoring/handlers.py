"""Scoring's event handlers, decay sweep and model installation: load, score, save, announce."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.engine import Row

from baton_runtime.clock import Clock
from baton_runtime.periodic import holds_exclusive_lock
from baton_runtime.uow import UnitOfWork, UnitOfWorkFactory
from schemas.events import (
    Account,
    DealPhaseChanged,
    DealRecycled,
    LeadCaptured,
    LeadProfile,
    LeadScored,
    ScoreReason,
    Tier,
    TouchpointType,
)
from services.scoring import store
from services.scoring.domain import (
    Activity,
    Colleague,
    DealOutcome,
    Dormancy,
    LeadFacts,
    Reason,
    Standing,
    changes_colleagues,
    contacts_to_read,
    engages,
    fresh_inquiry,
    is_decision_maker,
    outcome_of,
    prepare,
    score_lead,
    worth_announcing,
)
from services.scoring.model import (
    ActiveModel,
    ModelError,
    ModelOrigin,
    ReasonLocale,
    ScoringModel,
)

log = structlog.get_logger(__name__)
SWEEP_LOCK = "scoring.decay-sweep"


@dataclass(frozen=True)
class Lead:
    """A lead as scoring it needs it: who it is, its ledger, colleagues, what was announced."""

    lead_id: uuid.UUID
    profile: LeadProfile
    account: Account
    source: str
    partner: str | None
    last_engaged_at: datetime | None
    baseline_at: datetime | None
    announced: Standing | None
    ledger: Sequence[Activity]
    colleagues: Sequence[Colleague]
    review_now: bool = False  # its colleagues changed after they were read


async def load(uow: UnitOfWork, rows: Sequence[Row[Any]], model: ScoringModel,
               now: datetime) -> list[Lead]:
    """Return the leads of full ``leads`` rows with their ledgers and engaged colleagues."""
    connection = uow.connection
    ledgers = await store.ledgers(connection, [row.lead_id for row in rows])
    contacts = await store.engaged_contacts(
        connection, {row.account_key for row in rows if row.account_key},
        since=now - model.engagement.window, read=contacts_to_read(model))
    return [Lead(row.lead_id, LeadProfile.model_validate(row.profile),
                 Account.model_validate(row.account), row.source, row.partner,
                 row.last_engaged_at, row.baseline_at, announced(row),
                 ledgers.get(row.lead_id, []),
                 [colleague for lead_id, colleague in contacts.get(row.account_key or "", [])
                  if lead_id != row.lead_id])
            for row in rows]


def announced(row: Row[Any] | store.LeadState) -> Standing | None:
    """Return the standing last announced for the lead in ``row``, None if never scored."""
    if row.score is None or row.tier is None:  # written together, with the first score
        return None
    return Standing(row.score, Tier(row.tier), row.surge, Dormancy(row.dormancy))


def facts_of(profile: LeadProfile, account: Account) -> LeadFacts:
    """Return what the model reads from a lead's profile and account."""
    return LeadFacts(title=profile.title, free_mail=account.free_mail,
                     industry=profile.industry, employee_band=profile.employee_band,
                     email_domain=profile.email.rpartition("@")[2] or None,
                     company=profile.company or account.company_name)


REASONS = TypeAdapter(list[ScoreReason])


def score_reasons(reasons: Sequence[Reason]) -> tuple[list[dict[str, Any]], list[ScoreReason]]:
    """Return the reasons as stored (what ``model_dump(mode="json")`` gives) and as sent.

    One validation for the whole list instead of one ScoreReason call each (the points
    are given as floats, as ScoreReason makes them). The dictionaries are what the
    models dump: strings and finite floats pass validation unchanged.
    """
    stored = [{"code": r.code, "label": r.label, "points": float(r.points)} for r in reasons]
    try:
        return stored, REASONS.validate_python(stored)
    except ValidationError:
        # Raise what validating the reasons one by one raises (which reason, and why).
        return stored, [ScoreReason(**reason) for reason in stored]


async def rescore(uow: UnitOfWork, leads: Sequence[Lead], model: ScoringModel, now: datetime,
                  locale: ReasonLocale,
                  triggers: Mapping[uuid.UUID, TouchpointType] | None = None,
                  inquired: Collection[uuid.UUID] = frozenset(),
                  meetings: Mapping[uuid.UUID, datetime] | None = None) -> None:
    """Score ``leads`` at ``now`` with reasons in ``locale``, save the results, and announce
    each changed standing, each fresh inquiry and each meeting a partner set.

    ``triggers`` names the touchpoint that made each lead's re-score, if one did;
    ``inquired`` are the leads whose touchpoints held a fresh inquiry; ``meetings`` the
    time of the meeting a partner set among them, by lead. Each step runs over all the
    leads before the next begins: interleaved per lead, the steps took more CPU (their
    code and data share the CPU's caches worse).
    """
    results = [score_lead(facts_of(lead.profile, lead.account), lead.ledger, now, model,
                          colleagues=lead.colleagues, baseline_at=lead.baseline_at,
                          language=locale)
               for lead in leads]
    explained = [score_reasons(result.reasons) for result in results]
    saved: list[store.Saved] = []
    for lead, result, (stored, _) in zip(leads, results, explained, strict=True):
        next_review_at = result.next_review_at
        if lead.review_now:
            next_review_at = now if next_review_at is None else min(next_review_at, now)
        saved.append(store.Saved(
            lead.lead_id, lead.profile, lead.account, lead.source, lead.partner,
            result.score, result.tier.value, result.surge, result.dormancy.value,
            list(result.high_intent_signals), stored, result.model_version, now,
            next_review_at, is_decision_maker(lead.profile.title, model), lead.last_engaged_at))
    meetings = meetings or {}
    for lead, result, (_, reasons) in zip(leads, results, explained, strict=True):
        meeting_at = meetings.get(lead.lead_id)
        if not worth_announcing(lead.announced, result, lead.lead_id in inquired,
                                meeting_at is not None):
            continue
        previous = lead.announced
        uow.emit(LeadScored(
            lead_id=lead.lead_id, scored_at=now, score=result.score,
            previous_score=previous.score if previous else None, tier=result.tier,
            previous_tier=previous.tier if previous else None, surge=result.surge,
            high_intent_signals=list(result.high_intent_signals), reasons=reasons,
            model_version=result.model_version, profile=lead.profile, account=lead.account,
            source=lead.source, last_touchpoint=(triggers or {}).get(lead.lead_id),
            partner=lead.partner,
            dormancy=result.dormancy.value, meeting_at=meeting_at,
        ))
    await store.save_scores(uow.connection, saved)


async def on_leads_captured(events: Sequence[LeadCaptured], uow: UnitOfWork, *,
                            active: ActiveModel, clock: Clock) -> None:
    """Add the touchpoints to their leads' ledgers and re-score each lead once.

    When a lead starts engaging, or its decision-maker standing changes, and that may
    change its colleagues' engagement points (``changes_colleagues``), they are marked
    for the sweep, and a colleague scored in this same batch (with the colleagues read
    before it) too; so are the colleagues it leaves behind when it moves to another
    account.
    """
    model, now = active.model, clock()
    window = model.engagement.window
    latest = {event.lead_id: event for event in events}  # each lead's profile as last sent
    decision_makers = {lead_id: is_decision_maker(event.profile.title, model)
                       for lead_id, event in latest.items()}
    recorded = await store.record_touchpoints(uow.connection, events,
                                              decision_makers=decision_makers,
                                              engaged_since=now - window,
                                              read=contacts_to_read(model))
    engaged_at: dict[uuid.UUID, datetime | None] = {
        lead_id: found.state.last_engaged_at for lead_id, found in recorded.items()}
    touchpoints: dict[uuid.UUID, list[tuple[TouchpointType, datetime]]] = defaultdict(list)
    meetings: dict[uuid.UUID, datetime] = {}
    for event in events:
        touchpoint, previous = event.touchpoint, engaged_at[event.lead_id]
        touchpoints[event.lead_id].append((touchpoint.type, touchpoint.occurred_at))
        notes = event.partner_notes
        if notes is not None and notes.meeting_at is not None:
            # The first set: one by one, a later one would not be the lead's first meeting.
            meetings.setdefault(event.lead_id, notes.meeting_at)
        if engages(touchpoint.type, model) and (
                previous is None or touchpoint.occurred_at > previous):
            engaged_at[event.lead_id] = touchpoint.occurred_at
    def as_colleague(at: datetime | None, decides: bool) -> Colleague | None:
        """Return the lead as its colleagues see it, None if it is not engaged."""
        return Colleague(at, decides) if at is not None and now - at < window else None

    changed_accounts: dict[str, set[uuid.UUID]] = defaultdict(set)
    for lead_id, found in recorded.items():
        state = found.state
        before = as_colleague(state.last_engaged_at, state.decision_maker)
        after = as_colleague(engaged_at[lead_id], decision_makers[lead_id])
        if found.previous_account_key != state.account_key:
            # Moved to another account: its old colleagues lose an engaged contact (they
            # are reviewed, as an early review changes nothing), its new ones gain one.
            if found.previous_account_key and before is not None:
                changed_accounts[found.previous_account_key].add(lead_id)
            before = None
        if state.account_key and before != after and changes_colleagues(
                before, after, found.colleagues, now, model):
            changed_accounts[state.account_key].add(lead_id)
    leads = []
    for lead_id, event in latest.items():
        found = recorded[lead_id]
        state = found.state
        changers = changed_accounts.get(state.account_key or "", set())
        leads.append(Lead(lead_id, event.profile, event.account, event.source, state.partner,
                          engaged_at[lead_id], state.baseline_at, announced(state),
                          found.ledger, found.colleagues,
                          review_now=bool(changers - {lead_id})))
    inquiries = {lead_id: fresh_inquiry(made, now, model)
                 for lead_id, made in touchpoints.items()}
    await rescore(uow, leads, model, now, active.locale, triggers={
        lead_id: inquiries[lead_id] or made[-1][0] for lead_id, made in touchpoints.items()},
        inquired={lead_id for lead_id, inquiry in inquiries.items() if inquiry},
        meetings=meetings)
    await store.ask_colleagues_for_review(uow.connection, changed_accounts, recorded, now)


async def on_deal_phase_changed(event: DealPhaseChanged, uow: UnitOfWork) -> None:
    """Record the deal's phase, and its outcome once it closes, for calibration."""
    await store.record_deal(uow.connection, deal_id=event.deal_id, lead_id=event.lead_id,
                            phase=event.to_phase.value, outcome=outcome_of(event.to_phase),
                            at=event.occurred_at)


async def on_deal_recycled(event: DealRecycled, uow: UnitOfWork, *, active: ActiveModel,
                           clock: Clock) -> None:
    """Record the recycled deal and reset the lead's behaviour: it must earn MQL again."""
    await store.record_deal(uow.connection, deal_id=event.deal_id, lead_id=event.lead_id,
                            phase=event.last_phase.value, outcome=DealOutcome.RECYCLED,
                            at=event.recycled_at)
    row = await store.reset_baseline(uow.connection, event.lead_id, event.recycled_at)
    # A lead never scored (only a placeholder until its capture) has nothing to re-score:
    # its capture starts it from this deal's recycling.
    if row.score is not None:
        model, now = active.model, clock()
        await rescore(uow, await load(uow, [row], model, now), model, now, active.locale)


async def sweep(unit_of_work: UnitOfWorkFactory, active: ActiveModel, clock: Clock,
                batch_size: int) -> int:
    """Re-score every lead whose review time has come; return how many were re-scored.

    One replica sweeps at a time (an advisory lock); leads a consumer holds are
    skipped, since that consumer is scoring them anyway. Colleagues' review requests are
    taken first in each batch (see ``store.ask_colleagues_for_review``).
    """
    swept = 0
    while True:
        async with unit_of_work() as uow:
            if not await holds_exclusive_lock(uow.connection, SWEEP_LOCK):
                return swept
            model, now = active.model, clock()
            await store.take_review_requests(uow.connection, now)
            due = await store.due_for_review(uow.connection, now, batch_size)
            await rescore(uow, await load(uow, due, model, now), model, now, active.locale)
            await uow.commit()
        swept += len(due)
        if len(due) < batch_size:
            return swept


async def install_model(unit_of_work: UnitOfWorkFactory, active: ActiveModel,
                        origin: ModelOrigin) -> None:
    """Store the configured model unless its version is known; then use the latest one.

    The packaged model of a new release is not stored over a model someone chose (through
    the API or a model file): it would replace their rules at the upgrade, unasked.
    Raise ModelError if the version is stored with different rules: a changed model
    needs a new version, or old scores would no longer say what produced them.
    """
    configured = active.model
    async with unit_of_work() as uow:
        # A model stored meanwhile (another replica starting, a PUT) is seen before deciding.
        await store.lock_models(uow.connection)
        latest = await store.latest_model(uow.connection)
        # Whatever its version: a model someone chose under the packaged version's name
        # is theirs, not the release's.
        if (origin is ModelOrigin.PACKAGED and latest is not None
                and latest.origin != ModelOrigin.PACKAGED.value):
            log.info("scoring model chosen by you kept; the packaged one is not installed",
                     active=latest.version, origin=latest.origin, packaged=configured.version)
        elif await store.add_model(uow.connection, configured.version,
                                   configured.model_dump(mode="json"), origin) is None:
            stored = await store.model_version(uow.connection, configured.version)
            if stored is None or ScoringModel.model_validate(stored.definition) != configured:
                raise ModelError(f"scoring model version {configured.version} is already "
                                 "stored with different rules; give the changed model a new "
                                 "version")
        await uow.commit()
    await reload_model(unit_of_work, active)
    prepare(active.model)


async def reload_model(unit_of_work: UnitOfWorkFactory, active: ActiveModel) -> None:
    """Use the model version activated last (by any replica)."""
    async with unit_of_work() as uow:
        latest = await store.latest_model(uow.connection)
    if latest is not None and latest.version != active.model.version:
        active.replace(ScoringModel.model_validate(latest.definition))
