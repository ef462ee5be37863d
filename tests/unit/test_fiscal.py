"""Fiscal years and quarters as every service names them, and pipeline's calendar agreeing."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton_runtime.fiscal import (
    fiscal_quarter_of,
    fiscal_year_of,
    parse_label,
    quarter_label,
    year_label,
)
from services.pipeline.domain import FiscalCalendar


@pytest.mark.parametrize(("day", "fiscal_year", "quarter"), [
    (date(2026, 4, 1), 2026, "FY2026-Q1"),
    (date(2026, 6, 30), 2026, "FY2026-Q1"),
    (date(2026, 7, 1), 2026, "FY2026-Q2"),
    (date(2026, 11, 21), 2026, "FY2026-Q3"),
    (date(2027, 1, 1), 2026, "FY2026-Q4"),
    (date(2027, 3, 31), 2026, "FY2026-Q4"),
    (date(2026, 3, 31), 2025, "FY2025-Q4"),
])
def test_an_april_fiscal_year_is_named_after_the_year_it_starts_in(
        day: date, fiscal_year: int, quarter: str) -> None:
    assert fiscal_year_of(day, 4) == fiscal_year
    assert fiscal_quarter_of(day, 4) == quarter


@pytest.mark.parametrize(("day", "quarter"), [
    (date(2026, 1, 1), "FY2026-Q1"),
    (date(2026, 3, 31), "FY2026-Q1"),
    (date(2026, 4, 1), "FY2026-Q2"),
    (date(2026, 12, 31), "FY2026-Q4"),
])
def test_a_january_fiscal_year_is_the_calendar_year(day: date, quarter: str) -> None:
    assert fiscal_year_of(day, 1) == day.year
    assert fiscal_quarter_of(day, 1) == quarter


@pytest.mark.parametrize(("day", "fiscal_year", "quarter"), [
    (date(2026, 12, 1), 2026, "FY2026-Q1"),
    (date(2027, 2, 28), 2026, "FY2026-Q1"),
    (date(2027, 3, 1), 2026, "FY2026-Q2"),
    (date(2027, 11, 30), 2026, "FY2026-Q4"),
    (date(2026, 11, 30), 2025, "FY2025-Q4"),
])
def test_a_december_fiscal_year_is_named_after_its_one_december(
        day: date, fiscal_year: int, quarter: str) -> None:
    assert fiscal_year_of(day, 12) == fiscal_year
    assert fiscal_quarter_of(day, 12) == quarter


def test_labels_are_written_and_read_back() -> None:
    assert (year_label(2026), quarter_label(2026, 3)) == ("FY2026", "FY2026-Q3")
    assert parse_label("FY2026-Q3") == (2026, 3)
    assert parse_label("FY2026") == (2026, None), "None: the whole year"


@pytest.mark.parametrize("quarter", [0, 5, -1])
def test_a_year_has_only_four_quarters(quarter: int) -> None:
    with pytest.raises(ValueError, match=r"quarters 1\.\.4"):
        quarter_label(2026, quarter)


@pytest.mark.parametrize("label", ["2026-04", "FY2026-Q5", "FY2026-Q0", "FY26", "fy2026",
                                   "FY2026-q1", "FY2026Q1", " FY2026", "FY2026-Q1-Q2", "",
                                   "FY2026\n", "FY2026-Q1\n", "FY\u0662\u0660\u0662\u0666"])
def test_anything_else_is_not_a_fiscal_label(label: str) -> None:
    assert parse_label(label) is None


@given(fiscal_year=st.integers(min_value=1000, max_value=9999),
       quarter=st.integers(min_value=1, max_value=4))
def test_every_label_reads_back_as_what_it_names(fiscal_year: int, quarter: int) -> None:
    assert parse_label(quarter_label(fiscal_year, quarter)) == (fiscal_year, quarter)
    assert parse_label(year_label(fiscal_year)) == (fiscal_year, None)


# Routing's funnel labels a day with fiscal_quarter_of and pipeline's forecast sums the same
# day into a FiscalCalendar quarter: a target set on a funnel's quarter must cover its days.
# The quarters searched are those of the years either side, not fiscal_year_of's answer, so
# a wrong year is caught too. The dates leave room for those years' periods (date has 1..9999).
@given(start_month=st.integers(min_value=1, max_value=12),
       day=st.dates(min_value=date(2, 1, 1), max_value=date(9997, 12, 31)))
def test_routings_quarter_label_is_the_pipeline_quarter_holding_the_day(
        start_month: int, day: date) -> None:
    calendar = FiscalCalendar(start_month)
    holding = [quarter for fiscal_year in (day.year - 1, day.year, day.year + 1)
               for quarter in calendar.quarters(fiscal_year) if day in quarter]
    assert [quarter.label for quarter in holding] == [fiscal_quarter_of(day, start_month)]
