"""A partner's appointment may say when the meeting takes place: an aware time, or a 422.

The time travels in the partner's notes of lead.captured, whichever way the appointment
came: /v1/activities (the direct path and FastAPI's), a batch line, or a mapped webhook.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from starlette.middleware import Middleware

from baton_runtime.group_commit import GroupCommit
from baton_runtime.http import create_app
from baton_runtime.service import ServiceContext
from baton_runtime.uow import UnitOfWorkFactory
from schemas.events import TouchpointType
from services.ingest import api, handlers
from services.ingest.access import ApiKey, KeyRing, RateLimiter, hash_api_key
from services.ingest.adapters import FieldMapping, MappingFile, apply_mapping
from services.ingest.direct import DirectCaptures
from services.ingest.settings import IngestSettings
from services.ingest.submissions import Accepted, ActivitySubmission

KEY = "meeting-key-0123456789"
NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
JST = timezone(timedelta(hours=9))
MEETING = "2026-12-01T14:00:00+09:00"
NOTES = {"partner": "アポ代行パートナーズ", "challenges": "紙の受発注で月40時間の入力工数",
         "authority": "部長が決裁者", "need": "受発注の電子化", "timeframe": "今期中"}
APPOINTMENT = {"email": "ichiro.tanaka@sample.co.jp", "name": "田中 一郎",
               "type": "appointment.set", "partner_notes": {**NOTES, "meeting_at": MEETING}}
NAIVE = {**APPOINTMENT, "partner_notes": {**NOTES, "meeting_at": "2026-12-01T14:00:00"}}


def appointer() -> FieldMapping:
    """Return an appointment-setting tool's mapping, its meeting time included."""
    return FieldMapping.model_validate({
        "kind": "activity",
        "fields": {"email": "lead.mail", "name": "lead.name",
                   "partner_notes.need": "hearing.need",
                   "partner_notes.meeting_at": "appointment.starts"},
        "constants": {"type": "appointment.set", "partner_notes.partner": "アポ代行パートナーズ"},
    })


class Recorded(GroupCommit[handlers.Submitted, handlers.Outcome]):
    """Keeps the captures it is given instead of writing them."""

    def __init__(self) -> None:
        super().__init__(handlers.record_all)
        self.captures: list[handlers.Capture] = []

    async def run(self, unit_of_work: UnitOfWorkFactory,
                  submitted: handlers.Submitted) -> handlers.Outcome:
        self.captures.append(submitted.capture)
        return handlers.Outcome(Accepted(lead_id=submitted.capture.lead_id,
                                         event_id=str(uuid.uuid4())))


def app(recorded: Recorded, *, direct: bool) -> FastAPI:
    """Return ingest's capture routes on ``recorded``; ``direct`` adds the direct path."""
    settings = IngestSettings(database_url="postgresql://unused/",
                              kafka_bootstrap_servers="127.0.0.1:9")
    routes = api.router(api.Collaborators(KeyRing([ApiKey("key_1", "partner",
                                                          hash_api_key(KEY))]),
                                          RateLimiter(1_000_000),
                                          MappingFile(adapters={"appointer": appointer()}),
                                          recorded))
    middleware = [Middleware(DirectCaptures, routes=routes.routes)] if direct else []
    built = create_app(service="ingest", version="test", routers=[routes], readiness={},
                       middleware=middleware)
    built.state.context = ServiceContext("ingest", settings, None, None,  # type: ignore[arg-type]
                                         lambda: NOW)
    return built


async def post(recorded: Recorded, path: str, body: Any, *, direct: bool = True
               ) -> httpx.Response:
    """Return the answer to posting ``body`` as JSON to ``path`` with the partner's key."""
    transport = httpx.ASGITransport(app=app(recorded, direct=direct))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(path, json=body, headers={"X-API-Key": KEY})


def test_an_appointment_s_meeting_time_with_an_offset_reaches_the_partner_s_notes() -> None:
    submission = ActivitySubmission.model_validate(APPOINTMENT)
    capture = handlers.activity_capture(submission, source="partner", now=NOW,
                                        idempotency_key=None)
    notes = capture.partner_notes
    assert notes is not None
    assert notes.meeting_at == datetime(2026, 12, 1, 14, tzinfo=JST)
    assert notes.meeting_at.utcoffset() == timedelta(hours=9), "kept as the partner sent it"
    assert (notes.partner, notes.need) == ("アポ代行パートナーズ", "受発注の電子化")
    assert capture.touchpoint.type is TouchpointType.APPOINTMENT_SET


def test_a_meeting_time_without_an_offset_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as refused:
        ActivitySubmission.model_validate(NAIVE)
    assert [(error["loc"], error["type"]) for error in refused.value.errors()] == [
        (("partner_notes", "meeting_at"), "timezone_aware")]


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "fastapi"])
async def test_the_activities_route_accepts_an_aware_meeting_time_and_refuses_a_naive_one(
        direct: bool) -> None:
    recorded = Recorded()
    accepted = await post(recorded, "/v1/activities", APPOINTMENT, direct=direct)
    assert accepted.status_code == 202, accepted.text
    [capture] = recorded.captures
    assert capture.partner_notes is not None
    assert capture.partner_notes.meeting_at == datetime(2026, 12, 1, 5, tzinfo=UTC)

    refused = await post(recorded, "/v1/activities", NAIVE, direct=direct)
    assert refused.status_code == 422, refused.text
    assert [(error["loc"], error["type"]) for error in refused.json()["detail"]] == [
        (["body", "partner_notes", "meeting_at"], "timezone_aware")]
    assert len(recorded.captures) == 1, "nothing of the refused request was recorded"


async def test_a_mapped_webhook_carries_the_meeting_time_or_names_it_when_naive() -> None:
    payload = {"lead": {"mail": "jiro.suzuki@sample.co.jp", "name": "鈴木 次郎"},
               "hearing": {"need": "在庫の見える化"}, "appointment": {"starts": MEETING}}
    assert apply_mapping(appointer(), payload)["partner_notes"] == {
        "partner": "アポ代行パートナーズ", "need": "在庫の見える化", "meeting_at": MEETING}
    recorded = Recorded()
    accepted = await post(recorded, "/v1/webhooks/appointer", payload)
    assert accepted.status_code == 202, accepted.text
    [capture] = recorded.captures
    assert capture.partner_notes is not None
    assert capture.partner_notes.meeting_at == datetime(2026, 12, 1, 14, tzinfo=JST)

    naive = {**payload, "appointment": {"starts": "2026-12-01 14:00"}}
    refused = await post(recorded, "/v1/webhooks/appointer", naive)
    assert refused.status_code == 422, refused.text
    assert [error["loc"] for error in refused.json()["detail"]] == [
        ["body", "partner_notes", "meeting_at"]]
