"""SLA rules: business time on the Japanese calendar, the ladder, what starts and stops clocks."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton_runtime.business_time import BusinessCalendar
from schemas.events import ContactKind, DealPhase, LifecycleStage, Tier, TouchpointType
from services.notifier.config import SlaSpec
from services.notifier.domain import (
    Audience,
    ClockChanges,
    ClockKind,
    ClockPlan,
    Directory,
    Outcome,
    Rung,
    awaited_touch_at,
    breach_reported,
    late_stop_reports_breach,
    meeting_owed,
    on_deal_phase,
    on_deal_recycled,
    on_promotion,
    on_score,
    outcome,
    plan_clock,
    rungs_to_alert,
    settle_late_start,
    stop_clears_breach,
)

TOKYO = ZoneInfo("Asia/Tokyo")
JAPAN = BusinessCalendar(timezone="Asia/Tokyo", opens=time(9), closes=time(18), holidays="JP")
RULES = SlaSpec().rules(JAPAN)
S = LifecycleStage


def jst(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    """Return a moment in November 2026 (by default), Tokyo time."""
    return datetime(2026, month, day, hour, minute, tzinfo=TOKYO)


def test_one_business_hour_on_friday_evening_ends_after_the_weekend_and_a_holiday() -> None:
    # 2026-11-20 is a Friday; Monday 23 November is Labour Thanksgiving Day.
    assert JAPAN.add(jst(20, 17, 30), timedelta(hours=1)) == jst(24, 9, 30)


@pytest.mark.parametrize(("start", "expected"), [
    (jst(24, 8, 0), jst(24, 11, 0)),  # before opening: counts from 09:00
    (jst(24, 17, 0), jst(25, 10, 0)),  # crosses the night
    (jst(24, 19, 0), jst(25, 11, 0)),  # after closing: counts from the next morning
    (jst(21, 12, 0), jst(24, 11, 0)),  # a Saturday before a holiday Monday
    (jst(24, 16, 0), jst(24, 18, 0)),  # ends exactly at closing time, not the next morning
])
def test_two_business_hours_from_various_moments(start: datetime, expected: datetime) -> None:
    assert JAPAN.add(start, timedelta(hours=2)) == expected


def test_another_time_zone_its_holidays_and_hours() -> None:
    new_york = ZoneInfo("America/New_York")
    calendar = BusinessCalendar(timezone="America/New_York", opens=time(8, 30), closes=time(17),
                                holidays="US")
    start = datetime(2026, 12, 24, 16, 0, tzinfo=new_york)  # Christmas Day is a holiday
    assert calendar.add(start, timedelta(hours=2)) == datetime(2026, 12, 28, 9, 30,
                                                               tzinfo=new_york)


def working_minutes_between(start: datetime, end: datetime) -> int:
    """Count working minutes one by one: the slow, obviously right oracle."""
    count, cursor = 0, start
    while cursor < end:
        local = cursor.astimezone(TOKYO)
        if JAPAN.is_business_day(local.date()) and time(9) <= local.time() < time(18):
            count += 1
        cursor += timedelta(minutes=1)
    return count


MINUTE_STARTS = st.datetimes(min_value=datetime(2026, 4, 25), max_value=datetime(2027, 1, 10),
                             timezones=st.just(TOKYO)).map(
    lambda moment: moment.replace(second=0, microsecond=0))


@settings(max_examples=40, deadline=None)
@given(MINUTE_STARTS, st.integers(min_value=1, max_value=2 * 9 * 60))
def test_business_time_added_is_exactly_the_working_minutes_that_pass(
        start: datetime, minutes: int) -> None:
    end = JAPAN.add(start, timedelta(minutes=minutes))
    assert working_minutes_between(start, end) == minutes
    local = end.astimezone(TOKYO)
    assert JAPAN.is_business_day(local.date()) and time(9) < local.time() <= time(18)


@given(MINUTE_STARTS, st.integers(min_value=0, max_value=5000),
       st.integers(min_value=0, max_value=5000))
def test_adding_business_time_in_two_steps_is_adding_it_at_once(
        start: datetime, first: int, second: int) -> None:
    one, two = timedelta(minutes=first), timedelta(minutes=second)
    assert JAPAN.add(JAPAN.add(start, one), two) == JAPAN.add(start, one + two)


def test_the_ladder_is_at_half_full_and_double_the_duration_in_business_time() -> None:
    plan = plan_clock(RULES.mql_acceptance, jst(20, 17, 30), JAPAN)
    assert (plan.remind_at, plan.due_at, plan.escalate_at) == (
        jst(20, 18, 0), jst(24, 9, 30), jst(24, 10, 30))


def test_the_demo_request_fast_lane_is_five_wall_clock_minutes_even_on_a_saturday() -> None:
    plan = plan_clock(RULES.mql_fast_lane, jst(21, 23, 58), JAPAN)
    assert (plan.remind_at, plan.due_at, plan.escalate_at) == (
        jst(21, 23, 58) + timedelta(minutes=2.5), jst(22, 0, 3), jst(22, 0, 8))


def test_a_business_day_is_a_working_day_and_three_of_them_skip_the_holiday() -> None:
    plan = plan_clock(RULES.first_touch, jst(20, 10), JAPAN)
    assert plan.due_at == jst(26, 10)  # Fri -> Tue, Wed, Thu (Mon is a holiday)


def test_rungs_fire_in_order_and_a_reminder_overtaken_by_the_breach_is_dropped() -> None:
    plan = ClockPlan(started_at=jst(24, 9), remind_at=jst(24, 9, 30), due_at=jst(24, 10),
                     escalate_at=jst(24, 11))
    assert plan.rungs_due(0, jst(24, 9, 29)) == []
    assert plan.rungs_due(0, jst(24, 9, 30)) == [Rung.REMINDER]
    assert plan.rungs_due(1, jst(24, 10)) == [Rung.BREACH]
    assert plan.rungs_due(0, jst(24, 12)) == [Rung.REMINDER, Rung.BREACH, Rung.ESCALATION]
    assert rungs_to_alert(plan.rungs_due(0, jst(24, 12))) == [Rung.BREACH, Rung.ESCALATION]
    assert plan.next_fire_at(0) == jst(24, 9, 30)
    assert plan.next_fire_at(2) == jst(24, 11)
    assert plan.next_fire_at(3) is None


def test_a_stop_after_the_due_time_is_a_breach_and_reports_it_if_no_alert_did() -> None:
    due = jst(24, 10)
    assert outcome(due, due) is Outcome.MET
    assert outcome(due, due + timedelta(seconds=1)) is Outcome.BREACHED
    assert late_stop_reports_breach(due, due + timedelta(minutes=1), fired=Rung.REMINDER)
    assert not late_stop_reports_breach(due, due + timedelta(minutes=1), fired=Rung.BREACH)
    assert not late_stop_reports_breach(due, due - timedelta(minutes=1), fired=0)


def test_a_stop_in_time_after_the_breach_alert_clears_it_and_no_other_stop_does() -> None:
    # The stop's topic was behind: the sweep alerted the breach before the stop was known.
    assert stop_clears_breach(Outcome.MET, breach_reported=breach_reported("open", Rung.BREACH))
    assert stop_clears_breach(Outcome.MET,
                              breach_reported=breach_reported("open", Rung.ESCALATION))
    # A breach a late stop reported, ended again in time (a meeting's record handled late).
    assert stop_clears_breach(Outcome.MET, breach_reported=breach_reported("breached", 0))
    assert not stop_clears_breach(Outcome.MET,
                                  breach_reported=breach_reported("open", Rung.REMINDER))
    assert not stop_clears_breach(Outcome.BREACHED, breach_reported=True), "a late stop"
    assert not stop_clears_breach(Outcome.BREACHED, breach_reported=False)
    assert not stop_clears_breach(Outcome.SUPERSEDED, breach_reported=True)


def test_a_tier_a_mql_starts_the_acceptance_clock_and_acceptance_stops_it() -> None:
    promoted = on_promotion(RULES, from_stage=S.LEAD, to_stage=S.MQL, tier=Tier.A,
                            trigger=TouchpointType.WEBINAR_PRODUCT_DEMO, owner_id=None)
    assert promoted.start == (RULES.mql_acceptance,)
    assert ClockKind.MQL_ACCEPTANCE not in promoted.stop
    accepted = on_promotion(RULES, from_stage=S.MQL, to_stage=S.SAL, tier=Tier.A,
                            trigger=None, owner_id="rep-1")
    assert ClockKind.MQL_ACCEPTANCE in accepted.stop
    assert accepted.start == (RULES.owner_activity,)


@pytest.mark.parametrize("trigger", [TouchpointType.INQUIRY_DEMO_REQUEST,
                                     TouchpointType.INQUIRY_QUOTE_REQUEST])
def test_a_demo_or_quote_request_takes_the_five_minute_lane(trigger: TouchpointType) -> None:
    changes = on_promotion(RULES, from_stage=S.NURTURE, to_stage=S.MQL, tier=Tier.A,
                           trigger=trigger, owner_id="rep-1")
    assert set(changes.start) == {RULES.mql_fast_lane, RULES.owner_activity}


def test_a_rejection_ends_the_acceptance_clock_and_every_owned_clock() -> None:
    rejected = on_promotion(RULES, from_stage=S.MQL, to_stage=S.NURTURE, tier=Tier.A,
                            trigger=None, owner_id="rep-1")
    assert rejected.stop >= {ClockKind.MQL_ACCEPTANCE, ClockKind.OWNER_ACTIVITY}
    assert rejected.start == ()


def test_an_sql_starts_the_first_contact_clock_which_the_automatic_deal_does_not_stop() -> None:
    qualified = on_promotion(RULES, from_stage=S.SAL, to_stage=S.SQL, tier=Tier.A,
                             trigger=None, owner_id="fs-1")
    assert RULES.first_contact in qualified.start
    opened = on_promotion(RULES, from_stage=S.SQL, to_stage=S.OPPORTUNITY, tier=Tier.A,
                          trigger=None, owner_id="fs-1")
    assert ClockKind.FIRST_CONTACT not in opened.stop
    contact = on_promotion(RULES, from_stage=S.OPPORTUNITY, to_stage=S.OPPORTUNITY,
                           tier=Tier.A, trigger=None, owner_id="fs-1", contact=ContactKind.CALL)
    assert ClockKind.FIRST_CONTACT in contact.stop, "a logged contact is the first contact"


def test_a_lead_queued_with_no_owner_ends_the_owner_s_idle_clock_and_starts_none() -> None:
    # Qualified on day 9 of an accepted lead, with no field rep free: the lead is queued.
    queued = on_promotion(RULES, from_stage=S.SAL, to_stage=S.SQL, tier=Tier.A, trigger=None,
                          owner_id=None)
    assert ClockKind.OWNER_ACTIVITY in queued.stop
    assert RULES.owner_activity not in queued.start


def test_only_a_logged_contact_or_leaving_sales_is_the_first_contact() -> None:
    # DESIGN: the SQL's clock waits for "first contact logged"; other activity is not one.
    kept = on_promotion(RULES, from_stage=S.OPPORTUNITY, to_stage=S.OPPORTUNITY, tier=Tier.A,
                        trigger=None, owner_id="fs-1")
    assert ClockKind.FIRST_CONTACT not in kept.stop
    assert ClockKind.OWNER_ACTIVITY in kept.stop
    for to_stage in (S.WON, S.LOST, S.NURTURE, S.DISQUALIFIED):
        assert ClockKind.FIRST_CONTACT in on_promotion(
            RULES, from_stage=S.OPPORTUNITY, to_stage=to_stage, tier=Tier.A, trigger=None,
            owner_id="fs-1").stop


@pytest.mark.parametrize(("from_phase", "to_phase"), [
    (DealPhase.P1, DealPhase.P1),  # the rep edited the amount or the criteria
    (DealPhase.P1, DealPhase.P2),  # an advance: activity, but no contact logged
])
def test_a_deal_edited_or_moved_by_its_rep_is_activity_not_the_first_contact(
        from_phase: DealPhase, to_phase: DealPhase) -> None:
    assert on_deal_phase(RULES, from_phase=None, to_phase=DealPhase.P1, owner_id="fs-1").stop \
        == frozenset()
    moved = on_deal_phase(RULES, from_phase=from_phase, to_phase=to_phase, owner_id="fs-1")
    assert moved.stop == {ClockKind.OWNER_ACTIVITY}
    assert moved.start == (RULES.owner_activity,)


@pytest.mark.parametrize("to_phase", [DealPhase.WON, DealPhase.LOST])
def test_a_closed_deal_ends_the_first_contact_clock(to_phase: DealPhase) -> None:
    closed = on_deal_phase(RULES, from_phase=DealPhase.P3, to_phase=to_phase, owner_id="fs-1")
    assert ClockKind.FIRST_CONTACT in closed.stop
    assert on_deal_phase(RULES, from_phase=DealPhase.P4, to_phase=DealPhase.WON,
                         owner_id="fs-1").start == ()


@pytest.mark.parametrize(("tier", "previous", "surge", "stage", "expected"), [
    (Tier.B, Tier.C, False, None, "first_touch"),
    (Tier.B, None, False, S.LEAD, "first_touch"),
    (Tier.B, Tier.B, False, S.LEAD, None),  # still B: its clock started with the rise
    (Tier.C, Tier.C, True, S.NURTURE, "first_touch_surge"),
    (Tier.B, Tier.C, True, None, "first_touch_surge"),
    (Tier.B, Tier.C, False, S.SAL, None),  # already with sales
    (Tier.A, Tier.B, False, S.LEAD, None),  # hot: the MQL clock takes it
    (Tier.A, Tier.B, True, S.LEAD, None),
])
def test_a_new_tier_b_or_a_surge_starts_the_first_touch_clock(
        tier: Tier, previous: Tier | None, surge: bool, stage: LifecycleStage | None,
        expected: str | None) -> None:
    # The lead's stage is where its latest lifecycle event, an hour before the score, left it.
    awaiting = awaited_touch_at(jst(24, 11), stage=stage,
                                moved_at=None if stage is None else jst(24, 10), next_move=None)
    changes = on_score(RULES, tier=tier, previous_tier=previous, surge=surge,
                       awaiting_touch=awaiting)
    assert [rule.name for rule in changes.start] == ([expected] if expected else [])


def test_any_lifecycle_event_of_sales_is_the_first_touch() -> None:
    for to_stage in (S.NURTURE, S.DISQUALIFIED, S.LEAD):
        changes = on_promotion(RULES, from_stage=S.LEAD, to_stage=to_stage, tier=Tier.B,
                               trigger=None, owner_id=None)
        assert ClockKind.FIRST_TOUCH in changes.stop
        assert ClockKind.FIRST_TOUCH not in changes.supersede


@pytest.mark.parametrize("from_stage", [S.LEAD, S.NURTURE])
def test_the_automatic_promotion_to_mql_supersedes_the_first_touch_clock(
        from_stage: LifecycleStage) -> None:
    # A score made the lead an MQL: nobody touched it, and the MQL clock takes over.
    changes = on_promotion(RULES, from_stage=from_stage, to_stage=S.MQL, tier=Tier.A,
                           trigger=None, owner_id=None)
    assert ClockKind.FIRST_TOUCH in changes.supersede
    assert ClockKind.FIRST_TOUCH not in changes.stop
    assert RULES.mql_acceptance in changes.start


def test_a_late_start_ended_by_a_supersede_is_superseded_unless_it_was_already_late() -> None:
    plan = plan_clock(RULES.first_touch, jst(24, 11), JAPAN)
    on_time = settle_late_start(plan, jst(24, 12), None, superseded=True)
    assert (on_time.outcome, on_time.reports_breach) == (Outcome.SUPERSEDED, False)
    late = settle_late_start(plan, plan.due_at + timedelta(minutes=1), None, superseded=True)
    assert (late.outcome, late.reports_breach) == (Outcome.BREACHED, True)


MEETING = jst(20, 15)  # a Friday; Monday 23rd is a holiday


def test_a_partner_s_meeting_time_starts_the_first_meeting_clock_at_that_time() -> None:
    changes = on_score(RULES, tier=Tier.A, previous_tier=Tier.B, surge=False,
                       awaiting_touch=False, meeting_at=MEETING, first_meeting=True)
    assert (changes.start, changes.scheduled) == ((), ((RULES.first_meeting, MEETING),))
    rule = RULES.first_meeting
    assert (rule.kind, rule.duration, rule.business) == (
        ClockKind.FIRST_MEETING, 2 * JAPAN.business_day, True), "48 hours: two working days"
    plan = plan_clock(rule, MEETING, JAPAN, set_at=jst(16, 10))
    assert (plan.set_at, plan.started_at, plan.remind_at, plan.due_at, plan.escalate_at) == (
        jst(16, 10), MEETING, jst(24, 15), jst(25, 15), jst(27, 15))
    # Set days ahead, the clock fires nothing before the meeting: its first rung is a
    # working day after it.
    assert plan.rungs_due(0, MEETING) == [] and plan.next_fire_at(0) == jst(24, 15)
    assert plan_clock(rule, MEETING, JAPAN).set_at is None, "a clock set when it starts"


def test_only_the_first_meeting_with_a_time_starts_a_clock() -> None:
    def scheduled(meeting_at: datetime | None, first: bool) -> ClockChanges:
        return on_score(RULES, tier=Tier.B, previous_tier=Tier.C, surge=False,
                        awaiting_touch=True, meeting_at=meeting_at, first_meeting=first)

    both = scheduled(MEETING, True)
    assert both == ClockChanges(start=(RULES.first_touch,),
                                scheduled=((RULES.first_meeting, MEETING),))
    assert scheduled(None, True) == ClockChanges(start=(RULES.first_touch,))
    assert scheduled(MEETING, False) == ClockChanges(start=(RULES.first_touch,))


@pytest.mark.parametrize(("clocked", "stage", "moved_at", "owed"), [
    (False, None, None, True),  # a lead the notifier never saw move
    (True, None, None, False),  # a later appointment: the lead's first meeting was clocked
    (False, S.SAL, jst(16, 9), True),
    (False, S.NURTURE, jst(16, 9), True),  # a partner may bring a nurtured lead back
    (False, S.DISQUALIFIED, jst(16, 9), False),  # nobody may log a contact any more
    (False, S.WON, jst(16, 10), False),  # closed at the very moment of the score
    (False, S.DISQUALIFIED, jst(16, 11), True),  # closed after: that cancel ends the clock
])
def test_a_meeting_is_owed_unless_one_was_clocked_or_the_lead_was_closed_for_good(
        clocked: bool, stage: LifecycleStage | None, moved_at: datetime | None,
        owed: bool) -> None:
    assert meeting_owed(jst(16, 10), clocked_before=clocked, stage=stage,
                        moved_at=moved_at) is owed


def test_a_logged_meeting_stops_the_first_meeting_clock_and_other_contacts_do_not() -> None:
    def contact(kind: ContactKind | None, to_stage: LifecycleStage = S.SAL) -> ClockChanges:
        return on_promotion(RULES, from_stage=S.SAL, to_stage=to_stage, tier=Tier.A,
                            trigger=None, owner_id="rep-1", contact=kind)

    assert ClockKind.FIRST_MEETING in contact(ContactKind.MEETING).stop
    for other in (ContactKind.CALL, ContactKind.EMAIL, ContactKind.VISIT, None):
        assert ClockKind.FIRST_MEETING not in contact(other).stop
    assert not contact(None, S.SQL).cancel, "moving on in sales leaves the meeting due"


@pytest.mark.parametrize("to_stage", [S.WON, S.LOST, S.NURTURE, S.DISQUALIFIED])
def test_leaving_sales_cancels_the_first_meeting_clock_even_before_the_meeting(
        to_stage: LifecycleStage) -> None:
    left = on_promotion(RULES, from_stage=S.OPPORTUNITY if to_stage in (S.WON, S.LOST)
                        else S.SAL, to_stage=to_stage, tier=Tier.A, trigger=None,
                        owner_id="rep-1")
    assert left.cancel == {ClockKind.FIRST_MEETING}
    assert ClockKind.FIRST_MEETING not in left.stop, "a cancel, not the meeting's record"


def test_a_closed_or_recycled_deal_leaves_the_first_meeting_clock_to_the_lead_s_move() -> None:
    # Routing moves the lead out of sales (a lifecycle event, which cancels) only for its
    # own deal; an older deal closing or recycled leaves a lead worked afresh where it is.
    for phase in (DealPhase.WON, DealPhase.LOST, DealPhase.P2):
        changes = on_deal_phase(RULES, from_phase=DealPhase.P3, to_phase=phase, owner_id="fs-1")
        assert not changes.cancel and ClockKind.FIRST_MEETING not in changes.stop
    assert not on_deal_recycled().cancel


DIRECTORY = Directory(default=("default",), teams={"sdr": ("sdr-hook",)},
                      team_leads={"sdr": ("sdr-lead",)}, reps={"rep-1": ("rep-1-hook",)},
                      manager=("managers",))


@pytest.mark.parametrize(("audiences", "owner", "team", "expected"), [
    ((Audience.OWNER, Audience.TEAM), "rep-1", "sdr", ["rep-1-hook", "sdr-hook"]),
    ((Audience.OWNER, Audience.TEAM), None, "sdr", ["sdr-hook"]),  # no owner: once to the team
    ((Audience.OWNER, Audience.TEAM), "rep-2", "bdr", ["default"]),
    ((Audience.OWNER, Audience.MANAGER), "rep-1", "sdr", ["rep-1-hook", "managers"]),
    ((Audience.TEAM_LEAD,), None, "sdr", ["sdr-lead"]),
    ((Audience.TEAM_LEAD,), None, "bdr", ["managers"]),
])
def test_recipients_fall_back_to_wider_channels_and_are_told_once(
        audiences: tuple[Audience, ...], owner: str | None, team: str | None,
        expected: list[str]) -> None:
    assert DIRECTORY.destinations(audiences, owner_id=owner, team=team) == expected


def test_without_a_manager_channel_managers_hear_through_the_default() -> None:
    directory = Directory(default=("console",))
    assert directory.destinations((Audience.MANAGER, Audience.TEAM_LEAD), owner_id=None,
                                  team=None) == ["console"]


def test_times_are_compared_as_instants_not_as_local_clock_readings() -> None:
    utc_start = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo
    assert JAPAN.add(utc_start, timedelta(hours=1)) == jst(24, 10)
