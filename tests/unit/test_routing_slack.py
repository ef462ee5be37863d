"""Routing's Slack interactivity rules: signatures, payloads, response URLs, replies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import HTTPException
from slack_sdk.signature import SignatureVerifier

from services.routing.slack import Reply, parse, response_url_allowed, verify

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)
LEAD_ID = "0b5e8e7c-2f64-4e0b-9a55-7d1c1f0e9a11"
PAYLOAD: dict[str, Any] = {
    "type": "block_actions",
    "user": {"id": "U024BE7LH", "username": "sato"},
    "actions": [{"action_id": "lead.accept", "block_id": f"lead:{LEAD_ID}", "value": LEAD_ID,
                 "type": "button"}],
    "response_url": "https://hooks.slack.com/actions/T0/1/xyz",
    "message": {"text": "🔥 ホットリード", "blocks": [
        {"type": "header", "block_id": "h",
         "text": {"type": "plain_text", "text": "🔥 ホットリード"}},
        {"type": "actions", "block_id": f"lead:{LEAD_ID}", "elements": []}]},
}


def signed(body: bytes, at: datetime) -> tuple[str, str]:
    """Return (timestamp, signature) as Slack would send them for ``body`` at ``at``."""
    timestamp = str(int(at.timestamp()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return timestamp, signature


def form(payload: object) -> bytes:
    return urlencode({"payload": json.dumps(payload, ensure_ascii=False)}).encode()


def test_a_fresh_correctly_signed_request_passes() -> None:
    body = form(PAYLOAD)
    timestamp, signature = signed(body, NOW - timedelta(minutes=4))
    assert verify(body, timestamp, signature, SECRET, lambda: NOW) == signature


@pytest.mark.parametrize("skew", [timedelta(minutes=6), -timedelta(minutes=6)])
def test_a_request_outside_the_five_minute_window_is_refused(skew: timedelta) -> None:
    body = form(PAYLOAD)
    timestamp, signature = signed(body, NOW - skew)
    with pytest.raises(HTTPException, match="5-minute window") as refused:
        verify(body, timestamp, signature, SECRET, lambda: NOW)
    assert refused.value.status_code == 401


def test_a_forged_or_tampered_request_is_refused() -> None:
    body = form(PAYLOAD)
    timestamp, signature = signed(body, NOW)
    tampered = form({**PAYLOAD, "user": {"id": "U0EVIL"}})
    for candidate, secret in ((tampered, SECRET), (body, "another-secret")):
        with pytest.raises(HTTPException, match="signature does not match"):
            verify(candidate, timestamp, signature, secret, lambda: NOW)


def test_a_body_that_is_not_utf8_is_refused_as_unsigned() -> None:
    timestamp, signature = signed(b"payload=x", NOW)
    with pytest.raises(HTTPException, match="signature does not match") as refused:
        verify(b"\x80", timestamp, signature, SECRET, lambda: NOW)
    assert refused.value.status_code == 401


@pytest.mark.parametrize(("timestamp", "signature"), [
    (None, "v0=abc"), ("1700000000", None), ("soon", "v0=abc"), ("", "v0=abc"),
    ("²", "v0=abc"), (str(int(NOW.timestamp())), "v0=é")])
def test_missing_or_malformed_signature_headers_are_refused(timestamp: str | None,
                                                            signature: str | None) -> None:
    with pytest.raises(HTTPException, match="missing or malformed"):
        verify(b"payload=%7B%7D", timestamp, signature, SECRET, lambda: NOW)


def test_a_block_actions_payload_is_parsed_with_japanese_intact() -> None:
    payload = parse(form(PAYLOAD))
    assert (payload.user.id, payload.actions[0].action_id, payload.actions[0].value) == (
        "U024BE7LH", "lead.accept", LEAD_ID)
    assert payload.message is not None
    assert payload.message.blocks[0]["text"]["text"] == "🔥 ホットリード"


@pytest.mark.parametrize(("body", "field"), [
    (b"text=hello", "payload"),
    (urlencode({"payload": "{not json"}).encode(), "payload"),
    (form({**PAYLOAD, "type": "view_submission"}), "type"),
    (form({**PAYLOAD, "actions": []}), "actions"),
    # The alert's blocks are kept when it is updated: they must be blocks (objects).
    (form({**PAYLOAD, "message": {"blocks": ["not a block"]}}), "blocks"),
    (form({**PAYLOAD, "message": {"blocks": "text"}}), "blocks"),
    (form({**PAYLOAD, "message": {"blocks": None}}), "blocks"),
])
def test_other_bodies_get_a_422_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(HTTPException) as refused:
        parse(body)
    assert refused.value.status_code == 422
    detail: Any = refused.value.detail  # FastAPI types it str; ours is a list of errors
    assert field in {str(part) for item in detail for part in item["loc"]}


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://hooks.slack.com/actions/T0/1/xyz", True),
    ("http://hooks.slack.com/actions/T0/1/xyz", False),
    ("https://hooks.slack.com.evil.example/actions", False),
    ("https://hooks.slack.com@evil.example/actions", False),
    ("https://evil.example/actions", False),
    ("http://127.0.0.1:9999/actions", True),
    ("file:///etc/passwd", False),
])
def test_response_urls_are_followed_only_to_allowed_hosts(url: str, allowed: bool) -> None:
    assert response_url_allowed(url, frozenset({"hooks.slack.com", "127.0.0.1"})) is allowed


def test_a_reply_replaces_the_buttons_with_the_outcome_or_speaks_privately() -> None:
    message = parse(form(PAYLOAD)).message
    replaced = Reply("✅ 受け入れました", replace_original=True).body(message, LEAD_ID)
    assert replaced["replace_original"] is True
    assert [b.get("block_id") for b in replaced["blocks"]] == ["h", None]
    assert replaced["blocks"][-1]["text"]["text"] == "✅ 受け入れました"
    private = Reply("⚠️ no", replace_original=False).body(message, LEAD_ID)
    assert private == {"response_type": "ephemeral", "replace_original": False, "text": "⚠️ no"}
