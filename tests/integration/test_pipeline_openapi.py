"""Pipeline's OpenAPI document against the app itself: schemathesis, in process, real database.

Every generated request must get an answer the document lists (status and body), and
never a 5xx. Deals in several states and targets are seeded, and requests mostly name
them: their ids, owners, teams, and the configured lost reasons.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
import schemathesis

from baton_runtime.service import ServiceContext
from services.pipeline.api import CriteriaUpdate
from tests.integration.test_pipeline_service import promoted
from tests.support.openapi import CHECKS, InProcessService, KnownValues, generated

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PIPELINE = InProcessService.build("pipeline")
schema = PIPELINE.schema()
KNOWN = KnownValues()
KNOWN.install(schema)
OWNERS = ("rep-1", "rep-2")
TEAMS = ("enterprise", "smb")


def every_criterion() -> dict[str, Any]:
    """Return a criteria update that records every exit criterion of every phase."""
    return {name: True if field.annotation is bool else "記録済み"
            for name, field in CriteriaUpdate.model_fields.items()}


async def succeeded(client: httpx.AsyncClient, method: str, url: str, body: Any = None) -> Any:
    """Return the JSON of a seeding request's successful answer."""
    response = await client.request(method, url, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def seed(context: ServiceContext) -> None:
    """Open deals closing from a month ago on; move one to P3, win, lose and hold others,
    hand the last to field sales again (its lead qualified anew); set targets for everyone,
    a team and an owner."""
    today = context.clock().astimezone(context.settings.rules().timezone).date()
    async with PIPELINE.client() as client:
        deals = [await succeeded(client, "POST", "/v1/deals", {
            "rep_id": OWNERS[i % 2], "lead_id": str(uuid.uuid4()), "owner_id": OWNERS[i % 2],
            "team": TEAMS[i % 2], "company": f"株式会社サンプル{i}", "amount": 1_000_000 * (i + 1),
            # The first deal's close date is past due.
            "expected_close_date": str(today + timedelta(days=30 * i - 30)),
            "next_action": {"due": str(today + timedelta(days=7)), "text": "提案書を送る"}})
            for i in range(5)]
        advanced, won, lost, held, _ = (f"/v1/deals/{deal['deal_id']}" for deal in deals)
        await PIPELINE.handle(context, promoted(uuid.UUID(deals[-1]["lead_id"])).model_copy(
            update={"occurred_at": context.clock()}))
        kept = await succeeded(client, "GET", f"/v1/deals/{deals[-1]['deal_id']}")
        assert kept["handed_off_at"] is not None, kept
        rep = {"rep_id": OWNERS[0]}
        for url in (advanced, won):
            await succeeded(client, "PATCH", url, {**rep, "criteria": every_criterion()})
        await succeeded(client, "POST", f"{advanced}/advance", {**rep, "to_phase": "P3"})
        await succeeded(client, "POST", f"{won}/advance", {**rep, "to_phase": "P5"})
        await succeeded(client, "POST", f"{won}/win", {**rep, "note": "受注"})
        await succeeded(client, "POST", f"{lost}/lose",
                        {**rep, "reason": context.settings.lost_reasons[0]})
        await succeeded(client, "PUT", f"{held}/hold", {
            **rep, "until": str(today + timedelta(days=30)), "reason": "予算確定待ち"})
        year = (await succeeded(client, "GET", "/v1/forecast"))["fiscal_year"]
        periods = [f"FY{year}", f"FY{year}-Q3", f"{today:%Y-%m}"]
        for period, group in zip(periods, ({}, {"team": TEAMS[0]}, {"owner_id": OWNERS[0]}),
                                 strict=True):
            await succeeded(client, "PUT", "/v1/targets",
                            {"period": period, "amount": 50_000_000, **group})
        # The deal list's second page starts there.
        cursor = (await succeeded(client, "GET", "/v1/deals?limit=2"))["next_cursor"]
    KNOWN.add("deal_id", *(deal["deal_id"] for deal in deals))
    KNOWN.add("lead_id", *(deal["lead_id"] for deal in deals))
    KNOWN.add("owner_id", *OWNERS)
    KNOWN.add("rep_id", *OWNERS)
    KNOWN.add("team", *TEAMS)
    KNOWN.add("period", *periods)
    KNOWN.add("expected_close", *periods)
    KNOWN.add("closed", *periods)
    KNOWN.add("cursor", cursor)
    KNOWN.add("reason", *context.settings.lost_reasons)


context = PIPELINE.context_fixture(seed)


@schema.parametrize()
@generated(max_examples=30)
def test_every_answer_is_documented_and_none_is_a_server_error(
        case: schemathesis.Case[Any], context: ServiceContext) -> None:
    case.call_and_validate(checks=CHECKS)
