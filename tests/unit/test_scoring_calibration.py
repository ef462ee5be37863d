"""Calibration: conversion by score band and tier, and how well they separate outcomes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import DealPhase, Tier
from services.scoring.domain import (
    DealOutcome,
    DealRecord,
    calibrate,
    outcome_of,
    score_bands,
    separation,
)

WON, LOST, OPEN, RECYCLED = (DealOutcome.WON, DealOutcome.LOST, DealOutcome.OPEN,
                             DealOutcome.RECYCLED)


def test_deals_are_counted_by_band_and_tier_with_win_rates_over_closed_deals() -> None:
    deals = [DealRecord(85, Tier.A, WON), DealRecord(90, Tier.A, WON),
             DealRecord(82, Tier.B, LOST), DealRecord(55, Tier.B, WON),
             DealRecord(52, Tier.B, LOST), DealRecord(30, Tier.C, LOST),
             DealRecord(31, Tier.C, OPEN), DealRecord(10, Tier.C, RECYCLED)]
    report = calibrate(deals, min_closed=1)  # the arithmetic; the minimum is tested apart
    bands = {bucket.label: bucket for bucket in report.by_band}
    assert list(bands) == ["0-19", "20-39", "40-59", "60-79", "80-100"]
    assert (bands["80-100"].deals, bands["80-100"].won, bands["80-100"].lost) == (3, 2, 1)
    assert bands["20-39"].win_rate == 0.0 and bands["20-39"].open == 1
    assert bands["0-19"].win_rate is None and bands["0-19"].recycled == 1
    assert bands["60-79"].deals == 0
    tiers = {bucket.label: bucket for bucket in report.by_tier}
    assert [tiers[t].win_rate for t in "ABC"] == [1.0, 1 / 3, 0.0]
    assert report.overall.win_rate == 0.5
    assert report.tier_a_lift == 2.0
    assert report.tier_auc is not None and report.score_auc is not None
    assert 0.5 < report.tier_auc <= report.score_auc <= 1


def test_separation_is_one_when_won_ranks_above_lost_zero_when_below_half_on_ties() -> None:
    assert separation([80, 90], [10, 20]) == 1.0
    assert separation([10], [80, 90]) == 0.0
    assert separation([50, 50], [50]) == 0.5
    assert separation([], [10]) is None and separation([10], []) is None


def test_bands_cover_zero_to_one_hundred_whatever_their_width() -> None:
    assert score_bands(30) == [(0, 29), (30, 59), (60, 89), (90, 100)]
    assert score_bands(50) == [(0, 49), (50, 100)]


def test_only_won_and_lost_phases_are_outcomes() -> None:
    assert [outcome_of(p) for p in DealPhase] == [OPEN] * 5 + [WON, LOST]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 100), min_size=1, max_size=30),
       st.lists(st.integers(0, 100), min_size=1, max_size=30))
def test_separation_is_a_probability_and_swapping_outcomes_mirrors_it(won: list[int],
                                                                       lost: list[int]) -> None:
    forward, backward = separation(won, lost), separation(lost, won)
    assert forward is not None and backward is not None
    assert 0 <= forward <= 1
    assert abs(forward + backward - 1) < 1e-9
