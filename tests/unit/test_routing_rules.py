"""Routing's lifecycle state machine (every legal and illegal move), SLA due times in
business time, BANT and who may act on a lead."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, time, timedelta
from itertools import product
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton_runtime.business_time import BusinessCalendar
from baton_runtime.settings import ENV_PREFIX
from schemas.events import DealPhase, LifecycleStage, Tier, TouchpointType
from services.notifier.config import NotifierFile
from services.notifier.domain import plan_clock
from services.routing.domain import (
    ALLOWED,
    ENDED_BY_OWNER,
    WORKED_BY_OWNER,
    Bant,
    BantRank,
    IllegalTransition,
    Rep,
    TeamKind,
    acceptance_due,
    actor_refusal,
    after_deal,
    after_recycling,
    check_transition,
    colleague_refusal,
    due_after_contact,
    due_after_move,
    promotion_for,
    qualifies,
    team_for_source,
)
from services.routing.settings import RoutingSettings

S = LifecycleStage
LEGAL = {
    (S.LEAD, S.MQL), (S.LEAD, S.NURTURE), (S.LEAD, S.DISQUALIFIED),
    (S.MQL, S.SAL), (S.MQL, S.NURTURE), (S.MQL, S.DISQUALIFIED),
    (S.SAL, S.SQL), (S.SAL, S.NURTURE), (S.SAL, S.DISQUALIFIED),
    (S.SQL, S.OPPORTUNITY), (S.SQL, S.NURTURE), (S.SQL, S.DISQUALIFIED),
    (S.OPPORTUNITY, S.WON), (S.OPPORTUNITY, S.LOST), (S.OPPORTUNITY, S.NURTURE),
    (S.NURTURE, S.MQL), (S.NURTURE, S.DISQUALIFIED),
    (S.LOST, S.NURTURE),
}


@pytest.mark.parametrize(("current", "target"), sorted(LEGAL))
def test_legal_moves_pass(current: LifecycleStage, target: LifecycleStage) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(("current", "target"),
                         sorted(set(product(S, S)) - LEGAL))
def test_illegal_moves_are_refused_with_a_clear_error(current: LifecycleStage,
                                                      target: LifecycleStage) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current.value} to {target.value}"):
        check_transition(current, target)


def test_the_table_covers_every_stage() -> None:
    assert set(ALLOWED) == set(S)


@pytest.mark.parametrize(("stage", "tier", "expected"), [
    (S.LEAD, Tier.A, S.MQL), (S.NURTURE, Tier.A, S.MQL), (S.LEAD, Tier.B, None),
    (S.MQL, Tier.A, None), (S.SAL, Tier.A, None), (S.DISQUALIFIED, Tier.A, None),
])
def test_only_hot_leads_with_marketing_become_mql(stage: LifecycleStage, tier: Tier,
                                                   expected: LifecycleStage | None) -> None:
    assert promotion_for(stage, tier) == expected


@pytest.mark.parametrize(("previous_tier", "trigger", "expected"), [
    (Tier.A, TouchpointType.EMAIL_OPEN, None),
    (Tier.A, TouchpointType.PAGE_VIEW_PRICING, None),
    (Tier.A, None, None),  # the decay sweep's re-score
    (Tier.A, TouchpointType.INQUIRY_DEMO_REQUEST, S.MQL),
    (Tier.A, TouchpointType.INQUIRY_QUOTE_REQUEST, S.MQL),
    (Tier.A, TouchpointType.INQUIRY_GENERAL, S.MQL),
    (Tier.B, TouchpointType.EMAIL_OPEN, S.MQL),
    (Tier.C, None, S.MQL),
    (None, TouchpointType.EMAIL_OPEN, S.MQL),
])
def test_a_nurtured_lead_earns_mql_again_by_new_heat_not_by_staying_hot(
        previous_tier: Tier | None, trigger: TouchpointType | None,
        expected: LifecycleStage | None) -> None:
    assert promotion_for(S.NURTURE, Tier.A, previous_tier=previous_tier,
                         trigger=trigger) == expected
    # A lead marketing has never handed over needs no more than tier A.
    assert promotion_for(S.LEAD, Tier.A, previous_tier=previous_tier,
                         trigger=trigger) == S.MQL


OPEN_PHASES = (DealPhase.P1, DealPhase.P2, DealPhase.P3, DealPhase.P4, DealPhase.P5)
DEAL_MOVES = {
    **{(S.SQL, phase): S.OPPORTUNITY for phase in OPEN_PHASES},
    (S.OPPORTUNITY, DealPhase.WON): S.WON,
    (S.OPPORTUNITY, DealPhase.LOST): S.LOST,
    (S.LOST, DealPhase.LOST): S.NURTURE,
}


@pytest.mark.parametrize(("stage", "phase"), sorted(product(S, DealPhase)))
def test_deals_move_leads_only_along_the_lifecycle(stage: LifecycleStage,
                                                   phase: DealPhase) -> None:
    # Any open deal makes an SQL an opportunity, even one it kept from before; a lost
    # lead goes on to nurture. Everything else, a won customer included, stays put.
    target = after_deal(stage, phase)
    assert target == DEAL_MOVES.get((stage, phase))
    if target is not None:
        check_transition(stage, target)


RECYCLED_FROM = {S.OPPORTUNITY: S.NURTURE, S.LOST: S.NURTURE}
OWN_DEAL, OLD_DEAL = uuid.UUID(int=1), uuid.UUID(int=2)


@pytest.mark.parametrize("stage", list(S))
def test_a_recycled_deal_nurtures_only_the_lead_it_belongs_to(stage: LifecycleStage) -> None:
    # An SQL rejected by field sales keeps its deal open; once the lead is an MQL, SAL or
    # SQL again, or an opportunity of a new deal, that old deal's recycling must not take
    # it from the rep working it now, whichever event arrives first.
    target = after_recycling(stage, recycled=OWN_DEAL, own_deal=OWN_DEAL)
    assert target == RECYCLED_FROM.get(stage)
    if target is not None:
        check_transition(stage, target)
    assert after_recycling(stage, recycled=OLD_DEAL, own_deal=OWN_DEAL) is None
    # A lead routed before deals were remembered: any recycling is its own deal's.
    assert after_recycling(stage, recycled=OLD_DEAL, own_deal=None) == RECYCLED_FROM.get(stage)


JST = ZoneInfo("Asia/Tokyo")
CALENDAR = BusinessCalendar()  # 09:00-18:00 Asia/Tokyo, Monday to Friday, JP holidays
HOUR = timedelta(hours=1)


def jst(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=JST)


def test_demo_and_quote_requests_must_be_accepted_within_five_wall_clock_minutes() -> None:
    friday_evening = jst(20, 17, 58)
    for trigger in (TouchpointType.INQUIRY_QUOTE_REQUEST, TouchpointType.INQUIRY_DEMO_REQUEST):
        assert acceptance_due(trigger, friday_evening, HOUR, CALENDAR) == (
            friday_evening + timedelta(minutes=5))


@pytest.mark.parametrize(("promoted", "due"), [
    (jst(20, 10, 0), jst(20, 11, 0)),   # Friday morning
    (jst(20, 17, 30), jst(24, 9, 30)),  # Friday 17:30: Monday 23rd is a public holiday
    (jst(21, 14, 0), jst(24, 10, 0)),   # Saturday
    (jst(19, 7, 0), jst(19, 10, 0)),    # before opening
    (jst(19, 18, 0), jst(20, 10, 0)),   # at closing
])
def test_other_mqls_must_be_accepted_within_one_business_hour(promoted: datetime,
                                                              due: datetime) -> None:
    assert acceptance_due(TouchpointType.PAGE_VIEW_PRICING, promoted, HOUR, CALENDAR) == due


def business_minutes_between(calendar: BusinessCalendar, start: datetime, end: datetime
                             ) -> float:
    """Count open minutes one by one: slow, obviously right, independent of ``add``."""
    minutes, cursor = 0.0, start
    while cursor < end:
        step = min(timedelta(minutes=1), end - cursor)
        if calendar.is_open(cursor):
            minutes += step / timedelta(minutes=1)
        cursor += step
    return minutes


@settings(max_examples=60, deadline=None)
@given(start=st.datetimes(min_value=datetime(2026, 12, 20), max_value=datetime(2027, 1, 10),
                          timezones=st.just(UTC)),
       minutes=st.integers(min_value=0, max_value=600))
def test_adding_business_time_counts_only_open_minutes(start: datetime, minutes: int) -> None:
    start = start.replace(second=0, microsecond=0)
    due = CALENDAR.add(start, timedelta(minutes=minutes))
    assert due >= start
    assert business_minutes_between(CALENDAR, start, due) == minutes
    local = due.astimezone(JST)
    if minutes:
        assert CALENDAR.is_business_day(local.date())
        assert time(9) < local.time() <= time(18)


def test_new_year_holidays_and_weekends_are_skipped() -> None:
    new_years_eve = datetime(2026, 12, 31, 17, 0, tzinfo=JST)  # a Thursday
    # Friday 1 January is a holiday, then a weekend: Monday the 4th.
    assert CALENDAR.add(new_years_eve, 2 * HOUR) == datetime(2027, 1, 4, 10, 0, tzinfo=JST)


def test_a_calendar_that_closes_before_it_opens_is_refused() -> None:
    with pytest.raises(ValueError, match="before closing"):
        BusinessCalendar(opens=time(18), closes=time(9))


@pytest.mark.parametrize(("stage", "due"), [
    # From Friday 20th 10:00, Monday 23rd being a public holiday: one business day (nine
    # opening hours) for an SQL's first contact, ten for any activity on an owned lead.
    (S.SQL, jst(24, 10)), (S.SAL, datetime(2026, 12, 7, 10, tzinfo=JST)),
    (S.OPPORTUNITY, datetime(2026, 12, 7, 10, tzinfo=JST)), (S.NURTURE, None),
    (S.DISQUALIFIED, None), (S.WON, None), (S.LOST, None),
])
def test_follow_up_due_times_count_business_days(stage: LifecycleStage,
                                                 due: datetime | None) -> None:
    assert due_after_move(stage, jst(20, 10), CALENDAR) == due


def test_the_next_activity_after_a_contact_is_due_in_ten_business_days() -> None:
    assert due_after_contact(jst(20, 10), CALENDAR) == datetime(2026, 12, 7, 10, tzinfo=JST)


def test_a_business_day_is_the_calendars_opening_hours_on_one_day() -> None:
    short = BusinessCalendar(opens=time(8, 30), closes=time(17, 15))
    # Friday 13th 17:00: 15 minutes left that day, the other 8 h 30 min on Monday 16th.
    assert due_after_move(S.SQL, jst(13, 17), short) == jst(16, 17, 0)


@pytest.fixture
def routing_calendar(monkeypatch: pytest.MonkeyPatch) -> BusinessCalendar:
    """Return routing's default business calendar, whatever this shell's variables say."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    return RoutingSettings(database_url="postgresql://u@localhost/baton",
                           kafka_bootstrap_servers="localhost:9092").business_calendar()


@pytest.mark.parametrize(("handed_off", "due"), [
    (jst(13, 17), jst(16, 17)),  # Friday evening: Monday, not Saturday 17:00
    (jst(20, 17), jst(24, 17)),  # Friday evening before Labour Thanksgiving Day (Monday 23rd)
    (datetime(2026, 12, 28, 17, tzinfo=JST),  # the last day before the year-end closing
     datetime(2027, 1, 4, 17, tzinfo=JST)),
])
def test_an_sqls_first_contact_is_due_when_the_notifiers_clock_is(
        routing_calendar: BusinessCalendar, handed_off: datetime, due: datetime) -> None:
    # The notifier runs the clocks that lead.promoted announces: both services' default
    # calendars and SLA tables must give one due time.
    notifier = NotifierFile()
    notifier_calendar = notifier.calendar.calendar()
    rules = notifier.sla.rules(notifier_calendar)
    assert due_after_move(S.SQL, handed_off, routing_calendar) == due
    assert plan_clock(rules.first_contact, handed_off, notifier_calendar).due_at == due
    owner_activity = plan_clock(rules.owner_activity, handed_off, notifier_calendar).due_at
    for stage in (S.SAL, S.OPPORTUNITY):
        assert due_after_move(stage, handed_off, routing_calendar) == owner_activity
    assert due_after_contact(handed_off, routing_calendar) == owner_activity


@pytest.mark.parametrize(("confirmed", "rank"), [
    ((True, True, True, True), BantRank.A),
    ((True, True, True, False), BantRank.B), ((False, True, True, True), BantRank.B),
    ((True, False, True, False), BantRank.C), ((False, False, True, False), BantRank.C),
    ((True, True, False, True), BantRank.D), ((False, False, False, False), BantRank.D),
])
def test_bant_rank(confirmed: tuple[bool, bool, bool, bool], rank: BantRank) -> None:
    budget, authority, need, timeframe = confirmed
    assert Bant(budget, authority, need, timeframe).rank is rank


@pytest.mark.parametrize(("rank", "requested", "expected"), [
    (BantRank.A, False, True), (BantRank.B, False, True), (BantRank.C, False, False),
    (BantRank.D, False, False), (BantRank.C, True, True), (BantRank.D, True, True),
])
def test_sql_needs_rank_a_or_b_or_a_demo_or_quote_request(rank: BantRank, requested: bool,
                                                          expected: bool) -> None:
    assert qualifies(rank, requested) is expected


def test_outbound_sources_go_to_bdr_and_the_rest_to_sdr() -> None:
    assert team_for_source("outbound", {"outbound"}) is TeamKind.BDR
    assert team_for_source("web-form", {"outbound"}) is TeamKind.SDR


def test_only_active_reps_of_the_leads_team_may_act() -> None:
    sdr = Rep("sato", TeamKind.SDR)
    assert actor_refusal(sdr, "sdr") is None
    assert actor_refusal(sdr, None) is None
    assert actor_refusal(sdr, "field_sales") == (
        "rep sato is in team sdr; the lead is with team field_sales")
    assert actor_refusal(Rep("sato", TeamKind.SDR, active=False), "sdr") == "rep sato is inactive"


LEAD_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
ASK_THE_OWNER = ("(ask them to, or, if they have left the team, mark them inactive so that "
                 "the team can)")


@pytest.mark.parametrize(("stage", "held"), [
    (S.MQL, "is assigned to sato; only they can reject it "
            "(to reject it yourself, take it first by accepting it)"),
    (S.SAL, f"was accepted by sato; only they can reject it {ASK_THE_OWNER}"),
    (S.SQL, f"is owned by sato; only they can reject it {ASK_THE_OWNER}"),
    (S.OPPORTUNITY, f"is owned by sato; only they can reject it {ASK_THE_OWNER}"),
])
def test_only_the_rep_who_holds_a_lead_ends_it_unless_they_have_left(
        stage: LifecycleStage, held: str) -> None:
    def refusal(rep_id: str, owner_id: str | None, owner_present: bool) -> str | None:
        return colleague_refusal(rep_id, "reject", LEAD_ID, stage, owner_id,
                                 owner_present=owner_present, guarded=ENDED_BY_OWNER)

    assert refusal("suzuki", "sato", owner_present=True) == f"lead {LEAD_ID} {held}"
    assert refusal("sato", "sato", owner_present=True) is None, "the owner"
    assert refusal("suzuki", "sato", owner_present=False) is None, "a departed owner"
    assert refusal("suzuki", None, owner_present=False) is None, "a queued lead"


@pytest.mark.parametrize(("guarded", "owners_alone"), [
    (WORKED_BY_OWNER, {S.SAL, S.SQL, S.OPPORTUNITY}),
    (ENDED_BY_OWNER, {S.MQL, S.SAL, S.SQL, S.OPPORTUNITY})])
def test_a_colleague_is_refused_only_in_the_guarded_stages(
        guarded: frozenset[LifecycleStage], owners_alone: set[LifecycleStage]) -> None:
    for stage in S:
        refusal = colleague_refusal("suzuki", "act on", LEAD_ID, stage, "sato",
                                    owner_present=True, guarded=guarded)
        assert (refusal is not None) is (stage in owners_alone), stage
