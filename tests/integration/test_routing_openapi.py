"""Routing's OpenAPI document against the app itself: schemathesis, in process, real database.

Every generated request must get an answer the document lists (status and body), and
never a 5xx. Reps and leads in several stages are seeded, and requests mostly name them;
Slack actions are signed with the configured secret, so that they get past the signature
to the payload and the lead.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.core import NotSet

from baton_runtime.service import ServiceContext
from schemas.events import Tier
from services.routing.slack import ACCEPT_ACTION, REJECT_ACTION
from tests.integration.test_routing_harness import (
    SIGNING_SECRET,
    button_click,
    lead_scored,
    rep_body,
    slack_headers,
)
from tests.support.openapi import CHECKS, InProcessService, KnownValues, generated

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SLACK_ACTIONS = "/slack/actions"
# Followed after the answer: nothing listens on port 9, and the other host is not allowed.
RESPONSE_URLS = ("http://127.0.0.1:9/actions/T0/1/x", "https://hooks.slack.com/actions/T0/1/x")

ROUTING = InProcessService.build("routing", slack_signing_secret=SIGNING_SECRET,
                                 slack_response_hosts=frozenset({"127.0.0.1"}))
schema = ROUTING.schema()
KNOWN = KnownValues()
KNOWN.install(schema)
# Reps by id: team and Slack user. They work every hour of every day, so that leads are
# assigned to them whenever the test runs.
REPS = {"sato": ("sdr", "U0SATO1"), "suzuki": ("sdr", "U0SUZU1"),
        "tanaka": ("bdr", "U0TANA1"), "field-1": ("field_sales", None)}
ALWAYS_AT_WORK = {"starts": "00:00", "ends": "23:59:59", "workdays": [1, 2, 3, 4, 5, 6, 7],
                  "holidays": None}
# MQLs whose alerts' buttons Slack actions click; requests to the API do not name them, so
# that clicks find leads still to accept or reject however the API's requests went.
ALERTED: list[uuid.UUID] = []
# Any JSON value.
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=10), inner, max_size=3), max_leaves=8)
# The alert a clicked button is on, as anyone holding the secret (not only Slack) could send it.
MESSAGES = st.one_of(JSON, st.fixed_dictionaries({"blocks": JSON}),
                     st.fixed_dictionaries({"blocks": st.lists(JSON, max_size=3)}))


async def seed(context: ServiceContext) -> None:
    """Create the reps and score leads: MQLs of both inside-sales teams, one lead accepted
    (SAL), one qualified (SQL), two too cold to be MQLs, and the alerted MQLs."""
    async with ROUTING.client() as client:
        for rep_id, (team, slack_user) in REPS.items():
            response = await client.put(f"/v1/reps/{rep_id}", json=rep_body(
                team, slack_user_id=slack_user, working_hours=ALWAYS_AT_WORK))
            assert response.status_code == 200, response.text
        leads = [lead_scored(domain=f"company{i}.co.jp", tier=tier, score=score, source=source)
                 for i, (tier, score, source) in enumerate([
                     (Tier.A, 90, "web-form"), (Tier.A, 85, "web-form"),
                     (Tier.A, 88, "web-form"), (Tier.A, 95, "partner"),
                     (Tier.A, 80, "outbound"), (Tier.B, 60, "web-form"),
                     (Tier.C, 20, "web-form")])]
        alerted = [lead_scored(domain=f"alerted{i}.co.jp") for i in range(3)]
        await ROUTING.handle(context, *leads, *alerted)
        accepted, qualified = (str(lead.lead_id) for lead in leads[:2])
        owners = {lead_id: (await client.get(f"/v1/leads/{lead_id}")).json()["owner_id"]
                  for lead_id in (accepted, qualified)}
        for lead_id, owner in owners.items():
            response = await client.post(f"/v1/leads/{lead_id}/accept", json={"rep_id": owner})
            assert response.status_code == 200, response.text
        response = await client.post(f"/v1/leads/{qualified}/qualify", json={
            "rep_id": owners[qualified], "budget": True, "authority": True, "need": True,
            "timeframe": True})
        assert response.status_code == 200, response.text
    KNOWN.add("lead_id", *(str(lead.lead_id) for lead in leads))
    KNOWN.add("rep_id", *REPS)
    ALERTED.extend(lead.lead_id for lead in alerted)


context = ROUTING.context_fixture(seed)


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Return Slack action bodies that are often clicks on an alert's buttons."""
    if context.operation is None or context.operation.path != SLACK_ACTIONS:
        return st.just(body)
    users = [user for _, user in REPS.values() if user] + ["U0NOBODY"]
    clicks = st.builds(
        button_click, action_id=st.sampled_from([ACCEPT_ACTION, REJECT_ACTION, "lead.open"]),
        lead_id=st.sampled_from(ALERTED),
        user=st.sampled_from(users), response_url=st.sampled_from(RESPONSE_URLS))
    odd_clicks = st.tuples(clicks, MESSAGES).map(
        lambda click_and_message: {**click_and_message[0], "message": click_and_message[1]})
    return st.one_of(st.just(body), (clicks | odd_clicks).map(
        lambda click: {"payload": json.dumps(click)}))


def form(body: Any) -> bytes:
    """Return the bytes a generated form body is sent as, so that they can be signed."""
    if isinstance(body, NotSet):
        return b""
    if isinstance(body, bytes):
        return body
    # Lone surrogates in generated text go as they are: a body that is not UTF-8.
    if isinstance(body, str):
        return body.encode(errors="surrogatepass")
    if isinstance(body, Mapping):
        return urlencode(body, doseq=True, errors="surrogatepass").encode()
    return json.dumps(body).encode()


@schema.parametrize()
@generated(max_examples=30)
def test_every_answer_is_documented_and_none_is_a_server_error(
        case: schemathesis.Case[Any], context: ServiceContext) -> None:
    headers: dict[str, str] = {}
    if case.path == SLACK_ACTIONS:
        case.body = form(case.body)
        headers = slack_headers(case.body, datetime.now(UTC),
                                context.settings.slack_signing_secret.get_secret_value())
    case.call_and_validate(headers=headers, checks=CHECKS)
