"""Routing's pure rules: the lifecycle state machine and when a lead becomes an MQL."""

from __future__ import annotations

from datetime import datetime, timedelta

from schemas.events import LifecycleStage, Tier, TouchpointType

S = LifecycleStage
ALLOWED: dict[LifecycleStage, frozenset[LifecycleStage]] = {
    S.LEAD: frozenset({S.MQL, S.NURTURE, S.DISQUALIFIED}),
    S.MQL: frozenset({S.SAL, S.NURTURE, S.DISQUALIFIED}),
    S.SAL: frozenset({S.SQL, S.NURTURE, S.DISQUALIFIED}),
    S.SQL: frozenset({S.OPPORTUNITY, S.NURTURE, S.DISQUALIFIED}),
    S.OPPORTUNITY: frozenset({S.WON, S.LOST, S.NURTURE}),
    S.NURTURE: frozenset({S.MQL, S.DISQUALIFIED}),
    S.LOST: frozenset({S.NURTURE}),
    S.WON: frozenset(),
    S.DISQUALIFIED: frozenset(),
}
FAST_LANE_TRIGGERS = frozenset({TouchpointType.INQUIRY_DEMO_REQUEST,
                                TouchpointType.INQUIRY_QUOTE_REQUEST})
INBOUND_TEAM = "sdr"


class IllegalTransition(ValueError):
    """A lifecycle move the state machine does not allow."""

    def __init__(self, current: LifecycleStage, target: LifecycleStage) -> None:
        allowed = ", ".join(sorted(s.value for s in ALLOWED[current])) or "none"
        super().__init__(f"a lead cannot move from {current.value} to {target.value} "
                         f"(allowed from {current.value}: {allowed})")
        self.current, self.target = current, target


def check_transition(current: LifecycleStage, target: LifecycleStage) -> None:
    """Return if ``current -> target`` is legal; raise IllegalTransition otherwise."""
    if target not in ALLOWED[current]:
        raise IllegalTransition(current, target)


def promotion_for(stage: LifecycleStage, tier: Tier) -> LifecycleStage | None:
    """Return MQL when a hot lead is still with marketing, else None."""
    if tier is Tier.A and stage in (S.LEAD, S.NURTURE):
        return S.MQL
    return None


def acceptance_due(trigger: TouchpointType | None, promoted_at: datetime,
                   accept_within: timedelta) -> datetime:
    """Return when an MQL must be accepted: 5 minutes for demo or quote requests."""
    if trigger in FAST_LANE_TRIGGERS:
        return promoted_at + timedelta(minutes=5)
    return promoted_at + accept_within
