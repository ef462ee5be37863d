"""The webhook mapping file: a mapping no payload could make a valid submission of is
refused when the file is loaded, not blamed on every sender with a 422."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.ingest.adapters import FieldMapping, MappingFile, apply_mapping, load_mapping_file
from services.ingest.settings import IngestSettings


@pytest.mark.parametrize(("mapping", "missing"), [
    ({"fields": {"name": "contact.name", "company": "contact.org"}}, "email"),
    ({"kind": "activity", "fields": {"email": "mail", "asset_id": "page"}}, "type"),
    ({"kind": "activity", "fields": {"asset_id": "page"}}, "email, type"),
])
def test_a_mapping_that_never_sets_a_required_field_is_refused_at_load(
        mapping: dict[str, object], missing: str) -> None:
    # Loaded as it was, every delivery got a 422 for a field its sender could not supply.
    with pytest.raises(ValidationError, match=f"never sets {missing}"):
        FieldMapping.model_validate(mapping)


def test_the_service_does_not_start_with_such_a_mapping_file(tmp_path: Path) -> None:
    file = tmp_path / "mapping.yaml"
    file.write_text("adapters:\n  formtool:\n    fields: {name: contact.name}\n",
                    encoding="utf-8")
    with pytest.raises(ValidationError, match="ingest_webhook_mapping_file"):
        IngestSettings(database_url="postgresql://unused/", kafka_bootstrap_servers="x:9",
                       ingest_webhook_mapping_file=file)


def test_an_adapter_named_as_the_built_in_hubspot_webhook_is_refused_at_load() -> None:
    # /v1/webhooks/hubspot is matched first: such an adapter would never be reached.
    with pytest.raises(ValidationError, match="cannot be named 'hubspot'"):
        MappingFile.model_validate({"adapters": {"hubspot": {"fields": {"email": "e"}}}})


def test_a_hubspot_form_taken_as_a_partner_appointment_is_refused_at_load() -> None:
    # A form carries no partner's hearing notes: every submission of it would get a 422.
    with pytest.raises(ValidationError, match="/v1/activities with its partner_notes"):
        MappingFile.model_validate({"hubspot_forms": {"form-7": "appointment.set"}})
    assert MappingFile.model_validate({"hubspot_forms": {"form-7": "inquiry.demo_request"}})

def test_a_required_field_may_come_from_a_path_or_a_constant() -> None:
    mapping = FieldMapping.model_validate({
        "kind": "activity", "fields": {"email": "mail"}, "constants": {"type": "email.open"}})
    assert apply_mapping(mapping, {"mail": "a@sample.co.jp"}) == {
        "email": "a@sample.co.jp", "type": "email.open"}
    assert load_mapping_file(None).adapters == {}


def test_a_boolean_payload_value_is_translated_by_its_json_spelling() -> None:
    # Looked up as Python spells it ("True"), a JSON true matched no key of the file (YAML
    # keys must be quoted text), and every such delivery got a 422.
    mapping = FieldMapping.model_validate({
        "fields": {"email": "mail", "touchpoint.type": "wants_demo"},
        "values": {"touchpoint.type": {"true": "inquiry.demo_request",
                                       "false": "form.submission"}}})
    for sent, touchpoint in ((True, "inquiry.demo_request"), (False, "form.submission")):
        assert apply_mapping(mapping, {"mail": "a@sample.co.jp", "wants_demo": sent}) == {
            "email": "a@sample.co.jp", "touchpoint": {"type": touchpoint}}
