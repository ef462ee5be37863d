"""Ingest's OpenAPI document against the app itself: schemathesis, in process, real database.

Every generated request must get an answer the document lists (status and body),
and never a 5xx.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis

from baton_runtime.service import ServiceContext
from tests.support.openapi import CHECKS, InProcessService, generated

pytestmark = [pytest.mark.integration, pytest.mark.slow]
API_KEY = "openapi-test-key-0123456789"

INGEST = InProcessService.build("ingest", ingest_api_keys={"web": API_KEY},
                                ingest_rate_limit_per_minute=1_000_000)
schema = INGEST.schema()


@schemathesis.serializer("application/x-ndjson")
def ndjson(context: Any, value: Any) -> bytes:
    """Return generated NDJSON bodies (strings) as they are."""
    return value.encode() if isinstance(value, str) else str(value).encode()


context = INGEST.context_fixture()


@schema.parametrize()
@generated(max_examples=40)
def test_every_answer_is_documented_and_none_is_a_server_error(
        case: schemathesis.Case[Any], context: ServiceContext) -> None:
    case.call_and_validate(headers={"X-API-Key": API_KEY}, checks=CHECKS)
