"""What scoring stores and sends is the same whichever way it is encoded."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, DecimalTuple
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from baton_runtime.db import json_text
from schemas.events import Account, LeadProfile, LeadScored, ScoreReason, Tier
from services.scoring.domain import Reason
from services.scoring.handlers import score_reasons
from services.scoring.store import in_utc_if_utc

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)  # no lone surrogates
points = st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                   st.floats(min_value=-200, max_value=200).map(lambda x: round(x, 2)),
                   st.integers(min_value=-100, max_value=100))
reasons = st.lists(st.builds(Reason, code=st.text(max_size=40), label=texts, points=points),
                   max_size=60)


def decimal_digits(text: str) -> DecimalTuple:
    """Return a JSON number as PostgreSQL's numeric keeps it: sign, digits and exponent."""
    return Decimal(text).as_tuple()


def as_stored(text: str | bytes) -> Any:
    """Return a JSON text as JSONB holds it: strings, and numbers digit for digit."""
    return json.loads(text, parse_float=decimal_digits)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries({"code": texts, "label": texts, "points": points})),
       st.lists(texts))
def test_json_text_stores_what_json_dumps_stored(stored: list[dict[str, Any]],
                                                 signals: list[str]) -> None:
    for value in (stored, signals):
        assert as_stored(json_text(value)) == as_stored(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(reasons)
def test_score_reasons_are_what_one_scorereason_each_gives(given_reasons: list[Reason]) -> None:
    expected = [ScoreReason(code=r.code, label=r.label, points=r.points) for r in given_reasons]
    stored, sent = score_reasons(given_reasons)
    assert stored == [reason.model_dump(mode="json") for reason in expected]
    assert [repr(reason) for reason in sent] == [repr(reason) for reason in expected]
    profile = LeadProfile(email="a@example.co.jp", title="部長")
    account = Account(account_key="domain:example.co.jp")

    def event(reasons: list[ScoreReason]) -> bytes:
        return LeadScored(lead_id=uuid.UUID(int=1), scored_at=datetime(2026, 11, 20, tzinfo=UTC),
                          score=50, tier=Tier.B, reasons=reasons, model_version="1",
                          profile=profile, account=account,
                          source="web").model_dump_json().encode()

    assert event(sent) == event(expected)


def test_a_reason_scorereason_refuses_is_refused_with_the_same_error() -> None:
    long_title = Reason("fit.title.manager", "title: " + "部" * 500, 10.0)
    with pytest.raises(ValidationError) as one_by_one:
        ScoreReason(code=long_title.code, label=long_title.label, points=long_title.points)
    with pytest.raises(ValidationError) as together:
        score_reasons([Reason("fit.icp.industry", "industry: it", 10.0), long_title])
    assert str(together.value) == str(one_by_one.value)


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=9)),
                                               timezone(timedelta(hours=-5))])))
def test_a_parsed_moment_is_put_in_utc_only_when_that_keeps_its_local_time(
        moment: datetime) -> None:
    parsed = TypeAdapter(datetime).validate_json(json.dumps(moment.isoformat()))
    assert parsed.tzinfo is not UTC  # the parser's own zone object
    moved = in_utc_if_utc(parsed)
    assert moved == parsed
    assert moved.replace(tzinfo=None) == parsed.replace(tzinfo=None)  # as the event gave it
    assert (moved.tzinfo is UTC) == (parsed.utcoffset() == timedelta(0))
    assert in_utc_if_utc(moment.astimezone(UTC)).tzinfo is UTC
