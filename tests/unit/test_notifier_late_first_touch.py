"""Scores judged by event times: the stage a score finds, and clocks started after their stop."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from baton_runtime.business_time import BusinessCalendar
from schemas.events import LifecycleStage, Tier
from services.notifier.config import SlaSpec
from services.notifier.domain import (
    ClockPlan,
    EndedClock,
    LifecycleMove,
    Outcome,
    SettledStart,
    awaited_touch_at,
    on_score,
    outcome,
    settle_late_start,
)

TOKYO = ZoneInfo("Asia/Tokyo")
JAPAN = BusinessCalendar(timezone="Asia/Tokyo", opens=time(9), closes=time(18), holidays="JP")
RULES = SlaSpec().rules(JAPAN)
S = LifecycleStage
SCORED = datetime(2026, 11, 16, 10, tzinfo=TOKYO)  # a Monday
BEFORE, AFTER = SCORED - timedelta(days=7), SCORED + timedelta(days=4)


@pytest.mark.parametrize(("stage", "moved_at", "next_move", "expected"), [
    (None, None, None, True),  # no lifecycle event seen: a new lead
    (S.LEAD, BEFORE, None, True),  # the latest event is older than the score
    (S.NURTURE, BEFORE, None, True),
    (S.SAL, BEFORE, None, False),  # with sales when scored
    # The latest event seen is newer than the score: the first after the score tells.
    (S.SAL, AFTER, LifecycleMove(AFTER, S.LEAD), True),  # the late first touch
    (S.SQL, AFTER, LifecycleMove(AFTER, S.NURTURE), True),
    (S.SQL, AFTER, LifecycleMove(AFTER, S.SAL), False),  # rescored while with sales
    (S.LEAD, SCORED, LifecycleMove(SCORED, S.LEAD), False),  # touched at that very moment
    (S.SAL, AFTER, None, False),  # that event forgotten: taken as handled, as before
    (S.SAL, AFTER, LifecycleMove(AFTER, None), False),  # kept before stages were
], ids=["new", "lead", "nurture", "with-sales", "touched-late", "nurture-touched-late",
        "rescored-with-sales", "same-moment", "forgotten", "kept-without-stage"])
def test_the_stage_a_score_finds_is_the_one_at_its_time(
        stage: LifecycleStage | None, moved_at: datetime | None,
        next_move: LifecycleMove | None, expected: bool) -> None:
    assert awaited_touch_at(SCORED, stage=stage, moved_at=moved_at,
                            next_move=next_move) is expected


@pytest.mark.parametrize(("tier", "previous", "surge", "expected"), [
    (Tier.B, Tier.C, False, "first_touch"),
    (Tier.B, Tier.B, True, "first_touch_surge"),
])
def test_a_score_handled_after_a_later_first_touch_still_starts_its_clock(
        tier: Tier, previous: Tier, surge: bool, expected: str) -> None:
    # The lead was touched (accepted) days after the score, and that was handled first.
    awaiting = awaited_touch_at(SCORED, stage=S.SAL, moved_at=AFTER,
                                next_move=LifecycleMove(AFTER, S.LEAD))
    changes = on_score(RULES, tier=tier, previous_tier=previous, surge=surge,
                       awaiting_touch=awaiting)
    assert [rule.name for rule in changes.start] == [expected]
    assert on_score(RULES, tier=tier, previous_tier=previous, surge=surge,
                    awaiting_touch=False).start == ()


def plan(started_at: datetime, due_at: datetime) -> ClockPlan:
    """Return a clock plan; only its start and due time matter here."""
    return ClockPlan(started_at=started_at, remind_at=due_at, due_at=due_at,
                     escalate_at=due_at + (due_at - started_at))


def at(day: int, hour: int) -> datetime:
    """Return a moment in November 2026, Tokyo time."""
    return datetime(2026, 11, day, hour, tzinfo=TOKYO)


RISE = plan(at(16, 10), at(19, 10))  # tier B on Monday, due Thursday
SURGE = plan(at(17, 10), at(18, 10))  # a surge on Tuesday, due Wednesday


def ended(clock: ClockPlan, stopped_at: datetime) -> EndedClock:
    """Return ``clock`` as ended by a stop at ``stopped_at``."""
    return EndedClock(clock.started_at, clock.due_at, outcome(clock.due_at, stopped_at))


def test_a_start_alone_before_its_stop_is_met_or_breached_by_it() -> None:
    met = settle_late_start(RISE, at(18, 10), None)
    assert (met.outcome, met.stopped_at, met.reports_breach) == (Outcome.MET, at(18, 10), False)
    late = settle_late_start(RISE, at(20, 11), None)
    assert (late.outcome, late.reports_breach) == (Outcome.BREACHED, True)
    assert late.rival_superseded_at is None


@pytest.mark.parametrize(("stop", "reports"), [(at(19, 9), True), (at(20, 11), False)],
                         ids=["rise-met", "rise-breached-and-reported"])
def test_a_later_start_due_earlier_takes_the_stop_from_the_clock_it_replaces(
        stop: datetime, reports: bool) -> None:
    settled = settle_late_start(SURGE, stop, ended(RISE, stop))
    assert (settled.outcome, settled.stopped_at) == (Outcome.BREACHED, stop)
    assert settled.rival_superseded_at == SURGE.started_at
    assert settled.reports_breach is reports, "the breach is reported once"


def test_an_earlier_start_replaced_by_the_clock_the_stop_ended_is_superseded() -> None:
    settled = settle_late_start(RISE, at(20, 11), ended(SURGE, at(20, 11)))
    assert settled == SettledStart(Outcome.SUPERSEDED, SURGE.started_at)


def test_a_later_start_due_later_is_not_recorded() -> None:
    settled = settle_late_start(plan(at(18, 17), at(19, 17)), at(20, 11),
                                ended(RISE, at(20, 11)))
    assert (settled.outcome, settled.rival_superseded_at, settled.reports_breach) == (
        None, None, False)


MOMENTS = st.integers(min_value=0, max_value=10_000).map(lambda m: at(16, 9) +
                                                         timedelta(minutes=m))


@given(first_start=MOMENTS, second_start=MOMENTS, first_span=st.integers(1, 10_000),
       second_span=st.integers(1, 10_000), stop_after=st.integers(1, 10_000))
def test_two_starts_handled_after_their_stop_end_as_handling_them_in_time_would(
        first_start: datetime, second_start: datetime, first_span: int, second_span: int,
        stop_after: int) -> None:
    assume(first_start != second_start)
    starts = [plan(first_start, first_start + timedelta(minutes=first_span)),
              plan(second_start, second_start + timedelta(minutes=second_span))]
    stop = max(first_start, second_start) + timedelta(minutes=stop_after)
    # In time: the earlier opens; the later replaces it only if it falls due earlier.
    earlier, later = sorted(starts, key=lambda clock: clock.started_at)
    runs = later if earlier.due_at > later.due_at else earlier
    for handled_first, handled_second in (starts, starts[::-1]):
        first = settle_late_start(handled_first, stop, None)
        assert first.outcome is not None
        second = settle_late_start(handled_second, stop, EndedClock(
            handled_first.started_at, handled_first.due_at, first.outcome))
        takes_over = second.outcome in (Outcome.MET, Outcome.BREACHED)
        assert (handled_second if takes_over else handled_first) is runs
        assert (second.rival_superseded_at is not None) is takes_over
        reports = int(first.reports_breach) + int(second.reports_breach)
        assert reports == int(outcome(runs.due_at, stop) is Outcome.BREACHED)
