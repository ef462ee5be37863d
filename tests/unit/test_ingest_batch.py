"""A batch line is a lead or an activity by its kind: what the OpenAPI document shows of
the lines, their limits and their answers, and how a line without a valid kind is told."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from baton_runtime.http import create_app
from services.ingest import main, submissions
from services.ingest.guard import NDJSON
from services.ingest.settings import IngestSettings

KINDS = ('"lead" for a lead (the other fields as in a POST /v1/leads body) or "activity" for '
         'an activity (as in a POST /v1/activities body)')


def document(**settings: Any) -> dict[str, Any]:
    """Return ingest's OpenAPI document as the service serves it with ``settings``."""
    service = main.definition(IngestSettings(database_url="postgresql://unused/",
                                             kafka_bootstrap_servers="127.0.0.1:9", **settings))
    app = create_app(service="ingest", version="test", routers=service.routers, readiness={},
                     middleware=service.middleware)
    return app.openapi()


def refused(line: str) -> list[tuple[tuple[str | int, ...], str, str]]:
    """Return the (loc, type, msg) of each error a batch line is refused with."""
    with pytest.raises(ValidationError) as raised:
        submissions.batch_record(line.encode())
    return [(error["loc"], error["type"], error["msg"]) for error in raised.value.errors()]


def test_a_line_without_a_kind_is_told_which_kinds_there_are_and_what_each_holds() -> None:
    assert refused('{"email": "b1@example.com"}') == [
        (("kind",), "missing",
         f'Field required: each line says what it holds with "kind": {KINDS}')]


@pytest.mark.parametrize(("kind", "named"), [
    ('"Lead"', '"Lead"'), ('"リード"', '"リード"'), ("3", "a number"), ("3.5", "a number"),
    ("true", "true"), ("null", "null"), ("[]", "an array"), ('{"is": "lead"}', "an object"),
    ('"' + "x" * 100 + '"', '"' + "x" * 40 + '…"'),
])
def test_a_line_with_another_kind_is_told_the_kinds_and_what_it_sent(kind: str,
                                                                       named: str) -> None:
    assert refused(f'{{"kind": {kind}, "email": "b1@example.com"}}') == [
        (("kind",), "literal_error", f"Input should be {KINDS}, not {named}")]


def test_other_refusals_of_a_line_are_as_they_were() -> None:
    assert [(loc, kind) for loc, kind, _ in refused("{not json")] == [((), "json_invalid")]
    assert [(loc, kind) for loc, kind, _ in refused('[{"kind": "lead"}]')] == [
        ((), "dict_type")]
    assert [(loc, kind) for loc, kind, _ in refused('{"kind": "lead", "email": "b1"}')] == [
        (("lead", "email"), "string_pattern_mismatch")]
    assert [(loc, kind) for loc, kind, _ in refused(
        '{"kind": "activity", "email": "b1@example.com"}')] == [(("activity", "type"), "missing")]


def test_the_lines_a_batch_takes_are_documented_with_their_limits_as_set() -> None:
    operation = document(ingest_max_batch_records=50,
                         ingest_max_batch_bytes=65_536)["paths"]["/v1/batch"]["post"]
    [(media_type, body)] = operation["requestBody"]["content"].items()
    assert media_type == NDJSON
    schema = body["schema"]
    assert (schema["type"], schema["minItems"], schema["maxItems"]) == ("array", 1, 50)
    assert "65,536 bytes" in schema["description"]
    assert "65,536 bytes" in operation["responses"]["413"]["description"]
    assert "50 lines" in operation["responses"]["422"]["description"]
    assert "50 leads and activities" in operation["summary"]
    # The line models are no components of the document: each line's schema stands alone.
    assert "$ref" not in json.dumps(schema)
    lead, activity = schema["items"]["oneOf"]
    assert lead["properties"]["kind"]["const"] == "lead"
    assert activity["properties"]["kind"]["const"] == "activity"
    assert "kind" in lead["required"] and "kind" in activity["required"]
    assert set(lead["properties"]) - {"kind"} == set(submissions.LeadSubmission.model_fields)
    assert set(activity["properties"]) - {"kind"} == set(
        submissions.ActivitySubmission.model_fields)
    assert lead["properties"]["touchpoint"]["properties"]["type"]["enum"]
    assert activity["properties"]["partner_notes"]["anyOf"][0]["properties"]["meeting_at"]


def test_the_documented_example_is_lines_of_each_kind_that_validate() -> None:
    body = document()["paths"]["/v1/batch"]["post"]["requestBody"]["content"][NDJSON]
    lines = body["example"].splitlines()
    assert [type(submissions.batch_record(line.encode())) for line in lines] == [
        submissions.LeadRecord, submissions.ActivityRecord]
    assert body["schema"]["maxItems"] == 1000, "the default limit"


def test_each_line_s_answer_is_documented_with_its_errors_shape() -> None:
    components = document()["components"]["schemas"]
    result = components["RecordResult"]["properties"]
    assert result["status"]["enum"] == [202, 409, 422]
    [errors, _] = result["errors"]["anyOf"]
    error = components[errors["items"]["$ref"].rpartition("/")[2]]
    assert set(error["required"]) == {"loc", "msg", "type"}
