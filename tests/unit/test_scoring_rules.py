"""Scoring's pure rules, with properties over generated ledgers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from schemas.events import Tier, TouchpointType
from services.scoring.domain import (
    Activity,
    LeadFacts,
    ScoringModel,
    decay_factor,
    score_lead,
)

MODEL = ScoringModel()
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
T = TouchpointType
EXEC_AT_ICP = LeadFacts(title="代表取締役", free_mail=False, industry="製造業",
                        employee_band="500-999")


def at(days_ago: float, type_: TouchpointType, asset: str | None = None) -> Activity:
    return Activity(type_, NOW - timedelta(days=days_ago), asset)


def test_demo_request_from_a_manager_at_an_icp_company_is_tier_a() -> None:
    facts = LeadFacts(title="部長", free_mail=False, industry="製造業", employee_band="500-999")
    result = score_lead(facts, [at(0, T.INQUIRY_DEMO_REQUEST)], NOW, MODEL)
    assert result.score == 80
    assert result.tier is Tier.A
    assert result.high_intent_signals == ("inquiry.demo_request",)
    assert {r.code: r.points for r in result.reasons} == {
        "fit.title.manager": 10, "fit.icp.industry": 10, "fit.icp.employee_band": 10,
        "inquiry.demo_request": 50}


def test_a_high_score_without_high_intent_is_only_tier_b() -> None:
    ledger = [at(1, T.WEBINAR_PRODUCT_DEMO), at(1, T.DOWNLOAD_IMPLEMENTATION_GUIDE),
              at(2, T.PAGE_VIEW_BLOG), at(3, T.APPOINTMENT_SET)]
    result = score_lead(EXEC_AT_ICP, ledger, NOW, MODEL)
    assert result.score >= 80
    assert result.tier is Tier.B


def test_repeat_pricing_views_within_a_week_add_five_each_up_to_the_cap() -> None:
    ledger = [at(d, T.PAGE_VIEW_PRICING) for d in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)]
    reasons = score_lead(LeadFacts(None, False), ledger, NOW, MODEL).reasons
    repeats = [r for r in reasons if r.code == "page_view.pricing.repeat"]
    assert len(repeats) == MODEL.repeat_view_cap
    assert all(4.9 <= r.points <= 5 for r in repeats)


def test_a_second_distinct_download_earns_the_bonus_and_a_repeat_earns_nothing() -> None:
    ledger = [at(0, T.DOWNLOAD_BEGINNER_GUIDE, "a"), at(0, T.DOWNLOAD_BEGINNER_GUIDE, "b"),
              at(0, T.DOWNLOAD_BEGINNER_GUIDE, "b")]
    reasons = score_lead(LeadFacts(None, False), ledger, NOW, MODEL).reasons
    assert [r.points for r in reasons] == [5, 10]


def test_points_halve_after_one_half_life() -> None:
    assert decay_factor(MODEL.half_life, MODEL.half_life) == 0.5
    reasons = score_lead(LeadFacts(None, False), [at(30, T.INQUIRY_GENERAL)], NOW,
                         MODEL).reasons
    assert reasons[0].points == 15


def test_free_mail_loses_ten_points_and_the_score_is_clipped_at_zero() -> None:
    result = score_lead(LeadFacts(None, True), [at(0, T.PAGE_VIEW_BLOG)], NOW, MODEL)
    assert result.score == 0  # 3 - 10, clipped


activities = st.builds(
    Activity,
    type=st.sampled_from(list(TouchpointType)),
    occurred_at=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 11, 20),
                             timezones=st.just(UTC)),
    asset_id=st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
    interacted=st.booleans(),
)
facts = st.builds(LeadFacts, title=st.sampled_from([None, "CEO", "部長", "担当"]),
                  free_mail=st.booleans(),
                  industry=st.sampled_from([None, "製造業", "retail"]),
                  employee_band=st.sampled_from([None, "1-9", "1000+"]))


@given(facts, st.lists(activities, max_size=40))
def test_score_stays_within_0_and_100(lead: LeadFacts, ledger: list[Activity]) -> None:
    assert 0 <= score_lead(lead, ledger, NOW, MODEL).score <= 100


@given(facts, st.lists(activities, max_size=30), st.timedeltas(min_value=timedelta(0),
                                                                max_value=timedelta(days=400)))
def test_decay_never_raises_a_score(lead: LeadFacts, ledger: list[Activity],
                                    later: timedelta) -> None:
    assert (score_lead(lead, ledger, NOW + later, MODEL).score
            <= score_lead(lead, ledger, NOW, MODEL).score)


@given(facts, st.lists(activities, max_size=30), st.randoms())
def test_the_same_ledger_in_any_order_gives_the_same_score(
    lead: LeadFacts, ledger: list[Activity], random: object
) -> None:
    shuffled = list(ledger)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    assert score_lead(lead, ledger, NOW, MODEL) == score_lead(lead, shuffled, NOW, MODEL)
