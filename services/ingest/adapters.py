"""Webhook adapters: HubSpot form submissions and field-mapped payloads of other tools.

Both translate a foreign payload into the body of ``POST /v1/leads`` or
``/v1/activities``, which then validates it like any other submission.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin
from urllib.parse import parse_qs, urlsplit

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from schemas.events import TouchpointType
from services.ingest.submissions import (
    ActivitySubmission,
    FormTouchpointType,
    LeadSubmission,
    Strict,
)

SUBMISSIONS: dict[str, type[BaseModel]] = {"lead": LeadSubmission,
                                           "activity": ActivitySubmission}
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uff66-\uff9f]")
# HubSpot's numemployees options, as the employee bands the scoring model knows.
HUBSPOT_EMPLOYEE_BANDS = {"1-5": "1-9", "5-25": "10-49", "25-50": "10-49", "50-100": "50-99",
                          "100-500": "100-499", "500-1000": "500-999", "1000-5000": "1000+",
                          "5000-10000": "1000+", "10000+": "1000+"}
HUBSPOT_PROPERTIES = {"email": "email", "company": "company", "jobtitle": "title",
                      "department": "department", "industry": "industry",
                      "website": "company_domain", **{name: name for name in UTM_FIELDS}}


class FieldMapping(Strict):
    """How one tool's payload becomes a submission (one entry of the mapping file)."""

    kind: Literal["lead", "activity"] = "lead"
    sources: list[str] | None = Field(
        default=None, description="API key sources allowed to post here; any when omitted.")
    fields: dict[str, str | list[str]] = Field(
        description="Submission field (dotted, e.g. touchpoint.type) -> payload path (dotted); "
        "several paths are joined with a space.")
    values: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Submission field -> {payload value: value to submit}.")
    constants: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _targets_exist(self) -> Self:
        model = SUBMISSIONS[self.kind]
        unknown = [target for target in {*self.fields, *self.values, *self.constants}
                   if _field(model, target.split(".")) is None]
        if unknown:
            raise ValueError(
                f"not fields of a {self.kind} submission: {', '.join(sorted(unknown))}")
        if overlapping := overlapping_targets([*self.fields, *self.constants]):
            raise ValueError("a field cannot be set both whole and in part: "
                             + ", ".join(f"{whole} and {part}" for whole, part in overlapping))
        # Checked here, not at the first request: each request would be refused with a 422
        # blaming its sender for the operator's mistake.
        required = [name for name, info in model.model_fields.items() if info.is_required()]
        if unset := [name for name in required if name not in {*self.fields, *self.constants}]:
            raise ValueError(f"the mapping never sets {', '.join(unset)}, which every "
                             f"{self.kind} submission needs (map it in fields or constants)")
        fixed = [(f"constants.{target}", target, value)
                 for target, value in self.constants.items()]
        fixed += [(f"values.{target}.{sent}", target, value)
                  for target, translations in self.values.items()
                  for sent, value in translations.items()]
        problems = [f"{where}: {problem}" for where, target, value in fixed
                    for problem in value_problems(model, target, value)]
        if problems:
            raise ValueError("; ".join(problems))
        return self


BUILT_IN_WEBHOOK = "hubspot"  # its route comes first: a mapped adapter of that name is unreachable


class MappingFile(Strict):
    """The field-mapping file: generic adapters by name, and HubSpot forms' touchpoint types."""

    adapters: dict[str, FieldMapping] = Field(default_factory=dict)
    hubspot_forms: dict[str, FormTouchpointType] = Field(
        default_factory=dict, description="HubSpot form id -> the touchpoint its submissions "
        "are (default form.submission), e.g. a demo request form -> inquiry.demo_request.")

    @field_validator("adapters")
    @classmethod
    def reachable(cls, adapters: dict[str, FieldMapping]) -> dict[str, FieldMapping]:
        """Return the adapters if each has a URL of its own: /v1/webhooks/hubspot is taken."""
        if BUILT_IN_WEBHOOK in adapters:
            raise ValueError(f"an adapter cannot be named {BUILT_IN_WEBHOOK!r}: "
                             f"/v1/webhooks/{BUILT_IN_WEBHOOK} is the built-in HubSpot adapter")
        return adapters


def load_mapping_file(path: Path | None) -> MappingFile:
    """Return the validated mapping file at ``path`` (an empty one when there is none)."""
    if path is None:
        return MappingFile()
    return MappingFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def _field(model: type[BaseModel], parts: list[str]) -> FieldInfo | None:
    """Return the field the dotted path ``parts`` names in ``model`` or its sub-models."""
    info = model.model_fields.get(parts[0])
    if info is None or len(parts) == 1:
        return info
    nested = info.annotation
    for candidate in getattr(nested, "__args__", (nested,)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return _field(candidate, parts[1:])
    return None


def _is_text(info: FieldInfo | None) -> bool:
    """Return True if a field holds free text (``str``, perhaps optional or constrained)."""
    if info is None:
        return False
    annotation = info.annotation
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (
        annotation,)
    return any((get_args(option)[0] if get_origin(option) is Annotated else option) is str
               for option in options)


def as_submitted(model: type[BaseModel], target: str, value: Any) -> Any:
    """Return ``value`` as the submission field ``target`` takes it: numbers as text in text.

    Tools send a submission id, a phone number or a head count as a JSON number; joined
    values already become text.
    """
    if isinstance(value, int | float) and not isinstance(value, bool) and _takes_text(
            model, target):
        return str(value)
    return value


@functools.cache  # a mapping's targets are few and fixed: looked up per request otherwise
def _takes_text(model: type[BaseModel], target: str) -> bool:
    """Return True if the dotted field ``target`` of ``model`` holds free text."""
    return _is_text(_field(model, target.split(".")))


def overlapping_targets(targets: Iterable[str]) -> list[tuple[str, str]]:
    """Return the pairs of targets where one is part of the other (a and a.b), sorted."""
    names = sorted(set(targets))
    return [(whole, part) for whole in names for part in names
            if part.startswith(whole + ".")]


def value_problems(model: type[BaseModel], target: str, value: Any) -> list[str]:
    """Return why ``value`` is not valid for the field ``target`` of ``model``, if it is not."""
    body: dict[str, Any] = {}
    _assign(body, target, as_submitted(model, target, value))
    try:
        model.model_validate(body)
    except ValidationError as error:
        where = tuple(target.split("."))
        return [problem["msg"] for problem in error.errors(include_url=False)
                if tuple(problem["loc"][:len(where)]) == where]
    return []


def _lookup(payload: Any, path: str) -> Any:
    """Return the value at a dotted ``path`` (list indices allowed), or None if absent."""
    value = payload
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _assign(target: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``value`` at a dotted path of nested dictionaries."""
    *parents, leaf = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def apply_mapping(mapping: FieldMapping, payload: Any) -> dict[str, Any]:
    """Return the submission body ``mapping`` makes of ``payload``; absent values are left out."""
    model = SUBMISSIONS[mapping.kind]
    body: dict[str, Any] = {}
    for target, value in mapping.constants.items():
        _assign(body, target, as_submitted(model, target, value))
    for target, paths in mapping.fields.items():
        found = [_lookup(payload, path) for path in ([paths] if isinstance(paths, str) else paths)]
        present = [item for item in found if item is not None and item != ""]
        if not present:
            continue
        value = present[0] if len(present) == 1 else " ".join(str(item) for item in present)
        translations = mapping.values.get(target)
        if translations is not None and isinstance(value, str | int | bool):
            # Keyed by the value as the payload spells it: JSON's true, not Python's True.
            sent = ("true" if value else "false") if isinstance(value, bool) else str(value)
            value = translations.get(sent, value)
        _assign(body, target, as_submitted(model, target, value))
    return body


def full_name(first: str | None, last: str | None) -> str | None:
    """Return a person's name in the order their script uses: 山田 太郎, but John Smith."""
    parts = [part.strip() for part in (first, last) if part and part.strip()]
    if len(parts) == 2 and any(CJK.search(part) for part in parts):
        parts.reverse()
    return " ".join(parts) or None


class HubSpotField(BaseModel):
    """One submitted form field."""

    name: str
    value: str | None = None


class HubSpotSubmission(BaseModel):
    """A HubSpot form submission as its webhook delivers it (unknown properties are ignored)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    portal_id: int | None = Field(default=None, validation_alias="portalId")
    form_id: str | None = Field(default=None, max_length=200,
                                validation_alias=AliasChoices("formId", "formGuid"))
    conversion_id: str | None = Field(default=None, max_length=200,
                                      validation_alias="conversionId")
    submitted_at: int | None = Field(default=None, ge=0, validation_alias="submittedAt",
                                     description="Unix time in milliseconds.")
    fields: list[HubSpotField] = Field(max_length=1000,
                                       validation_alias=AliasChoices("fields", "values"))
    context: dict[str, Any] = Field(default_factory=dict)
    legal_consent_options: dict[str, Any] = Field(default_factory=dict,
                                                  validation_alias="legalConsentOptions")


def _hubspot_consent(options: Mapping[str, Any]) -> bool | None:
    """Return the marketing consent in HubSpot's legal consent options, or None if not asked."""
    communications = _lookup(options, "consent.communications")
    if not isinstance(communications, list) or not communications:
        return None
    return any(isinstance(item, Mapping) and item.get("value") is True for item in communications)


def page_utm(page_uri: str) -> dict[str, str]:
    """Return the UTM parameters in a page's address; none when it cannot be parsed."""
    try:
        query = urlsplit(page_uri).query
    except ValueError:  # e.g. an unclosed "[": the page is HubSpot's, the lead still counts
        return {}
    return {name: values[0] for name, values in parse_qs(query).items() if name in UTM_FIELDS}


def hubspot_to_lead(submission: HubSpotSubmission, forms: Mapping[str, TouchpointType],
                    fallback_event_id: str) -> dict[str, Any]:
    """Return the ``POST /v1/leads`` body of a HubSpot form submission.

    The conversion id (or, without one, ``fallback_event_id``) becomes the event id,
    so redelivered webhooks are recognised as the same submission.
    """
    properties = {item.name.lower(): item.value for item in submission.fields
                  if item.value not in (None, "")}
    body: dict[str, Any] = {target: properties[name] for name, target in HUBSPOT_PROPERTIES.items()
                            if name in properties}
    for name, value in page_utm(str(submission.context.get("pageUri") or "")).items():
        body.setdefault(name, value)
    if person := full_name(properties.get("firstname"), properties.get("lastname")):
        body["name"] = person
    if phone := properties.get("phone") or properties.get("mobilephone"):
        body["phone"] = phone
    if band := properties.get("numemployees"):
        body["employee_band"] = HUBSPOT_EMPLOYEE_BANDS.get(band, band)
    if region := properties.get("state") or properties.get("country"):
        body["region"] = region
    consent = _hubspot_consent(submission.legal_consent_options)
    if consent is not None:
        body["consent"] = consent
    touchpoint: dict[str, Any] = {
        "type": forms.get(submission.form_id or "", TouchpointType.FORM_SUBMISSION),
        "asset_id": submission.form_id,
    }
    if submission.submitted_at is not None:
        touchpoint["occurred_at"] = submission.submitted_at / 1000
    body.update(source="hubspot", touchpoint=touchpoint,
                event_id=submission.conversion_id or fallback_event_id)
    return body
