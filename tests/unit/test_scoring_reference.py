"""The optimised scorer against a straightforward reference: the same results on any ledger.

The reference is the scorer as first written, one rule per function and datetimes
throughout; ``score_lead`` precomputes a model's rules, works in microseconds and
builds no object per activity. Any difference in score, tier, reasons (labels,
points, order), signals, surge, dormancy or review time fails here.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from itertools import accumulate

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import Tier, TouchpointType
from services.scoring.domain import (
    DOWNLOADS,
    ITEMISED_TOUCHPOINTS,
    PRICING_OR_CASE_STUDY,
    WEBINARS,
    Activity,
    Colleague,
    Dormancy,
    LeadFacts,
    Reason,
    ScoreResult,
    clip_score,
    decay_factor,
    fit_reasons,
    is_competitor,
    score_lead,
)
from services.scoring.model import DEFAULT_MODEL_FILE, ScoringModel, load_model


def touchpoint_label(activity: Activity) -> str:
    """Return how a touchpoint reads in an explanation: "inquiry: demo request on 2026-11-21",
    dated in UTC."""
    return _label(activity.type, activity.asset_id, activity.occurred_at.astimezone(UTC).date())


@functools.lru_cache(maxsize=4096)  # a lead's ledger is labelled again at every re-score
def _label(kind: TouchpointType, asset_id: str | None, day: date) -> str:
    """Return the label of a touchpoint of ``kind`` on ``asset_id`` on ``day``."""
    family, _, detail = kind.value.partition(".")
    asset = f" ({asset_id})" if asset_id else ""
    return f"{family.replace('_', ' ')}: {detail.replace('_', ' ')}{asset} on {day.isoformat()}"


@dataclass(frozen=True)
class _Contribution:
    """An activity's undecayed points, fixed by the activities before it."""

    activity: Activity
    points: float
    code: str
    label: str


def _contributions(ledger: Iterable[Activity], model: ScoringModel) -> list[_Contribution]:
    """Return the activities that earn points, in ledger order, with repeat and bonus rules."""
    behaviour = model.behaviour
    repeat = behaviour.repeat_views
    contributions: list[_Contribution] = []
    repeats_in_window: dict[TouchpointType, list[datetime]] = {}
    last_view: dict[TouchpointType, datetime] = {}
    downloads_seen: set[str] = set()
    for activity in sorted(ledger, key=Activity.order):
        kind = activity.type
        points = behaviour.points.get(kind, 0.0)
        code, label = kind.value, touchpoint_label(activity)
        if kind in repeat.touchpoints:
            previous = last_view.get(kind)
            last_view[kind] = activity.occurred_at
            if previous is not None and activity.occurred_at - previous <= repeat.window:
                recent = [at for at in repeats_in_window.get(kind, [])
                          if activity.occurred_at - at <= repeat.window]
                repeats_in_window[kind] = recent
                if len(recent) >= repeat.cap:
                    continue
                recent.append(activity.occurred_at)
                points, code = repeat.points, f"{code}.repeat"
                label += " (repeat view)"
        elif kind in DOWNLOADS:
            asset = activity.asset_id or kind.value
            if asset in downloads_seen:
                continue
            if downloads_seen:
                points += behaviour.further_download_points
                label += " (further download)"
            downloads_seen.add(asset)
        if kind in WEBINARS and activity.interacted:
            points += behaviour.webinar_interaction_points
            label += " (question or chat)"
        if points:
            contributions.append(_Contribution(activity, points, code, label))
    return contributions


def after_baseline(ledger: Iterable[Activity], baseline_at: datetime | None) -> list[Activity]:
    """Return the activities that still count for behaviour after a reset at ``baseline_at``."""
    return [a for a in ledger if baseline_at is None or a.occurred_at > baseline_at]


def _decayed(contributions: Iterable[_Contribution], now: datetime,
             model: ScoringModel) -> list[Reason]:
    """Return each contribution's points as decayed at ``now``."""
    half_life = model.behaviour.half_life
    return [Reason(c.code, c.label,
                   c.points * decay_factor(now - c.activity.occurred_at, half_life))
            for c in contributions]


def engaged_colleagues(colleagues: Iterable[Colleague], now: datetime,
                       window: timedelta) -> list[Colleague]:
    """Return the colleagues whose last engagement lies less than ``window`` before ``now``."""
    return [c for c in colleagues if now - c.engaged_at < window]


def engagement_reasons(colleagues: Sequence[Colleague], now: datetime,
                       model: ScoringModel) -> list[Reason]:
    """Return the buying-committee points: other engaged contacts and decision makers."""
    rules = model.engagement
    engaged = engaged_colleagues(colleagues, now, rules.window)
    reasons: list[Reason] = []
    if engaged and rules.per_contact_points:
        cap = max(1, math.ceil(rules.max_points / rules.per_contact_points))
        label = (f"{len(engaged)} other engaged contact(s) at the account" if len(engaged) < cap
                 else f"{cap} or more other engaged contacts at the account")
        reasons.append(Reason("engagement.contacts", label,
                              min(rules.max_points, rules.per_contact_points * len(engaged))))
    if any(c.decision_maker for c in engaged) and rules.decision_maker_points:
        reasons.append(Reason("engagement.decision_maker", "a decision maker is engaged",
                              rules.decision_maker_points))
    return reasons


def high_intent_signals(ledger: Sequence[Activity], now: datetime, model: ScoringModel, *,
                        colleagues: Sequence[Colleague] = (),
                        baseline_at: datetime | None = None) -> list[str]:
    """Return the high-intent signals seen within the window, since the baseline."""
    rules = model.tiers.high_intent
    recent = [a for a in after_baseline(ledger, baseline_at)
              if now - a.occurred_at < rules.window]
    types = Counter(a.type for a in recent)
    signals = sorted({a.type.value for a in recent if a.type in rules.inquiries})
    downloads = len({a.asset_id or a.type.value for a in recent if a.type in DOWNLOADS})
    if any(types[w] for w in WEBINARS) and downloads >= rules.webinar_with_downloads:
        signals.append("webinar_and_downloads")
    if sum(types[p] for p in PRICING_OR_CASE_STUDY) >= rules.pricing_or_case_study_views:
        signals.append("pricing_or_case_study_views")
    if rules.decision_maker_engaged and any(
            c.decision_maker for c in engaged_colleagues(colleagues, now, rules.window)):
        signals.append("decision_maker_engaged")
    return signals


def tier_for(score: int, signals: Sequence[str], model: ScoringModel) -> Tier:
    """Return the tier: A needs both the threshold and a high-intent signal."""
    if score >= model.tiers.a and signals:
        return Tier.A
    if score >= model.tiers.b:
        return Tier.B
    return Tier.C


def dormancy_of(ledger: Sequence[Activity], now: datetime, model: ScoringModel) -> Dormancy:
    """Return whether the lead is active, dormant or excluded, from its last activity."""
    if not ledger:
        return Dormancy.ACTIVE
    silence = now - max(a.occurred_at for a in ledger)
    if silence >= timedelta(days=model.dormancy.excluded_days):
        return Dormancy.EXCLUDED
    if silence >= timedelta(days=model.dormancy.dormant_days):
        return Dormancy.DORMANT
    return Dormancy.ACTIVE


def _last_surge(contributions: Sequence[_Contribution], decayed: Sequence[Reason],
                static_points: float, now: datetime, model: ScoringModel) -> datetime | None:
    """Return when the latest surge within the window began, or None if there was none.

    A touchpoint starts a surge when the score just after it is at least the surge
    points above the lowest score in the window before it; the lead then surges
    for one window. Between touchpoints a score only decays, so the lowest points
    are the start of that window and the moments just before each touchpoint. Fit
    and engagement are held at their current values; ``decayed`` holds each
    contribution's points decayed to ``now``.
    """
    half_life, window = model.behaviour.half_life, model.surge.window
    # A touchpoint reported ahead of our clock (hosts' clocks differ) happens now.
    times = [min(c.activity.occurred_at, now) for c in contributions]
    # A prefix sum of the decayed points, scaled back to an earlier moment, is the
    # behaviour score at that moment.
    earned = [0.0, *accumulate(reason.points for reason in decayed)]

    @functools.cache
    def decay_at(moment: datetime) -> float:
        return decay_factor(now - moment, half_life)

    def score_at(moment: datetime, counted: int) -> int:
        return clip_score(static_points + earned[counted] / decay_at(moment))

    moments = sorted(set(times))
    for moment in reversed([m for m in moments if now - m < window]):
        start = moment - window
        lowest = min([score_at(start, bisect.bisect_right(times, start))]
                     + [score_at(m, bisect.bisect_left(times, m))
                        for m in moments if start < m <= moment])
        if score_at(moment, bisect.bisect_right(times, moment)) - lowest >= model.surge.points:
            return moment
    return None


def _crossing(threshold: int, static_points: float, behaviour: float, now: datetime,
              model: ScoringModel) -> datetime | None:
    """Return the first moment decay has taken the score below ``threshold``, if it ever does.

    Every behaviour point decays at the same rate, so the behaviour total at ``now + t``
    is ``behaviour * 0.5 ** (t / half_life)``; the score drops below the threshold once
    that total is under ``threshold - 0.5 - static_points``. On the boundary itself
    (the score rounds up to the threshold now), it drops a moment later: one second.
    """
    floor = threshold - 0.5 - static_points
    if floor <= 0:
        return None
    if behaviour > floor:
        moment = now + model.behaviour.half_life * math.log2(behaviour / floor)
        if moment > now:
            return moment
    return now + timedelta(seconds=1)


def _engagement_lapses(colleagues: Sequence[Colleague], model: ScoringModel) -> list[datetime]:
    """Return when the engagement points next drop: a counted contact or decision maker lapses.

    Contacts beyond the cap earn nothing, so only the lapse of the last counted one
    (the cap-th most recent) lowers the points.
    """
    rules = model.engagement
    lapses: list[datetime] = []
    recent = sorted((c.engaged_at for c in colleagues), reverse=True)
    if recent and rules.per_contact_points:
        counted = max(1, math.ceil(rules.max_points / rules.per_contact_points))
        lapses.append(recent[min(counted, len(recent)) - 1] + rules.window)
    deciders = [c.engaged_at for c in colleagues if c.decision_maker]
    if deciders and rules.decision_maker_points:
        lapses.append(max(deciders) + rules.window)
    return lapses


def _signal_types(model: ScoringModel) -> frozenset[TouchpointType]:
    """Return the touchpoints that can make a high-intent signal."""
    return model.tiers.high_intent.inquiries | WEBINARS | DOWNLOADS | PRICING_OR_CASE_STUDY


def _next_review(*, tier: Tier, static_points: float, behaviour: float,
                 surge_began: datetime | None, ledger: Sequence[Activity],
                 counted: Sequence[Activity], colleagues: Sequence[Colleague], now: datetime,
                 model: ScoringModel) -> datetime | None:
    """Return the first moment the tier, surge or dormancy may change without a new touchpoint.

    Each candidate is the first instant of a possible new state: the sweep re-scores
    the lead then, and whatever did not change yields a later moment.
    """
    moments = [a.occurred_at for a in ledger]  # a touchpoint reported ahead of our clock
    if ledger:
        last = max(a.occurred_at for a in ledger)
        moments += [last + timedelta(days=model.dormancy.dormant_days),
                    last + timedelta(days=model.dormancy.excluded_days)]
    moments += _engagement_lapses(colleagues, model)
    threshold = {Tier.A: model.tiers.a, Tier.B: model.tiers.b}.get(tier)
    if threshold is not None and (crossing := _crossing(threshold, static_points, behaviour,
                                                        now, model)):
        moments.append(crossing)
    if tier is Tier.A:
        window, types = model.tiers.high_intent.window, _signal_types(model)
        moments += [a.occurred_at + window for a in counted if a.type in types]
        deciders = [c.engaged_at for c in colleagues if c.decision_maker]
        moments += [max(deciders) + window] if deciders else []
    if surge_began is not None:
        moments.append(surge_began + model.surge.window)
    return min((moment for moment in moments if moment > now), default=None)


def reference_score(facts: LeadFacts, ledger: Sequence[Activity], now: datetime,
               model: ScoringModel, *, colleagues: Sequence[Colleague] = (),
               baseline_at: datetime | None = None) -> ScoreResult:
    """Return the lead's score (0..100), tier, surge, dormancy and every reason behind it.

    ``colleagues`` are the other contacts of the lead's account; activities at or
    before ``baseline_at`` (a recycled deal) no longer earn behaviour points.
    """
    dormancy = dormancy_of(ledger, now, model)
    colleagues = engaged_colleagues(colleagues, now, model.engagement.window)
    static = fit_reasons(facts, model) + engagement_reasons(colleagues, now, model)
    static_points = sum(r.points for r in static)
    counted = after_baseline(ledger, baseline_at)
    contributions = _contributions(counted, model)
    behaviour = _decayed(contributions, now, model)
    if is_competitor(facts, model):
        shown = _explained(static, behaviour)
        total = sum(r.points for r in shown)
        label = f"competitor: {facts.company or facts.email_domain}"
        shown += (Reason("fit.competitor", label, -round(max(total, 0), 2)),)
        if total < 0:
            shown += (Reason("score.clipped", "score floored at 0",
                             round(-sum(r.points for r in shown), 2)),)
        return ScoreResult(0, Tier.C, False, dormancy, shown, (), model.version,
                           _next_review(tier=Tier.C, static_points=0, behaviour=0,
                                        surge_began=None, ledger=ledger, counted=(),
                                        colleagues=(), now=now, model=model))
    behaviour_points = sum(r.points for r in behaviour)
    score = clip_score(static_points + behaviour_points)
    signals = high_intent_signals(ledger, now, model, colleagues=colleagues,
                                  baseline_at=baseline_at)
    tier = tier_for(score, signals, model)
    surge_began = _last_surge(contributions, behaviour, static_points, now, model)
    next_review_at = _next_review(
        tier=tier, static_points=static_points, behaviour=behaviour_points,
        surge_began=surge_began, ledger=ledger, counted=counted, colleagues=colleagues,
        now=now, model=model)
    shown = _explained(static, behaviour)
    if score != math.floor(static_points + behaviour_points + 0.5):
        label = "score capped at 100" if score == 100 else "score floored at 0"
        shown += (Reason("score.clipped", label, round(score - sum(r.points for r in shown), 2)),)
    return ScoreResult(score, tier, surge_began is not None, dormancy, shown,
                       tuple(signals), model.version, next_review_at)


def _explained(static: Iterable[Reason], behaviour: Sequence[Reason]) -> tuple[Reason, ...]:
    """Return the reasons as shown: points rounded to cents, the smallest touchpoints summed.

    The score uses the exact sums; the itemised touchpoints keep their time order.
    """
    ranked = sorted(range(len(behaviour)), key=lambda i: -abs(behaviour[i].points))
    itemised = {i for i in ranked[:ITEMISED_TOUCHPOINTS] if round(behaviour[i].points, 2)}
    rest = [r for i, r in enumerate(behaviour) if i not in itemised]
    shown = [*static, *(r for i, r in enumerate(behaviour) if i in itemised)]
    if rest:
        shown.append(Reason("behaviour.other", f"{len(rest)} smaller or older touchpoint(s)",
                            sum(r.points for r in rest)))
    return tuple(Reason(r.code, r.label, round(r.points, 2)) for r in shown)



MODEL = load_model(DEFAULT_MODEL_FILE)
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
JST = timezone(timedelta(hours=9))


def variant(**changes: dict[str, object]) -> ScoringModel:
    """Return the packaged model with some sections' fields replaced."""
    document = MODEL.model_dump(mode="json")
    for section, fields in changes.items():
        document[section] = {**document[section], **fields}
    return ScoringModel.model_validate(document)


MODELS = [
    MODEL,
    variant(fit={"competitors": {"domains": ["rival.example"], "company_names": []}}),
    variant(behaviour={"repeat_views": {"touchpoints": ["page_view.pricing", "page_view.blog"],
                                        "window_days": 2.5, "points": 4, "cap": 0}},
            engagement={"per_contact_points": 0, "max_points": 0}),
    variant(surge={"points": 5, "window_days": 30}, tiers={"a": 60, "b": 20},
            behaviour={"half_life_days": 0.5}),
]
# Moments on a coarse grid, mostly recent, so that equal timestamps (in different time
# zones too) and repeat views are common; some lie ahead of the scoring clock.
moments = st.builds(
    lambda days, minutes, zone: (NOW - timedelta(days=days, minutes=minutes)).astimezone(zone),
    st.one_of(st.integers(min_value=-1, max_value=8), st.integers(min_value=-2, max_value=400)),
    st.sampled_from([0, 0, 30, 720]),
    st.sampled_from([UTC, UTC, JST]))
activities = st.builds(
    Activity, type=st.sampled_from(list(TouchpointType)), occurred_at=moments,
    asset_id=st.one_of(st.none(), st.sampled_from(["", "a", "b", "c"])),
    interacted=st.booleans())
ledgers = st.one_of(st.lists(activities, max_size=30), st.lists(activities, max_size=90))
facts = st.builds(LeadFacts, title=st.sampled_from([None, "CEO", "部長", "担当", "学生"]),
                  free_mail=st.booleans(), industry=st.sampled_from([None, "製造業", "retail"]),
                  employee_band=st.sampled_from([None, "1-9", "1000+"]),
                  email_domain=st.sampled_from([None, "example.co.jp", "yopmail.com",
                                                "rival.example"]))
colleague_lists = st.lists(st.builds(Colleague, engaged_at=moments,
                                     decision_maker=st.booleans()), max_size=5)
baselines = st.one_of(st.none(), moments)
clocks = st.sampled_from([NOW, NOW - timedelta(days=3, seconds=7), NOW + timedelta(days=95),
                          NOW.astimezone(JST)])


def same(result: ScoreResult, expected: ScoreResult) -> None:
    """Assert two results are equal down to each float's bits and each time's zone."""
    assert result == expected
    assert repr(result) == repr(expected)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(MODELS), facts, ledgers, colleague_lists, baselines, clocks)
def test_the_scorer_gives_what_the_reference_gives(
    model: ScoringModel, lead: LeadFacts, ledger: list[Activity],
    colleagues: list[Colleague], baseline: datetime | None, now: datetime
) -> None:
    same(score_lead(lead, ledger, now, model, colleagues=colleagues, baseline_at=baseline),
         reference_score(lead, ledger, now, model, colleagues=colleagues, baseline_at=baseline))


def test_the_scorer_gives_what_the_reference_gives_on_a_long_busy_ledger() -> None:
    ledger = [Activity(kind, NOW - timedelta(hours=7 * i), f"asset-{i % 4}", i % 3 == 0)
              for i, kind in enumerate(list(TouchpointType) * 8)]
    for model in MODELS:
        for now in (NOW, NOW + timedelta(days=2)):
            same(score_lead(LeadFacts("部長", False), ledger, now, model),
                 reference_score(LeadFacts("部長", False), ledger, now, model))
