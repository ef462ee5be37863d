"""Slack interactivity: the Accept / Reject buttons of hot-lead alerts.

Slack signs each request; a request older than 5 minutes, badly signed or seen
before is refused. The action runs as the API's does; the answer goes back at once
and the alert is updated afterwards through the payload's ``response_url``, which is
only followed to the allowed hosts.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx
import structlog
from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from slack_sdk.signature import Clock as SlackClock
from slack_sdk.signature import SignatureVerifier

from baton_runtime.clock import Clock
from baton_runtime.http import error_response
from baton_runtime.service import ServiceContext, context_of
from baton_runtime.uow import UnitOfWork
from services.routing import domain, handlers, store
from services.routing.settings import RoutingSettings

log = structlog.get_logger(__name__)
router = APIRouter(tags=["slack"])

ACCEPT_ACTION = "lead.accept"
REJECT_ACTION = "lead.reject"
SIGNATURE_WINDOW = timedelta(minutes=5)
TIMESTAMP_DIGITS = 20
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
RESPONSE_TIMEOUT_SECONDS = 5.0

TEXT = {
    "ja": {
        ACCEPT_ACTION: "✅ <@{user}> さんが受け入れました（{time}）",
        REJECT_ACTION: "↩️ <@{user}> さんが見送りました（{time}）。リードはナーチャリングに戻ります",
        "unlinked": "⚠️ この Slack アカウントは Baton の担当者に紐付いていません",
        "refused": "⚠️ 操作できません: {why}",
        "reject_reason": "Slack のアラートから見送り",
    },
    "en": {
        ACCEPT_ACTION: "✅ Accepted by <@{user}> ({time})",
        REJECT_ACTION: "↩️ Rejected by <@{user}> ({time}); the lead goes back to nurturing",
        "unlinked": "⚠️ Your Slack account is not linked to a Baton rep",
        "refused": "⚠️ Not possible: {why}",
        "reject_reason": "declined from the Slack alert",
    },
}


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SlackUser(_Payload):
    """Who clicked."""

    id: Annotated[str, Field(min_length=1, max_length=50)]


class SlackAction(_Payload):
    """The button that was clicked; its value is the lead id."""

    action_id: Annotated[str, Field(max_length=255)]
    value: Annotated[str, Field(max_length=2000)] = ""


class SlackMessage(_Payload):
    """The alert the button is on; its blocks are kept when the outcome replaces the buttons."""

    blocks: list[dict[str, Any]] = []


class BlockActions(_Payload):
    """The part of Slack's ``block_actions`` payload routing uses."""

    type: Literal["block_actions"]
    user: SlackUser
    actions: Annotated[list[SlackAction], Field(min_length=1)]
    response_url: Annotated[str, Field(max_length=2000)] | None = None
    message: SlackMessage | None = None


class _ContextClock(SlackClock):
    """slack_sdk's clock, reading the service's clock so that tests control time."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock().timestamp()


def response_url_allowed(url: str, hosts: frozenset[str]) -> bool:
    """Return True for an https URL on an allowed host (plain http only on loopback)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in hosts:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK_HOSTS)


def _refuse(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail)


def verify(body: bytes, timestamp: str | None, signature: str | None, secret: str,
           clock: Clock) -> str:
    """Return the signature if Slack signed ``body`` within the last 5 minutes; raise 401."""
    # isascii: str.isdigit accepts digits int() refuses (e.g. "²"), and hmac compares ASCII only;
    # the length: int() refuses more than 4,300 digits, and Unix seconds need 10 until 2286
    if not (timestamp and len(timestamp) <= TIMESTAMP_DIGITS and timestamp.isascii()
            and timestamp.isdigit() and signature and signature.isascii()):
        raise _refuse("missing or malformed X-Slack-Request-Timestamp / X-Slack-Signature")
    if abs(clock().timestamp() - int(timestamp)) > SIGNATURE_WINDOW.total_seconds():
        raise _refuse("the request timestamp is outside the 5-minute window")
    try:
        valid = SignatureVerifier(secret, _ContextClock(clock)).is_valid(body, timestamp,
                                                                          signature)
    except UnicodeDecodeError:  # slack_sdk decodes the body; Slack only signs UTF-8 forms
        valid = False
    if not valid:
        raise _refuse("the Slack signature does not match")
    return signature


def parse(body: bytes) -> BlockActions:
    """Return the ``payload`` form field as block actions; raise 422 with field detail."""
    try:
        raw = parse_qs(body.decode(), strict_parsing=True)["payload"][0]
        return BlockActions.model_validate(json.loads(raw))
    except (UnicodeDecodeError, ValueError, KeyError) as error:
        detail: Any = (error.errors(include_url=False, include_context=False)
                       if isinstance(error, ValidationError)
                       else [{"loc": ["body", "payload"], "type": "invalid_payload",
                              "msg": "expected a form field `payload` holding JSON"}])
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None


@dataclass(frozen=True)
class Reply:
    """What to send to ``response_url``: a replacement of the alert or a private note."""

    text: str
    replace_original: bool

    def body(self, message: SlackMessage | None, lead_id: str) -> dict[str, Any]:
        """Return the JSON to post: the alert minus its buttons plus the outcome, or a note.

        A note (ephemeral) is seen only by the user who clicked.
        """
        if not self.replace_original:
            return {"response_type": "ephemeral", "replace_original": False, "text": self.text}
        kept = [block for block in (message.blocks if message else [])
                if block.get("block_id") != f"lead:{lead_id}"]
        outcome = {"type": "section", "text": {"type": "mrkdwn", "text": self.text}}
        return {"replace_original": True, "text": self.text, "blocks": [*kept, outcome]}


async def apply(uow: UnitOfWork, payload: BlockActions, settings: RoutingSettings,
                now: datetime) -> Reply | None:
    """Apply the clicked button as the API would; return the reply, None for other buttons."""
    text = TEXT[settings.slack_locale]
    action = payload.actions[0]
    if action.action_id not in (ACCEPT_ACTION, REJECT_ACTION):
        return None
    rep = await store.rep_by_slack_user(uow.connection, payload.user.id)
    if rep is None:
        return Reply(text["unlinked"], replace_original=False)
    try:
        lead_id = uuid.UUID(action.value)
    except ValueError:
        return Reply(text["refused"].format(why=f"{action.value!r} is not a lead id"), False)
    actor = f"{rep.rep_id} via Slack"
    calendar = settings.business_calendar()
    try:
        async with uow.savepoint():
            if action.action_id == ACCEPT_ACTION:
                await handlers.accept(uow, lead_id, rep.rep_id, now=now, actor=actor,
                                      calendar=calendar)
            else:
                await handlers.reject(uow, lead_id, rep.rep_id, text["reject_reason"],
                                      now=now, actor=actor)
    except (domain.ActionRefused, domain.UnknownLead, domain.UnknownRep) as error:
        return Reply(text["refused"].format(why=error), replace_original=False)
    local = now.astimezone(calendar.zone)
    return Reply(text[action.action_id].format(user=payload.user.id,
                                               time=f"{local:%Y-%m-%d %H:%M %Z}"), True)


async def post_reply(url: str, body: dict[str, Any]) -> None:
    """Post the reply to Slack's response_url; a failure only leaves the alert as it was."""
    try:
        async with httpx.AsyncClient(timeout=RESPONSE_TIMEOUT_SECONDS) as client:
            response = await client.post(url, json=body)
            response.raise_for_status()
    except httpx.HTTPError as error:
        log.warning("could not update the Slack message", error=repr(error))


@router.post(
    "/slack/actions",
    status_code=status.HTTP_200_OK,
    response_class=Response,
    summary="Slack interactivity: Accept / Reject buttons of hot-lead alerts.",
    responses={
        200: {"description": "Applied (or not ours); the alert is updated via response_url."},
        401: error_response("Missing, stale (over 5 minutes), forged or replayed request."),
        422: error_response("Not a block_actions payload (field-level detail)."),
        503: error_response("BATON_SLACK_SIGNING_SECRET is not set."),
    },
    # Read as bytes (the signature covers them), so FastAPI cannot document it itself.
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["payload"],
            "properties": {"payload": {
                "type": "string",
                "description": "Slack's `block_actions` payload, as JSON."}}}}}}},
)
async def slack_actions(request: Request, background: BackgroundTasks,
                        context: Annotated[ServiceContext, Depends(context_of)]) -> Response:
    """Verify Slack's signature, apply the button's action and answer at once."""
    settings: RoutingSettings = context.settings
    if settings.slack_signing_secret is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "Slack actions are off: BATON_SLACK_SIGNING_SECRET is not set")
    body = await request.body()
    signature = verify(body, request.headers.get("X-Slack-Request-Timestamp"),
                       request.headers.get("X-Slack-Signature"),
                       settings.slack_signing_secret.get_secret_value(), context.clock)
    payload = parse(body)
    now = context.clock()
    async with context.unit_of_work() as uow:
        if not await store.claim_slack_request(uow.connection, signature, now,
                                               remember=2 * SIGNATURE_WINDOW):
            raise _refuse("this request was already received (replay)")
        reply = await apply(uow, payload, settings, now)
        await uow.commit()
    url = payload.response_url
    if reply is not None and url:
        if response_url_allowed(url, settings.slack_response_hosts):
            background.add_task(post_reply, url,
                                reply.body(payload.message, payload.actions[0].value))
        else:
            log.warning("response_url host not allowed; the alert is not updated",
                        host=urlsplit(url).hostname)
    return Response(status_code=status.HTTP_200_OK)
