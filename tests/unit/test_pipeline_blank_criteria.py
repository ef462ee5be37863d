"""Blank exit criteria: text of nothing but blanks is not a criterion entered, so an update
refuses it (as it refuses a blank hold reason) and history never records it as entered."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from services.pipeline.domain import Deal, ExitCriteria, InvalidChange, open_deal, update

OPENED = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)


def new_deal() -> Deal:
    """Return a fresh P1 deal."""
    return open_deal(deal_id=uuid.uuid4(), lead_id=uuid.uuid4(), owner_id="sato",
                     team="field-east", company="株式会社サンプル", now=OPENED,
                     reason="opened by hand").deal


@pytest.mark.parametrize("blank", ["", " ", "\u3000", " \t\n", "\u200b", "\ufeff\u3000"])
def test_an_update_refuses_a_blank_text_criterion_naming_it(blank: str) -> None:
    deal = new_deal()
    with pytest.raises(InvalidChange, match="must not be blank") as refused:
        update(deal, OPENED, amount=None, expected_close_date=None, next_action=None,
               criteria=replace(deal.criteria, business_issue=blank, problem="棚卸に3日"))
    assert refused.value.field == "criteria.business_issue"


def test_an_update_records_only_the_criteria_that_really_changed() -> None:
    deal = replace(new_deal(), criteria=ExitCriteria(business_issue="在庫の属人化"))
    changed = update(deal, OPENED, amount=None, expected_close_date=None, next_action=None,
                     criteria=replace(deal.criteria, problem="棚卸に3日", solution=None))
    assert changed is not None
    assert changed.change.reason == "criteria problem"


def test_blank_text_stored_before_is_read_back_as_not_entered() -> None:
    # Rows written before blanks were refused: they must not show as entered anywhere.
    criteria = ExitCriteria.from_dict({"business_issue": " \u200b", "problem": "\u3000",
                                       "solution": "在庫SaaS", "problem_agreed": True})
    assert (criteria.business_issue, criteria.problem, criteria.solution) == (
        None, None, "在庫SaaS")
    assert criteria.problem_agreed is True
