"""Scoring's pure rules: fit + decayed behaviour + engagement, tiers and reasons."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.events import Tier, TouchpointType

T = TouchpointType
HIGH_INTENT_INQUIRIES = frozenset({T.INQUIRY_DEMO_REQUEST, T.INQUIRY_QUOTE_REQUEST,
                                   T.INQUIRY_GENERAL})
WEBINARS = frozenset({T.WEBINAR_PRODUCT_DEMO, T.WEBINAR_TREND_SEMINAR, T.WEBINAR_ARCHIVE})
DOWNLOADS = frozenset({T.DOWNLOAD_IMPLEMENTATION_GUIDE, T.DOWNLOAD_INDUSTRY_REPORT,
                       T.DOWNLOAD_BEGINNER_GUIDE})
PRICING_OR_CASE_STUDY = frozenset({T.PAGE_VIEW_PRICING, T.PAGE_VIEW_CASE_STUDY})


@dataclass(frozen=True)
class ScoringModel:
    """The tunable numbers of the model (DESIGN.md section 3 defaults)."""

    version: str = "2026.1"
    points: dict[TouchpointType, float] = field(default_factory=lambda: {
        T.PAGE_VIEW_PRICING: 10, T.PAGE_VIEW_CASE_STUDY: 8, T.PAGE_VIEW_BLOG: 3,
        T.PAGE_VIEW_OTHER: 1, T.DOWNLOAD_IMPLEMENTATION_GUIDE: 15,
        T.DOWNLOAD_INDUSTRY_REPORT: 8, T.DOWNLOAD_BEGINNER_GUIDE: 5,
        T.WEBINAR_PRODUCT_DEMO: 20, T.WEBINAR_TREND_SEMINAR: 12, T.WEBINAR_ARCHIVE: 8,
        T.INQUIRY_DEMO_REQUEST: 50, T.INQUIRY_QUOTE_REQUEST: 60, T.INQUIRY_GENERAL: 30,
        T.EMAIL_OPEN: 1, T.EMAIL_CLICK: 3, T.APPOINTMENT_SET: 30, T.FORM_SUBMISSION: 0,
    })
    repeat_view_points: float = 5
    repeat_view_cap: int = 3
    repeat_view_window: timedelta = timedelta(days=7)
    further_download_points: float = 5
    webinar_interaction_points: float = 5
    half_life: timedelta = timedelta(days=30)
    high_intent_window: timedelta = timedelta(days=30)
    tier_a_threshold: int = 80
    tier_b_threshold: int = 50
    title_points: tuple[tuple[tuple[str, ...], float, str], ...] = (
        (("ceo", "cto", "cfo", "coo", "president", "director", "vp", "chief", "founder",
          "社長", "取締役", "役員", "執行役員", "本部長", "事業部長", "代表"), 15, "executive"),
        (("manager", "head", "lead", "部長", "課長", "マネージャー", "室長", "リーダー"), 10,
         "manager"),
    )
    staff_title_points: float = 3
    free_mail_points: float = -10
    icp_industries: frozenset[str] = frozenset({
        "manufacturing", "software", "it", "information technology", "finance", "logistics",
        "製造業", "製造", "情報通信業", "情報通信", "ソフトウェア", "金融", "金融業", "物流",
    })
    icp_industry_points: float = 10
    icp_employee_bands: frozenset[str] = frozenset({"100-499", "500-999", "1000+"})
    icp_employee_band_points: float = 10


@dataclass(frozen=True)
class Activity:
    """One touchpoint in a lead's ledger."""

    type: TouchpointType
    occurred_at: datetime
    asset_id: str | None = None
    interacted: bool = False


@dataclass(frozen=True)
class LeadFacts:
    """What the model knows about a lead besides its activities."""

    title: str | None
    free_mail: bool
    industry: str | None = None
    employee_band: str | None = None


@dataclass(frozen=True)
class Reason:
    """One contribution to the score."""

    code: str
    label: str
    points: float


@dataclass(frozen=True)
class ScoreResult:
    """A computed score with its tier, reasons and the signals that made it hot."""

    score: int
    tier: Tier
    reasons: tuple[Reason, ...]
    high_intent_signals: tuple[str, ...]
    model_version: str


def decay_factor(age: timedelta, half_life: timedelta) -> float:
    """Return the weight of points earned ``age`` ago: 1 now, 0.5 after one half-life."""
    return float(math.pow(0.5, max(age, timedelta(0)) / half_life))


def behaviour_reasons(ledger: Sequence[Activity], now: datetime,
                      model: ScoringModel) -> list[Reason]:
    """Return the decayed points of every activity, with repeat and interaction bonuses."""
    reasons: list[Reason] = []
    repeat_views: Counter[TouchpointType] = Counter()
    downloads_seen: set[str] = set()
    last_view: dict[TouchpointType, datetime] = {}
    for activity in sorted(ledger, key=lambda a: (a.occurred_at, a.type.value, a.asset_id or "")):
        base = model.points.get(activity.type, 0)
        code, label = activity.type.value, activity.type.value
        if activity.type in PRICING_OR_CASE_STUDY:
            previous = last_view.get(activity.type)
            last_view[activity.type] = activity.occurred_at
            if previous is not None and activity.occurred_at - previous <= model.repeat_view_window:
                if repeat_views[activity.type] >= model.repeat_view_cap:
                    continue
                repeat_views[activity.type] += 1
                base, code = model.repeat_view_points, f"{code}.repeat"
                label = f"{activity.type.value} (repeat view)"
        elif activity.type in DOWNLOADS:
            asset = activity.asset_id or activity.type.value
            if asset in downloads_seen:
                continue
            if downloads_seen:
                base += model.further_download_points
            downloads_seen.add(asset)
        if activity.type in WEBINARS and activity.interacted:
            base += model.webinar_interaction_points
        if base == 0:
            continue
        weight = decay_factor(now - activity.occurred_at, model.half_life)
        reasons.append(Reason(code, label, round(base * weight, 2)))
    return reasons


def fit_reasons(facts: LeadFacts, model: ScoringModel) -> list[Reason]:
    """Return the points the lead's profile adds or removes."""
    reasons: list[Reason] = []
    title = (facts.title or "").lower()
    if title:
        for keywords, points, seniority in model.title_points:
            if any(keyword in title for keyword in keywords):
                reasons.append(Reason(f"fit.title.{seniority}", f"title: {facts.title}", points))
                break
        else:
            reasons.append(Reason("fit.title.staff", f"title: {facts.title}",
                                  model.staff_title_points))
    if facts.industry and facts.industry.strip().lower() in model.icp_industries:
        reasons.append(Reason("fit.icp.industry", f"industry: {facts.industry}",
                              model.icp_industry_points))
    if facts.employee_band and facts.employee_band.strip() in model.icp_employee_bands:
        reasons.append(Reason("fit.icp.employee_band", f"employees: {facts.employee_band}",
                              model.icp_employee_band_points))
    if facts.free_mail:
        reasons.append(Reason("fit.free_mail", "free-mail address", model.free_mail_points))
    return reasons


def high_intent_signals(ledger: Sequence[Activity], now: datetime,
                        model: ScoringModel) -> list[str]:
    """Return the high-intent signals seen within the window."""
    recent = [a for a in ledger if now - a.occurred_at <= model.high_intent_window]
    types = Counter(a.type for a in recent)
    signals = sorted({a.type.value for a in recent if a.type in HIGH_INTENT_INQUIRIES})
    downloads = len({a.asset_id or a.type.value for a in recent if a.type in DOWNLOADS})
    if any(types[w] for w in WEBINARS) and downloads >= 2:
        signals.append("webinar_and_downloads")
    if sum(types[p] for p in PRICING_OR_CASE_STUDY) >= 3:
        signals.append("pricing_or_case_study_views")
    return signals


def tier_for(score: int, signals: Sequence[str], model: ScoringModel) -> Tier:
    """Return the tier: A needs both the threshold and a high-intent signal."""
    if score >= model.tier_a_threshold and signals:
        return Tier.A
    if score >= model.tier_b_threshold:
        return Tier.B
    return Tier.C


def score_lead(facts: LeadFacts, ledger: Sequence[Activity], now: datetime,
               model: ScoringModel) -> ScoreResult:
    """Return the lead's score (0..100), tier and every reason behind it."""
    reasons = fit_reasons(facts, model) + behaviour_reasons(ledger, now, model)
    score = round(min(100.0, max(0.0, sum(r.points for r in reasons))))
    signals = high_intent_signals(ledger, now, model)
    return ScoreResult(score, tier_for(score, signals, model), tuple(reasons), tuple(signals),
                       model.version)
