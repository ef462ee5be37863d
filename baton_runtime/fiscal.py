"""Fiscal years and quarters, named as every service names them (no I/O).

A fiscal year is named after the calendar year it starts in: with April as its first
month (Japan's usual), FY2026 runs from April 2026 to March 2027 and FY2026-Q3 is
October to December 2026. Labels are written and read back only here.
"""

from __future__ import annotations

import re
from datetime import date

# The whole text, ASCII digits only: "FY2026\n" or other scripts' digits name no period.
_LABEL = re.compile(r"FY([0-9]{4})(?:-Q([1-4]))?")


def fiscal_year_of(day: date, start_month: int) -> int:
    """Return the fiscal year ``day`` belongs to, the year starting in ``start_month``."""
    return day.year if day.month >= start_month else day.year - 1


def year_label(fiscal_year: int) -> str:
    """Return the label of a fiscal year: ``FY2026``."""
    return f"FY{fiscal_year}"


def quarter_label(fiscal_year: int, quarter: int) -> str:
    """Return the label of a fiscal year's quarter (1..4): ``FY2026-Q3``."""
    # A label written must read back: parse_label knows only Q1..Q4.
    if not 1 <= quarter <= 4:
        raise ValueError(f"a fiscal year has quarters 1..4, not {quarter}")
    return f"{year_label(fiscal_year)}-Q{quarter}"


def parse_label(label: str) -> tuple[int, int | None] | None:
    """Return the fiscal year and quarter (None: the year) ``FYyyyy-Qn``/``FYyyyy`` names."""
    # None, not an error, for anything else (a month such as 2026-04 too): the caller tries
    # its own formats and names them all in its error.
    if (match := _LABEL.fullmatch(label)) is None:
        return None
    return int(match[1]), None if match[2] is None else int(match[2])


def fiscal_quarter_of(day: date, start_month: int) -> str:
    """Return the label of the fiscal quarter ``day`` falls in."""
    months_in = (day.month - start_month) % 12
    return quarter_label(fiscal_year_of(day, start_month), months_in // 3 + 1)
