"""A clipped score's reasons over real PostgreSQL and a broker: lead.scored and the score
explanation both carry the line that makes the reasons add up to the score."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import Account, LeadProfile, TouchpointType
from tests.conftest import Infrastructure
from tests.integration.test_scoring_service import Scoring, scoring_service
from tests.support.clock import ManualClock

pytestmark = pytest.mark.integration
T = TouchpointType


@pytest.fixture
async def scoring(infrastructure: Infrastructure) -> AsyncIterator[Scoring]:
    async with scoring_service(infrastructure, ManualClock(datetime.now(UTC)),
                               scoring_reason_locale="en") as service:
        yield service


async def test_a_capped_and_a_floored_score_explain_the_clipping(scoring: Scoring) -> None:
    capped, floored = uuid.uuid4(), uuid.uuid4()
    # Manager +10, ICP industry +10 and band +10, quote +60, demo webinar +20: 110.
    for count, touchpoint in enumerate((T.INQUIRY_QUOTE_REQUEST, T.WEBINAR_PRODUCT_DEMO), 1):
        await scoring.capture(capped, touchpoint)
        await scoring.scored(capped, count)
        scoring.clock.now += timedelta(minutes=1)
    # A student (-30) alone at the account who opened an e-mail (+1): -29.
    student = LeadProfile(email="hanako@example.ac.jp", title="学生")
    await scoring.capture(floored, T.EMAIL_OPEN, profile=student, account=Account(
        account_key="domain:example.ac.jp", domain="example.ac.jp"))
    *_, at_cap = await scoring.scored(capped, 2)
    [at_floor] = await scoring.scored(floored, 1)
    explained_cap, explained_floor = await scoring.score(capped), await scoring.score(floored)

    assert (at_cap.score, at_cap.reasons[-1].code, at_cap.reasons[-1].label,
            at_cap.reasons[-1].points) == (100, "score.clipped", "score capped at 100", -10)
    assert (at_floor.score, at_floor.reasons[-1].code, at_floor.reasons[-1].label,
            at_floor.reasons[-1].points) == (0, "score.clipped", "score floored at 0", 29)
    for event, explained in ((at_cap, explained_cap), (at_floor, explained_floor)):
        assert sum(r.points for r in event.reasons) == event.score
        assert explained["reasons"] == [r.model_dump(mode="json") for r in event.reasons]
        assert sum(r["points"] for r in explained["reasons"]) == explained["score"]
