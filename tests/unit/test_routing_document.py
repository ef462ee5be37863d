"""Routing's OpenAPI document says what the API accepts and answers."""

from __future__ import annotations

import re
from datetime import time

import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.routing import slack
from services.routing.api import LOCAL_TIME, WorkingHours

LATEST = "23:59:59.999999"


def test_working_hours_are_documented_as_the_local_times_the_api_answers() -> None:
    properties = WorkingHours.model_json_schema()["properties"]
    answered = WorkingHours(starts=time(9, 30), ends=time(18, 0, 0, 1)).model_dump(mode="json")
    for field in ("starts", "ends"):
        # `format: time` is RFC 3339's full-time: it requires the UTC offset these lack.
        assert "format" not in properties[field]
        assert properties[field]["pattern"] == LOCAL_TIME
        assert re.match(LOCAL_TIME, answered[field]), answered[field]


@given(st.from_regex(LOCAL_TIME, fullmatch=True))
def test_every_documented_time_is_accepted(starts: str) -> None:
    try:
        WorkingHours(starts=starts, ends=LATEST)
    except ValidationError as error:  # only as late as the end of the day, and so not before it
        assert [item["loc"] for item in error.errors()] == [()], error


@pytest.mark.parametrize("given_time", ["09:00:00+09:00", "09:00Z", "9:00", "24:00"])
def test_times_with_an_offset_or_out_of_range_are_refused_and_not_documented(
        given_time: str) -> None:
    assert not re.match(LOCAL_TIME, given_time)
    with pytest.raises(ValidationError):
        WorkingHours(starts=given_time, ends=LATEST)


def test_slack_actions_document_their_form_body_and_json_errors() -> None:
    app = FastAPI()
    app.include_router(slack.router)
    operation = app.openapi()["paths"]["/slack/actions"]["post"]
    form = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]
    assert form["schema"]["required"] == ["payload"]
    for status in ("401", "422", "503"):
        assert "application/json" in operation["responses"][status]["content"], status
