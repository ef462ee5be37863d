"""Routing's pure rules at their edges: a recycled MQL's speed to lead, leave, Slack timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi import HTTPException

from schemas.events import LifecycleStage
from services.routing.domain import (
    Dimension,
    Granularity,
    Journey,
    Period,
    Rep,
    TeamKind,
    absent_because,
    funnel,
)
from services.routing.slack import verify

S = LifecycleStage
JST = ZoneInfo("Asia/Tokyo")
T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_speed_to_lead_counts_from_the_mql_that_was_answered() -> None:
    month = 30 * 24 * 60
    # Rejected at its first MQL; an MQL again a month later, accepted and called 5 and 20
    # minutes after that one.
    again = Journey(source="web", partner=None, created_at=T0,
                    entered={S.MQL: at(0), S.NURTURE: at(10), S.SAL: at(month + 5)},
                    first_contact_at=at(month + 20), mqls=(at(0), at(month)))
    # Accepted at its first MQL, rejected later and an MQL again: the first answer counts.
    first = Journey(source="web", partner=None, created_at=T0,
                    entered={S.MQL: at(0), S.SAL: at(30), S.NURTURE: at(60)},
                    first_contact_at=at(45), mqls=(at(0), at(month)))
    _, total = funnel([again, first], [Dimension.SOURCE], Granularity.MONTH, JST)
    assert (total.to_acceptance.p50_minutes, total.to_acceptance.p95_minutes) == (5, 30)
    assert (total.to_first_contact.p50_minutes, total.to_first_contact.p95_minutes) == (20, 45)


def test_back_to_back_leaves_read_as_one_absence() -> None:
    # A week's leave booked as two periods, and a trip overlapping the second: the rep is
    # away until the trip ends, not until the first booking does.
    leaves = (Period(datetime(2026, 11, 16, tzinfo=JST), datetime(2026, 11, 19, tzinfo=JST)),
              Period(datetime(2026, 11, 19, tzinfo=JST), datetime(2026, 11, 21, tzinfo=JST)),
              Period(datetime(2026, 11, 20, tzinfo=JST), datetime(2026, 11, 24, tzinfo=JST)),
              Period(datetime(2026, 12, 1, tzinfo=JST), datetime(2026, 12, 2, tzinfo=JST)))
    rep = Rep("sato", TeamKind.SDR, out_of_office=leaves)
    assert absent_because(rep, datetime(2026, 11, 17, 10, tzinfo=JST)) == (
        "out of office until 2026-11-24 00:00 JST")
    assert absent_because(rep, datetime(2026, 11, 24, 10, tzinfo=JST)) is None


@pytest.mark.parametrize("timestamp", ["1" * 5000, "0" * 4000 + "1763427600"])
def test_a_timestamp_too_long_to_read_is_refused_as_malformed(timestamp: str) -> None:
    # Python refuses to read integers of more than 4,300 digits: that must be a 401, not a 500.
    with pytest.raises(HTTPException) as refused:
        verify(b"payload=%7B%7D", timestamp, "v0=" + "0" * 64, SECRET, lambda: T0)
    assert refused.value.status_code == 401
