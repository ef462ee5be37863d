"""Fiscal years and quarters, named as every service names them (no I/O).

A fiscal year is named after the calendar year it starts in: with April as its first
month (Japan's usual), FY2026 runs from April 2026 to March 2027 and FY2026-Q3 is
October to December 2026.
"""

from __future__ import annotations

from datetime import date


def fiscal_year_of(day: date, start_month: int) -> int:
    """Return the fiscal year ``day`` belongs to, the year starting in ``start_month``."""
    return day.year if day.month >= start_month else day.year - 1


def quarter_label(fiscal_year: int, quarter: int) -> str:
    """Return the label of a fiscal year's quarter (1..4): ``FY2026-Q3``."""
    return f"FY{fiscal_year}-Q{quarter}"


def fiscal_quarter_of(day: date, start_month: int) -> str:
    """Return the label of the fiscal quarter ``day`` falls in."""
    months_in = (day.month - start_month) % 12
    return quarter_label(fiscal_year_of(day, start_month), months_in // 3 + 1)
