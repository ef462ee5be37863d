"""Calibration on too few closed deals: the figures stay null and a warning says which
counts they would rest on, instead of an AUC of 0.0 or a lift of 1.0 from two deals."""

from __future__ import annotations

from schemas.events import Tier
from services.scoring.domain import MIN_CLOSED, DealOutcome, DealRecord, calibrate

WON, LOST = DealOutcome.WON, DealOutcome.LOST


def test_one_won_and_one_lost_deal_give_no_auc_or_lift_and_say_why() -> None:
    report = calibrate([DealRecord(40, Tier.C, WON), DealRecord(85, Tier.A, LOST)])
    assert (report.score_auc, report.tier_auc, report.tier_a_lift) == (None, None, None)
    assert report.warnings == (
        f"score_auc and tier_auc need at least {MIN_CLOSED} won and {MIN_CLOSED} lost "
        "deals; there are 1 won and 1 lost",
        f"tier_a_lift needs at least {MIN_CLOSED} won and {MIN_CLOSED} lost deals and "
        f"{MIN_CLOSED} closed tier A deals; there are 1 won, 1 lost and 1 closed tier A")


def test_enough_closed_deals_give_every_figure_without_warnings() -> None:
    deals = ([DealRecord(90, Tier.A, WON)] * 6 + [DealRecord(60, Tier.B, WON)] * 4
             + [DealRecord(85, Tier.A, LOST)] * 4 + [DealRecord(20, Tier.C, LOST)] * 6)
    report = calibrate(deals)
    assert report.warnings == ()
    assert report.score_auc is not None and report.tier_auc is not None
    assert report.tier_a_lift == (6 / 10) / (10 / 20)


def test_enough_deals_but_few_closed_in_tier_a_leave_only_the_lift_null() -> None:
    deals = ([DealRecord(90, Tier.A, WON)] * 2 + [DealRecord(60, Tier.B, WON)] * 8
             + [DealRecord(20, Tier.C, LOST)] * 10)
    report = calibrate(deals)
    assert report.score_auc == 1.0 and report.tier_a_lift is None
    assert report.warnings == (
        f"tier_a_lift needs at least {MIN_CLOSED} won and {MIN_CLOSED} lost deals and "
        f"{MIN_CLOSED} closed tier A deals; there are 10 won, 10 lost and 2 closed tier A",)
