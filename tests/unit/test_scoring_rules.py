"""Scoring's pure rules with the packaged model, and properties over generated ledgers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import SHORT_TEXT_LENGTH, ScoreReason, Tier, TouchpointType
from services.scoring.domain import (
    Activity,
    Colleague,
    Dormancy,
    LeadFacts,
    ScoreResult,
    clip_score,
    decay_factor,
    fresh_inquiry,
    is_competitor,
    mentions,
    score_lead,
    seniority,
    worth_announcing,
)
from services.scoring.model import DEFAULT_MODEL_FILE, ScoringModel, load_model

MODEL = load_model(DEFAULT_MODEL_FILE)
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
T = TouchpointType
NOBODY = LeadFacts(title=None, free_mail=False)
MANAGER_AT_ICP = LeadFacts(title="製造部 部長", free_mail=False, industry="製造業",
                           employee_band="500-999")
EXEC_AT_ICP = LeadFacts(title="代表取締役", free_mail=False, industry="製造業",
                        employee_band="500-999")
PROPERTY_RUNS = settings(max_examples=80, deadline=None)


def at(days_ago: float, type_: TouchpointType, asset: str | None = None) -> Activity:
    return Activity(type_, NOW - timedelta(days=days_ago), asset)


def points_by_code(result: ScoreResult) -> dict[str, float]:
    return {reason.code: reason.points for reason in result.reasons}


def variant(**changes: Any) -> ScoringModel:
    """Return the packaged model with some sections' fields replaced."""
    document = MODEL.model_dump(mode="json")
    for section, fields in changes.items():
        document[section] = {**document[section], **fields}
    return ScoringModel.model_validate(document)


def test_demo_request_from_a_manager_at_an_icp_company_is_tier_a() -> None:
    result = score_lead(MANAGER_AT_ICP, [at(0, T.INQUIRY_DEMO_REQUEST)], NOW, MODEL)
    assert result.score == 80
    assert result.tier is Tier.A
    assert result.high_intent_signals == ("inquiry.demo_request",)
    assert result.model_version == MODEL.version
    assert points_by_code(result) == {
        "fit.title.manager": 10, "fit.icp.industry": 10, "fit.icp.employee_band": 10,
        "inquiry.demo_request": 50}
    assert "製造部 部長" in result.reasons[0].label


def test_a_high_score_without_high_intent_is_only_tier_b() -> None:
    ledger = [at(1, T.WEBINAR_PRODUCT_DEMO), at(1, T.DOWNLOAD_IMPLEMENTATION_GUIDE),
              at(2, T.PAGE_VIEW_BLOG), at(3, T.APPOINTMENT_SET)]
    result = score_lead(EXEC_AT_ICP, ledger, NOW, MODEL)
    assert result.score >= 80
    assert result.high_intent_signals == ()
    assert result.tier is Tier.B


def test_each_high_intent_signal_makes_a_high_score_tier_a() -> None:
    base = [at(3, T.APPOINTMENT_SET), at(3, T.WEBINAR_PRODUCT_DEMO)]
    signals = {
        "inquiry.quote_request": [at(1, T.INQUIRY_QUOTE_REQUEST)],
        "webinar_and_downloads": [at(1, T.DOWNLOAD_BEGINNER_GUIDE, "a"),
                                  at(1, T.DOWNLOAD_BEGINNER_GUIDE, "b")],
        "pricing_or_case_study_views": [at(1, T.PAGE_VIEW_PRICING), at(1, T.PAGE_VIEW_PRICING),
                                        at(2, T.PAGE_VIEW_CASE_STUDY)],
    }
    for signal, extra in signals.items():
        result = score_lead(EXEC_AT_ICP, base + extra, NOW, MODEL)
        assert (result.tier, result.high_intent_signals) == (Tier.A, (signal,)), signal
    decider = Colleague(engaged_at=NOW - timedelta(days=2), decision_maker=True)
    result = score_lead(EXEC_AT_ICP, base, NOW, MODEL, colleagues=[decider])
    assert (result.tier, result.high_intent_signals) == (Tier.A, ("decision_maker_engaged",))


def test_a_signal_older_than_its_window_no_longer_makes_tier_a() -> None:
    ledger = [at(31, T.INQUIRY_QUOTE_REQUEST), at(1, T.APPOINTMENT_SET),
              at(1, T.WEBINAR_PRODUCT_DEMO)]
    result = score_lead(EXEC_AT_ICP, ledger, NOW, MODEL)
    assert result.score >= 80
    assert result.tier is Tier.B


def made(*kinds: TouchpointType, days_ago: float = 0) -> list[tuple[TouchpointType, datetime]]:
    return [(kind, NOW - timedelta(days=days_ago)) for kind in kinds]


def test_a_batch_is_announced_for_its_weightiest_fresh_inquiry() -> None:
    assert fresh_inquiry(made(T.INQUIRY_DEMO_REQUEST, T.EMAIL_OPEN), NOW,
                         MODEL) is T.INQUIRY_DEMO_REQUEST
    # A general inquiry after a demo request does not hide it (the five-minute fast lane).
    assert fresh_inquiry(made(T.INQUIRY_DEMO_REQUEST, T.INQUIRY_GENERAL), NOW,
                         MODEL) is T.INQUIRY_DEMO_REQUEST
    assert fresh_inquiry(made(T.INQUIRY_QUOTE_REQUEST, T.INQUIRY_DEMO_REQUEST), NOW,
                         MODEL) is T.INQUIRY_QUOTE_REQUEST  # 60 points against 50
    assert fresh_inquiry(made(T.EMAIL_OPEN, T.PAGE_VIEW_PRICING), NOW, MODEL) is None
    # Reported months late, an inquiry is no news.
    assert fresh_inquiry(made(T.INQUIRY_DEMO_REQUEST, days_ago=200), NOW, MODEL) is None


def test_an_inquiry_is_announced_even_when_the_capped_score_stays_the_same() -> None:
    ledger = [at(3, T.INQUIRY_QUOTE_REQUEST), at(3, T.WEBINAR_PRODUCT_DEMO)]
    before = score_lead(EXEC_AT_ICP, ledger, NOW, MODEL)
    after = score_lead(EXEC_AT_ICP, [*ledger, at(0, T.INQUIRY_DEMO_REQUEST)], NOW, MODEL)
    assert (before.score, before.tier) == (100, Tier.A) and after.standing == before.standing
    assert worth_announcing(before.standing, after, inquired=True)
    assert not worth_announcing(before.standing, after, inquired=False)
    assert worth_announcing(None, after, inquired=False), "a first score"


def test_a_partner_s_meeting_is_announced_even_when_the_capped_score_stays_the_same() -> None:
    ledger = [at(3, T.INQUIRY_QUOTE_REQUEST), at(3, T.WEBINAR_PRODUCT_DEMO)]
    before = score_lead(EXEC_AT_ICP, ledger, NOW, MODEL)
    after = score_lead(EXEC_AT_ICP, [*ledger, at(0, T.APPOINTMENT_SET)], NOW, MODEL)
    assert after.standing == before.standing
    assert worth_announcing(before.standing, after, inquired=False, meeting_set=True)
    assert not worth_announcing(before.standing, after, inquired=False, meeting_set=False)


def test_repeat_pricing_views_within_a_week_add_five_each_up_to_the_cap() -> None:
    ledger = [at(d, T.PAGE_VIEW_PRICING) for d in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)]
    reasons = score_lead(NOBODY, ledger, NOW, MODEL).reasons
    assert [r.code for r in reasons] == ["page_view.pricing"] + [
        "page_view.pricing.repeat"] * MODEL.behaviour.repeat_views.cap
    assert all(4.9 <= r.points <= 5 for r in reasons[1:])


def test_a_view_after_the_repeat_window_earns_the_full_points_again() -> None:
    reasons = score_lead(NOBODY, [at(20, T.PAGE_VIEW_PRICING), at(0, T.PAGE_VIEW_PRICING)],
                         NOW, MODEL).reasons
    assert [r.code for r in reasons] == ["page_view.pricing", "page_view.pricing"]


def test_a_second_distinct_download_earns_the_bonus_and_a_repeat_earns_nothing() -> None:
    ledger = [at(0, T.DOWNLOAD_BEGINNER_GUIDE, "a"), at(0, T.DOWNLOAD_BEGINNER_GUIDE, "b"),
              at(0, T.DOWNLOAD_BEGINNER_GUIDE, "b")]
    reasons = score_lead(NOBODY, ledger, NOW, MODEL).reasons
    assert [r.points for r in reasons] == [5, 10]
    assert "further download" in reasons[1].label


def test_a_question_during_a_webinar_earns_five_more() -> None:
    ledger = [Activity(T.WEBINAR_TREND_SEMINAR, NOW, interacted=True)]
    assert [r.points for r in score_lead(NOBODY, ledger, NOW, MODEL).reasons] == [17]


def test_beyond_fifty_touchpoints_the_smallest_are_summed_into_one_reason() -> None:
    ledger = [at(day / 2, T.EMAIL_CLICK) for day in range(120)]
    result = score_lead(NOBODY, ledger, NOW, MODEL)
    codes = [r.code for r in result.reasons]
    # Clicks worth over 100 points: the last line says how much the cap cut off.
    assert codes == ["email.click"] * 50 + ["behaviour.other", "score.clipped"]
    assert result.reasons[-2].label == "70 smaller or older touchpoint(s)"
    newest_fifty = 3 * decay_factor(timedelta(days=24.5), MODEL.behaviour.half_life)
    assert min(r.points for r in result.reasons[:50]) == round(newest_fifty, 2)
    assert round(sum(r.points for r in result.reasons), 6) == result.score == 100


def test_points_halve_after_one_half_life() -> None:
    assert decay_factor(MODEL.behaviour.half_life, MODEL.behaviour.half_life) == 0.5
    reasons = score_lead(NOBODY, [at(30, T.INQUIRY_GENERAL)], NOW, MODEL).reasons
    assert reasons[0].points == 15


def test_free_mail_loses_ten_points_and_the_score_is_clipped_at_zero() -> None:
    result = score_lead(LeadFacts(None, True), [at(0, T.PAGE_VIEW_BLOG)], NOW, MODEL)
    assert points_by_code(result)["fit.free_mail"] == -10
    assert result.score == 0  # 3 - 10, clipped


def test_a_disposable_domain_loses_ten_points_once_even_if_it_is_free_mail() -> None:
    facts = LeadFacts(None, free_mail=True, email_domain="Mailinator.com")
    assert points_by_code(score_lead(facts, [at(0, T.INQUIRY_GENERAL)], NOW, MODEL)) == {
        "fit.disposable_domain": -10, "inquiry.general": 30}


def test_a_student_loses_thirty_points_instead_of_earning_title_points() -> None:
    result = score_lead(LeadFacts("大学院生", False), [at(0, T.INQUIRY_QUOTE_REQUEST)], NOW,
                        MODEL)
    assert points_by_code(result) == {"fit.student": -30, "inquiry.quote_request": 60}


def test_a_competitor_is_disqualified_whatever_it_does() -> None:
    model = variant(fit={"competitors": {"domains": ["rival.example"],
                                         "company_names": ["ライバル株式会社"]}})
    ledger = [at(0, T.INQUIRY_DEMO_REQUEST), at(0, T.INQUIRY_QUOTE_REQUEST)]
    for facts in (LeadFacts("CEO", False, "製造業", email_domain="rival.example"),
                  LeadFacts("CEO", False, company="ライバル株式会社")):
        result = score_lead(facts, ledger, NOW, model)
        assert (result.score, result.tier, result.high_intent_signals) == (0, Tier.C, ())
        assert result.reasons[-1].code == "fit.competitor"
        assert sum(r.points for r in result.reasons) == 0


def test_a_competitor_s_explanation_shows_its_touchpoints_and_no_gain() -> None:
    model = variant(fit={"competitors": {"domains": [], "company_names": ["Rival"]}})
    student = LeadFacts("Student intern", True, company="Rival")
    demo = [at(1, T.INQUIRY_DEMO_REQUEST)]
    for ledger, last in (([], "score.clipped"), (demo, "fit.competitor")):
        result = score_lead(student, ledger, NOW, model)
        points = points_by_code(result)
        # -30 and -10 came with a competitor line of +40, the top reason sales saw.
        assert points["fit.competitor"] <= 0, result.reasons
        assert ("inquiry.demo_request" in points) == bool(ledger), "its touchpoints are shown"
        assert result.reasons[-1].code == last
        assert round(sum(r.points for r in result.reasons), 2) == result.score == 0


def test_labels_of_the_longest_profile_texts_are_cut_to_what_an_event_may_carry() -> None:
    longest = "あ" * SHORT_TEXT_LENGTH
    model = variant(fit={"competitors": {"domains": ["rival.example"], "company_names": []}})
    for facts in (LeadFacts("部長" + longest[2:], False, "製造業" + longest[3:]),
                  LeadFacts("大学院生" + longest[4:], False),
                  LeadFacts(None, False, email_domain="rival.example",
                            company="株式会社" + longest[4:])):
        reasons = score_lead(facts, [at(0, T.INQUIRY_DEMO_REQUEST)], NOW, model).reasons
        cut = [r for r in reasons if r.code.startswith("fit.")]
        assert cut and all(len(r.label) == SHORT_TEXT_LENGTH and r.label.endswith("あ…")
                           for r in cut)
        for reason in reasons:  # what lead.scored carries; over the limit it would raise
            ScoreReason(code=reason.code, label=reason.label, points=reason.points)


def test_titles_match_ascii_keywords_as_words_and_japanese_anywhere() -> None:
    assert seniority("Chief Operating Officer", MODEL) == "executive"
    assert seniority("COO", MODEL) == "executive"
    assert seniority("Event Coordinator", MODEL) == "staff"  # "coo" inside a word
    assert seniority("ＩＴ推進部 部長", MODEL) == "manager"  # full-width, NFKC
    assert seniority("代表取締役社長", MODEL) == "executive"
    assert seniority("営業担当", MODEL) == "staff"
    assert seniority(None, MODEL) is None


def test_senior_titles_written_other_ways_are_recognised() -> None:
    # Model 2026.3: each of these was staff (3 points, no decision maker) in 2026.2.
    for title in ("SVP Sales", "EVP, Marketing", "Chairman", "Chief Revenue Officer", "CDO",
                  "CRO", "CSO（最高戦略責任者）"):
        assert seniority(title, MODEL) == "executive", title
    for title in ("マネジャー", "ゼネラルマネジャー", "カスタマーセンター長", "営業局長",
                  "郵便局長", "薬局長", "CRO事業部 課長"):
        assert seniority(title, MODEL) == "manager", title
    for title in ("CEO秘書", "CEO 秘書", "Secretary to the Chairman", "EA to the Chairman",
                  "Assistant to the SVP", "局長秘書", "Product Owner", "CRO営業", "CSO MR"):
        assert seniority(title, MODEL) == "staff", title


def test_ascii_keywords_are_words_next_to_japanese_text_too() -> None:
    # Japanese titles run English titles into kanji or kana with no space between.
    assert seniority("CEO兼CTO", MODEL) == "executive"
    assert seniority("海外事業Director", MODEL) == "executive"
    assert seniority("営業Managerです", MODEL) == "manager"
    assert seniority("Coordinator兼務", MODEL) == "staff"  # "coo" inside a word still
    assert seniority("Sub-Coordinator", MODEL) == "staff"


def test_a_space_inside_a_phrase_does_not_undo_it() -> None:
    # Forms put a space, often an ideographic one, between the words of a Japanese title.
    assert seniority("社長　秘書", MODEL) == "staff"
    assert seniority("代表取締役 秘書", MODEL) == "staff"
    assert seniority("営業 代表", MODEL) == "staff"  # a sales representative
    assert seniority("Assistant to  the\tPresident", MODEL) == "staff"


def test_a_student_rule_phrase_written_with_a_space_hides_only_a_whole_word() -> None:
    student = MODEL.fit.student
    for office in ("学生 課 担当", "学生 支援 担当", "学生 相談 窓口"):
        assert not mentions(office, student.keywords, student.except_in), office
    # Students of a faculty or a club, whose next word only begins like an office's.
    for title in ("学生 生活科学部", "学生　生活環境学部 2年", "学生 部活動", "学生 (工学部)"):
        assert mentions(title, student.keywords, student.except_in), title


def test_a_space_that_parts_two_posts_does_not_make_them_one_phrase() -> None:
    # A director who also works in (or heads) the secretariat: 取締役秘書 is not written.
    assert seniority("取締役 秘書室担当", MODEL) == "executive"
    assert seniority("常務取締役 秘書室長", MODEL) == "executive"
    assert seniority("専務 秘書室長", MODEL) == "executive"
    assert seniority("役員 室長", MODEL) == "executive"
    assert seniority("取締役秘書室担当", MODEL) == "staff"  # as before: the phrase as written


def test_a_keyword_is_not_found_across_a_space_between_japanese_words() -> None:
    # 営業部 長谷川 names a department and a person: it holds no 部長 (head of department).
    assert not mentions("営業部 長谷川", ("部長",))
    assert mentions("営業部 部長", ("部長",))


def test_listed_values_and_competitor_names_match_with_or_without_japanese_spaces() -> None:
    model = variant(fit={"competitors": {"domains": [],
                                         "company_names": ["ライバル 株式会社", "株式会社ABC"]},
                         "industries": {"points": 10, "values": ["情報 通信業", "ITサービス"]}})
    for company in ("ライバル株式会社", "ライバル　株式会社", " ライバル  株式会社 ",
                    "株式会社 ABC", "株式会社abc"):
        assert is_competitor(LeadFacts(None, False, company=company), model), company
    assert not is_competitor(LeadFacts(None, False, company="ライバル"), model)
    for industry in ("情報通信業", "情報　通信業", "IT サービス"):
        assert "fit.icp.industry" in points_by_code(
            score_lead(LeadFacts(None, False, industry), [], NOW, model)), industry


def test_a_keyword_cut_off_mid_word_gives_way_to_another_at_the_same_place() -> None:
    assert mentions("vpn admin", ("vp", "vpn admin"))
    assert mentions("VPN 管理者", ("vp", "管理"))
    assert not mentions("vpn", ("vp", "vpn admin"))
    assert not mentions("営業", ())


def test_engaged_colleagues_add_five_each_up_to_fifteen_and_a_decision_maker_ten() -> None:
    def colleagues(count: int, days_ago: float = 10, decider: bool = False) -> list[Colleague]:
        return [Colleague(NOW - timedelta(days=days_ago), decider and i == 0)
                for i in range(count)]

    def engagement(found: list[Colleague]) -> dict[str, float]:
        result = score_lead(NOBODY, [], NOW, MODEL, colleagues=found)
        return {k: v for k, v in points_by_code(result).items() if k.startswith("engagement")}

    assert engagement(colleagues(2)) == {"engagement.contacts": 10}
    assert engagement(colleagues(5)) == {"engagement.contacts": 15}
    assert engagement(colleagues(1, decider=True)) == {
        "engagement.contacts": 5, "engagement.decision_maker": 10}
    assert engagement(colleagues(3, days_ago=90)) == {}, "engagement lapses after 90 days"


def test_activities_before_the_baseline_no_longer_count() -> None:
    ledger = [at(5, T.INQUIRY_DEMO_REQUEST), at(1, T.PAGE_VIEW_BLOG)]
    result = score_lead(MANAGER_AT_ICP, ledger, NOW, MODEL, baseline_at=NOW - timedelta(days=2))
    assert points_by_code(result).keys() == {"fit.title.manager", "fit.icp.industry",
                                             "fit.icp.employee_band", "page_view.blog"}
    assert result.high_intent_signals == ()
    assert result.tier is Tier.C


def test_a_rise_of_twenty_points_within_a_week_is_a_surge_for_a_week() -> None:
    ledger = [at(20, T.PAGE_VIEW_BLOG), at(2, T.INQUIRY_GENERAL)]
    result = score_lead(NOBODY, ledger, NOW, MODEL)
    assert result.surge
    assert result.next_review_at == NOW + timedelta(days=5), "the surge ends a week after"
    assert score_lead(NOBODY, ledger, NOW + timedelta(days=5), MODEL).surge is False
    small = score_lead(NOBODY, [at(2, T.DOWNLOAD_IMPLEMENTATION_GUIDE)], NOW, MODEL)
    assert small.surge is False, "15 points is not a surge"
    steps = [at(6, T.WEBINAR_TREND_SEMINAR), at(0, T.PAGE_VIEW_CASE_STUDY)]
    assert not score_lead(NOBODY, steps, NOW, MODEL).surge, "12 (now 10.4) + 8 is no surge"
    steps = [at(6, T.WEBINAR_PRODUCT_DEMO), at(0, T.PAGE_VIEW_CASE_STUDY)]
    assert score_lead(NOBODY, steps, NOW, MODEL).surge, "20 (decayed to 17.4) + 8 is one"


def test_a_touchpoint_reported_ahead_of_our_clock_counts_now_for_points_and_surge() -> None:
    ledger = [Activity(T.INQUIRY_DEMO_REQUEST, NOW + timedelta(seconds=2))]
    result = score_lead(MANAGER_AT_ICP, ledger, NOW, MODEL)
    assert (result.score, result.tier, result.surge) == (80, Tier.A, True)


def test_a_touchpoint_or_colleague_dated_late_in_year_9999_is_scored_without_overflow() -> None:
    # lead.captured accepts any aware time: its windows would end past year 9999.
    far = datetime(9999, 12, 1, tzinfo=UTC)
    alone = score_lead(NOBODY, [Activity(T.PAGE_VIEW_PRICING, far)], NOW, MODEL)
    assert (alone.score, alone.tier, alone.next_review_at) == (10, Tier.C, far)
    ledger = [at(20, T.PAGE_VIEW_BLOG), Activity(T.INQUIRY_DEMO_REQUEST, far)]
    colleagues = [Colleague(far, decision_maker=True), Colleague(far, decision_maker=False)]
    result = score_lead(EXEC_AT_ICP, ledger, NOW, MODEL, colleagues=colleagues)
    assert 0 <= result.score <= 100
    assert (result.tier, result.surge) == (Tier.A, True)
    assert result.next_review_at == NOW + timedelta(days=7), "the surge ends a week after"


def test_a_touchpoint_is_dated_in_utc_whichever_offset_its_moment_carries() -> None:
    # As the event carried it, then as the ledger is read back from the database.
    tokyo = timezone(timedelta(hours=9))
    given_in_tokyo = [
        Activity(T.INQUIRY_DEMO_REQUEST, datetime(2026, 11, 20, 8, 0, tzinfo=tokyo)),
        Activity(T.PAGE_VIEW_PRICING, datetime(2026, 11, 19, 9, 30, tzinfo=tokyo))]
    read_back = [a._replace(occurred_at=a.occurred_at.astimezone(UTC)) for a in given_in_tokyo]
    first = score_lead(MANAGER_AT_ICP, given_in_tokyo, NOW, MODEL).reasons
    again = score_lead(MANAGER_AT_ICP, read_back, NOW, MODEL).reasons
    assert first == again
    assert [r.label for r in first if r.code.startswith(("inquiry", "page_view"))] == [
        "page view: pricing on 2026-11-19", "inquiry: demo request on 2026-11-19"]


def test_a_touchpoint_whose_utc_date_is_past_the_calendars_end_is_dated_at_that_end() -> None:
    last = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    first = datetime(1, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    ledger = [Activity(T.INQUIRY_DEMO_REQUEST, last), Activity(T.PAGE_VIEW_PRICING, first)]
    labels = [r.label for r in score_lead(NOBODY, ledger, NOW, MODEL).reasons]
    # The view, labelled too, has decayed to nothing.
    assert labels == ["inquiry: demo request on 9999-12-31", "1 smaller or older touchpoint(s)"]


def test_silence_makes_a_lead_dormant_after_three_months_and_excluded_after_six() -> None:
    def dormancy(days: float) -> Dormancy:
        return score_lead(NOBODY, [at(days, T.EMAIL_OPEN)], NOW, MODEL).dormancy

    assert [dormancy(89), dormancy(90), dormancy(179), dormancy(180)] == [
        Dormancy.ACTIVE, Dormancy.DORMANT, Dormancy.DORMANT, Dormancy.EXCLUDED]
    assert score_lead(NOBODY, [at(89, T.EMAIL_OPEN)], NOW, MODEL).next_review_at == (
        NOW + timedelta(days=1))


def test_the_review_time_is_the_moment_decay_takes_a_tier_a_lead_to_b() -> None:
    ledger = [at(0, T.INQUIRY_DEMO_REQUEST)]
    review = score_lead(MANAGER_AT_ICP, ledger, NOW, MODEL).next_review_at
    assert review is not None
    assert review - NOW == timedelta(days=30) * 0.014499569695115089  # log2(50 / 49.5)
    second = timedelta(seconds=1)
    assert score_lead(MANAGER_AT_ICP, ledger, review - second, MODEL).tier is Tier.A
    assert score_lead(MANAGER_AT_ICP, ledger, review + second, MODEL).tier is Tier.B


activities = st.builds(
    Activity,
    type=st.sampled_from(list(TouchpointType)),
    occurred_at=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 11, 20),
                             timezones=st.just(UTC)),
    asset_id=st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
    interacted=st.booleans(),
)
facts = st.builds(LeadFacts, title=st.sampled_from([None, "CEO", "部長", "担当", "学生"]),
                  free_mail=st.booleans(),
                  industry=st.sampled_from([None, "製造業", "retail"]),
                  employee_band=st.sampled_from([None, "1-9", "1000+"]),
                  email_domain=st.sampled_from([None, "example.co.jp", "yopmail.com"]))
colleague_lists = st.lists(st.builds(
    Colleague,
    engaged_at=st.datetimes(min_value=datetime(2026, 7, 1), max_value=datetime(2026, 11, 20),
                            timezones=st.just(UTC)),
    decision_maker=st.booleans()), max_size=5)
baselines = st.one_of(st.none(), st.datetimes(min_value=datetime(2025, 6, 1),
                                              max_value=datetime(2026, 11, 20),
                                              timezones=st.just(UTC)))


@PROPERTY_RUNS
@given(facts, st.lists(activities, max_size=40), colleague_lists, baselines)
def test_score_stays_within_0_and_100_and_its_reasons_add_up_to_it(
    lead: LeadFacts, ledger: list[Activity], colleagues: list[Colleague],
    baseline: datetime | None
) -> None:
    result = score_lead(lead, ledger, NOW, MODEL, colleagues=colleagues, baseline_at=baseline)
    assert 0 <= result.score <= 100
    # Reasons are shown rounded to cents: their sum may round one point differently.
    assert abs(clip_score(sum(r.points for r in result.reasons)) - result.score) <= 1


@PROPERTY_RUNS
@given(facts, st.lists(activities, max_size=30), colleague_lists,
       st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)))
def test_decay_never_raises_a_score(lead: LeadFacts, ledger: list[Activity],
                                    colleagues: list[Colleague], later: timedelta) -> None:
    assert (score_lead(lead, ledger, NOW + later, MODEL, colleagues=colleagues).score
            <= score_lead(lead, ledger, NOW, MODEL, colleagues=colleagues).score)


@PROPERTY_RUNS
@given(facts, st.lists(activities, max_size=30), st.randoms(use_true_random=False))
def test_the_same_ledger_in_any_order_gives_the_same_result(
    lead: LeadFacts, ledger: list[Activity], shuffler: random.Random
) -> None:
    shuffled = list(ledger)
    shuffler.shuffle(shuffled)
    assert score_lead(lead, ledger, NOW, MODEL) == score_lead(lead, shuffled, NOW, MODEL)


# Any offset a timestamp may carry, to the minute.
offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))


@PROPERTY_RUNS
@given(facts, st.lists(st.tuples(activities, offsets), max_size=30))
def test_the_same_ledger_in_any_utc_offsets_gives_the_same_result(
    lead: LeadFacts, given_in: list[tuple[Activity, timezone]]
) -> None:
    in_utc = [activity for activity, _ in given_in]
    elsewhere = [a._replace(occurred_at=a.occurred_at.astimezone(zone)) for a, zone in given_in]
    assert score_lead(lead, elsewhere, NOW, MODEL) == score_lead(lead, in_utc, NOW, MODEL)


same_moments = st.lists(st.builds(
    Activity, type=st.sampled_from(list(TouchpointType)),
    occurred_at=st.sampled_from([NOW - timedelta(days=d) for d in (0, 1, 3)]),
    asset_id=st.one_of(st.none(), st.sampled_from(["a", "b"])), interacted=st.booleans(),
), max_size=25)


@PROPERTY_RUNS
@given(facts, same_moments, st.permutations(range(25)))
def test_the_order_of_events_with_equal_timestamps_does_not_matter(
    lead: LeadFacts, ledger: list[Activity], order: list[int]
) -> None:
    reordered = [ledger[i] for i in order if i < len(ledger)]
    assert score_lead(lead, ledger, NOW, MODEL) == score_lead(lead, reordered, NOW, MODEL)


@PROPERTY_RUNS
@given(facts, st.lists(activities, max_size=25), colleague_lists, baselines,
       st.floats(min_value=0, max_value=1))
def test_nothing_announced_changes_before_the_review_time(
    lead: LeadFacts, ledger: list[Activity], colleagues: list[Colleague],
    baseline: datetime | None, fraction: float
) -> None:
    now = score_lead(lead, ledger, NOW, MODEL, colleagues=colleagues, baseline_at=baseline)
    horizon = now.next_review_at or NOW + timedelta(days=400)
    moment = NOW + (horizon - NOW - timedelta(milliseconds=1)) * fraction
    later = score_lead(lead, ledger, moment, MODEL, colleagues=colleagues, baseline_at=baseline)
    assert (later.tier, later.surge, later.dormancy) == (now.tier, now.surge, now.dormancy)
