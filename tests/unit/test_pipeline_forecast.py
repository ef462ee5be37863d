"""Pipeline's fiscal calendar and weighted forecast, and its settings."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton_runtime.settings import SettingsError, load_settings
from schemas.events import DealPhase
from services.pipeline.domain import (
    PROBABILITY,
    ClosedCount,
    Deal,
    FiscalCalendar,
    GroupForecast,
    GroupKey,
    InvalidFilter,
    Outcome,
    PeriodForecast,
    PeriodKind,
    Scope,
    Slice,
    Target,
    Unscheduled,
    deal_filter,
    forecast,
    win_rates,
)
from services.pipeline.settings import PipelineSettings

P = DealPhase
APRIL = FiscalCalendar(4)


def test_the_fiscal_year_starts_in_april_and_is_named_after_its_first_year() -> None:
    year = APRIL.year(2026)
    assert (year.label, year.starts, year.ends) == ("FY2026", date(2026, 4, 1), date(2027, 4, 1))
    assert [(q.label, q.starts, q.ends) for q in APRIL.quarters(2026)] == [
        ("FY2026-Q1", date(2026, 4, 1), date(2026, 7, 1)),
        ("FY2026-Q2", date(2026, 7, 1), date(2026, 10, 1)),
        ("FY2026-Q3", date(2026, 10, 1), date(2027, 1, 1)),
        ("FY2026-Q4", date(2027, 1, 1), date(2027, 4, 1)),
    ]
    assert [m.label for m in APRIL.months(2026)][::11] == ["2026-04", "2027-03"]
    assert APRIL.fiscal_year_of(date(2027, 3, 31)) == 2026
    assert APRIL.fiscal_year_of(date(2027, 4, 1)) == 2027


def test_a_january_fiscal_year_is_the_calendar_year() -> None:
    january = FiscalCalendar(1)
    assert (january.year(2026).starts, january.year(2026).ends) == (date(2026, 1, 1),
                                                                    date(2027, 1, 1))
    assert january.quarters(2026)[3].starts == date(2026, 10, 1)


@given(start_month=st.integers(min_value=1, max_value=12),
       day=st.dates(min_value=date(2001, 1, 1), max_value=date(2098, 12, 31)))
def test_every_day_is_in_exactly_one_month_and_quarter_of_its_fiscal_year(
        start_month: int, day: date) -> None:
    calendar = FiscalCalendar(start_month)
    fiscal_year = calendar.fiscal_year_of(day)
    assert day in calendar.year(fiscal_year)
    assert sum(day in m for m in calendar.months(fiscal_year)) == 1
    assert sum(day in q for q in calendar.quarters(fiscal_year)) == 1
    for period in calendar.periods(fiscal_year):
        assert calendar.period(period.label) == period, "labels name their period"


@pytest.mark.parametrize("label", ["2026-13", "FY2026-Q5", "2026/04", "Q1", "",
                                   "2026-04\n", "FY2026\n", "\u0662\u0660\u0662\u0666-04"])
def test_a_bad_period_label_is_refused_with_the_formats(label: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM, FYyyyy-Qn or FYyyyy"):
        APRIL.period(label)


def group_of(groups: list[GroupForecast], group: GroupKey) -> GroupForecast:
    """Return one group's forecast."""
    [found] = [g for g in groups if (g.scope, g.name) == (group.scope, group.name)]
    return found


def period(groups: list[GroupForecast], group: GroupKey, label: str) -> PeriodForecast:
    """Return one period of one group."""
    [result] = [p for p in group_of(groups, group).periods if p.period == label]
    return result


ALL = GroupKey(Scope.ALL)
SATO = GroupKey(Scope.OWNER, "sato")
SUZUKI = GroupKey(Scope.OWNER, "suzuki")
EAST = GroupKey(Scope.TEAM, "east")
OPEN = [
    Slice(date(2026, 4, 1), "sato", "east", P.P1, 10_000_000, 2),   # weighted 1,000,000
    Slice(date(2026, 5, 1), "sato", "east", P.P4, 5_000_000, 1),    # weighted 4,000,000
    Slice(date(2026, 6, 1), "suzuki", "east", P.P5, 3_000_000, 1),  # weighted 2,700,000
    Slice(date(2026, 10, 1), "suzuki", None, P.P2, 1_000_001, 1),   # weighted   300,000.3
]
WON = [Slice(date(2026, 5, 1), "sato", "east", P.WON, 2_000_000, 1)]
CLOSED = [ClosedCount("sato", "east", won=1, lost=3), ClosedCount("suzuki", None, won=1, lost=0)]


def test_forecast_sums_weighted_unweighted_commit_and_won_by_month_and_quarter() -> None:
    groups = forecast(fiscal_year=2026, calendar=APRIL, open_slices=OPEN, won_slices=WON,
                      closed=CLOSED, targets=[])
    q1 = period(groups, ALL, "FY2026-Q1")
    assert (q1.kind, q1.deals, q1.pipeline, q1.weighted, q1.commit, q1.won) == (
        PeriodKind.QUARTER, 4, 18_000_000, 7_700_000, 8_000_000, 2_000_000)
    may = period(groups, ALL, "2026-05")
    assert (may.pipeline, may.weighted, may.commit, may.won) == (5_000_000, 4_000_000,
                                                                 5_000_000, 2_000_000)
    assert period(groups, ALL, "FY2026-Q3").weighted == 300_000, "rounded once, at the end"
    year = period(groups, ALL, "FY2026")
    assert (year.pipeline, year.deals) == (19_000_001, 5)
    assert (q1.target, q1.coverage, q1.needed_pipeline) == (None, None, None)


def test_a_periods_forecast_is_what_was_won_plus_the_open_pipeline_weighted_by_phase() -> None:
    # Won deals count at the phase table's 100 %, in the period they were won in.
    won_in_july = Slice(date(2026, 7, 1), "suzuki", None, P.WON, 4_000_000, 1)
    groups = forecast(fiscal_year=2026, calendar=APRIL, open_slices=OPEN,
                      won_slices=[*WON, won_in_july], closed=CLOSED, targets=[])
    numbers = {label: (found.won, found.weighted, found.forecast) for label in (
        "2026-04", "2026-05", "2026-07", "FY2026-Q1", "FY2026-Q3", "FY2026")
        for found in [period(groups, ALL, label)]}
    assert numbers == {
        "2026-04": (0, 1_000_000, 1_000_000),
        "2026-05": (2_000_000, 4_000_000, 6_000_000),
        "2026-07": (4_000_000, 0, 4_000_000),
        "FY2026-Q1": (2_000_000, 7_700_000, 9_700_000),
        "FY2026-Q3": (0, 300_000, 300_000),
        "FY2026": (6_000_000, 8_000_000, 14_000_000),
    }
    assert period(groups, SUZUKI, "FY2026-Q2").forecast == 4_000_000, "per group too"


def test_forecast_has_a_group_per_owner_and_per_team() -> None:
    groups = forecast(fiscal_year=2026, calendar=APRIL, open_slices=OPEN, won_slices=WON,
                      closed=CLOSED, targets=[])
    assert [(g.scope, g.name) for g in groups] == [
        (Scope.ALL, None), (Scope.TEAM, "east"), (Scope.OWNER, "sato"),
        (Scope.OWNER, "suzuki")]
    assert period(groups, SATO, "FY2026-Q1").pipeline == 15_000_000
    assert period(groups, SUZUKI, "FY2026-Q3").pipeline == 1_000_001
    assert period(groups, EAST, "FY2026-Q3").pipeline == 0, "suzuki's teamless deal"
    only = forecast(fiscal_year=2026, calendar=APRIL, open_slices=OPEN, won_slices=WON,
                    closed=CLOSED, targets=[], only=SUZUKI)
    assert [(g.scope, g.name) for g in only] == [(Scope.OWNER, "suzuki")]


def test_win_rates_are_observed_per_group() -> None:
    assert win_rates(CLOSED) == {ALL: 2 / 5, SATO: 1 / 4, EAST: 1 / 4, SUZUKI: 1.0}


def test_coverage_and_pipeline_needed_at_the_observed_win_rate() -> None:
    targets = [Target("FY2026-Q1", SATO, 12_000_000), Target("FY2026-Q1", ALL, 30_000_000)]
    groups = forecast(fiscal_year=2026, calendar=APRIL, open_slices=OPEN, won_slices=WON,
                      closed=CLOSED, targets=targets)
    sato = period(groups, SATO, "FY2026-Q1")
    # 10,000,000 still to win at a 25% win rate needs 40,000,000 of pipeline; 15,000,000 exist.
    assert (sato.target, sato.coverage, sato.needed_pipeline) == (12_000_000, 1.5, 25_000_000)
    everyone = period(groups, ALL, "FY2026-Q1")
    # 28,000,000 to win at 40% needs 70,000,000; 18,000,000 exist.
    assert (everyone.coverage, everyone.needed_pipeline) == (round(18 / 28, 3), 52_000_000)


def test_a_met_target_needs_no_more_pipeline() -> None:
    groups = forecast(fiscal_year=2026, calendar=APRIL, open_slices=OPEN, won_slices=WON,
                      closed=CLOSED, targets=[Target("2026-05", SATO, 1_000_000)])
    may = period(groups, SATO, "2026-05")
    assert (may.target, may.coverage, may.needed_pipeline) == (1_000_000, None, 0)


def test_a_group_without_closed_deals_uses_everyones_win_rate() -> None:
    groups = forecast(fiscal_year=2026, calendar=APRIL, open_slices=OPEN, won_slices=[],
                      closed=[ClosedCount("sato", None, won=1, lost=1)],
                      targets=[Target("FY2026-Q1", SUZUKI, 4_000_000)])
    [suzuki] = [g for g in groups if g.name == "suzuki"]
    assert suzuki.win_rate == 0.5
    assert period(groups, SUZUKI, "FY2026-Q1").needed_pipeline == 8_000_000 - 3_000_000


def test_without_any_closed_deal_the_need_is_unknown() -> None:
    groups = forecast(fiscal_year=2026, calendar=APRIL, open_slices=OPEN, won_slices=[],
                      closed=[], targets=[Target("FY2026-Q1", ALL, 1)])
    assert period(groups, ALL, "FY2026-Q1").needed_pipeline is None


def test_a_met_target_needs_nothing_even_without_a_win_rate() -> None:
    for closed in ([], [ClosedCount("sato", None, won=0, lost=3)]):  # no rate, a rate of 0
        groups = forecast(fiscal_year=2026, calendar=APRIL, open_slices=OPEN,
                          won_slices=WON, closed=closed,
                          targets=[Target("2026-05", SATO, 1_000_000), Target("2026-06", ALL, 0)])
        assert period(groups, SATO, "2026-05").needed_pipeline == 0
        assert period(groups, ALL, "2026-06").needed_pipeline == 0


MONTHS_OF_Q1 = [Target("2026-04", ALL, 1_000), Target("2026-05", ALL, 2_000),
               Target("2026-06", ALL, 3_000)]
QUARTERS = [Target(f"FY2026-Q{n}", ALL, n * 10_000) for n in (1, 2, 3, 4)]


@pytest.mark.parametrize(("targets", "label", "expected"), [
    (MONTHS_OF_Q1, "FY2026-Q1", (6_000, None, ())),
    (MONTHS_OF_Q1[:2], "FY2026-Q1", (None, 3_000, ("2026-06",))),
    ([*MONTHS_OF_Q1[:2], Target("FY2026-Q1", ALL, 10_000)], "FY2026-Q1", (10_000, None, ())),
    (QUARTERS, "FY2026", (100_000, None, ())),
    (QUARTERS[:1], "FY2026", (None, 10_000, ("FY2026-Q2", "FY2026-Q3", "FY2026-Q4"))),
    ([*MONTHS_OF_Q1[:2], *QUARTERS[1:]], "FY2026", (None, 93_000, ("FY2026-Q1",))),
    ([*MONTHS_OF_Q1, *QUARTERS[1:]], "FY2026", (96_000, None, ())),
    ([*QUARTERS[:1], Target("FY2026", ALL, 50_000)], "FY2026", (50_000, None, ())),
    (QUARTERS[:1], "2026-04", (None, None, ())),
    ([], "FY2026", (None, None, ())),
], ids=["three months make the quarter", "two months make no quarter",
        "the quarter's own target wins", "four quarters make the year",
        "one quarter makes no year", "a partial quarter makes no year",
        "months complete a quarter of the year", "the year's own target wins",
        "no target splits down", "nothing set"])
def test_a_period_without_its_own_target_sums_its_parts_only_when_every_part_has_one(
        targets: list[Target], label: str,
        expected: tuple[int | None, int | None, tuple[str, ...]]) -> None:
    groups = forecast(fiscal_year=2026, calendar=APRIL, open_slices=OPEN, won_slices=WON,
                      closed=CLOSED, targets=targets)
    found = period(groups, ALL, label)
    assert (found.target, found.partial_target, found.periods_without_target) == expected
    if found.target is None:
        assert (found.coverage, found.needed_pipeline) == (None, None), "no target, no gap"


def test_deals_outside_the_fiscal_year_are_left_out() -> None:
    outside = [Slice(date(2026, 3, 1), "sato", None, P.P3, 1_000, 1),
               Slice(date(2027, 4, 1), "sato", None, P.P3, 1_000, 1)]
    groups = forecast(fiscal_year=2026, calendar=APRIL, open_slices=outside, won_slices=[],
                      closed=[], targets=[])
    assert period(groups, ALL, "FY2026").pipeline == 0


def test_open_deals_without_an_expected_close_date_are_counted_apart_not_dropped() -> None:
    undated = [Slice(None, "sato", "east", P.P4, 7_000_000, 2),
               Slice(None, "suzuki", None, P.P1, 1_000_000, 1),
               Slice(None, "tanaka", None, P.P2, 0, 1)]  # no amount entered yet
    groups = forecast(fiscal_year=2026, calendar=APRIL, open_slices=[*OPEN, *undated],
                      won_slices=WON, closed=CLOSED, targets=[])
    assert group_of(groups, ALL).unscheduled == Unscheduled(
        deals=4, pipeline=8_000_000, weighted=5_700_000, commit=7_000_000)
    assert group_of(groups, SATO).unscheduled == Unscheduled(2, 7_000_000, 5_600_000,
                                                             7_000_000)
    assert group_of(groups, EAST).unscheduled == group_of(groups, SATO).unscheduled
    assert group_of(groups, SUZUKI).unscheduled == Unscheduled(1, 1_000_000, 100_000, 0)
    assert group_of(groups, GroupKey(Scope.OWNER, "tanaka")).unscheduled == Unscheduled(
        1, 0, 0, 0), "an owner with only undated deals has a group"
    year = period(groups, ALL, "FY2026")
    assert (year.deals, year.pipeline) == (5, 19_000_001), "in no period's numbers"
    assert group_of(forecast(fiscal_year=2026, calendar=APRIL, open_slices=OPEN,
                             won_slices=WON, closed=CLOSED, targets=[]),
                    ALL).unscheduled == Unscheduled(0, 0, 0, 0)


TOKYO = ZoneInfo("Asia/Tokyo")


def closed_deal(outcome: Outcome | None, closed_at: datetime | None,
                expected_close_date: date | None) -> Deal:
    """Return a deal closed with ``outcome`` at ``closed_at`` (open if None)."""
    phase = P.WON if outcome is Outcome.WON else P.LOST if outcome is Outcome.LOST else P.P3
    opened = datetime(2026, 10, 1, tzinfo=UTC)
    return Deal(deal_id=uuid.uuid4(), lead_id=uuid.uuid4(), phase=phase, owner_id="sato",
                team=None, company="株式会社サンプル", opened_at=opened,
                phase_changed_at=closed_at or opened, expected_close_date=expected_close_date,
                closed_at=closed_at, outcome=outcome)


def test_a_period_of_closing_is_its_days_in_the_pipelines_time_zone() -> None:
    december = APRIL.period("2026-12").in_zone(TOKYO)
    assert (december.starts, december.ends) == (
        datetime(2026, 11, 30, 15, tzinfo=UTC), datetime(2026, 12, 31, 15, tzinfo=UTC))
    # Won at 00:30 on 1 December in Tokyo (still November in UTC), expected in January.
    won = closed_deal(Outcome.WON, datetime(2026, 11, 30, 15, 30, tzinfo=UTC), date(2027, 1, 5))
    assert deal_filter(closed=december).keeps(won)
    assert not deal_filter(closed=APRIL.period("2026-11").in_zone(TOKYO)).keeps(won)
    assert deal_filter(closing=APRIL.period("2027-01")).keeps(won), "expected close: January"
    assert not deal_filter(closed=december).keeps(closed_deal(None, None, date(2026, 12, 5)))
    lost = closed_deal(Outcome.LOST, datetime(2026, 12, 1, tzinfo=UTC), None)
    assert deal_filter(closed=december).keeps(lost)
    assert not deal_filter(closed=december, outcomes=[Outcome.WON]).keeps(lost)


def test_deals_without_an_expected_close_date_are_listed_apart() -> None:
    undated, dated = closed_deal(None, None, None), closed_deal(None, None, date(2026, 12, 5))
    won_undated = closed_deal(Outcome.WON, datetime(2026, 12, 1, tzinfo=UTC), None)
    without = deal_filter(is_open=True, has_expected_close=False)
    assert [without.keeps(d) for d in (undated, dated, won_undated)] == [True, False, False]
    assert [deal_filter(has_expected_close=True).keeps(d) for d in (undated, dated)] == [
        False, True]
    assert deal_filter(has_expected_close=False).keeps(won_undated)


def test_a_period_of_expected_close_for_deals_without_one_is_refused_naming_it() -> None:
    with pytest.raises(InvalidFilter, match="have no expected close date") as refused:
        deal_filter(has_expected_close=False, closing=APRIL.period("2026-12"))
    assert refused.value.field == "has_expected_close"
    assert deal_filter(has_expected_close=True, closing=APRIL.period("2026-12")).closing


def test_a_closed_period_with_open_deals_only_is_refused_naming_it() -> None:
    with pytest.raises(InvalidFilter, match="open deals have not closed") as refused:
        deal_filter(is_open=True, closed=APRIL.period("2026-12").in_zone(TOKYO))
    assert refused.value.field == "closed"


# --- settings -----------------------------------------------------------------------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("BATON_LOST_REASONS", "BATON_PIPELINE_TIMEZONE",
                 "BATON_FISCAL_YEAR_START_MONTH", "BATON_ZOMBIE_NO_PHASE_CHANGE_DAYS",
                 "BATON_PHASE_PROBABILITIES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATON_DATABASE_URL", "postgresql://u@localhost/baton")
    monkeypatch.setenv("BATON_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    return monkeypatch


def test_rules_come_from_the_variables(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("BATON_LOST_REASONS", "価格, 競合 ,時期")
    environment.setenv("BATON_FISCAL_YEAR_START_MONTH", "1")
    environment.setenv("BATON_ZOMBIE_NO_PHASE_CHANGE_DAYS", "45")
    rules = load_settings(PipelineSettings).rules()
    assert rules.lost_reasons == ("価格", "競合", "時期")
    assert rules.fiscal.start_month == 1
    assert rules.zombie_no_phase_change == timedelta(days=45)
    assert rules.zombie_no_next_action == timedelta(days=60)
    assert rules.probabilities == PROBABILITY, "the design's, by default"


@pytest.mark.parametrize(("value", "said"), [
    ("P1=10,P2=thirty,P3=60,P4=80,P5=90", "'P2=thirty': write each phase as P1=10"),
    ("P1=10,P1=20,P2=30,P3=60,P4=80,P5=90", "P1 is given twice"),
    ("P1=10,P2=30,P3=60,P4=80,P5=90,P1=95", "P1 is given twice"),
])
def test_a_bad_phase_probability_is_named(environment: pytest.MonkeyPatch, value: str,
                                          said: str) -> None:
    environment.setenv("BATON_PHASE_PROBABILITIES", value)
    with pytest.raises(SettingsError, match=said):
        load_settings(PipelineSettings)


def test_phase_probabilities_come_from_the_variable_and_weight_the_forecast(
        environment: pytest.MonkeyPatch) -> None:
    environment.setenv("BATON_PHASE_PROBABILITIES", "P1=5, p2=20,P3 = 50,P4=70,P5=95")
    rules = load_settings(PipelineSettings).rules()
    assert rules.probabilities == {P.P1: 5, P.P2: 20, P.P3: 50, P.P4: 70, P.P5: 95,
                                   P.WON: 100, P.LOST: 0}
    groups = forecast(fiscal_year=2026, calendar=APRIL, open_slices=OPEN, won_slices=[],
                      closed=[], targets=[], probabilities=rules.probabilities)
    # 10,000,000 in P1 at 5 %, 5,000,000 in P4 at 70 %, 3,000,000 in P5 at 95 %.
    assert period(groups, ALL, "FY2026-Q1").weighted == 500_000 + 3_500_000 + 2_850_000


@pytest.mark.parametrize(("variable", "value"), [
    ("BATON_LOST_REASONS", "price,price"), ("BATON_LOST_REASONS", " , "),
    ("BATON_PIPELINE_TIMEZONE", "Mars/Olympus"), ("BATON_FISCAL_YEAR_START_MONTH", "13"),
    ("BATON_ZOMBIE_NO_PHASE_CHANGE_DAYS", "0"),
    ("BATON_PHASE_PROBABILITIES", "P1=10,P2=30,P3=60,P4=80"),  # P5 left out
    ("BATON_PHASE_PROBABILITIES", "P1=10,P2=30,P3=60,P4=80,P5=90,WON=100"),
    ("BATON_PHASE_PROBABILITIES", "P1=10,P2=5,P3=60,P4=80,P5=90"),  # lower later
    ("BATON_PHASE_PROBABILITIES", "P1=10,P2=30,P3=60,P4=80,P5=101"),
    ("BATON_PHASE_PROBABILITIES", "P1:10"), ("BATON_PHASE_PROBABILITIES", "P1=ten"),
    ("BATON_PHASE_PROBABILITIES", "P1=10,P1=20,P2=30,P3=60,P4=80,P5=90"),
])
def test_a_bad_rule_is_named_at_start_up(environment: pytest.MonkeyPatch, variable: str,
                                         value: str) -> None:
    environment.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings(PipelineSettings)
