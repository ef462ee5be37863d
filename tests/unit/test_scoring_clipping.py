"""A score clipped to 0..100 says so: one reason line carries the points cut off (or added
back), so that a score's reasons always add up to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import ScoreReason, TouchpointType
from services.scoring.domain import Activity, Colleague, LeadFacts, score_lead
from services.scoring.model import DEFAULT_MODEL_FILE, load_model

MODEL = load_model(DEFAULT_MODEL_FILE)
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
T = TouchpointType
MANAGER_AT_ICP = LeadFacts(title="製造部 部長", free_mail=False, industry="製造業",
                           employee_band="500-999")
STUDENT = LeadFacts(title="学生", free_mail=True)


def at(days_ago: float, type_: TouchpointType) -> Activity:
    return Activity(type_, NOW - timedelta(days=days_ago))


def test_a_score_capped_at_100_carries_the_points_cut_off() -> None:
    # Manager +10, ICP industry +10 and band +10, quote +60, demo webinar +20: 110.
    result = score_lead(MANAGER_AT_ICP, [at(0, T.INQUIRY_QUOTE_REQUEST),
                                         at(0, T.WEBINAR_PRODUCT_DEMO)], NOW, MODEL)
    assert result.score == 100
    *earned, clipped = result.reasons
    assert (clipped.code, clipped.label, clipped.points) == (
        "score.clipped", "score capped at 100", -10)
    assert sum(r.points for r in earned) == 110
    assert sum(r.points for r in result.reasons) == 100


def test_a_score_floored_at_0_carries_the_points_added_back() -> None:
    # A student (-30) on free mail (-10) who opened an e-mail (+1): -39.
    result = score_lead(STUDENT, [at(0, T.EMAIL_OPEN)], NOW, MODEL)
    assert result.score == 0
    clipped = result.reasons[-1]
    assert (clipped.code, clipped.label, clipped.points) == (
        "score.clipped", "score floored at 0", 39)
    assert sum(r.points for r in result.reasons) == 0


def test_a_score_within_0_and_100_has_no_clipping_line() -> None:
    for lead, ledger in ((MANAGER_AT_ICP, [at(0, T.INQUIRY_DEMO_REQUEST)]),  # exactly 80
                         (STUDENT, [at(0, T.INQUIRY_QUOTE_REQUEST)]),  # 20
                         (LeadFacts(title=None, free_mail=False), [])):  # 0, not clipped
        result = score_lead(lead, ledger, NOW, MODEL)
        assert "score.clipped" not in {r.code for r in result.reasons}, result


def test_the_clipping_line_fits_lead_scored() -> None:
    result = score_lead(MANAGER_AT_ICP, [at(0, T.INQUIRY_QUOTE_REQUEST)] * 3, NOW, MODEL)
    for reason in result.reasons:
        ScoreReason(code=reason.code, label=reason.label, points=reason.points)


facts = st.builds(
    LeadFacts, title=st.sampled_from([None, "代表取締役", "部長", "担当", "学生", "student"]),
    free_mail=st.booleans(),
    industry=st.sampled_from([None, "製造業", "小売"]),
    employee_band=st.sampled_from([None, "500-999", "1-9"]))
activities = st.builds(
    Activity, type=st.sampled_from(list(TouchpointType)),
    occurred_at=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 11, 20),
                             timezones=st.just(UTC)),
    asset_id=st.sampled_from([None, "a", "b", "c"]), interacted=st.booleans())
colleague_lists = st.lists(st.builds(
    Colleague,
    engaged_at=st.datetimes(min_value=datetime(2026, 7, 1), max_value=datetime(2026, 11, 20),
                            timezones=st.just(UTC)),
    decision_maker=st.booleans()), max_size=5)


@settings(max_examples=150, deadline=None)
@given(facts, st.lists(activities, max_size=40), colleague_lists)
def test_the_reasons_add_up_to_the_score_within_rounding(
    lead: LeadFacts, ledger: list[Activity], colleagues: list[Colleague]
) -> None:
    result = score_lead(lead, ledger, NOW, MODEL, colleagues=colleagues)
    total = sum(r.points for r in result.reasons)
    clipped = [r for r in result.reasons if r.code == "score.clipped"]
    if clipped:
        assert len(clipped) == 1 and result.reasons[-1] is clipped[0]
        assert abs(total - result.score) < 1e-6
        assert result.score in (0, 100)
        assert (clipped[0].points < 0) == (result.score == 100)
    else:
        # Each line is rounded to cents and the score to a whole point.
        assert abs(total - result.score) <= 0.5 + 0.005 * len(result.reasons) + 1e-6
