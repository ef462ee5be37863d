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
    MeetingClock,
    MeetingSchedule,
    on_promotion,
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
# Friday's meeting moved on Tuesday to Thursday 26th: its first clock superseded then.
MOVED = (MeetingClock(SET, MEETING, at(17, 10), superseded=True),
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
    # Its time came: a later meeting is not the first, open, met or ended by leaving sales.
    ((MeetingClock(SET, MEETING),), MEETING, at(26, 15), MeetingSchedule(first=False)),
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
    # A superseded clock is no meeting of its own: the one it moved to decides.
    (MOVED, at(18, 10), at(27, 10), MeetingSchedule(first=True, moves=(at(26, 15),))),
], ids=["none", "moved-later", "moved-earlier", "moved-then-ended", "same-meeting",
        "delivered-again", "older-appointment", "at-its-time", "met", "left-after-it",
        "called-off", "called-off-still-ahead", "moved-back", "moved-twice"])
def test_which_meeting_is_the_lead_s_first(clocks: tuple[MeetingClock, ...], moment: datetime,
                                           meeting_at: datetime,
                                           expected: MeetingSchedule) -> None:
    assert schedule_meeting(moment, meeting_at, clocks) == expected
