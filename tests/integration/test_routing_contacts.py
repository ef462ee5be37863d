"""Routing over real PostgreSQL: the contacts reps log are shown on their lead."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.integration.test_routing_api import act, state
from tests.integration.test_routing_harness import Routing, lead_scored, running_routing
from tests.support.infrastructure import PostgresServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def routing(postgres: PostgresServer) -> AsyncIterator[Routing]:
    async with running_routing(await postgres.create_database()) as service:
        yield service


def shown(contacts: list[dict[str, Any]]) -> list[tuple[str, str, datetime, str | None,
                                                          datetime]]:
    """Return the contacts as (rep, kind, when, note, logged at), times parsed."""
    return [(c["rep_id"], c["kind"], datetime.fromisoformat(c["occurred_at"]), c["note"],
             datetime.fromisoformat(c["logged_at"])) for c in contacts]


async def test_logged_contacts_are_shown_with_kind_time_rep_and_note(routing: Routing) -> None:
    await routing.put_rep("sato")
    event = lead_scored()
    await routing.handle(event)
    lead_id = event.lead_id
    accepted = await act(routing, lead_id, "accept", rep_id="sato")
    assert accepted.status_code == 200 and accepted.json()["contacts"] == [], accepted.text
    routing.clock.advance(timedelta(hours=2))
    now = routing.clock.now
    call_at, meeting_at = now - timedelta(minutes=90), now - timedelta(minutes=10)
    note = "予算は来期。稟議は部長決裁（田中様）、ＰｏＣ希望 🙂"
    meeting = await act(routing, lead_id, "contacts", rep_id="sato", kind="meeting",
                        occurred_at=meeting_at.isoformat())
    assert meeting.status_code == 200, meeting.text
    assert shown(meeting.json()["contacts"]) == [("sato", "meeting", meeting_at, None, now)]
    for _ in range(2):  # logging the same call twice keeps one
        call = await act(routing, lead_id, "contacts", rep_id="sato", kind="call",
                         occurred_at=call_at.isoformat(), note=note)
        assert call.status_code == 200, call.text
    expected = [("sato", "call", call_at, note, now), ("sato", "meeting", meeting_at, None, now)]
    assert shown(call.json()["contacts"]) == expected, "oldest first"
    assert shown((await state(routing, lead_id))["contacts"]) == expected
    listed = await routing.client.get(f"/v1/leads/{lead_id}/contacts")
    assert listed.status_code == 200, listed.text
    assert shown(listed.json()) == expected


async def test_contacts_of_an_unknown_lead_are_a_404(routing: Routing) -> None:
    response = await routing.client.get(f"/v1/leads/{uuid.uuid4()}/contacts")
    assert response.status_code == 404, response.text


async def test_the_openapi_document_shows_contacts(routing: Routing) -> None:
    document = (await routing.client.get("/openapi.json")).json()
    listing = document["paths"]["/v1/leads/{lead_id}/contacts"]
    assert {"get", "post"} <= set(listing), "listed and logged"
    assert "contacts" in document["components"]["schemas"]["LeadState"]["properties"]
    logged = document["components"]["schemas"]["LoggedContact"]["properties"]
    assert {"rep_id", "kind", "occurred_at", "note", "logged_at"} <= set(logged)
