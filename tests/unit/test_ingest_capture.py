"""Building a capture and its event's parts: what the shortcuts give equals the long way."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from schemas.events import Attribution, LeadProfile
from services.ingest import domain, handlers
from services.ingest.submissions import LeadSubmission

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
ATTRIBUTION_FIELDS = {"source": "lead_source", "utm_source": "utm_source",
                      "utm_medium": "utm_medium", "utm_campaign": "utm_campaign",
                      "utm_term": "utm_term", "utm_content": "utm_content"}
VALUES = [None, "", "  ", "展示会", "ｎｅｗｓｌｅｔｔｅｒ", "web"]


def reference_attribution(submission: LeadSubmission) -> Attribution | None:
    """Return the attribution as lead_capture built it: always, then dropped if empty."""
    attribution = Attribution(**{field: getattr(submission, name)
                                 for name, field in ATTRIBUTION_FIELDS.items()})
    return attribution if attribution.model_dump(exclude_none=True) else None


def test_the_attribution_is_what_building_it_and_dropping_it_when_empty_gave() -> None:
    checked = 0
    for names in itertools.chain.from_iterable(
            itertools.combinations(ATTRIBUTION_FIELDS, size) for size in range(3)):
        for values in itertools.product(VALUES, repeat=len(names)):
            body: dict[str, Any] = {"email": "taro@example.co.jp",
                                    **dict(zip(names, values, strict=True))}
            submission = LeadSubmission.model_validate(body)
            capture = handlers.lead_capture(submission, source="web", now=NOW,
                                            idempotency_key=None)
            expected = reference_attribution(submission)
            assert capture.attribution == expected, body
            assert type(capture.attribution) is type(expected)
            checked += 1
    assert checked > 500


def test_the_event_profile_is_the_merged_record_s_profile_fields() -> None:
    merged = {"email": "taro@example.co.jp", "name": "山田 太郎", "phone": "+81312345678",
              "company": "サンプル", "consent": True, "company_domain": "example.co.jp",
              "title": "部長", "department": "営業", "industry": "製造",
              "employee_band": "100-499", "region": "関東"}
    for size in range(len(merged) + 1):
        for names in itertools.combinations(merged, size):
            record = {"email": merged["email"], **{name: merged[name] for name in names}}
            expected = LeadProfile.model_validate(
                {name: record[name] for name in LeadProfile.model_fields if name in record})
            assert domain.profile_of(record) == expected


def test_a_batch_records_by_lead_but_an_event_id_is_claimed_by_its_earliest_line() -> None:
    emails = sorted((f"lead{number}@sample.co.jp" for number in range(4)),
                    key=domain.lead_id_for, reverse=True)
    captures = [(number, handlers.lead_capture(
        LeadSubmission(email=email, event_id=event_id), source="web", now=NOW,
        idempotency_key=None)) for number, (email, event_id) in enumerate(
            zip(emails, ["shared", None, "shared", None], strict=True), start=1)]
    order = [number for number, _ in handlers.recording_order(captures)]
    # Lines 2 and 4 go by their own leads; line 3 follows line 1, whose id it reuses.
    assert order == [4, 2, 1, 3]
