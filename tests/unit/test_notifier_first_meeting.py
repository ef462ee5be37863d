"""The first meeting's clock in pure rules: which meeting is the lead's first, and what ends it."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from baton_runtime.business_time import BusinessCalendar
from schemas.events import ContactKind, LifecycleStage, Tier
from services.notifier.config import SlaSpec
from services.notifier.domain import (
    ClockKind,
    EarlierMeetingEnd,
    MeetingClock,
    MeetingSchedule,
    Outcome,
    end_before_replacement,
    on_promotion,
    outcome_taken_over,
    schedule_meeting,
)

TOKYO = ZoneInfo("Asia/Tokyo")
JAPAN = BusinessCalendar(timezone="Asia/Tokyo", opens=time(9), closes=time(18), holidays="JP")
RULES = SlaSpec().rules(JAPAN)
S = LifecycleStage


def at(day: int, hour: int) -> datetime:
    """Return a moment in November 2026, Tokyo time."""
    return datetime(2026, 11, day, hour, tzinfo=TOKYO)


SET, MEETING = at(16, 10), at(20, 15)  # set on Monday for Friday
# Friday's meeting moved on Tuesday to Thursday 26th: its first clock replaced then.
MOVED = (MeetingClock(SET, MEETING, at(17, 10), replaced=True),
         MeetingClock(at(17, 10), at(26, 15)))


@pytest.mark.parametrize("kind", [None, *ContactKind])
def test_a_contact_on_a_nurtured_lead_does_not_call_its_meeting_off(
        kind: ContactKind | None) -> None:
    # Routing logs contacts on leads marketing holds, nurture included: the lead stays there.
    changes = on_promotion(RULES, from_stage=S.NURTURE, to_stage=S.NURTURE, tier=Tier.B,
                           trigger=None, owner_id=None, contact=kind)
    assert changes.cancel == frozenset()
    assert (ClockKind.FIRST_MEETING in changes.stop) is (kind is ContactKind.MEETING)


@pytest.mark.parametrize(("from_stage", "to_stage"), [
    (S.SAL, S.NURTURE), (S.NURTURE, S.DISQUALIFIED), (S.OPPORTUNITY, S.LOST),
    (S.OPPORTUNITY, S.WON), (S.LEAD, S.DISQUALIFIED)])
def test_a_lead_moving_out_of_sales_calls_its_meeting_off(
        from_stage: LifecycleStage, to_stage: LifecycleStage) -> None:
    changes = on_promotion(RULES, from_stage=from_stage, to_stage=to_stage, tier=Tier.B,
                           trigger=None, owner_id="rep-1")
    assert changes.cancel == {ClockKind.FIRST_MEETING}


@pytest.mark.parametrize(("clocks", "moment", "meeting_at", "expected"), [
    ((), SET, MEETING, MeetingSchedule(first=True)),
    # Moved while still ahead, later or earlier: the clock moves with it.
    ((MeetingClock(SET, MEETING),), at(18, 10), at(26, 15),
     MeetingSchedule(first=True, moves=(MEETING,))),
    ((MeetingClock(SET, MEETING),), at(17, 10), at(18, 15),
     MeetingSchedule(first=True, moves=(MEETING,))),
    # Ended after the new appointment (handled first): still moved, as in time.
    ((MeetingClock(SET, MEETING, at(19, 10)),), at(17, 10), at(18, 15),
     MeetingSchedule(first=True, moves=(MEETING,))),
    # The same meeting again, the appointment delivered again, or an older one: nothing.
    ((MeetingClock(SET, MEETING),), at(17, 10), MEETING, MeetingSchedule(first=False)),
    ((MeetingClock(SET, MEETING),), SET, MEETING, MeetingSchedule(first=False)),
    ((MeetingClock(at(17, 10), MEETING),), SET, at(26, 15), MeetingSchedule(first=False)),
    # Its time came and its record is not logged: it did not take place, and set again for
    # a later time, its clock moves with it, before its record falls due or after.
    ((MeetingClock(SET, MEETING),), MEETING, at(26, 15),
     MeetingSchedule(first=True, moves=(MEETING,))),
    ((MeetingClock(SET, MEETING),), at(24, 10), at(26, 15),
     MeetingSchedule(first=True, moves=(MEETING,))),
    ((MeetingClock(SET, MEETING),), at(26, 10), at(27, 10),
     MeetingSchedule(first=True, moves=(MEETING,))),
    # Its record logged after the meeting set again but before the new time, handled first:
    # it took place (the set-again was provisional), and the new meeting is not the first.
    ((MeetingClock(SET, MEETING, at(25, 10), recorded=True),), at(24, 10), at(26, 15),
     MeetingSchedule(first=False)),
    # A record after the new time is the new meeting's: moved, as in time.
    ((MeetingClock(SET, MEETING, at(27, 10), recorded=True),), at(24, 10), at(26, 15),
     MeetingSchedule(first=True, moves=(MEETING,))),
    # The lead left sales between the two times (no record): the no-show is moved, as in time.
    ((MeetingClock(SET, MEETING, at(25, 10)),), at(24, 10), at(26, 15),
     MeetingSchedule(first=True, moves=(MEETING,))),
    # Moved before its time, a record before the new time is none of its: moved, as in time.
    ((MeetingClock(SET, MEETING, at(25, 10), recorded=True),), at(18, 10), at(26, 15),
     MeetingSchedule(first=True, moves=(MEETING,))),
    # Set for an earlier time once its time came: no meeting of the lead moved back.
    ((MeetingClock(SET, MEETING),), at(24, 10), at(19, 15), MeetingSchedule(first=False)),
    # It took place: a later meeting is not the first, its record logged or the lead gone.
    ((MeetingClock(SET, MEETING, at(24, 11)),), at(25, 10), at(30, 10),
     MeetingSchedule(first=False)),
    ((MeetingClock(SET, MEETING, at(21, 10)),), at(25, 10), at(30, 10),
     MeetingSchedule(first=False)),
    # Called off before its time (the lead left sales): the next meeting is the first.
    ((MeetingClock(SET, MEETING, at(18, 10)),), at(24, 10), at(26, 15),
     MeetingSchedule(first=True)),
    ((MeetingClock(SET, MEETING, at(18, 10)),), at(19, 10), at(26, 15),
     MeetingSchedule(first=True)),
    # Moved away and back: the clock moved to stays (the first start is taken).
    (MOVED, at(18, 10), MEETING, MeetingSchedule(first=False)),
    # A replaced clock is no meeting of its own: the one it moved to decides.
    (MOVED, at(18, 10), at(27, 10), MeetingSchedule(first=True, moves=(at(26, 15),))),
], ids=["none", "moved-later", "moved-earlier", "moved-then-ended", "same-meeting",
        "delivered-again", "older-appointment", "at-its-time", "no-show-set-again",
        "no-show-set-again-after-due", "no-show-set-again-then-its-record",
        "no-show-set-again-then-the-new-record", "no-show-set-again-then-left-sales",
        "moved-then-logged-before-the-new-time", "earlier-after-its-time",
        "met", "left-after-it", "called-off", "called-off-still-ahead", "moved-back",
        "moved-twice"])
def test_which_meeting_is_the_lead_s_first(clocks: tuple[MeetingClock, ...], moment: datetime,
                                           meeting_at: datetime,
                                           expected: MeetingSchedule) -> None:
    assert schedule_meeting(moment, meeting_at, clocks) == expected


DUE = at(25, 15)  # the record of Friday's meeting: two working days on (the 23rd is a holiday)


@pytest.mark.parametrize(("taken_over_at", "reported", "expected"), [
    (at(24, 10), False, Outcome.SUPERSEDED), (DUE, False, Outcome.SUPERSEDED),
    # Set again after the record fell due: the breach stands, reported or not yet.
    (at(26, 10), False, Outcome.BREACHED), (at(26, 10), True, Outcome.BREACHED),
    # Set again in time, but handled after the sweep reported the breach: it stands too.
    (at(24, 10), True, Outcome.BREACHED)],
    ids=["in-time", "at-the-due-time", "after-due", "after-due-reported", "reported-first"])
def test_a_clock_taken_over_is_superseded_unless_its_breach_stands(
        taken_over_at: datetime, reported: bool, expected: Outcome) -> None:
    assert outcome_taken_over(DUE, taken_over_at, breach_reported=reported) is expected


# Friday's meeting did not take place; on Tuesday 24th at 10:00 the partner set it again for
# Thursday 26th 15:00, and that appointment was handled before the stop below.
SET_AGAIN = (MeetingClock(SET, MEETING, at(24, 10), replaced=True),
             MeetingClock(at(24, 10), at(26, 15)))


@pytest.mark.parametrize(("stop_at", "cancels", "clocks", "expected"), [
    # The meeting's record logged on Monday, or the lead gone to nurture then: the meeting
    # took place, and the one set on Tuesday is no first meeting.
    (at(21, 10), False, SET_AGAIN, EarlierMeetingEnd(MEETING, voids=(at(26, 15),))),
    (at(21, 10), True, SET_AGAIN, EarlierMeetingEnd(MEETING, voids=(at(26, 15),))),
    # The lead left sales before Friday: that meeting was called off, Tuesday's is the first.
    (at(18, 10), True, SET_AGAIN, EarlierMeetingEnd(MEETING)),
    # A record before the meeting is none of its.
    (at(18, 10), False, SET_AGAIN, None),
    # Set again after a no-show, the meeting's record logged before the new time: the set-again
    # was provisional, the record meets Friday's clock, and the new one is no first meeting.
    (at(25, 10), False, SET_AGAIN, EarlierMeetingEnd(MEETING, voids=(at(26, 15),))),
    # Logged after the new time it is the new meeting's, and leaving sales is no record.
    (at(26, 16), False, SET_AGAIN, None), (at(25, 10), True, SET_AGAIN, None),
    # Moved before its time: a record before the new time is none of Friday's.
    (at(25, 10), False, MOVED, None),
    # Nothing replaced: nothing more to do than the stop does.
    (at(21, 10), False, (MeetingClock(SET, MEETING),), None),
], ids=["logged", "left-sales", "called-off", "record-before-the-meeting",
        "record-before-the-new-time", "record-after-the-new-time", "left-after-set-again",
        "moved-then-logged", "nothing-replaced"])
def test_a_stop_handled_after_the_meeting_was_set_again_ends_what_it_would_have_in_time(
        stop_at: datetime, cancels: bool, clocks: tuple[MeetingClock, ...],
        expected: EarlierMeetingEnd | None) -> None:
    assert end_before_replacement(stop_at, cancels=cancels, clocks=clocks) == expected
