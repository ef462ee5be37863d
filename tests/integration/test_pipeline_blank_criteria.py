"""Blank exit criteria over real PostgreSQL: a PATCH with blank text criteria is refused
with a 422 naming each field and changes nothing; blanks stored before read as not entered."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update

from services.pipeline import store
from tests.conftest import Infrastructure
from tests.integration.test_pipeline_service import running

pytestmark = pytest.mark.integration


async def test_blank_text_criteria_are_refused_naming_each_field_and_change_nothing(
    infrastructure: Infrastructure,
) -> None:
    async with running(infrastructure, consume=False) as pipeline:
        api = pipeline.api
        opened = await api.post("/v1/deals", json={
            "rep_id": "sato", "lead_id": str(uuid.uuid4()), "owner_id": "sato"})
        deal_id = opened.json()["deal_id"]
        before = (await api.get(f"/v1/deals/{deal_id}")).json()
        blank = await api.patch(f"/v1/deals/{deal_id}", json={
            "rep_id": "sato",
            # A zero-width space and a byte-order mark come with text pasted from elsewhere.
            "criteria": {"business_issue": " ", "problem": "", "solution": "\u3000",
                         "approval_route": "\u200b", "benefit": "\ufeff 半日に短縮",
                         "problem_agreed": True}})
        after = (await api.get(f"/v1/deals/{deal_id}")).json()
        history = (await api.get(f"/v1/deals/{deal_id}/history")).json()

    assert blank.status_code == 422, blank.text
    errors = blank.json()["detail"]
    assert [e["loc"] for e in errors] == [["body", "criteria", name]
                                          for name in ("business_issue", "problem", "solution",
                                                       "approval_route")]
    assert all("must not be blank" in e["msg"] for e in errors)
    assert after == before, "nothing changed"
    assert [h["action"] for h in history] == ["opened"]


async def test_blank_criteria_stored_before_show_as_not_entered_and_are_not_logged(
    infrastructure: Infrastructure,
) -> None:
    async with running(infrastructure, consume=False) as pipeline:
        api = pipeline.api
        opened = await api.post("/v1/deals", json={
            "rep_id": "sato", "lead_id": str(uuid.uuid4()), "owner_id": "sato"})
        deal_id = opened.json()["deal_id"]
        # As a deal updated before blank text was refused holds it.
        async with pipeline.engine.begin() as connection:
            await connection.execute(update(store.deals).where(
                store.deals.c.deal_id == uuid.UUID(deal_id)).values(criteria={
                    "problem_agreed": True, "business_issue": " ", "problem": ""}))
        advanced = await api.post(f"/v1/deals/{deal_id}/advance", json={"rep_id": "sato"})
        assert advanced.status_code == 200, advanced.text
        shown = (await api.get(f"/v1/deals/{deal_id}")).json()
        changed = await api.patch(f"/v1/deals/{deal_id}", json={
            "rep_id": "sato", "criteria": {"problem": "棚卸に3日"}})
        history = (await api.get(f"/v1/deals/{deal_id}/history")).json()

    assert (shown["criteria"]["business_issue"], shown["criteria"]["problem"]) == (None, None)
    assert {m["field"] for m in shown["missing_to_advance"]} >= {"business_issue", "problem"}
    assert changed.status_code == 200, changed.text
    assert history[-1]["reason"] == "criteria problem"
