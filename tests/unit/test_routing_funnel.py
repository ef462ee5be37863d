"""Routing's funnel: periods, counts, conversions and speed-to-lead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schemas.events import LifecycleStage
from services.routing.domain import (
    Dimension,
    Granularity,
    Journey,
    funnel,
    percentile,
    period_of,
)

S = LifecycleStage
JST = ZoneInfo("Asia/Tokyo")
T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(("at", "granularity", "label"), [
    (datetime(2026, 11, 21, 3, 0, tzinfo=UTC), Granularity.DAY, "2026-11-21"),
    (datetime(2026, 11, 21, 3, 0, tzinfo=UTC), Granularity.WEEK, "2026-W47"),
    (datetime(2026, 11, 21, 3, 0, tzinfo=UTC), Granularity.MONTH, "2026-11"),
    (datetime(2026, 11, 21, 3, 0, tzinfo=UTC), Granularity.FISCAL_QUARTER, "FY2026-Q3"),
    (datetime(2027, 3, 31, 3, 0, tzinfo=UTC), Granularity.FISCAL_QUARTER, "FY2026-Q4"),
    (datetime(2026, 4, 1, 3, 0, tzinfo=UTC), Granularity.FISCAL_QUARTER, "FY2026-Q1"),
    # 15:30 UTC on 31 March is already 1 April in Tokyo: a new fiscal year.
    (datetime(2026, 3, 31, 15, 30, tzinfo=UTC), Granularity.FISCAL_QUARTER, "FY2026-Q1"),
    (datetime(2026, 3, 31, 15, 30, tzinfo=UTC), Granularity.MONTH, "2026-04"),
])
def test_periods_are_local_and_fiscal_years_start_in_april(at: datetime,
                                                           granularity: Granularity,
                                                           label: str) -> None:
    assert period_of(at, granularity, JST) == label


def journey(source: str, stages: dict[LifecycleStage, float], *, partner: str | None = None,
            contact_after: float | None = None, created: datetime = T0) -> Journey:
    """A lead created at ``created`` that entered each stage so many minutes later."""
    entered = {stage: created + timedelta(minutes=minutes) for stage, minutes in stages.items()}
    contact = created + timedelta(minutes=contact_after) if contact_after is not None else None
    return Journey(source=source, partner=partner, created_at=created, entered=entered,
                   first_contact_at=contact)


JOURNEYS = [
    journey("web", {}),
    journey("web", {S.MQL: 0, S.SAL: 30, S.SQL: 100, S.OPPORTUNITY: 200, S.WON: 900},
            contact_after=60),
    journey("web", {S.MQL: 0, S.SAL: 10, S.NURTURE: 20}),
    journey("partner", {S.MQL: 0, S.SAL: 90, S.SQL: 95}, partner="アポ代行株式会社",
            contact_after=120),
    journey("partner", {S.MQL: 5, S.DISQUALIFIED: 15}, partner="アポ代行株式会社",
            created=T0 + timedelta(days=30)),
]


def test_counts_conversions_and_speed_to_lead_by_source() -> None:
    rows, total = funnel(JOURNEYS, [Dimension.SOURCE], Granularity.MONTH, JST)
    assert [row.group for row in rows] == [{Dimension.SOURCE: "partner"},
                                           {Dimension.SOURCE: "web"}]
    web = rows[1]
    assert web.leads == 3
    assert dict(web.reached) == {S.LEAD: 3, S.MQL: 2, S.SAL: 2, S.SQL: 1, S.OPPORTUNITY: 1,
                                 S.WON: 1}
    assert dict(web.exited) == {S.NURTURE: 1, S.DISQUALIFIED: 0, S.LOST: 0}
    assert [(c.from_stage, c.to_stage, c.rate) for c in web.conversions] == [
        (S.LEAD, S.MQL, 2 / 3), (S.MQL, S.SAL, 1.0), (S.SAL, S.SQL, 0.5),
        (S.SQL, S.OPPORTUNITY, 1.0), (S.OPPORTUNITY, S.WON, 1.0)]
    assert (web.to_acceptance.leads, web.to_acceptance.p50_minutes,
            web.to_acceptance.p95_minutes) == (2, 10, 30)
    assert web.to_first_contact.leads == 1 and web.to_first_contact.p50_minutes == 60
    assert total.leads == 5 and total.reached[S.MQL] == 4
    assert total.to_acceptance.p95_minutes == 90


def test_groups_by_partner_and_period_and_reports_empty_stages_as_no_rate() -> None:
    rows, _ = funnel(JOURNEYS, [Dimension.PERIOD, Dimension.PARTNER], Granularity.MONTH, JST)
    assert [dict(row.group) for row in rows] == [
        {Dimension.PERIOD: "2026-11", Dimension.PARTNER: None},
        {Dimension.PERIOD: "2026-11", Dimension.PARTNER: "アポ代行株式会社"},
        {Dimension.PERIOD: "2026-12", Dimension.PARTNER: "アポ代行株式会社"},
    ]
    december = rows[2]
    assert december.reached[S.SAL] == 0
    assert [c.rate for c in december.conversions][2:] == [None, None, None]
    assert december.to_acceptance.p50_minutes is None


def test_nothing_gives_an_empty_total() -> None:
    rows, total = funnel([], [Dimension.PERIOD], Granularity.DAY, JST)
    assert rows == [] and total.leads == 0 and total.conversions[0].rate is None


@pytest.mark.parametrize(("values", "fraction", "expected"), [
    ([], 0.5, None), ([7.0], 0.95, 7.0), ([1.0, 2.0], 0.5, 1.0),
    ([float(v) for v in range(1, 101)], 0.95, 95.0), ([3.0, 1.0, 2.0], 0.5, 2.0),
])
def test_nearest_rank_percentile(values: list[float], fraction: float,
                                 expected: float | None) -> None:
    assert percentile(values, fraction) == expected
