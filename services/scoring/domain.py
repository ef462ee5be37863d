"""Scoring's pure rules: fit, decayed behaviour and engagement; tiers, surge, calibration."""

from __future__ import annotations

import bisect
import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from itertools import accumulate

from schemas.events import DealPhase, Tier, TouchpointType
from services.scoring.model import ScoringModel, normalise

T = TouchpointType
PRICING_OR_CASE_STUDY = frozenset({T.PAGE_VIEW_PRICING, T.PAGE_VIEW_CASE_STUDY})
WEBINARS = frozenset(t for t in T if t.value.startswith("webinar."))
DOWNLOADS = frozenset(t for t in T if t.value.startswith("download."))
STAFF = "staff"
# Beyond this many touchpoints the smallest are summed into one reason: an explanation
# stays readable and a lead.scored stays far below Kafka's message size limit.
ITEMISED_TOUCHPOINTS = 50
TIER_RANK = {Tier.C: 0, Tier.B: 1, Tier.A: 2}


class Dormancy(StrEnum):
    """Whether a lead is still active, or how long it has been silent."""

    ACTIVE = "active"
    DORMANT = "dormant"
    EXCLUDED = "excluded"


@dataclass(frozen=True)
class Activity:
    """One touchpoint in a lead's ledger."""

    type: TouchpointType
    occurred_at: datetime
    asset_id: str | None = None
    interacted: bool = False

    def order(self) -> tuple[datetime, TouchpointType, str, bool]:
        """Return the key that orders a ledger the same way whatever order it arrived in."""
        return self.occurred_at, self.type, self.asset_id or "", self.interacted


@dataclass(frozen=True)
class LeadFacts:
    """What the model knows about a lead besides its activities."""

    title: str | None
    free_mail: bool
    industry: str | None = None
    employee_band: str | None = None
    email_domain: str | None = None
    company: str | None = None


@dataclass(frozen=True)
class Colleague:
    """Another contact at the lead's account: when it last engaged, and whether it decides."""

    engaged_at: datetime
    decision_maker: bool


@dataclass(frozen=True)
class Reason:
    """One contribution to the score."""

    code: str
    label: str
    points: float


@dataclass(frozen=True)
class Standing:
    """What downstream services are told about: a change here is announced."""

    score: int
    tier: Tier
    surge: bool
    dormancy: Dormancy


@dataclass(frozen=True)
class ScoreResult:
    """A computed score with its tier, reasons, signals and when to look at it again."""

    score: int
    tier: Tier
    surge: bool
    dormancy: Dormancy
    reasons: tuple[Reason, ...]
    high_intent_signals: tuple[str, ...]
    model_version: str
    next_review_at: datetime | None

    @property
    def standing(self) -> Standing:
        """Return the part of the result that is announced when it changes."""
        return Standing(self.score, self.tier, self.surge, self.dormancy)


def decay_factor(age: timedelta, half_life: timedelta) -> float:
    """Return the weight of points earned ``age`` ago: 1 now, 0.5 after one half-life."""
    return float(math.pow(0.5, max(age, timedelta(0)) / half_life))


def clip_score(raw: float) -> int:
    """Return ``raw`` rounded half up and clipped to 0..100."""
    return int(min(100, max(0, math.floor(raw + 0.5))))


@functools.lru_cache(maxsize=256)
def _keyword_pattern(keywords: tuple[str, ...]) -> re.Pattern[str]:
    """Return a pattern matching ASCII keywords as whole words and others anywhere."""
    parts = [rf"\b{re.escape(k)}\b" if k.isascii() else re.escape(k) for k in keywords]
    return re.compile("|".join(parts) or r"(?!)")


def mentions(text: str | None, keywords: tuple[str, ...]) -> bool:
    """Return True if the normalised ``text`` contains one of ``keywords``."""
    return bool(text) and _keyword_pattern(keywords).search(normalise(text or "")) is not None


def seniority(title: str | None, model: ScoringModel) -> str | None:
    """Return the seniority the title shows ("staff" if none matches), None without a title."""
    if not title:
        return None
    for rule in model.fit.titles:
        if mentions(title, rule.keywords):
            return rule.seniority
    return STAFF


def is_decision_maker(title: str | None, model: ScoringModel) -> bool:
    """Return True if the title makes the lead a decision maker in its buying committee."""
    return seniority(title, model) in model.engagement.decision_maker_seniorities


def engages(touchpoint: TouchpointType, model: ScoringModel) -> bool:
    """Return True if this touchpoint makes its contact engaged for the buying committee."""
    return touchpoint not in model.engagement.ignored_touchpoints


def is_competitor(facts: LeadFacts, model: ScoringModel) -> bool:
    """Return True if the lead comes from a competitor's domain or company."""
    competitors = model.fit.competitors
    domain, company = facts.email_domain, facts.company
    return ((domain is not None and normalise(domain) in competitors.domains)
            or (company is not None and normalise(company) in competitors.company_names))


def fit_reasons(facts: LeadFacts, model: ScoringModel) -> list[Reason]:
    """Return the points the lead's profile adds or removes (competitors aside)."""
    fit = model.fit
    reasons: list[Reason] = []
    if mentions(facts.title, fit.student.keywords):
        reasons.append(Reason("fit.student", f"student: {facts.title}", fit.student.points))
    elif (rank := seniority(facts.title, model)) is not None:
        points = next((r.points for r in fit.titles if r.seniority == rank), fit.staff_points)
        reasons.append(Reason(f"fit.title.{rank}", f"title: {facts.title}", points))
    if fit.industries.matches(facts.industry):
        reasons.append(Reason("fit.icp.industry", f"industry: {facts.industry}",
                              fit.industries.points))
    if fit.employee_bands.matches(facts.employee_band):
        reasons.append(Reason("fit.icp.employee_band", f"employees: {facts.employee_band}",
                              fit.employee_bands.points))
    if fit.disposable_domains.matches(facts.email_domain):
        reasons.append(Reason("fit.disposable_domain", f"disposable mail: {facts.email_domain}",
                              fit.disposable_domains.points))
    elif facts.free_mail:
        reasons.append(Reason("fit.free_mail", "free-mail address", fit.free_mail_points))
    return reasons


def touchpoint_label(activity: Activity) -> str:
    """Return how a touchpoint reads in an explanation: "inquiry: demo request on 2026-11-21"."""
    return _label(activity.type, activity.asset_id, activity.occurred_at.date())


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
        reasons.append(Reason("engagement.contacts",
                              f"{len(engaged)} other engaged contact(s) at the account",
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


def score_lead(facts: LeadFacts, ledger: Sequence[Activity], now: datetime,
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
    if is_competitor(facts, model):
        label = f"competitor: {facts.company or facts.email_domain}"
        reasons = [*static, Reason("fit.competitor", label, -static_points)]
        return ScoreResult(0, Tier.C, False, dormancy, _explained(reasons, ()), (),
                           model.version,
                           _next_review(tier=Tier.C, static_points=0, behaviour=0,
                                        surge_began=None, ledger=ledger, counted=(),
                                        colleagues=(), now=now, model=model))
    counted = after_baseline(ledger, baseline_at)
    contributions = _contributions(counted, model)
    behaviour = _decayed(contributions, now, model)
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
    return ScoreResult(score, tier, surge_began is not None, dormancy,
                       _explained(static, behaviour), tuple(signals), model.version,
                       next_review_at)


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


class DealOutcome(StrEnum):
    """Where a deal the lead turned into ended up."""

    OPEN = "open"
    WON = "won"
    LOST = "lost"
    RECYCLED = "recycled"


def outcome_of(phase: DealPhase) -> DealOutcome:
    """Return the outcome a deal in ``phase`` has so far."""
    return {DealPhase.WON: DealOutcome.WON, DealPhase.LOST: DealOutcome.LOST}.get(
        phase, DealOutcome.OPEN)


@dataclass(frozen=True)
class DealRecord:
    """A deal with the lead's score and tier when the deal was opened."""

    score: int
    tier: Tier
    outcome: DealOutcome


@dataclass(frozen=True)
class Bucket:
    """Deals of one score band or tier, by outcome, and the share of closed deals won."""

    label: str
    deals: int
    won: int
    lost: int
    open: int
    recycled: int

    @property
    def win_rate(self) -> float | None:
        """Return won / (won + lost), or None before any deal closed."""
        closed = self.won + self.lost
        return self.won / closed if closed else None


@dataclass(frozen=True)
class Calibration:
    """How the scores and tiers given at hand-off compare with what the deals became."""

    overall: Bucket
    by_band: tuple[Bucket, ...]
    by_tier: tuple[Bucket, ...]
    score_auc: float | None
    tier_auc: float | None
    tier_a_lift: float | None


def _bucket(label: str, deals: Sequence[DealRecord]) -> Bucket:
    """Return the outcome counts of ``deals``."""
    counts = Counter(deal.outcome for deal in deals)
    return Bucket(label, len(deals), counts[DealOutcome.WON], counts[DealOutcome.LOST],
                  counts[DealOutcome.OPEN], counts[DealOutcome.RECYCLED])


def score_bands(width: int) -> list[tuple[int, int]]:
    """Return the score bands (first, last) of ``width`` points covering 0..100."""
    starts = list(range(0, 100, width))
    return [(start, (starts[i + 1] - 1) if i + 1 < len(starts) else 100)
            for i, start in enumerate(starts)]


def separation(won: Sequence[int], lost: Sequence[int]) -> float | None:
    """Return the chance that a won deal ranks above a lost one (ties count half): the AUC.

    0.5 means the ranking does not separate won from lost at all, 1.0 that it
    separates them perfectly; None until there is at least one of each.
    """
    if not won or not lost:
        return None
    lost_counts = Counter(lost)  # at most 101 distinct scores, so this stays cheap
    wins = sum(sum(n for level, n in lost_counts.items() if level < value)
               + lost_counts[value] / 2 for value in won)
    return wins / (len(won) * len(lost))


def calibrate(deals: Sequence[DealRecord], band_width: int = 20) -> Calibration:
    """Return conversion by score band and tier and how well they separate won from lost."""
    bands = [_bucket(f"{first}-{last}", [d for d in deals if first <= d.score <= last])
             for first, last in score_bands(band_width)]
    tiers = [_bucket(tier.value, [d for d in deals if d.tier is tier]) for tier in Tier]
    overall = _bucket("all", deals)
    won = [d for d in deals if d.outcome is DealOutcome.WON]
    lost = [d for d in deals if d.outcome is DealOutcome.LOST]
    tier_a = next(bucket for bucket in tiers if bucket.label == Tier.A.value).win_rate
    lift = tier_a / overall.win_rate if tier_a is not None and overall.win_rate else None
    return Calibration(
        overall, tuple(bands), tuple(tiers),
        separation([d.score for d in won], [d.score for d in lost]),
        separation([TIER_RANK[d.tier] for d in won], [TIER_RANK[d.tier] for d in lost]),
        lift)
