"""Calibration over real PostgreSQL and a broker: too few closed deals leave the figures
null with the counts they rest on; an unknown model version is a 404 naming it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.events import DealPhase, DealPhaseChanged, TouchpointType
from tests.conftest import Infrastructure
from tests.integration.test_scoring_service import Scoring, scoring_service
from tests.support.clock import ManualClock
from tests.support.kafka import produce, wait_until

pytestmark = pytest.mark.integration
T = TouchpointType


@pytest.fixture
async def scoring(infrastructure: Infrastructure) -> AsyncIterator[Scoring]:
    async with scoring_service(infrastructure, ManualClock(datetime.now(UTC))) as service:
        yield service


async def test_one_won_and_one_lost_deal_leave_auc_and_lift_null_with_the_counts(
    scoring: Scoring
) -> None:
    won_lead, lost_lead = uuid.uuid4(), uuid.uuid4()
    await scoring.capture(won_lead, T.PAGE_VIEW_BLOG)
    await scoring.capture(lost_lead, T.INQUIRY_DEMO_REQUEST)
    for lead_id in (won_lead, lost_lead):
        await scoring.scored(lead_id, 1)
    version = (await scoring.score(won_lead))["model_version"]
    await produce(scoring.bootstrap, [
        event for lead_id, outcome in ((won_lead, DealPhase.WON), (lost_lead, DealPhase.LOST))
        for deal_id in [uuid.uuid4()] for event in (
            DealPhaseChanged(deal_id=deal_id, lead_id=lead_id, to_phase=DealPhase.P1,
                             occurred_at=scoring.clock.now, probability=10),
            DealPhaseChanged(deal_id=deal_id, lead_id=lead_id, to_phase=outcome,
                             from_phase=DealPhase.P1, occurred_at=scoring.clock.now,
                             probability=100 if outcome is DealPhase.WON else 0))])
    report: dict[str, Any] = {}

    async def both_closed() -> bool:
        nonlocal report
        report = (await scoring.api.get("/v1/calibration")).json()
        return bool(report["overall"]["won"] + report["overall"]["lost"] >= 2)

    await wait_until(both_closed, 30, "two closed deals in the calibration")
    by_version = await scoring.api.get("/v1/calibration", params={"model_version": version})
    unknown = await scoring.api.get("/v1/calibration", params={"model_version": "nope"})
    openapi = (await scoring.api.get("/openapi.json")).json()

    assert (report["score_auc"], report["tier_auc"], report["tier_a_lift"]) == (
        None, None, None)
    assert report["sample"] == {"won": 1, "lost": 1, "tier_a_closed": 1, "min_closed": 10}
    assert report["warnings"] and all("there are 1 won" in w for w in report["warnings"])
    assert by_version.status_code == 200 and by_version.json()["sample"]["won"] == 1
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["detail"]
    assert "404" in openapi["paths"]["/v1/calibration"]["get"]["responses"]
