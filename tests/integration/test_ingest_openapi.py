"""Ingest's OpenAPI document against the app itself: schemathesis, in process, real database.

Every generated request must get an answer the document lists (status and body),
and never a 5xx.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from hypothesis import strategies as st

from baton_runtime.service import ServiceContext
from services.ingest.guard import NDJSON
from tests.support.openapi import CHECKS, InProcessService, generated

pytestmark = [pytest.mark.integration, pytest.mark.slow]
API_KEY = "openapi-test-key-0123456789"

INGEST = InProcessService.build("ingest", ingest_api_keys={"web": API_KEY},
                                ingest_rate_limit_per_minute=1_000_000)
schema = INGEST.schema()
# Addresses a generated capture or batch line mostly takes: the document's pattern for an
# address is not what its strings are generated from, and only a valid one is recorded.
ADDRESSES = ["hanako.sato@example.co.jp", "ichiro.tanaka@sample.co.jp", "k@example.com"]
CAPTURES = frozenset({"/v1/leads", "/v1/activities"})


@schemathesis.serializer(NDJSON)
def ndjson(context: Any, value: Any) -> bytes:
    """Return a generated batch as NDJSON: the document shows its lines as an array, and
    each item goes on a line of its own; the document's example is NDJSON already."""
    if isinstance(value, str):
        return value.encode()
    lines = value if isinstance(value, list) else [value]
    return "\n".join(json.dumps(line) for line in lines).encode()


def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Return a strategy of a generated body: a capture, or each line of a batch, mostly
    has a valid address, so that generated captures are recorded too, not only refused."""
    operation = context.operation
    if operation is None:
        return st.just(body)
    if operation.path == "/v1/batch" and isinstance(body, list):
        return st.tuples(*(_mostly_addressed(line) for line in body)).map(list)
    if operation.path in CAPTURES:
        return _mostly_addressed(body)
    return st.just(body)


def _mostly_addressed(line: Any) -> st.SearchStrategy[Any]:
    """Return a strategy of a line as generated once in four, else with a known address."""
    if not isinstance(line, dict) or "email" not in line:
        return st.just(line)
    addressed = [{**line, "email": address} for address in ADDRESSES]
    return st.integers(0, 3).flatmap(
        lambda draw: st.just(line) if draw == 0 else st.sampled_from(addressed))


schema.hook(flatmap_body)


context = INGEST.context_fixture()


@schema.parametrize()
@generated(max_examples=40)
def test_every_answer_is_documented_and_none_is_a_server_error(
        case: schemathesis.Case[Any], context: ServiceContext) -> None:
    case.call_and_validate(headers={"X-API-Key": API_KEY}, checks=CHECKS)


async def test_the_documented_batch_example_is_recorded_line_by_line(
        context: ServiceContext) -> None:
    body = INGEST.app.openapi()["paths"]["/v1/batch"]["post"]["requestBody"]["content"][NDJSON]
    async with INGEST.client() as client:
        response = await client.post("/v1/batch", content=body["example"].encode(),
                                     headers={"X-API-Key": API_KEY, "Content-Type": NDJSON})
    assert response.status_code == 200, response.text
    assert [item["status"] for item in response.json()["results"]] == [202, 202]
