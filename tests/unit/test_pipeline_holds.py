"""Holds on deals: putting the hold a deal already has changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from services.pipeline.domain import DealConflict, InvalidChange, lose, open_deal, put_hold

NOW = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
TODAY = date(2026, 4, 1)
MAX_HOLD = timedelta(days=180)


def test_putting_the_hold_a_deal_has_is_no_change_and_any_other_hold_is_one() -> None:
    deal = open_deal(deal_id=uuid.uuid4(), lead_id=uuid.uuid4(), owner_id="sato", team=None,
                     company=None, now=NOW, reason="opened from SQL").deal
    placed = put_hold(deal, NOW, date(2026, 6, 30), "予算凍結", today=TODAY, max_hold=MAX_HOLD)
    assert placed is not None and placed.deal.hold is not None
    held, later = placed.deal, NOW + timedelta(days=1)
    assert put_hold(held, later, date(2026, 6, 30), "予算凍結", today=TODAY + timedelta(days=1),
                    max_hold=MAX_HOLD) is None
    for until, reason in ((date(2026, 7, 31), "予算凍結"), (date(2026, 6, 30), "決算待ち")):
        changed = put_hold(held, later, until, reason, today=TODAY, max_hold=MAX_HOLD)
        assert changed is not None and changed.deal.hold is not None
        assert (changed.deal.hold.until, changed.deal.hold.reason,
                changed.deal.hold.placed_at) == (until, reason, later)
    # An expired hold is no hold: the same end date again is in the past.
    with pytest.raises(InvalidChange):
        put_hold(held, later, date(2026, 6, 30), "予算凍結", today=date(2026, 7, 1),
                 max_hold=MAX_HOLD)
    closed = lose(held, later, "price", ("price",)).deal
    with pytest.raises(DealConflict):
        put_hold(closed, later, date(2026, 6, 30), "予算凍結", today=TODAY, max_hold=MAX_HOLD)
