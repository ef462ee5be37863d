"""Webhook adapters: field mappings and HubSpot form submissions become submissions."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.events import TouchpointType
from services.ingest.adapters import (
    FieldMapping,
    HubSpotSubmission,
    apply_mapping,
    full_name,
    hubspot_to_lead,
    load_mapping_file,
)
from services.ingest.submissions import LeadSubmission


def test_a_mapping_picks_joins_translates_and_fixes_values() -> None:
    mapping = FieldMapping.model_validate({
        "kind": "activity",
        "fields": {"email": "person.emails.0", "name": ["person.last", "person.first"],
                   "type": "event", "asset_id": "meta.page", "company": "person.missing"},
        "values": {"type": {"visit": "page_view.pricing"}},
        "constants": {"campaign": "spring"},
    })
    body = apply_mapping(mapping, {
        "person": {"emails": ["a@sample.co.jp", "b@sample.co.jp"], "last": "山田",
                   "first": "太郎"},
        "event": "visit", "meta": {"page": "/pricing"}})
    assert body == {"email": "a@sample.co.jp", "name": "山田 太郎", "type": "page_view.pricing",
                    "asset_id": "/pricing", "campaign": "spring"}


def test_a_mapping_into_a_field_that_does_not_exist_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"touchpoint\.kind"):
        FieldMapping.model_validate({"fields": {"email": "e", "touchpoint.kind": "k"}})
    file = tmp_path / "mapping.yaml"
    file.write_text("adapters:\n  x:\n    fields: {emial: mail}\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="emial"):
        load_mapping_file(file)
    assert load_mapping_file(None).adapters == {}


def test_numbers_mapped_to_text_fields_are_submitted_as_text() -> None:
    mapping = FieldMapping.model_validate({
        "fields": {"email": "mail", "event_id": "entry", "phone": "tel",
                   "employee_band": "size", "consent": "agreed"},
        "constants": {"campaign": 2026}})
    body = apply_mapping(mapping, {"mail": "a@sample.co.jp", "entry": 5873459812,
                                   "tel": 312345678, "size": 250.5, "agreed": True})
    assert body == {"email": "a@sample.co.jp", "event_id": "5873459812", "phone": "312345678",
                    "employee_band": "250.5", "consent": True, "campaign": "2026"}
    submission = LeadSubmission.model_validate(body)
    assert (submission.event_id, submission.phone) == ("5873459812", "+81312345678")


def test_a_mapping_setting_a_field_both_whole_and_in_part_is_refused_at_load() -> None:
    # It used to fail at each request (500): the part was set inside a string.
    with pytest.raises(ValidationError, match=r"partner_notes and partner_notes\.partner"):
        FieldMapping.model_validate({
            "kind": "activity",
            "fields": {"email": "mail", "type": "kind", "partner_notes": "notes",
                       "partner_notes.partner": "partner"}})
    with pytest.raises(ValidationError, match=r"touchpoint and touchpoint\.type"):
        FieldMapping.model_validate({"fields": {"email": "mail", "touchpoint": "tp"},
                                     "constants": {"touchpoint.type": "inquiry.general"}})


@pytest.mark.parametrize(("mapping", "named"), [
    ({"constants": {"touchpoint.type": "inquiry.bogus"}}, r"constants\.touchpoint\.type"),
    ({"constants": {"consent": "maybe"}}, r"constants\.consent"),
    ({"constants": {"employee_band": "x" * 33}}, r"constants\.employee_band"),
    ({"values": {"touchpoint.type": {"demo": "inquiry.demo"}}},
     r"values\.touchpoint\.type\.demo"),
])
def test_constants_and_translations_that_no_submission_could_take_are_refused_at_load(
        tmp_path: Path, mapping: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        FieldMapping.model_validate({"fields": {"email": "mail"}, **mapping})


def test_valid_constants_and_translations_load() -> None:
    mapping = FieldMapping.model_validate({
        "fields": {"email": "mail", "touchpoint.type": "form"},
        "values": {"touchpoint.type": {"demo": "inquiry.demo_request"}},
        "constants": {"consent": True, "employee_band": 100, "touchpoint.asset_id": "lp-1"}})
    assert apply_mapping(mapping, {"mail": "a@sample.co.jp", "form": "demo"}) == {
        "email": "a@sample.co.jp", "consent": True, "employee_band": "100",
        "touchpoint": {"type": "inquiry.demo_request", "asset_id": "lp-1"}}


def test_names_follow_the_order_of_their_script() -> None:
    assert full_name("太郎", "山田") == "山田 太郎"
    assert full_name("Emma", "Smith") == "Emma Smith"
    assert full_name(None, "山田") == "山田"
    assert full_name(" ", None) is None


def test_a_hubspot_form_submission_becomes_a_lead() -> None:
    submission = HubSpotSubmission.model_validate({
        "portalId": 62515, "formGuid": "quote-form", "submittedAt": 1_763_600_000_000,
        "values": [{"name": "email", "value": "hanako@sample.co.jp"},
                   {"name": "firstname", "value": "花子"}, {"name": "lastname", "value": "鈴木"},
                   {"name": "company", "value": "株式会社サンプル"},
                   {"name": "jobtitle", "value": "取締役"}, {"name": "numemployees",
                                                           "value": "1000-5000"},
                   {"name": "mobilephone", "value": "090-1234-5678"},
                   {"name": "website", "value": "https://www.sample.co.jp"},
                   {"name": "utm_campaign", "value": "field-wins"},
                   {"name": "unknown_property", "value": "ignored"}, {"name": "state",
                                                                       "value": ""}],
        "context": {"pageUri": "https://sample.jp/quote?utm_source=google&utm_campaign=url"},
        "legalConsentOptions": {"consent": {"communications": [{"value": False}]}},
        "somethingNew": {"ignored": True},
    })
    body = hubspot_to_lead(submission, {"quote-form": TouchpointType.INQUIRY_QUOTE_REQUEST},
                           fallback_event_id="digest")
    lead = LeadSubmission.model_validate(body)
    assert (lead.name, lead.title, lead.employee_band) == ("鈴木 花子", "取締役", "1000+")
    assert (lead.phone, lead.company_domain) == ("+819012345678", "sample.co.jp")
    assert (lead.utm_source, lead.utm_campaign) == ("google", "field-wins")
    assert lead.consent is False and lead.region is None
    assert lead.touchpoint.type is TouchpointType.INQUIRY_QUOTE_REQUEST
    assert lead.touchpoint.occurred_at is not None
    assert lead.touchpoint.occurred_at.timestamp() == 1_763_600_000
    assert (lead.event_id, lead.source) == ("digest", "hubspot"), "no conversion id"


def test_a_hubspot_conversion_id_identifies_redeliveries() -> None:
    submission = HubSpotSubmission.model_validate({
        "conversionId": "conv-1", "fields": [{"name": "email", "value": "a@b.jp"}]})
    body = hubspot_to_lead(submission, {}, fallback_event_id="digest")
    assert body["event_id"] == "conv-1"
    assert body["touchpoint"]["type"] is TouchpointType.FORM_SUBMISSION
    assert "consent" not in body, "a form that does not ask says nothing about consent"


@pytest.mark.parametrize("page", ["https://[www.example.co.jp/lp?utm_source=ads",
                                  "https://example.co.jp／lp?utm_source=ads"])  # a full-width /
def test_a_hubspot_page_address_that_cannot_be_parsed_costs_only_its_utm_tags(
        page: str) -> None:
    submission = HubSpotSubmission.model_validate({
        "fields": [{"name": "email", "value": "a@b.jp"},
                   {"name": "utm_campaign", "value": "spring"}],
        "context": {"pageUri": page}})
    lead = LeadSubmission.model_validate(hubspot_to_lead(submission, {}, fallback_event_id="d"))
    assert (lead.email, lead.utm_source, lead.utm_campaign) == ("a@b.jp", None, "spring")
