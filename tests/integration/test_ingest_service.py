"""Ingest as it runs: `baton serve ingest` on real PostgreSQL and a real broker.

One service process serves the whole module; each test uses its own e-mail
addresses and keys, and checks the database and the lead.captured topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton import registry
from baton_runtime import migrations
from baton_runtime.db import create_engine
from baton_runtime.embedded import embedded_kafka, free_port
from baton_runtime.kafka import ensure_topics
from baton_runtime.settings import KafkaSettings
from schemas.envelope import decode
from schemas.events import LeadCaptured, TouchpointType
from services.ingest import access
from services.ingest.domain import lead_id_for
from tests.conftest import Infrastructure
from tests.support.cli import run_baton
from tests.support.infrastructure import PostgresServer, delete_baton_topics
from tests.support.kafka import read_all, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WEB_KEY = "web-form-key-0123456789"
HUBSPOT_SECRET = "hubspot-client-secret-for-tests"
MAPPING = """
adapters:
  formtool:
    kind: lead
    sources: [web]
    fields:
      email: contact.mail
      name: [contact.family, contact.given]
      company: contact.org
      title: contact.position
      touchpoint.type: form.kind
      event_id: submission_id
      honeypot: website
    values:
      touchpoint.type: {demo: inquiry.demo_request, whitepaper: download.industry_report}
    constants:
      source: formtool
hubspot_forms:
  demo-form-guid: inquiry.demo_request
"""


@dataclass
class Ingest:
    """The running service, its database and broker, and keys made for the tests."""

    url: str
    database_url: str
    bootstrap: str
    engine: AsyncEngine
    process: subprocess.Popen[bytes]
    keys: dict[str, str]

    def baton(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """Run the ``baton`` command against this service's database."""
        return run_baton({"BATON_DATABASE_URL": self.database_url}, *arguments)

    def create_key(self, source: str, *options: str) -> dict[str, str]:
        """Create a key with ``baton keys create`` and return what it printed, by label."""
        done = self.baton("keys", "create", source, *options)
        assert done.returncode == 0, done.stderr
        return dict(re.findall(r"^(key id|api key|signing secret):\s+(\S+)$", done.stdout,
                               re.MULTILINE))

    async def count(self, table: str, where: str = "TRUE", **params: Any) -> int:
        """Return how many rows of an ingest table match ``where``."""
        async with self.engine.connect() as connection:
            result = await connection.execute(
                text(f"SELECT count(*) FROM ingest.{table} WHERE {where}"), params)
            return int(result.scalar_one())

    async def written(self) -> dict[str, int]:
        """Return the row count of every table a request may write to."""
        return {table: await self.count(table) for table in (
            "leads", "touchpoints", "idempotency_keys", "request_signatures")}

    async def events_for(self, lead_id: str) -> list[tuple[str, LeadCaptured]]:
        """Return (event id, event) of every lead.captured published for the lead."""
        found = []
        for record in await read_all(self.bootstrap, LeadCaptured.topic):
            envelope = decode(record.topic, record.key, record.headers, record.value)
            assert isinstance(envelope.event, LeadCaptured)
            if str(envelope.event.lead_id) == lead_id:
                found.append((envelope.event_id, envelope.event))
        return found

    async def wait_for_events(self, lead_id: str, count: int) -> list[tuple[str, LeadCaptured]]:
        """Return the lead's events once ``count`` are published (and no more than that)."""
        async def published() -> bool:
            return await self.count("outbox") == 0

        await wait_until(published, 30, "the outbox relay to publish")
        events = await self.events_for(lead_id)
        assert len(events) == count, events
        return events


@contextlib.contextmanager
def service_process(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``baton serve ingest``; stop it with SIGTERM and expect a clean exit."""
    process = subprocess.Popen([sys.executable, "-m", "baton", "serve", "ingest"],
                               env={**os.environ, **env})
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


async def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    """Return once the service answers /readyz with 200."""
    async with httpx.AsyncClient() as client:
        async def ready() -> bool:
            assert process.poll() is None, "ingest exited during start-up"
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(f"{url}/readyz")).status_code == 200
            return False

        await wait_until(ready, 60, "ingest to become ready")


@pytest.fixture(scope="module")
async def ingest(postgres: PostgresServer, shared_kafka: str | None,
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Ingest]:
    database_url = await postgres.create_database()
    mapping = tmp_path_factory.mktemp("ingest") / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    with contextlib.ExitStack() as stack:
        if shared_kafka is not None:
            await delete_baton_topics(shared_kafka)
        bootstrap = shared_kafka or stack.enter_context(embedded_kafka())
        infrastructure = Infrastructure(database_url, bootstrap)
        await asyncio.to_thread(migrations.upgrade, registry.migrations_dir("ingest"),
                                database_url)
        await ensure_topics(KafkaSettings(kafka_bootstrap_servers=bootstrap,
                                          kafka_topic_partitions=3))
        port = free_port()
        env = {**infrastructure.environment(), "BATON_HTTP_HOST": "127.0.0.1",
               "BATON_HTTP_PORT": str(port), "BATON_LOG_FORMAT": "console",
               "BATON_LOG_LEVEL": "WARNING", "BATON_OUTBOX_POLL_INTERVAL_MS": "100",
               "BATON_INGEST_API_KEYS": f"web={WEB_KEY}",
               "BATON_INGEST_WEBHOOK_MAPPING_FILE": str(mapping)}
        process = stack.enter_context(service_process(env))
        engine = create_engine(database_url, pool_size=2)
        url = f"http://127.0.0.1:{port}"
        try:
            await wait_ready(url, process)
            yield Ingest(url, database_url, bootstrap, engine, process, {"web": WEB_KEY})
        finally:
            await engine.dispose()


@pytest.fixture
async def client(ingest: Ingest) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ingest.url, headers={"X-API-Key": WEB_KEY},
                                 timeout=30) as client:
        yield client


async def raw_post(url: str, headers: str, body: bytes) -> bytes:
    """Send a JSON POST to /v1/leads as raw bytes (no end of body unless in ``body``).

    Return the first line of the answer.
    """
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"POST /v1/leads HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {WEB_KEY}\r\n"
                     f"Content-Type: application/json\r\n{headers}\r\n\r\n".encode() + body)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


def unique_email(local: str = "taro", domain: str = "sample-seisakusho.co.jp") -> str:
    """Return an address no other test uses."""
    return f"{local}.{uuid.uuid4().hex[:8]}@{domain}"


async def _signing_loaded(ingest: Ingest, path: str, api_key: str | None = None) -> bool:
    """Return True once ``path`` asks an unsigned request for a signature (401).

    Until the service has loaded a new HubSpot secret or signed ``api_key``, it answers
    404 (no HubSpot secret) or 403 (unknown key) instead.
    """
    headers = {"X-API-Key": api_key} if api_key else {}
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        response = await client.post(path, json={}, headers=headers)
    return response.status_code == 401


async def test_a_form_submission_is_normalised_committed_and_published(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    local = f"taro.{uuid.uuid4().hex[:8]}"
    response = await client.post("/v1/leads", json={
        "email": f" {local.upper()}＠Sample-Seisakusho.CO.JP ",
        "name": "山田 太郎", "company": "株式会社サンプル製作所", "title": "製造部 部長",
        "department": "製造部", "phone": "０３－１２３４－５６７８", "industry": "製造業",
        "employee_band": "500-999", "region": "東京都", "consent": True, "source": "web",
        "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "dx-2026",
        "touchpoint": {"type": "inquiry.demo_request",
                       "occurred_at": "2026-11-20T10:00:00+09:00"},
    })
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "accepted"
    email = f"{local}@sample-seisakusho.co.jp"
    assert await ingest.count("touchpoints", "event_id = :id", id=accepted["event_id"]) == 1

    [(event_id, event)] = await ingest.wait_for_events(accepted["lead_id"], 1)
    assert event_id == accepted["event_id"]
    assert event.source == "web"
    assert event.profile.email == email
    assert event.profile.phone == "+81312345678"
    assert (event.profile.name, event.profile.company) == ("山田 太郎", "株式会社サンプル製作所")
    assert event.account.account_key == "domain:sample-seisakusho.co.jp"
    assert event.account.domain == "sample-seisakusho.co.jp"
    assert event.touchpoint.type is TouchpointType.INQUIRY_DEMO_REQUEST
    assert event.touchpoint.occurred_at.isoformat() == "2026-11-20T10:00:00+09:00"
    assert event.attribution is not None and event.attribution.utm_campaign == "dx-2026"
    assert event.campaign == "dx-2026" and event.consent is True
    assert WEB_KEY not in event.model_dump_json(), "no secret travels in the event"


async def test_one_lead_per_address_whose_profile_later_submissions_complete(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    email = unique_email("hanako")
    first = await client.post("/v1/leads", json={
        "email": email, "name": "鈴木 花子", "company": "株式会社サンプル製作所",
        "title": "担当", "touchpoint": {"type": "download.beginner_guide"}})
    second = await client.post("/v1/activities", json={
        "email": email.upper(), "title": "課長", "type": "page_view.pricing",
        "asset_id": "/pricing"})
    assert (first.status_code, second.status_code) == (202, 202), second.text
    assert first.json()["lead_id"] == second.json()["lead_id"]

    events = [event for _, event in await ingest.wait_for_events(first.json()["lead_id"], 2)]
    [latest] = [e for e in events if e.touchpoint.type is TouchpointType.PAGE_VIEW_PRICING]
    assert latest.profile.title == "課長", "the later title wins"
    assert latest.profile.name == "鈴木 花子", "what the activity left out is kept"
    assert await ingest.count("leads", "email = :email", email=email) == 1


async def test_free_mail_leads_share_the_account_of_their_company_name(
        client: httpx.AsyncClient, ingest: Ingest) -> None:
    docomo = await client.post("/v1/leads", json={
        "email": unique_email("jiro", "docomo.ne.jp"), "company": "株式会社ミナト電子",
        "touchpoint": {"type": "form.submission"}})
    gmail = await client.post("/v1/leads", json={
        "email": unique_email("saburo", "gmail.com"), "company": "（株）ミナト電子",
        "touchpoint": {"type": "form.submission"}})
    alone = await client.post("/v1/leads", json={"email": unique_email("shiro", "gmail.com")})
    accounts = []
    for response in (docomo, gmail, alone):
        assert response.status_code == 202, response.text
        [(_, event)] = await ingest.wait_for_events(response.json()["lead_id"], 1)
        accounts.append(event.account)
    assert accounts[0].account_key == accounts[1].account_key == "name:ミナト電子"
    assert accounts[0].free_mail and accounts[0].domain is None
    assert accounts[2].account_key.startswith("person:"), "no company: an account of one"


async def test_a_company_name_that_grows_when_case_folded_still_makes_an_account(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    # "İ" folds to two characters: the account key outgrew the event and the lead (or a
    # whole batch) got a 500.
    company, other = "İ" * 200, "İ" * 199 + "I"
    single = await client.post("/v1/leads", json={
        "email": unique_email("ali", "gmail.com"), "company": company})
    lines = [{"kind": "lead", "email": unique_email("ok")},
             {"kind": "lead", "email": unique_email("ayse", "gmail.com"), "company": company},
             {"kind": "lead", "email": unique_email("mehmet", "gmail.com"), "company": other}]
    batch = await client.post("/v1/batch", content="\n".join(
        json.dumps(line, ensure_ascii=False) for line in lines).encode(),
        headers={"Content-Type": "application/x-ndjson"})
    assert single.status_code == 202, single.text
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [item["status"] for item in results] == [202] * 3
    accounts = []
    for lead_id in (single.json()["lead_id"], results[1]["lead_id"], results[2]["lead_id"]):
        [(_, event)] = await ingest.wait_for_events(lead_id, 1)
        accounts.append(event.account)
    assert accounts[0].account_key == accounts[1].account_key, "one company, one account"
    assert accounts[2].account_key != accounts[0].account_key
    assert accounts[0].company_name == company


async def test_a_phone_extension_is_kept_whether_written_in_japanese_or_english(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    phones = {"03-1234-5678（内線12）": "+81312345678;ext=12",
              "03-1234-5678 ext. 34": "+81312345678;ext=34",
              "03-1234-5678": "+81312345678"}
    for sent, stored in phones.items():
        response = await client.post("/v1/leads", json={"email": unique_email(),
                                                        "phone": sent})
        assert response.status_code == 202, response.text
        [(_, event)] = await ingest.wait_for_events(response.json()["lead_id"], 1)
        assert event.profile.phone == stored


async def test_a_lead_whose_phone_extension_would_not_fit_is_captured_with_the_number_alone(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    # "+81312345678;ext=" and 16 digits is longer than the event's 32 characters: the lead
    # was refused with a 422; before extensions were kept, only the extension was lost.
    response = await client.post("/v1/leads", json={
        "email": unique_email(), "phone": "0312345678ext" + "1" * 16})
    assert response.status_code == 202, response.text
    [(_, event)] = await ingest.wait_for_events(response.json()["lead_id"], 1)
    assert event.profile.phone == "+81312345678"


async def test_activities_map_to_touchpoints_and_carry_partner_notes(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    email = unique_email("ichiro")
    notes = {"partner": "アポ代行パートナーズ", "challenges": "紙の受発注で月40時間の入力工数",
             "competitors": "kintone", "budget": "確保済み", "authority": "部長が決裁者",
             "need": "受発注の電子化", "timeframe": "今期中", "temperature": "hot"}
    posted = [
        await client.post("/v1/activities", json={"email": email, "type": "webinar.registration",
                                                  "asset_id": "webinar-1126"}),
        await client.post("/v1/activities", json={"email": email, "type": "webinar.product_demo",
                                                  "asset_id": "webinar-1126",
                                                  "interacted": True}),
        await client.post("/v1/activities", json={"email": email, "type": "appointment.set",
                                                  "name": "田中 一郎", "partner_notes": notes}),
    ]
    assert [response.status_code for response in posted] == [202] * 3, posted[-1].text
    events = {event_id: event for event_id, event
              in await ingest.wait_for_events(posted[0].json()["lead_id"], 3)}
    registration, attendance, appointment = (events[r.json()["event_id"]] for r in posted)
    assert registration.touchpoint.type is TouchpointType.FORM_SUBMISSION
    assert registration.touchpoint.asset_id == "webinar-1126"
    assert attendance.touchpoint.type is TouchpointType.WEBINAR_PRODUCT_DEMO
    assert attendance.touchpoint.interacted
    assert appointment.touchpoint.type is TouchpointType.APPOINTMENT_SET
    assert appointment.partner_notes is not None
    assert appointment.partner_notes.model_dump(exclude_none=True) == notes, "Japanese intact"


async def test_a_batch_appointment_s_meeting_time_travels_in_lead_captured_with_its_offset(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    email = unique_email("jiro")
    notes = {"partner": "アポ代行パートナーズ", "need": "在庫の見える化", "timeframe": "来期"}
    lines = [{"kind": "activity", "email": email, "type": "appointment.set", "name": "鈴木 次郎",
              "partner_notes": {**notes, "meeting_at": meeting_at}}
             for meeting_at in ("2026-12-01T14:00:00+09:00", "2026-12-01T14:00:00")]
    response = await client.post(
        "/v1/batch", content="\n".join(json.dumps(line, ensure_ascii=False) for line in lines),
        headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 200, response.text
    accepted, refused = response.json()["results"]
    assert accepted["status"] == 202
    assert (refused["status"], [(error["loc"], error["type"]) for error in refused["errors"]]
            ) == (422, [(["activity", "partner_notes", "meeting_at"], "timezone_aware")])
    [(_, event)] = await ingest.wait_for_events(accepted["lead_id"], 1)
    assert event.partner_notes is not None
    assert event.partner_notes.meeting_at == datetime(2026, 12, 1, 5, tzinfo=UTC)
    assert event.partner_notes.meeting_at.utcoffset() == timedelta(hours=9)
    assert (event.partner_notes.need, event.profile.name) == ("在庫の見える化", "鈴木 次郎")

async def test_an_appointment_without_notes_and_notes_without_one_are_refused(
        client: httpx.AsyncClient) -> None:
    for body in ({"email": unique_email(), "type": "appointment.set"},
                 {"email": unique_email(), "type": "email.open",
                  "partner_notes": {"partner": "x"}}):
        response = await client.post("/v1/activities", json=body)
        assert response.status_code == 422, response.text
        assert "partner_notes" in response.text


async def test_a_form_reporting_an_appointment_is_sent_to_the_activities_route(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    before = await ingest.written()
    lead = {"email": unique_email(), "name": "佐藤 花子", "touchpoint": {"type": "appointment.set"}}
    single = await client.post("/v1/leads", json=lead)
    assert single.status_code == 422, single.text
    (error,) = single.json()["detail"]
    batch = await client.post("/v1/batch", content=json.dumps(
        {"kind": "lead", **lead}, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/x-ndjson"})
    assert batch.status_code == 200, batch.text
    (result,) = batch.json()["results"]
    (line_error,) = result["errors"]
    assert (error["loc"], result["status"], line_error["loc"]) == (
        ["body", "touchpoint", "type"], 422, ["lead", "touchpoint", "type"])
    for message in (error["msg"], line_error["msg"]):
        assert "/v1/activities" in message and "partner_notes" in message
    assert await ingest.written() == before


async def test_bad_input_gets_a_clear_4xx_and_writes_nothing(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    before = await ingest.written()
    lead = {"email": unique_email(), "touchpoint": {"type": "form.submission"}}

    invalid = await client.post("/v1/leads", json={**lead, "email": "not-an-address",
                                                   "phone": "call me", "touchpoint": {
                                                       "type": "carrier.pigeon"}})
    assert invalid.status_code == 422
    fields = {tuple(error["loc"]) for error in invalid.json()["detail"]}
    assert fields == {("body", "email"), ("body", "phone"), ("body", "touchpoint", "type")}

    unknown = await client.post("/v1/leads", json={**lead, "favourite_colour": "blue"})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "favourite_colour"]

    # JSON may escape a lone UTF-16 surrogate, which no UTF-8 text (nor PostgreSQL) can hold.
    lone = await client.post("/v1/leads", content=json.dumps(lead)[:-1].encode()
                             + b', "name": "\\ud800\\u682a"}',
                             headers={"Content-Type": "application/json"})
    assert lone.status_code == 422, lone.text
    assert [error["loc"] for error in lone.json()["detail"]] == [["body", "name"]]

    too_big = await client.post("/v1/leads", json={**lead, "name": "x" * (256 * 1024)})
    assert too_big.status_code == 413
    # A client that waits for "100 Continue" never has to send a byte of an oversized body.
    assert (await raw_post(ingest.url, "Content-Length: 10485760\r\nExpect: 100-continue",
                           b"")).startswith(b"HTTP/1.1 413 ")
    # A chunked body is refused once it passes the limit: the end is never waited for.
    chunks = b"".join(b"4000\r\n" + b" " * 0x4000 + b"\r\n" for _ in range(17))
    assert (await raw_post(ingest.url, "Transfer-Encoding: chunked", chunks)
            ).startswith(b"HTTP/1.1 413 ")

    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "application/json; charset=shift_jis"):
        wrong = await client.post("/v1/leads", content=json.dumps(lead),
                                  headers={"Content-Type": content_type})
        assert wrong.status_code == 415, content_type

    empty_key = await client.post("/v1/leads", json=lead, headers={"X-API-Key": ""})
    assert empty_key.status_code == 401
    async with httpx.AsyncClient(base_url=ingest.url) as anonymous:
        assert (await anonymous.post("/v1/leads", json=lead)).status_code == 401
    wrong_key = await client.post("/v1/leads", json=lead,
                                  headers={"X-API-Key": "not-a-key-of-ours-at-all"})
    assert wrong_key.status_code == 403
    assert await ingest.written() == before


async def test_a_filled_honeypot_gets_202_but_is_not_forwarded(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    before = await ingest.written()
    response = await client.post("/v1/leads", json={
        "email": unique_email("bot"), "honeypot": "http://spam.example",
        "touchpoint": {"type": "inquiry.demo_request"}})
    assert response.status_code == 202
    assert await ingest.written() == before
    assert await ingest.events_for(response.json()["lead_id"]) == []


async def test_a_repeated_honeypot_request_gets_the_same_decoy_answer(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    # A new decoy id for each repeat told a bot that it was being fooled: a real repeat
    # (same idempotency key or event id) gets the first answer.
    lead = {"email": unique_email("bot"), "honeypot": "http://spam.example"}
    line = json.dumps({**lead, "kind": "lead"}).encode()
    payload = {"submission_id": f"sub-{uuid.uuid4()}", "website": "http://spam.example",
               "contact": {"mail": unique_email("bot")}}
    keyed = {"Idempotency-Key": f"bot-{uuid.uuid4()}"}
    before = await ingest.written()
    answers = [
        [(await client.post("/v1/leads", json=lead, headers=keyed)).json() for _ in range(2)],
        [(await client.post("/v1/leads", json=lead)).json() for _ in range(2)],
        [(await client.post("/v1/leads", json={**lead, "event_id": "e-1"})).json()
         for _ in range(2)],
        [(await client.post("/v1/webhooks/formtool", json=payload)).json() for _ in range(2)],
        [{name: item[name] for name in ("lead_id", "event_id")} for item in (
            await client.post("/v1/batch", content=line + b"\n" + line, headers={
                "Content-Type": "application/x-ndjson"})).json()["results"]],
    ]
    assert await ingest.written() == before, "a decoy stores nothing"
    for first, again in answers:
        assert again == first
        assert uuid.UUID(first["event_id"]).version == 4, "as the ids of real events"
    event_ids = [first["event_id"] for first, _ in answers]
    assert len(set(event_ids)) == len(event_ids) - 1, "another request, another id"
    assert event_ids[-1] == event_ids[1], "a batch line is the record sent alone"
    assert await ingest.events_for(answers[0][0]["lead_id"]) == []


async def test_a_repeated_idempotency_key_gets_the_first_answer_or_a_conflict(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    key = f"form-{uuid.uuid4()}"
    lead = {"email": unique_email(), "name": "Emma Smith",
            "touchpoint": {"type": "inquiry.general"}}
    first = await client.post("/v1/leads", json=lead, headers={"Idempotency-Key": key})
    again = await client.post("/v1/leads", json=lead, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    before = await ingest.written()
    other = await client.post("/v1/leads", json={**lead, "name": "Someone Else"},
                              headers={"Idempotency-Key": key})
    assert other.status_code == 409
    assert await ingest.written() == before

    # Without the header, the body's event id is the key.
    by_event_id = {**lead, "event_id": f"crm-{uuid.uuid4()}"}
    once = await client.post("/v1/leads", json=by_event_id)
    twice = await client.post("/v1/leads", json=by_event_id)
    assert (once.status_code, twice.json()) == (202, once.json())
    # The same record as a batch line is the same request, with the same answer.
    as_line = json.dumps({**by_event_id, "kind": "lead"}, ensure_ascii=False).encode()
    batch = await client.post("/v1/batch", content=as_line,
                              headers={"Content-Type": "application/x-ndjson"})
    [line] = batch.json()["results"]
    assert (line["status"], line["event_id"]) == (202, once.json()["event_id"])
    await ingest.wait_for_events(first.json()["lead_id"], 2)


async def test_concurrent_requests_with_one_idempotency_key_write_one_event(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    lead = {"email": unique_email("twice"), "touchpoint": {"type": "inquiry.quote_request"}}
    headers = {"Idempotency-Key": f"retry-{uuid.uuid4()}"}
    responses = await asyncio.gather(*(client.post("/v1/leads", json=lead, headers=headers)
                                       for _ in range(5)))
    assert [r.status_code for r in responses] == [202] * 5
    assert len({r.json()["event_id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 4
    await ingest.wait_for_events(responses[0].json()["lead_id"], 1)


def hubspot_delivery(ingest: Ingest, body: bytes, *, secret: str = HUBSPOT_SECRET,
                     sent_at: float | None = None, timestamp: str | None = None
                     ) -> dict[str, str]:
    """Return the headers HubSpot would send with ``body`` (at ``timestamp`` if given)."""
    timestamp = timestamp or str(int((sent_at or time.time()) * 1000))
    signature = access.hubspot_signature(secret, method="POST",
                                         uri=f"{ingest.url}/v1/webhooks/hubspot", body=body,
                                         timestamp=timestamp)
    return {"Content-Type": "application/json", "X-HubSpot-Signature-v3": signature,
            "X-HubSpot-Request-Timestamp": timestamp}


@pytest.fixture(scope="module")
def hubspot_key(ingest: Ingest) -> dict[str, str]:
    return ingest.create_key("hubspot", "--signing-secret", HUBSPOT_SECRET)


async def test_five_concurrent_identical_hubspot_deliveries_give_one_lead_captured(
        ingest: Ingest, hubspot_key: dict[str, str]) -> None:
    email = unique_email("hubspot")
    body = json.dumps({
        "portalId": 62515, "formId": "demo-form-guid", "submittedAt": 1_763_600_000_000,
        "conversionId": str(uuid.uuid4()),
        "fields": [{"name": "email", "value": email}, {"name": "firstname", "value": "太郎"},
                   {"name": "lastname", "value": "山田"},
                   {"name": "company", "value": "株式会社サンプル製作所"},
                   {"name": "jobtitle", "value": "部長"}, {"name": "numemployees",
                                                          "value": "500-1000"},
                   {"name": "hs_context_extra", "value": "ignored"}],
        "context": {"pageUri": "https://example.co.jp/demo?utm_source=google&utm_medium=cpc"},
        "legalConsentOptions": {"consent": {"consentToProcess": True, "communications": [
            {"value": True, "subscriptionTypeId": 1}]}},
    }, ensure_ascii=False).encode()
    headers = hubspot_delivery(ingest, body)
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        responses = await asyncio.gather(*(
            client.post("/v1/webhooks/hubspot", content=body, headers=headers)
            for _ in range(5)))
    assert [response.status_code for response in responses] == [202] * 5, responses[0].text
    assert len({response.json()["event_id"] for response in responses}) == 1
    [(_, event)] = await ingest.wait_for_events(responses[0].json()["lead_id"], 1)
    assert event.source == "hubspot"
    assert event.profile.name == "山田 太郎" and event.profile.employee_band == "500-999"
    assert event.touchpoint.type is TouchpointType.INQUIRY_DEMO_REQUEST
    assert event.touchpoint.asset_id == "demo-form-guid"
    assert event.attribution is not None and event.attribution.utm_source == "google"
    assert event.consent is True


async def test_hubspot_deliveries_with_a_bad_or_stale_signature_are_refused(
        ingest: Ingest, hubspot_key: dict[str, str]) -> None:
    before = await ingest.written()
    body = json.dumps({"fields": [{"name": "email", "value": unique_email()}]}).encode()
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        forged = await client.post("/v1/webhooks/hubspot", content=body,
                                   headers=hubspot_delivery(ingest, body, secret="guess"))
        stale = await client.post("/v1/webhooks/hubspot", content=body,
                                  headers=hubspot_delivery(ingest, body,
                                                           sent_at=time.time() - 301))
        tampered = await client.post(
            "/v1/webhooks/hubspot", content=body.replace(b"@", b"+x@"),
            headers=hubspot_delivery(ingest, body))
        unsigned = await client.post("/v1/webhooks/hubspot", content=body,
                                     headers={"Content-Type": "application/json"})
    assert [r.status_code for r in (forged, stale, tampered, unsigned)] == [401] * 4
    assert "window" in stale.text
    assert await ingest.written() == before


async def test_a_hubspot_submission_from_a_page_address_that_cannot_be_parsed_is_captured(
        ingest: Ingest, hubspot_key: dict[str, str]) -> None:
    await wait_until(lambda: _signing_loaded(ingest, "/v1/webhooks/hubspot"), 10,
                     "the HubSpot key to be loaded")
    email = unique_email("hubspot-page")
    body = json.dumps({
        "conversionId": str(uuid.uuid4()),
        "fields": [{"name": "email", "value": email},
                   {"name": "utm_campaign", "value": "spring"}],
        # urlsplit refuses an unclosed "[": the lead was lost with a 500.
        "context": {"pageUri": "https://[www.example.co.jp/lp?utm_source=ads"},
    }).encode()
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        response = await client.post("/v1/webhooks/hubspot", content=body,
                                     headers=hubspot_delivery(ingest, body))
    assert response.status_code == 202, response.text
    [(_, event)] = await ingest.wait_for_events(response.json()["lead_id"], 1)
    assert event.profile.email == email
    assert event.attribution is not None
    assert (event.attribution.utm_source, event.attribution.utm_campaign) == (None, "spring")


async def test_a_hubspot_submission_loses_an_invalid_optional_field_not_the_lead(
        ingest: Ingest, hubspot_key: dict[str, str]) -> None:
    # HubSpot does not send a refused submission again: a junk phone must not lose the lead.
    await wait_until(lambda: _signing_loaded(ingest, "/v1/webhooks/hubspot"), 10,
                     "the HubSpot key to be loaded")
    email = unique_email("hubspot-junk")
    fields = [{"name": "email", "value": email}, {"name": "company", "value": "株式会社サンプル"},
              {"name": "phone", "value": "不明"}, {"name": "numemployees", "value": "x" * 40}]
    body = json.dumps({"conversionId": str(uuid.uuid4()), "fields": fields}).encode()
    bad_email = json.dumps({"conversionId": str(uuid.uuid4()), "fields": [
        {"name": "email", "value": "not-an-address"}]}).encode()
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        response = await client.post("/v1/webhooks/hubspot", content=body,
                                     headers=hubspot_delivery(ingest, body))
        refused = await client.post("/v1/webhooks/hubspot", content=bad_email,
                                    headers=hubspot_delivery(ingest, bad_email))
    assert response.status_code == 202, response.text
    [(_, event)] = await ingest.wait_for_events(response.json()["lead_id"], 1)
    assert (event.profile.email, event.profile.company) == (email, "株式会社サンプル")
    assert (event.profile.phone, event.profile.employee_band) == (None, None)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "email"]


@pytest.mark.parametrize("stamp", ["9" * 400, "-" + "9" * 400])
async def test_a_signature_timestamp_too_large_for_any_clock_gets_401(
        ingest: Ingest, hubspot_key: dict[str, str], stamp: str) -> None:
    created = ingest.create_key("partner-far-future", "--signed")
    await wait_until(lambda: _signing_loaded(ingest, "/v1/leads", created["api key"]), 10,
                     "the signed key to be loaded")
    await wait_until(lambda: _signing_loaded(ingest, "/v1/webhooks/hubspot"), 10,
                     "the HubSpot key to be loaded")
    before = await ingest.written()
    body = json.dumps({"email": unique_email(), "touchpoint": {"type": "inquiry.general"}})
    hubspot_body = json.dumps({"fields": [{"name": "email", "value": unique_email()}]}).encode()
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        # Correctly signed, so only the timestamp can be what is refused.
        signed = await client.post("/v1/leads", content=body, headers={
            "X-API-Key": created["api key"], "Content-Type": "application/json",
            "X-Baton-Timestamp": stamp,
            "X-Baton-Signature": access.signature(created["signing secret"], stamp,
                                                  body.encode())})
        hubspot = await client.post("/v1/webhooks/hubspot", content=hubspot_body,
                                    headers=hubspot_delivery(ingest, hubspot_body,
                                                             timestamp=stamp))
    assert [r.status_code for r in (signed, hubspot)] == [401] * 2, signed.text
    assert "window" in signed.text and "window" in hubspot.text
    assert await ingest.written() == before


async def test_the_generic_adapter_maps_a_payload_by_its_mapping_file(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    email = unique_email("mapped")
    payload = {"submission_id": f"sub-{uuid.uuid4()}", "form": {"kind": "demo"},
               "contact": {"mail": email, "family": "佐藤", "given": "健太",
                           "org": "北斗ソフトウェア株式会社", "position": "執行役員"},
               "tracking": {"ignored": True}}
    response = await client.post("/v1/webhooks/formtool", json=payload)
    assert response.status_code == 202, response.text
    assert (await client.post("/v1/webhooks/formtool", json=payload)).json() == response.json()
    [(_, event)] = await ingest.wait_for_events(response.json()["lead_id"], 1)
    assert event.profile.name == "佐藤 健太" and event.profile.title == "執行役員"
    assert event.touchpoint.type is TouchpointType.INQUIRY_DEMO_REQUEST
    assert event.attribution is not None and event.attribution.lead_source == "formtool"

    missing = await client.post("/v1/webhooks/formtool", json={"contact": {"family": "x"}})
    assert missing.status_code == 422
    assert ["body", "email"] in [error["loc"] for error in missing.json()["detail"]]
    assert (await client.post("/v1/webhooks/nosuch", json=payload)).status_code == 404
    partner = ingest.create_key("partner")["api key"]
    refused = await client.post("/v1/webhooks/formtool", json=payload,
                                headers={"X-API-Key": partner})
    assert refused.status_code == 403, "the adapter admits the web source only"


async def test_a_signed_key_needs_a_fresh_unrepeated_signature(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    created = ingest.create_key("partner-signed", "--signed")
    secret = created["signing secret"]
    body = json.dumps({"email": unique_email(), "touchpoint": {"type": "inquiry.general"}})

    def signed(at: float, content: str = body) -> dict[str, str]:
        stamp = str(int(at))
        return {"X-API-Key": created["api key"], "Content-Type": "application/json",
                "X-Baton-Timestamp": stamp,
                "X-Baton-Signature": access.signature(secret, stamp, content.encode())}

    before = await ingest.written()
    unsigned = await client.post("/v1/leads", content=body,
                                 headers={"X-API-Key": created["api key"],
                                          "Content-Type": "application/json"})
    stale = await client.post("/v1/leads", content=body, headers=signed(time.time() - 400))
    tampered = await client.post("/v1/leads", content=body.replace("general", "demo_request"),
                                 headers=signed(time.time()))
    assert [r.status_code for r in (unsigned, stale, tampered)] == [401] * 3
    assert await ingest.written() == before

    headers = signed(time.time())
    accepted = await client.post("/v1/leads", content=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    replayed = await client.post("/v1/leads", content=body, headers=headers)
    assert replayed.status_code == 401 and "before" in replayed.text


def signed_by(created: dict[str, str], content: bytes, media_type: str = "application/json",
              **headers: str) -> dict[str, str]:
    """Return the headers of ``content`` signed now with a key from ``create_key``."""
    stamp = str(int(time.time()))
    return {"X-API-Key": created["api key"], "Content-Type": media_type,
            "X-Baton-Timestamp": stamp,
            "X-Baton-Signature": access.signature(created["signing secret"], stamp, content),
            **headers}


async def signed_key(ingest: Ingest, source: str, *options: str) -> dict[str, str]:
    """Return a new signed key of ``source`` once the service has loaded it."""
    created = ingest.create_key(source, "--signed", *options)
    await wait_until(lambda: _signing_loaded(ingest, "/v1/leads", created["api key"]), 10,
                     "the signed key to be loaded")
    return created


async def test_a_resent_signed_request_with_an_idempotency_key_gets_its_first_answer(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    # A client that timed out waiting for its 202 sends the very same bytes again: it must
    # learn whether its lead was recorded, not be told that it replayed a signature.
    created = await signed_key(ingest, "partner-retry")
    lead = json.dumps({"email": unique_email("retry"),
                       "touchpoint": {"type": "inquiry.demo_request"}}).encode()
    activity = json.dumps({"email": unique_email("retry"), "type": "page_view.pricing",
                           "event_id": f"evt-{uuid.uuid4()}"}).encode()
    sent = [("/v1/leads", lead,
             signed_by(created, lead, **{"Idempotency-Key": f"retry-{uuid.uuid4()}"})),
            ("/v1/activities", activity, signed_by(created, activity))]  # keyed by event_id
    first = [await client.post(path, content=body, headers=headers)
             for path, body, headers in sent]
    assert [response.status_code for response in first] == [202, 202], first[0].text
    written = await ingest.written()
    again = [await client.post(path, content=body, headers=headers)
             for path, body, headers in sent]
    assert [(r.status_code, r.json(), r.headers.get("Idempotent-Replayed")) for r in again] == [
        (202, response.json(), "true") for response in first]
    assert await ingest.written() == written
    for response in first:
        [(event_id, _)] = await ingest.wait_for_events(response.json()["lead_id"], 1)
        assert event_id == response.json()["event_id"]


async def test_concurrent_copies_of_a_signed_request_with_an_idempotency_key_write_one_event(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    created = await signed_key(ingest, "partner-retry-concurrent")
    lead = json.dumps({"email": unique_email("copies"),
                       "touchpoint": {"type": "inquiry.quote_request"}}).encode()
    headers = signed_by(created, lead, **{"Idempotency-Key": f"retry-{uuid.uuid4()}"})
    responses = await asyncio.gather(*(client.post("/v1/leads", content=lead, headers=headers)
                                       for _ in range(5)))
    assert [r.status_code for r in responses] == [202] * 5, responses[-1].text
    assert len({r.json()["event_id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 4
    await ingest.wait_for_events(responses[0].json()["lead_id"], 1)


async def test_a_resent_signed_request_that_retries_no_recorded_request_gets_401(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    # The Idempotency-Key header is not signed: whoever saw a signed request must not get
    # it recorded again by sending it under another key.
    created = await signed_key(ingest, "partner-replayed")

    def lead(**fields: str) -> bytes:
        return json.dumps({"email": unique_email("replayed"), **fields}).encode()

    taken = f"form-{uuid.uuid4()}"
    other = lead()
    unkeyed, keyed = lead(), lead()
    unkeyed_headers = signed_by(created, unkeyed)
    keyed_headers = signed_by(created, keyed, **{"Idempotency-Key": f"form-{uuid.uuid4()}"})
    first = [await client.post("/v1/leads", content=body, headers=headers) for body, headers in (
        (other, signed_by(created, other, **{"Idempotency-Key": taken})),
        (unkeyed, unkeyed_headers), (keyed, keyed_headers))]
    assert [response.status_code for response in first] == [202] * 3, first[0].text
    written = await ingest.written()
    without_key = {name: value for name, value in keyed_headers.items()
                   if name != "Idempotency-Key"}
    resent = [await client.post("/v1/leads", content=body, headers=headers) for body, headers in (
        (unkeyed, unkeyed_headers),
        (keyed, {**keyed_headers, "Idempotency-Key": f"form-{uuid.uuid4()}"}),  # unknown key
        (keyed, {**keyed_headers, "Idempotency-Key": taken}),  # another body's key
        (keyed, without_key))]
    assert [response.status_code for response in resent] == [401] * 4, resent[2].text
    assert all("received before" in r.text and "Idempotency-Key" in r.text for r in resent)
    assert await ingest.written() == written
    for response in first:
        await ingest.wait_for_events(response.json()["lead_id"], 1)


async def test_a_resent_signed_batch_gets_its_first_answer_if_each_line_has_an_event_id(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    created = await signed_key(ingest, "partner-batch-retry")
    email, event_id = unique_email("batch-retry"), f"evt-{uuid.uuid4()}"
    lines = [
        {"kind": "lead", "email": email, "event_id": event_id},
        {"kind": "activity", "email": email, "type": "page_view.pricing",
         "event_id": f"evt-{uuid.uuid4()}"},
        {"kind": "activity", "email": email, "type": "teleport"},  # 422, as before
        {"kind": "lead", "email": email, "name": "別人", "event_id": event_id},  # 409, as before
        {"kind": "lead", "email": unique_email("bot"), "honeypot": "x"},  # a decoy, as before
    ]
    keyed = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines).encode()
    unkeyed = keyed + b"\n" + json.dumps({"kind": "lead", "email": unique_email()}).encode()
    sent = [(body, signed_by(created, body, "application/x-ndjson"))
            for body in (keyed, unkeyed)]
    first = [await client.post("/v1/batch", content=body, headers=headers)
             for body, headers in sent]
    assert [response.status_code for response in first] == [200, 200], first[0].text
    assert [line["status"] for line in first[0].json()["results"]] == [202, 202, 422, 409, 202]
    written = await ingest.written()
    again = [await client.post("/v1/batch", content=body, headers=headers)
             for body, headers in sent]
    assert again[0].status_code == 200, again[0].text
    assert again[0].json() == first[0].json()
    assert again[1].status_code == 401, "its last line would be recorded again"
    assert await ingest.written() == written
    await ingest.wait_for_events(first[0].json()["results"][0]["lead_id"], 2)


async def test_a_key_over_its_rate_limit_gets_429_with_retry_after(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    key = ingest.create_key("slow-partner", "--rate-limit", "2")["api key"]
    await wait_until(lambda: _accepted_key(ingest, key), 10, "the new key to be loaded")
    before = await ingest.written()
    lead = {"email": unique_email(), "touchpoint": {"type": "email.open"}}
    responses = [await client.post("/v1/leads", json=lead, headers={"X-API-Key": key})
                 for _ in range(2)]
    assert [r.status_code for r in responses] == [202, 429], "one token was spent on loading"
    assert int(responses[-1].headers["Retry-After"]) >= 1
    after = await ingest.written()
    assert after["touchpoints"] == before["touchpoints"] + 1


async def test_bad_or_replayed_signatures_spend_none_of_the_keys_rate_limit(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    # Spent before the signature was checked, tokens let anyone who knew a key use up its
    # partner's quota with unsigned or replayed requests.
    created = ingest.create_key("partner-quota", "--signed", "--rate-limit", "5")
    await wait_until(lambda: _signing_loaded(ingest, "/v1/leads", created["api key"]), 10,
                     "the signed key to be loaded")

    def signed(content: bytes, media_type: str = "application/json", *, late: float = 0,
               secret: str = created["signing secret"]) -> dict[str, str]:
        stamp = str(int(time.time() - late))
        return {"X-API-Key": created["api key"], "Content-Type": media_type,
                "X-Baton-Timestamp": stamp,
                "X-Baton-Signature": access.signature(secret, stamp, content)}

    def lead(**fields: str) -> bytes:
        return json.dumps({"email": unique_email("quota"), **fields}).encode()

    body, line, ndjson = lead(), lead(kind="lead"), "application/x-ndjson"
    unsigned = {"X-API-Key": created["api key"], "Content-Type": "application/json"}
    junk = [await client.post(path, content=content, headers=headers) for _ in range(2)
            for path, content, headers in (
                ("/v1/leads", body, unsigned),
                ("/v1/leads", body, signed(body, secret="bks_not-the-secret")),
                ("/v1/leads", body, signed(body, late=400)),
                ("/v1/batch", line, signed(line, ndjson, secret="bks_not-the-secret")))]
    assert [r.status_code for r in junk] == [401] * 8
    headers = signed(body)
    accepted = await client.post("/v1/leads", content=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    replayed = await client.post("/v1/leads", content=body, headers=headers)
    assert replayed.status_code == 401 and "before" in replayed.text
    headers = signed(line, ndjson)
    batch = await client.post("/v1/batch", content=line, headers=headers)
    assert batch.status_code == 200, batch.text
    replayed = await client.post("/v1/batch", content=line, headers=headers)
    assert replayed.status_code == 401 and "before" in replayed.text
    # Resent requests answered from their first sending spend none either: anyone who saw
    # one could otherwise spend the quota by sending it again.
    keyed_line = lead(kind="lead", event_id=f"evt-{uuid.uuid4()}")
    headers = signed(keyed_line, ndjson)
    batch = await client.post("/v1/batch", content=keyed_line, headers=headers)
    resent = await client.post("/v1/batch", content=keyed_line, headers=headers)
    assert (batch.status_code, resent.status_code) == (200, 200), resent.text
    keyed = lead()
    headers = {**signed(keyed), "Idempotency-Key": f"quota-{uuid.uuid4()}"}
    accepted = await client.post("/v1/leads", content=keyed, headers=headers)
    resent = await client.post("/v1/leads", content=keyed, headers=headers)
    assert (accepted.status_code, resent.status_code) == (202, 202), resent.text
    last = lead()
    assert (await client.post("/v1/leads", content=last, headers=signed(last))
            ).status_code == 202, "the fifth of 5 tokens"
    over = lead()
    refused = await client.post("/v1/leads", content=over, headers=signed(over))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


async def _accepted_key(ingest: Ingest, key: str) -> bool:
    """Return True once the service knows ``key`` (a 422 means it got past the key check)."""
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        response = await client.post("/v1/leads", json={}, headers={"X-API-Key": key})
    return response.status_code == 422


async def test_keys_are_created_listed_and_revoked_with_the_baton_command(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    created = ingest.create_key("trade-show")
    key = created["api key"]
    await wait_until(lambda: _accepted_key(ingest, key), 10, "the new key to be loaded")
    listing = ingest.baton("keys", "list")
    assert created["key id"] in listing.stdout and "trade-show" in listing.stdout
    assert key not in listing.stdout, "a key is shown once, when it is created"
    assert listing.stdout.count(" web ") == 1, "the bootstrap key is stored once"
    async with ingest.engine.connect() as connection:
        stored = (await connection.execute(text(
            "SELECT key_hash FROM ingest.api_keys WHERE key_id = :id"),
            {"id": created["key id"]})).scalar_one()
    assert bytes(stored) == access.hash_api_key(key) and key.encode() not in bytes(stored)

    revoked = ingest.baton("keys", "revoke", created["key id"])
    assert revoked.returncode == 0, revoked.stderr

    async def refused() -> bool:
        response = await client.post("/v1/leads", json={}, headers={"X-API-Key": key})
        return response.status_code == 403

    await wait_until(refused, 5, "the revoked key to be refused")
    again = ingest.baton("keys", "revoke", created["key id"])
    assert again.returncode == 1 and "no active key" in again.stderr


async def test_a_batch_answers_each_line_and_commits_the_valid_ones(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    email = unique_email("batch")
    lead = {"kind": "lead", "email": email, "name": "高橋 大輔", "event_id": "b-1",
            "touchpoint": {"type": "download.implementation_guide"}}
    lines = [
        json.dumps(lead, ensure_ascii=False),
        json.dumps({"kind": "activity", "email": email, "type": "page_view.pricing"}),
        "{not json",
        json.dumps({"kind": "activity", "email": email, "type": "teleport"}),
        "",
        json.dumps(lead, ensure_ascii=False),  # the same record again: the same answer
        json.dumps({**lead, "name": "別人"}, ensure_ascii=False),  # same id, other content
        json.dumps({"kind": "lead", "email": unique_email("bot"), "honeypot": "x"}),
    ]
    body = "\n".join(lines).encode()
    response = await client.post("/v1/batch", content=body,
                                 headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 200, response.text
    result = response.json()
    statuses = [(item["line"], item["status"]) for item in result["results"]]
    assert statuses == [(1, 202), (2, 202), (3, 422), (4, 422), (6, 202), (7, 409), (8, 202)]
    assert result["results"][0]["event_id"] == result["results"][4]["event_id"]
    assert [error["loc"] for error in result["results"][3]["errors"]] == [["activity", "type"]]
    assert (result["accepted"], result["rejected"]) == (4, 3)
    await ingest.wait_for_events(result["results"][0]["lead_id"], 2)

    refused = await client.post("/v1/batch", content=body,
                                headers={"Content-Type": "application/json"})
    assert refused.status_code == 415
    too_many = "\n".join([json.dumps({"kind": "activity", "email": email,
                                      "type": "email.open"})] * 1001)
    over = await client.post("/v1/batch", content=too_many,
                             headers={"Content-Type": "application/x-ndjson"})
    assert over.status_code == 422


async def test_the_earlier_batch_line_claims_an_event_id_whichever_lead_sorts_first(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    # Lines used to be recorded in lead order, so a later line could take the id.
    first, second = sorted((unique_email("first"), unique_email("second")),
                           key=lead_id_for, reverse=True)
    event_id = f"evt-{uuid.uuid4()}"
    body = "\n".join(json.dumps({"kind": "lead", "email": email, "event_id": event_id})
                     for email in (first, second)).encode()
    response = await client.post("/v1/batch", content=body,
                                 headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 200, response.text
    assert [item["status"] for item in response.json()["results"]] == [202, 409]
    assert await ingest.count("touchpoints", "lead_id = :lead", lead=lead_id_for(first)) == 1
    assert await ingest.count("touchpoints", "lead_id = :lead", lead=lead_id_for(second)) == 0


async def test_a_batch_may_start_with_a_byte_order_mark(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    line = json.dumps({"kind": "lead", "email": unique_email("bom")}).encode()
    response = await client.post("/v1/batch", content=b"\xef\xbb\xbf" + line + b"\n" + line,
                                 headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 200, response.text
    assert [item["status"] for item in response.json()["results"]] == [202, 202]


async def test_a_batch_line_without_a_valid_kind_is_told_the_kinds_and_what_each_holds(
        ingest: Ingest, client: httpx.AsyncClient) -> None:
    # Lines shaped like /v1/leads bodies were refused at no field, with "Unable to extract
    # tag using discriminator 'kind'"; a kind of 3 or null was read as the tag '3' or 'None'.
    email = unique_email("kindless")
    lines = [{"email": email}, {"kind": "Lead", "email": email}, {"kind": 3, "email": email},
             {"kind": None, "email": email}, {"kind": {"is": "lead"}, "email": email}]
    body = "\n".join([*(json.dumps(line) for line in lines), "{not json", "[]"])
    response = await client.post("/v1/batch", content=body,
                                 headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [item["status"] for item in results] == [422] * 7
    errors = [error for item in results for error in item["errors"]]
    assert [(error["loc"], error["type"]) for error in errors] == [
        (["kind"], "missing"), *[(["kind"], "literal_error")] * 4,
        ([], "json_invalid"), ([], "dict_type")]
    for error in errors[:5]:
        assert ('"lead" for a lead' in error["msg"] and "POST /v1/leads" in error["msg"]
                and '"activity" for an activity' in error["msg"]
                and "POST /v1/activities" in error["msg"]), error
    assert [error["msg"].rpartition(", not ")[2] for error in errors[1:5]] == [
        '"Lead"', "a number", "null", "an object"]
    assert await ingest.count("leads", "email = :email", email=email) == 0
