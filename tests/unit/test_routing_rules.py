"""Routing's lifecycle state machine: every legal and illegal move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product

import pytest

from schemas.events import LifecycleStage, Tier, TouchpointType
from services.routing.domain import (
    ALLOWED,
    IllegalTransition,
    acceptance_due,
    check_transition,
    promotion_for,
)

S = LifecycleStage
LEGAL = {
    (S.LEAD, S.MQL), (S.LEAD, S.NURTURE), (S.LEAD, S.DISQUALIFIED),
    (S.MQL, S.SAL), (S.MQL, S.NURTURE), (S.MQL, S.DISQUALIFIED),
    (S.SAL, S.SQL), (S.SAL, S.NURTURE), (S.SAL, S.DISQUALIFIED),
    (S.SQL, S.OPPORTUNITY), (S.SQL, S.NURTURE), (S.SQL, S.DISQUALIFIED),
    (S.OPPORTUNITY, S.WON), (S.OPPORTUNITY, S.LOST), (S.OPPORTUNITY, S.NURTURE),
    (S.NURTURE, S.MQL), (S.NURTURE, S.DISQUALIFIED),
    (S.LOST, S.NURTURE),
}


@pytest.mark.parametrize(("current", "target"), sorted(LEGAL))
def test_legal_moves_pass(current: LifecycleStage, target: LifecycleStage) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(("current", "target"),
                         sorted(set(product(S, S)) - LEGAL))
def test_illegal_moves_are_refused_with_a_clear_error(current: LifecycleStage,
                                                      target: LifecycleStage) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current.value} to {target.value}"):
        check_transition(current, target)


def test_the_table_covers_every_stage() -> None:
    assert set(ALLOWED) == set(S)


@pytest.mark.parametrize(("stage", "tier", "expected"), [
    (S.LEAD, Tier.A, S.MQL), (S.NURTURE, Tier.A, S.MQL), (S.LEAD, Tier.B, None),
    (S.MQL, Tier.A, None), (S.SAL, Tier.A, None), (S.DISQUALIFIED, Tier.A, None),
])
def test_only_hot_leads_with_marketing_become_mql(stage: LifecycleStage, tier: Tier,
                                                   expected: LifecycleStage | None) -> None:
    assert promotion_for(stage, tier) == expected


def test_demo_and_quote_requests_must_be_accepted_within_five_minutes() -> None:
    now = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    hour = timedelta(hours=1)
    assert acceptance_due(TouchpointType.INQUIRY_QUOTE_REQUEST, now, hour) == now + timedelta(
        minutes=5)
    assert acceptance_due(TouchpointType.PAGE_VIEW_PRICING, now, hour) == now + hour
