"""Holds on deals over real PostgreSQL and a broker: a repeated PUT changes nothing."""

from __future__ import annotations

import uuid

import pytest

from schemas.events import DealPhaseChanged
from tests.conftest import Infrastructure
from tests.integration.test_pipeline_service import phase_changes, running
from tests.support.kafka import wait_until

pytestmark = pytest.mark.integration


async def test_putting_the_same_hold_again_records_and_announces_nothing_more(
    infrastructure: Infrastructure,
) -> None:
    # A client retrying its PUT (a timeout, a double click) asks for the hold it has: it
    # must not be placed a second time, nor its placing time moved.
    async with running(infrastructure, consume=False) as pipeline:
        api, clock = pipeline.api, pipeline.clock
        opened = await api.post("/v1/deals", json={
            "rep_id": "sato", "lead_id": str(uuid.uuid4()), "owner_id": "sato"})
        deal_id = opened.json()["deal_id"]
        hold = {"rep_id": "sato", "until": "2027-03-31", "reason": "先方の決算待ち"}
        first = await api.put(f"/v1/deals/{deal_id}/hold", json=hold)
        assert first.status_code == 200, first.text
        clock.advance(hours=1)
        again = await api.put(f"/v1/deals/{deal_id}/hold", json=hold)
        assert again.status_code == 200, again.text
        assert again.json()["hold"] == first.json()["hold"], "placed once, at the first PUT"
        clock.advance(hours=1)
        longer = await api.put(f"/v1/deals/{deal_id}/hold",
                               json={**hold, "until": "2027-04-30"})
        assert longer.status_code == 200, longer.text
        history = (await api.get(f"/v1/deals/{deal_id}/history")).json()
        await wait_until(pipeline.outbox_empty, 30, "the relay to publish")
        events = phase_changes(await pipeline.events(DealPhaseChanged), deal_id)

    assert [(h["action"], h["reason"]) for h in history] == [
        ("opened", "opened by hand"),
        ("held", "on hold until 2027-03-31: 先方の決算待ち"),
        ("held", "on hold until 2027-04-30: 先方の決算待ち")]
    assert [e.reason for e in events] == [
        "opened by hand", "on hold until 2027-03-31: 先方の決算待ち",
        "on hold until 2027-04-30: 先方の決算待ち"]
