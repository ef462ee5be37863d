"""Scoring's pure rules: fit, decayed behaviour and engagement; tiers, surge, calibration."""

from __future__ import annotations

import bisect
import functools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from itertools import accumulate
from typing import NamedTuple

from baton_runtime.text import clip
from schemas.events import SHORT_TEXT_LENGTH, DealPhase, Tier, TouchpointType
from services.scoring.model import (
    KeywordRule,
    ReasonLocale,
    ScoringModel,
    TitleRule,
    compact,
    keyword_pattern,
    normalise,
    phrase_pattern,
)

T = TouchpointType
PRICING_OR_CASE_STUDY = frozenset({T.PAGE_VIEW_PRICING, T.PAGE_VIEW_CASE_STUDY})
WEBINARS = frozenset(t for t in T if t.value.startswith("webinar."))
DOWNLOADS = frozenset(t for t in T if t.value.startswith("download."))
SIGNALLING = WEBINARS | DOWNLOADS | PRICING_OR_CASE_STUDY  # besides a model's inquiries
STAFF = "staff"
# Beyond this many touchpoints the smallest are summed into one reason: an explanation
# stays readable and a lead.scored stays far below Kafka's message size limit.
ITEMISED_TOUCHPOINTS = 50
TIER_RANK = {Tier.C: 0, Tier.B: 1, Tier.A: 2}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_DAY = EPOCH.date()
# The UTC dates a label can show, as days since the epoch.
FIRST_DAY, LAST_DAY = (date.min - EPOCH_DAY).days, (date.max - EPOCH_DAY).days
LATEST = datetime.max.replace(tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
DAY_US = timedelta(days=1) // MICROSECOND
ONE_SECOND = timedelta(seconds=1)
# Lead profiles and titles remembered per model: a lead is re-scored at each touchpoint.
PROFILES_CACHED = 8192
MODELS_CACHED = 8


class Dormancy(StrEnum):
    """Whether a lead is still active, or how long it has been silent."""

    ACTIVE = "active"
    DORMANT = "dormant"
    EXCLUDED = "excluded"


class Activity(NamedTuple):
    """One touchpoint in a lead's ledger (a tuple: a ledger is rebuilt at every re-score)."""

    type: TouchpointType
    occurred_at: datetime
    asset_id: str | None = None
    interacted: bool = False

    def order(self) -> tuple[datetime, TouchpointType, str, bool]:
        """Return the key that orders a ledger the same way whatever order it arrived in."""
        return self.occurred_at, self.type, self.asset_id or "", self.interacted


class LeadFacts(NamedTuple):
    """What the model knows about a lead besides its activities (a tuple: it keys a cache)."""

    title: str | None
    free_mail: bool
    industry: str | None = None
    employee_band: str | None = None
    email_domain: str | None = None
    company: str | None = None


class Colleague(NamedTuple):
    """Another contact at the lead's account: when it last engaged, and whether it decides."""

    engaged_at: datetime
    decision_maker: bool


# The code of the reason line saying a score was clipped to 0..100 (see with_clipping).
CLIPPED = "score.clipped"


class Reason(NamedTuple):
    """One contribution to the score (a tuple: a score makes one per touchpoint)."""

    code: str
    label: str
    points: float


class Wording(NamedTuple):
    """How a score's reasons read in one language: labels, and templates to fill."""

    student: str
    title: str
    industry: str
    employees: str
    disposable_mail: str
    free_mail: str
    competitor: str
    contacts: str  # fewer than the counted contacts: {count}
    contacts_capped: str  # the counted contacts or more: {count}
    decision_maker: str
    touchpoints: dict[TouchpointType, str]
    dated: str  # a touchpoint: {touchpoint}, {asset} (empty or "(id)") and {day}
    # Where the day is counted, as microseconds east of UTC: a fixed offset, so a
    # touchpoint's day costs an addition and never moves between re-scores.
    day_offset_us: int
    repeat_view: str
    further_download: str
    question_or_chat: str
    others: str  # the smallest touchpoints summed: {count}
    capped: str
    floored: str


ENGLISH = Wording(
    student="student", title="title", industry="industry", employees="employees",
    disposable_mail="disposable mail", free_mail="free-mail address", competitor="competitor",
    contacts="{count} other engaged contact(s) at the account",
    contacts_capped="{count} or more other engaged contacts at the account",
    decision_maker="a decision maker is engaged",
    touchpoints={kind: "{}: {}".format(*(part.replace("_", " ")
                                         for part in kind.value.partition(".")[::2]))
                 for kind in TouchpointType},
    dated="{touchpoint}{asset} on {day}", day_offset_us=0, repeat_view=" (repeat view)",
    further_download=" (further download)", question_or_chat=" (question or chat)",
    others="{count} smaller or older touchpoint(s)", capped="score capped at 100",
    floored="score floored at 0")
# Japanese sales teams read the reasons in their alerts (the notifier's default locale).
JAPANESE = Wording(
    student="学生", title="役職", industry="業種", employees="従業員規模",
    disposable_mail="使い捨てメール", free_mail="フリーメールアドレス", competitor="競合",
    contacts="同じ企業で関与中の他の担当者 {count}名",
    contacts_capped="同じ企業で関与中の他の担当者 {count}名以上",
    decision_maker="決裁者が関与中",
    touchpoints={
        T.PAGE_VIEW_PRICING: "ページ閲覧: 料金", T.PAGE_VIEW_CASE_STUDY: "ページ閲覧: 導入事例",
        T.PAGE_VIEW_BLOG: "ページ閲覧: ブログ", T.PAGE_VIEW_OTHER: "ページ閲覧: その他",
        T.DOWNLOAD_IMPLEMENTATION_GUIDE: "資料ダウンロード: 導入ガイド",
        T.DOWNLOAD_INDUSTRY_REPORT: "資料ダウンロード: 業界レポート",
        T.DOWNLOAD_BEGINNER_GUIDE: "資料ダウンロード: 入門ガイド",
        T.WEBINAR_PRODUCT_DEMO: "ウェビナー: 製品デモ",
        T.WEBINAR_TREND_SEMINAR: "ウェビナー: トレンドセミナー",
        T.WEBINAR_ARCHIVE: "ウェビナー: アーカイブ視聴",
        T.INQUIRY_DEMO_REQUEST: "問い合わせ: デモ依頼",
        T.INQUIRY_QUOTE_REQUEST: "問い合わせ: 見積依頼", T.INQUIRY_GENERAL: "問い合わせ: 一般",
        T.EMAIL_OPEN: "メール: 開封", T.EMAIL_CLICK: "メール: クリック",
        T.APPOINTMENT_SET: "アポイント: パートナーが設定", T.FORM_SUBMISSION: "フォーム: 送信"},
    dated="{touchpoint}{asset}（{day}）", repeat_view="（再閲覧）",
    day_offset_us=timedelta(hours=9) // timedelta(microseconds=1),  # Japan time, no DST
    further_download="（追加ダウンロード）", question_or_chat="（質問・チャットあり）",
    others="その他の小さい・古い接点 {count}件", capped="スコアを上限の100に調整",
    floored="スコアを下限の0に調整")
WORDINGS: dict[ReasonLocale, Wording] = {"en": ENGLISH, "ja": JAPANESE}


class Standing(NamedTuple):
    """What downstream services are told about: a change here is announced."""

    score: int
    tier: Tier
    surge: bool
    dormancy: Dormancy


class ScoreResult(NamedTuple):
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
    rounded = math.floor(raw + 0.5)  # an int already
    return 0 if rounded < 0 else 100 if rounded > 100 else rounded


# What a phrase in which keywords do not count is replaced with: a control character, which
# no real keyword holds, and no letter, so that the words beside it stay whole words.
HIDDEN = "\x00"


def mentions(text: str | None, keywords: tuple[str, ...], except_in: tuple[str, ...] = ()
             ) -> bool:
    """Return True if the normalised ``text`` contains one of ``keywords`` outside the
    phrases of ``except_in``."""
    if not text:
        return False
    normalised = normalise(text)
    if except_in:
        # Even a keyword partly inside a phrase does not count: 執行役員秘書 (the executive
        # officers' secretary) holds 執行役員, whose 役員 lies in the phrase 役員秘書.
        normalised = phrase_pattern(except_in).sub(HIDDEN, normalised)
    return keyword_pattern(keywords).search(normalised) is not None


def seniority(title: str | None, model: ScoringModel) -> str | None:
    """Return the seniority the title shows ("staff" if none matches), None without a title."""
    if not title:
        return None
    for rule in model.fit.titles:
        if mentions(title, rule.keywords, rule.except_in):
            return rule.seniority
    return STAFF


def is_decision_maker(title: str | None, model: ScoringModel) -> bool:
    """Return True if the title makes the lead a decision maker in its buying committee."""
    return _rules_of(model).seniority(title) in model.engagement.decision_maker_seniorities


def fresh_inquiry(touchpoints: Sequence[tuple[TouchpointType, datetime]], now: datetime,
                  model: ScoringModel) -> TouchpointType | None:
    """Return the weightiest inquiry (the latest of equal points) among a batch's touchpoints
    of one lead, in the order they came, made within the high-intent window; None if none.

    A demo request followed by an e-mail open or a general inquiry in one batch is still a
    demo request to sales: its five-minute SLA and a nurtured lead's return to MQL hang
    on it. An inquiry reported months late is no news.
    """
    high_intent, points = model.tiers.high_intent, model.behaviour.points
    fresh = [kind for kind, at in reversed(touchpoints)
             if kind in high_intent.inquiries and now - at < high_intent.window]
    return max(fresh, key=lambda kind: points.get(kind, 0.0), default=None)


def worth_announcing(announced: Standing | None, result: ScoreResult, inquired: bool,
                     meeting_set: bool = False) -> bool:
    """Return True if a re-score is announced: its standing changed, or a fresh inquiry
    made it (news to sales even when a score capped at 100 cannot rise: a lead sent back
    to nurture earns MQL again by asking), or a partner set a meeting with a time (the
    first meeting's SLA clock starts whatever the score)."""
    return announced != result.standing or inquired or meeting_set


def engages(touchpoint: TouchpointType, model: ScoringModel) -> bool:
    """Return True if this touchpoint makes its contact engaged for the buying committee."""
    return touchpoint not in model.engagement.ignored_touchpoints


def is_competitor(facts: LeadFacts, model: ScoringModel) -> bool:
    """Return True if the lead comes from a competitor's domain or company."""
    competitors = model.fit.competitors
    domain, company = facts.email_domain, facts.company
    return ((domain is not None and compact(domain) in competitors.domains)
            or (company is not None and compact(company) in competitors.company_names))


def labelled(prefix: str, value: str | None) -> str:
    """Return "prefix: value" as a reason's label, cut to what a label may hold.

    A profile's text may be as long as a label (lead.captured allows it), and a label
    over the limit would make the lead's score impossible to announce.
    """
    return clip(f"{prefix}: {value}", SHORT_TEXT_LENGTH)


def fit_reasons(facts: LeadFacts, model: ScoringModel, wording: Wording = ENGLISH
                ) -> list[Reason]:
    """Return the points the lead's profile adds or removes (competitors aside)."""
    fit, say = model.fit, wording
    reasons: list[Reason] = []
    if mentions(facts.title, fit.student.keywords, fit.student.except_in):
        reasons.append(Reason("fit.student", labelled(say.student, facts.title),
                              fit.student.points))
    elif (rank := seniority(facts.title, model)) is not None:
        points = next((r.points for r in fit.titles if r.seniority == rank), fit.staff_points)
        reasons.append(Reason(f"fit.title.{rank}", labelled(say.title, facts.title), points))
    if fit.industries.matches(facts.industry):
        reasons.append(Reason("fit.icp.industry", labelled(say.industry, facts.industry),
                              fit.industries.points))
    if fit.employee_bands.matches(facts.employee_band):
        reasons.append(Reason("fit.icp.employee_band",
                              labelled(say.employees, facts.employee_band),
                              fit.employee_bands.points))
    if fit.disposable_domains.matches(facts.email_domain):
        reasons.append(Reason("fit.disposable_domain",
                              labelled(say.disposable_mail, facts.email_domain),
                              fit.disposable_domains.points))
    elif facts.free_mail:
        reasons.append(Reason("fit.free_mail", say.free_mail, fit.free_mail_points))
    return reasons


def _shown(reason: Reason) -> Reason:
    """Return ``reason`` as an explanation shows it: its points rounded to cents."""
    return Reason(reason.code, reason.label, round(reason.points, 2))


class _Profile(NamedTuple):
    """What a lead's facts are worth under a model: its fit reasons, exact and as shown."""

    reasons: tuple[Reason, ...]
    shown: tuple[Reason, ...]
    competitor: bool


def _later(moment: datetime, span: timedelta) -> datetime:
    """Return ``moment + span``, or the latest representable moment if that is later."""
    try:
        return moment + span
    except OverflowError:  # an event may carry any aware time, even late in year 9999
        return LATEST


def _microseconds(moment: datetime) -> int:
    """Return ``moment`` as microseconds since the epoch."""
    return (moment - EPOCH) // MICROSECOND


class _Rules:
    """A model's rules as each score reads them, derived once per model.

    Durations are also held in whole microseconds: a timedelta divided by another
    divides their microseconds, so decay computed from these gives the same floats.
    """

    def __init__(self, model: ScoringModel) -> None:
        behaviour, high_intent = model.behaviour, model.tiers.high_intent
        repeat, engagement = behaviour.repeat_views, model.engagement
        # Per touchpoint type: its code, points, and whether the repeat-view, download,
        # webinar and high-intent rules concern it.
        self.kinds = {kind: (kind.value, behaviour.points.get(kind, 0.0),
                             kind in repeat.touchpoints, kind in DOWNLOADS, kind in WEBINARS,
                             kind in high_intent.inquiries or kind in SIGNALLING)
                      for kind in TouchpointType}
        self.repeat_window = repeat.window // MICROSECOND
        self.repeat_points, self.repeat_cap = repeat.points, repeat.cap
        self.further_download_points = behaviour.further_download_points
        self.webinar_interaction_points = behaviour.webinar_interaction_points
        self.half_life = behaviour.half_life
        self.half_life_us = self.half_life // MICROSECOND
        self.engagement_window = engagement.window
        self.counted_contacts = counted_contacts(model)
        self.signal_window = high_intent.window
        self.signal_window_us = self.signal_window // MICROSECOND
        self.inquiries = high_intent.inquiries
        self.signal_types = self.inquiries | SIGNALLING
        self.surge_window = model.surge.window
        self.surge_window_us = self.surge_window // MICROSECOND
        self.dormant_after = timedelta(days=model.dormancy.dormant_days)
        self.excluded_after = timedelta(days=model.dormancy.excluded_days)
        self.thresholds = {Tier.A: model.tiers.a, Tier.B: model.tiers.b}
        # A lead is re-scored at each of its touchpoints; its profile seldom changes.
        # By language too: a profile's reasons are worded in the service's reason locale.
        self.profile: Callable[[LeadFacts, ReasonLocale], _Profile] = functools.lru_cache(
            maxsize=PROFILES_CACHED)(functools.partial(_profile, model=model))
        self.seniority: Callable[[str | None], str | None] = functools.lru_cache(
            maxsize=PROFILES_CACHED)(functools.partial(seniority, model=model))
        keyworded: list[TitleRule | KeywordRule] = [*model.fit.titles, model.fit.student]
        for rule in keyworded:
            keyword_pattern(rule.keywords)  # compiled now rather than in a lead's first batch
            phrase_pattern(rule.except_in)


def _profile(facts: LeadFacts, language: ReasonLocale, model: ScoringModel) -> _Profile:
    """Return the fit reasons of ``facts`` under ``model``, worded in ``language``, and
    whether it is a competitor."""
    reasons = tuple(fit_reasons(facts, model, WORDINGS[language]))
    return _Profile(reasons, tuple(_shown(r) for r in reasons), is_competitor(facts, model))


_RULES: dict[int, tuple[ScoringModel, _Rules]] = {}


def prepare(model: ScoringModel) -> None:
    """Derive ``model``'s rules now, so that the first batch scored does not wait for them."""
    _rules_of(model)


def _rules_of(model: ScoringModel) -> _Rules:
    """Return ``model``'s rules, derived at its first use (models are immutable)."""
    # By identity: a model holds a dict, so it cannot be hashed. The entry keeps the
    # model alive, so its id is not reused while cached.
    found = _RULES.get(id(model))
    if found is None:
        if len(_RULES) >= MODELS_CACHED:
            _RULES.clear()
        found = _RULES[id(model)] = (model, _Rules(model))
    return found[1]


@functools.lru_cache(maxsize=4096)  # a lead's ledger is labelled again at every re-score
def _label(kind: TouchpointType, asset_id: str | None, day_number: int,
           language: ReasonLocale = "en") -> str:
    """Return how a touchpoint reads in an explanation: "inquiry: demo request on 2026-11-21"
    in English.

    ``day_number`` is its date where the language counts days (UTC in English, Japan time
    in Japanese) as days since the epoch, whatever offset its moment came with: a ledger
    is read back from the database in UTC, and a re-score must not move a touchpoint to
    another day. A day number keys the cache without converting the moment.
    """
    asset = f" ({asset_id})" if asset_id else ""
    # An offset can take a moment at either end of the calendar past it (9999-12-31
    # 23:00-05:00 is in year 10000 in UTC): it is dated at the end it passed.
    day = EPOCH_DAY + timedelta(days=min(max(day_number, FIRST_DAY), LAST_DAY))
    wording = WORDINGS[language]
    return wording.dated.format(touchpoint=wording.touchpoints[kind], asset=asset,
                                day=day.isoformat())


class _Behaviour:
    """The touchpoints that earn points, in ledger order, and what the recent ones signal.

    Parallel lists rather than an object per touchpoint: ``moments`` are their times in
    microseconds (a touchpoint reported ahead of our clock happens now), ``points``
    their points decayed to the scoring moment.
    """

    def __init__(self) -> None:
        self.moments: list[int] = []
        self.times: list[datetime] = []
        self.points: list[float] = []
        self.codes: list[str] = []
        self.labels: list[str] = []
        self.inquiries: set[str] = set()
        self.downloads: set[str] = set()
        self.webinar = False
        self.views = 0


def _behaviour(counted: Sequence[Activity], now: datetime, rules: _Rules,
               language: ReasonLocale = "en") -> _Behaviour:
    """Return the touchpoints that earn points, with the repeat and bonus rules, decayed at
    ``now`` and labelled in ``language``, and the high-intent touchpoints within the signal
    window."""
    found = _Behaviour()
    moments, times, earned = found.moments, found.times, found.points
    codes, labels = found.codes, found.labels
    say = WORDINGS[language]
    now_us = _microseconds(now)
    half_life, repeat_window = rules.half_life_us, rules.repeat_window
    repeats_in_window: dict[TouchpointType, list[int]] = {}
    last_view: dict[TouchpointType, int] = {}
    downloads_seen: set[str] = set()
    for activity in sorted(counted, key=Activity.order):
        kind, at, asset_id = activity.type, activity.occurred_at, activity.asset_id
        code, points, repeats, download, webinar, signals = rules.kinds[kind]
        moment = (at - EPOCH) // MICROSECOND
        age = now_us - moment
        if signals and age < rules.signal_window_us:
            if download:
                found.downloads.add(asset_id or code)
            if webinar:
                found.webinar = True
            if kind in PRICING_OR_CASE_STUDY:
                found.views += 1
            if kind in rules.inquiries:
                found.inquiries.add(code)
        suffix = ""
        if repeats:
            previous = last_view.get(kind)
            last_view[kind] = moment
            if previous is not None and moment - previous <= repeat_window:
                recent = [seen for seen in repeats_in_window.get(kind, [])
                          if moment - seen <= repeat_window]
                repeats_in_window[kind] = recent
                if len(recent) >= rules.repeat_cap:
                    continue
                recent.append(moment)
                points, code, suffix = rules.repeat_points, f"{code}.repeat", say.repeat_view
        elif download:
            asset = asset_id or code
            if asset in downloads_seen:
                continue
            if downloads_seen:
                points += rules.further_download_points
                suffix = say.further_download
            downloads_seen.add(asset)
        if webinar and activity.interacted:
            points += rules.webinar_interaction_points
            suffix += say.question_or_chat
        if points:
            labels.append(_label(kind, asset_id, (moment + say.day_offset_us) // DAY_US,
                                 language) + suffix)
            if age < 0:  # reported ahead of our clock: it happens now, undecayed
                moment, age = now_us, 0
            moments.append(moment)
            times.append(at)
            earned.append(points * math.pow(0.5, age / half_life))
            codes.append(code)
    return found


def _signals(found: _Behaviour, colleagues: Sequence[Colleague], now: datetime,
             model: ScoringModel, rules: _Rules) -> list[str]:
    """Return the high-intent signals seen within the window, since the baseline."""
    high_intent = model.tiers.high_intent
    signals = sorted(found.inquiries)
    if found.webinar and len(found.downloads) >= high_intent.webinar_with_downloads:
        signals.append("webinar_and_downloads")
    if found.views >= high_intent.pricing_or_case_study_views:
        signals.append("pricing_or_case_study_views")
    if high_intent.decision_maker_engaged and any(
            c.decision_maker and now - c.engaged_at < rules.signal_window for c in colleagues):
        signals.append("decision_maker_engaged")
    return signals


def counted_contacts(model: ScoringModel) -> int:
    """Return how many other engaged contacts earn points: those beyond the cap earn none."""
    rules = model.engagement
    if not rules.per_contact_points:
        return 0
    return max(1, math.ceil(rules.max_points / rules.per_contact_points))


# Decision makers read per account: with two others engaged, every colleague keeps one
# besides itself (see changes_colleagues).
DECIDERS_READ = 2


def contacts_to_read(model: ScoringModel) -> tuple[int, int]:
    """Return how many of an account's most recently engaged contacts, and of its engaged
    decision makers, scoring reads: of the others, a score reads only the counted most
    recent ones and the latest decision maker. One more of each lets a lead's own entry
    be left out, and lets ``changes_colleagues`` see whether the others are past the cap."""
    return counted_contacts(model) + 1, DECIDERS_READ


def changes_colleagues(before: Colleague | None, after: Colleague | None,
                       others: Sequence[Colleague], now: datetime, model: ScoringModel) -> bool:
    """Return True if a lead's own engagement going from ``before`` to ``after`` (None: not
    engaged) may change a colleague's engagement points, reasons or signals, or bring one
    of their changes sooner.

    ``others`` are the account's other engaged contacts, at least those
    ``contacts_to_read`` names. Past the cap, and with two other decision makers engaged
    within the signal window, a contact that starts engaging changes nobody's score: the
    moments their points lapse only move later, and a review that comes early finds
    nothing changed and sets the next one.
    """
    rules = _rules_of(model)
    was_deciding = before is not None and before.decision_maker
    if was_deciding and not (after is not None and after.decision_maker):
        return True  # a decision maker fewer: a colleague's points may lapse sooner
    engaged = [c for c in others if now - c.engaged_at < rules.engagement_window]
    if (before is None) != (after is None) and len(engaged) <= rules.counted_contacts:
        return True  # a colleague below the cap counts one contact more
    recent = min(rules.engagement_window, rules.signal_window)

    def signals(contact: Colleague | None) -> bool:
        return (contact is not None and contact.decision_maker
                and now - contact.engaged_at < recent)

    gains = (after is not None and after.decision_maker and not was_deciding) or (
        signals(after) and not signals(before))
    return gains and sum(1 for c in engaged if signals(c)) < DECIDERS_READ


def _engagement_reasons(engaged: Sequence[Colleague], model: ScoringModel,
                        rules: _Rules, wording: Wording = ENGLISH) -> list[Reason]:
    """Return the buying-committee points: other engaged contacts and decision makers."""
    engagement = model.engagement
    reasons: list[Reason] = []
    if engaged and engagement.per_contact_points:
        # Named up to the cap: a contact beyond it changes neither points nor reasons, so
        # a large account's colleagues need no re-score each time one more engages.
        counted = min(len(engaged), rules.counted_contacts)
        label = (wording.contacts if counted < rules.counted_contacts
                 else wording.contacts_capped).format(count=counted)
        reasons.append(Reason("engagement.contacts", label,
                              min(engagement.max_points,
                                  engagement.per_contact_points * counted)))
    if any(c.decision_maker for c in engaged) and engagement.decision_maker_points:
        reasons.append(Reason("engagement.decision_maker", wording.decision_maker,
                              engagement.decision_maker_points))
    return reasons


def tier_for(score: int, signals: Sequence[str], model: ScoringModel) -> Tier:
    """Return the tier: A needs both the threshold and a high-intent signal."""
    if score >= model.tiers.a and signals:
        return Tier.A
    if score >= model.tiers.b:
        return Tier.B
    return Tier.C


def _dormancy(last: datetime | None, now: datetime, rules: _Rules) -> Dormancy:
    """Return whether the lead is active, dormant or excluded, from its last activity."""
    if last is None:
        return Dormancy.ACTIVE
    silence = now - last
    if silence >= rules.excluded_after:
        return Dormancy.EXCLUDED
    if silence >= rules.dormant_after:
        return Dormancy.DORMANT
    return Dormancy.ACTIVE


def _last_surge(found: _Behaviour, static_points: float, now: datetime,
                model: ScoringModel, rules: _Rules) -> datetime | None:
    """Return when the latest surge within the window began, or None if there was none.

    A touchpoint starts a surge when the score just after it is at least the surge
    points above the lowest score in the window before it; the lead then surges
    for one window. Between touchpoints a score only decays, so the lowest points
    are the start of that window and the moments just before each touchpoint. Fit
    and engagement are held at their current values.
    """
    now_us, half_life, window = _microseconds(now), rules.half_life_us, rules.surge_window_us
    moments = found.moments  # in time order
    # A prefix sum of the decayed points, scaled back to an earlier moment, is the
    # behaviour score at that moment.
    earned = [0.0, *accumulate(found.points)]

    def score_at(moment: int, counted: int) -> int:
        decay = math.pow(0.5, max(now_us - moment, 0) / half_life)
        return clip_score(static_points + earned[counted] / decay)

    distinct = list(dict.fromkeys(moments))
    for moment in reversed([m for m in distinct if now_us - m < window]):
        start = moment - window
        lowest = min([score_at(start, bisect.bisect_right(moments, start))]
                     + [score_at(m, bisect.bisect_left(moments, m))
                        for m in distinct if start < m <= moment])
        if (score_at(moment, bisect.bisect_right(moments, moment)) - lowest
                >= model.surge.points):
            # The time as given (in its own zone) of the first touchpoint at that moment.
            began = found.times[bisect.bisect_left(moments, moment)]
            return now if now < began else began
    return None


def _crossing(threshold: int, static_points: float, behaviour: float, now: datetime,
              rules: _Rules) -> datetime | None:
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
        moment = now + rules.half_life * math.log2(behaviour / floor)
        if moment > now:
            return moment
    return now + ONE_SECOND


def _engagement_lapses(colleagues: Sequence[Colleague], model: ScoringModel,
                       rules: _Rules) -> list[datetime]:
    """Return when the engagement points next drop: a counted contact or decision maker lapses.

    Contacts beyond the cap earn nothing, so only the lapse of the last counted one
    (the cap-th most recent) lowers the points.
    """
    window = rules.engagement_window
    lapses: list[datetime] = []
    recent = sorted((c.engaged_at for c in colleagues), reverse=True)
    if recent and rules.counted_contacts:
        lapses.append(_later(recent[min(rules.counted_contacts, len(recent)) - 1], window))
    deciders = [c.engaged_at for c in colleagues if c.decision_maker]
    if deciders and model.engagement.decision_maker_points:
        lapses.append(_later(max(deciders), window))
    return lapses


def _next_review(*, tier: Tier, static_points: float, behaviour: float,
                 surge_began: datetime | None, occurred: Sequence[datetime],
                 last: datetime | None, counted: Sequence[Activity],
                 colleagues: Sequence[Colleague], now: datetime, model: ScoringModel,
                 rules: _Rules) -> datetime | None:
    """Return the first moment the tier, surge or dormancy may change without a new touchpoint.

    Each candidate is the first instant of a possible new state: the sweep re-scores
    the lead then, and whatever did not change yields a later moment. ``occurred``
    are the ledger's times, ``last`` the latest of them.
    """
    moments = [at for at in occurred if at > now]  # a touchpoint reported ahead of our clock
    if last is not None:
        moments += [_later(last, rules.dormant_after), _later(last, rules.excluded_after)]
    moments += _engagement_lapses(colleagues, model, rules)
    threshold = rules.thresholds.get(tier)
    if threshold is not None and (crossing := _crossing(threshold, static_points, behaviour,
                                                        now, rules)):
        moments.append(crossing)
    if tier is Tier.A:
        window, types = rules.signal_window, rules.signal_types
        moments += [_later(a.occurred_at, window) for a in counted if a.type in types]
        deciders = [c.engaged_at for c in colleagues if c.decision_maker]
        moments += [_later(max(deciders), window)] if deciders else []
    if surge_began is not None:
        moments.append(_later(surge_began, rules.surge_window))
    return min((moment for moment in moments if moment > now), default=None)


def score_lead(facts: LeadFacts, ledger: Sequence[Activity], now: datetime,
               model: ScoringModel, *, colleagues: Sequence[Colleague] = (),
               baseline_at: datetime | None = None, language: ReasonLocale = "en"
               ) -> ScoreResult:
    """Return the lead's score (0..100), tier, surge, dormancy and every reason behind it,
    worded in ``language`` (a key of ``WORDINGS``).

    ``colleagues`` are the other contacts of the lead's account: only the counted most
    recently engaged ones and the latest decision maker change the result (see
    ``contacts_to_read``). Activities at or before ``baseline_at`` (a recycled deal) no
    longer earn behaviour points.
    """
    rules, wording = _rules_of(model), WORDINGS[language]
    occurred = [a.occurred_at for a in ledger]
    last = max(occurred, default=None)
    dormancy = _dormancy(last, now, rules)
    window = rules.engagement_window
    colleagues = [c for c in colleagues if now - c.engaged_at < window]
    profile = rules.profile(facts, language)
    engagement = _engagement_reasons(colleagues, model, rules, wording)
    static_points = sum(r.points for r in (*profile.reasons, *engagement))
    counted = ledger if baseline_at is None else [a for a in ledger
                                                  if a.occurred_at > baseline_at]
    found = _behaviour(counted, now, rules, language)
    if profile.competitor:
        # Every reason is shown, and the competitor line takes away what they add up to:
        # above nothing it would read as a gain (+40 under a student's -30 and free mail's
        # -10); a negative sum is floored like any score.
        reasons = _explained([*profile.shown, *(_shown(r) for r in engagement)], found,
                             wording)
        total = sum(r.points for r in reasons)
        label = labelled(wording.competitor, facts.company or facts.email_domain)
        reasons = (*reasons, Reason("fit.competitor", label, -round(max(total, 0), 2)))
        if total < 0:
            reasons = with_clipping(reasons, 0, wording)
        return ScoreResult(0, Tier.C, False, dormancy, reasons, (), model.version,
                           _next_review(tier=Tier.C, static_points=0, behaviour=0,
                                        surge_began=None, occurred=occurred, last=last,
                                        counted=(), colleagues=(), now=now, model=model,
                                        rules=rules))
    behaviour_points = sum(found.points)
    raw = static_points + behaviour_points
    score = clip_score(raw)
    signals = _signals(found, colleagues, now, model, rules)
    tier = tier_for(score, signals, model)
    surge_began = _last_surge(found, static_points, now, model, rules)
    next_review_at = _next_review(
        tier=tier, static_points=static_points, behaviour=behaviour_points,
        surge_began=surge_began, occurred=occurred, last=last, counted=counted,
        colleagues=colleagues, now=now, model=model, rules=rules)
    reasons = _explained([*profile.shown, *(_shown(r) for r in engagement)], found, wording)
    if score in (0, 100) and math.floor(raw + 0.5) != score:  # only a clipped score pays
        reasons = with_clipping(reasons, score, wording)
    return ScoreResult(score, tier, surge_began is not None, dormancy, reasons,
                       tuple(signals), model.version, next_review_at)


def with_clipping(reasons: tuple[Reason, ...], score: int, wording: Wording = ENGLISH
                  ) -> tuple[Reason, ...]:
    """Return ``reasons`` of a score clipped to 0..100 with a last line saying so, worth
    what the clipping cut off (or added back): the reasons then add up to the score.

    Sales reading the top reasons sees it last: a cap is negative, and a floor only ever
    comes with a score of 0.
    """
    label = wording.capped if score else wording.floored
    return (*reasons, Reason(CLIPPED, label, round(score - sum(r.points for r in reasons), 2)))


def _explained(static: list[Reason], found: _Behaviour, wording: Wording = ENGLISH
               ) -> tuple[Reason, ...]:
    """Return the reasons as shown: points rounded to cents, the smallest touchpoints summed.

    ``static`` are the fit and engagement reasons, already rounded. The score uses the
    exact sums; the itemised touchpoints keep their time order.
    """
    points = found.points
    largest: set[int] | None = None
    if len(points) > ITEMISED_TOUCHPOINTS:
        ranked = sorted(range(len(points)), key=lambda i: -abs(points[i]))
        largest = set(ranked[:ITEMISED_TOUCHPOINTS])
    rest: list[float] = []
    for i, exact in enumerate(points):
        if (largest is None or i in largest) and (rounded := round(exact, 2)):
            static.append(Reason(found.codes[i], found.labels[i], rounded))
        else:
            rest.append(exact)
    if rest:
        static.append(Reason("behaviour.other", wording.others.format(count=len(rest)),
                             round(sum(rest), 2)))
    return tuple(static)


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
    # Why a figure is null though deals closed: too few to rest on (see MIN_CLOSED).
    warnings: tuple[str, ...] = ()

    @property
    def tier_a_closed(self) -> int:
        """Return the number of won and lost deals whose lead was tier A."""
        tier_a = next(bucket for bucket in self.by_tier if bucket.label == Tier.A.value)
        return tier_a.won + tier_a.lost


# The fewest won and the fewest lost deals (and closed tier A deals, for the lift) a
# separation or lift figure is given on. Below ten of an outcome one deal moves the AUC by
# a tenth or more and a win rate by ten points or more: noise as large as the difference
# between a useless and a good model (0.5 against 0.7), so no figure beats a misleading one.
MIN_CLOSED = 10


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


def calibrate(deals: Sequence[DealRecord], band_width: int = 20,
              min_closed: int = MIN_CLOSED) -> Calibration:
    """Return conversion by score band and tier and how well they separate won from lost.

    The AUCs need ``min_closed`` won and as many lost deals, the lift as well as that many
    closed tier A deals; short of it a figure is None and a warning gives the counts.
    """
    bands = [_bucket(f"{first}-{last}", [d for d in deals if first <= d.score <= last])
             for first, last in score_bands(band_width)]
    tiers = [_bucket(tier.value, [d for d in deals if d.tier is tier]) for tier in Tier]
    overall = _bucket("all", deals)
    won = [d for d in deals if d.outcome is DealOutcome.WON]
    lost = [d for d in deals if d.outcome is DealOutcome.LOST]
    tier_a_bucket = next(bucket for bucket in tiers if bucket.label == Tier.A.value)
    tier_a, tier_a_closed = tier_a_bucket.win_rate, tier_a_bucket.won + tier_a_bucket.lost
    lift = tier_a / overall.win_rate if tier_a is not None and overall.win_rate else None
    score_auc = separation([d.score for d in won], [d.score for d in lost])
    tier_auc = separation([TIER_RANK[d.tier] for d in won], [TIER_RANK[d.tier] for d in lost])
    warnings = []
    enough = len(won) >= min_closed and len(lost) >= min_closed
    if not enough and (won or lost):
        score_auc = tier_auc = None
        warnings.append(f"score_auc and tier_auc need at least {min_closed} won and "
                        f"{min_closed} lost deals; there are {len(won)} won and "
                        f"{len(lost)} lost")
    if (not enough or tier_a_closed < min_closed) and (won or lost):
        lift = None
        warnings.append(f"tier_a_lift needs at least {min_closed} won and {min_closed} lost "
                        f"deals and {min_closed} closed tier A deals; there are {len(won)} "
                        f"won, {len(lost)} lost and {tier_a_closed} closed tier A")
    return Calibration(overall, tuple(bands), tuple(tiers), score_auc, tier_auc, lift,
                       tuple(warnings))
