"""What the capture API accepts and answers: request models, normalised as they validate."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.events import PHONE_LENGTH, TouchpointType
from services.ingest import domain

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


# Free text is limited as sent and again once normalised, as it is stored and forwarded.
Text32 = Annotated[str | None, Field(max_length=32),
                   AfterValidator(partial(domain.normalise_text, limit=32))]
Text100 = Annotated[str | None, Field(max_length=100),
                    AfterValidator(partial(domain.normalise_text, limit=100))]
Text200 = Annotated[str | None, Field(max_length=200),
                    AfterValidator(partial(domain.normalise_text, limit=200))]
Text500 = Annotated[str | None, Field(max_length=500),
                    AfterValidator(partial(domain.normalise_text, limit=500))]
Text4000 = Annotated[str | None, Field(max_length=4000),
                     AfterValidator(partial(domain.normalise_text, limit=4000))]
# 254 characters: the most an address can have in SMTP (RFC 5321's 256-octet path), so
# the lead's own account key ("person:" and the address) and its domain fit the events.
Email = Annotated[str, BeforeValidator(lambda v: domain.normalise_email(v) if isinstance(v, str)
                                       else v),
                  Field(max_length=254, pattern=EMAIL_PATTERN,
                        description="Normalised to NFKC and lower case; one lead per address.")]
# A phone is held to the event's PHONE_LENGTH once normalised (normalise_phone drops an
# extension that would not fit): as written, spaces, brackets and "extension" take room.
# The limit as sent only bounds the work of reading it.
PHONE_INPUT_LENGTH = 100
Phone = Annotated[str | None, Field(max_length=PHONE_INPUT_LENGTH, description="Stored in E.164; "
                                    "national numbers are read as Japanese. An extension "
                                    "(ext. 12, 内線12) is kept as RFC 3966's ;ext=12 after it when "
                                    f"both fit in {PHONE_LENGTH} characters, else left out."),
                  AfterValidator(lambda v: None if not v or not v.strip()
                                 else domain.normalise_phone(v))]
# A web address pasted whole (a page deep in the site, tracking parameters) is fine: its
# host is what is kept, and is held to DNS's 253 characters.
WEB_ADDRESS_LENGTH = 2048
Domain = Annotated[str | None, Field(max_length=WEB_ADDRESS_LENGTH,
                                     description="The company's web site or domain; "
                                     "identifies the account of free-mail leads."),
                   AfterValidator(lambda v: None if not v or not v.strip()
                                  else domain.normalise_domain(v))]


def _in_utc_range(moment: datetime) -> datetime:
    """Return ``moment`` if it can be told in UTC (as it is stored); raise ValueError if not."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the moment is out of range once told in UTC") from None
    return moment


Moment = Annotated[AwareDatetime, AfterValidator(_in_utc_range)]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
ACTIVITY_TYPES = (*(member.value for member in TouchpointType), domain.WEBINAR_REGISTRATION)


def _activity_type(value: str) -> str:
    """Return ``value`` if it names an activity type."""
    if value not in ACTIVITY_TYPES:
        raise ValueError(f"not an activity type; expected one of {', '.join(ACTIVITY_TYPES)}")
    return value


ActivityType = Annotated[str, AfterValidator(_activity_type),
                         WithJsonSchema({"type": "string", "enum": list(ACTIVITY_TYPES)})]


class Strict(BaseModel):
    """Unknown fields are refused, so a typo is an error rather than silently lost data."""

    model_config = ConfigDict(extra="forbid")


class Contact(Strict):
    """Who the lead is. Later submissions fill in or overwrite, field by field."""

    email: Email
    name: Text200 = None
    company: Text200 = None
    company_domain: Domain = None
    title: Text200 = None
    department: Text200 = None
    phone: Phone = None
    industry: Text100 = None
    employee_band: Text32 = None
    region: Text100 = None
    event_id: IdempotencyKey | None = Field(
        default=None, description="The sender's id of this record; used as the idempotency key "
        "when no Idempotency-Key header is sent.")


def _not_an_appointment(kind: TouchpointType) -> TouchpointType:
    """Return ``kind`` unless it is an appointment, which comes with a partner's notes."""
    if kind is TouchpointType.APPOINTMENT_SET:
        raise ValueError("an appointment set by a partner is posted to /v1/activities with "
                         "its partner_notes")
    return kind


# A form submission reports any touchpoint but a partner's appointment: that one needs the
# partner's hearing notes (who set it, BANT, the meeting's time), which /v1/activities takes.
FormTouchpointType = Annotated[
    TouchpointType, AfterValidator(_not_an_appointment),
    WithJsonSchema({"type": "string", "enum": [
        kind.value for kind in TouchpointType if kind is not TouchpointType.APPOINTMENT_SET]})]


class TouchpointIn(Strict):
    """The interaction being reported."""

    type: FormTouchpointType = TouchpointType.FORM_SUBMISSION
    occurred_at: Moment | None = None
    asset_id: Text200 = None
    interacted: bool = Field(default=False,
                             description="A question or chat during a webinar.")


class LeadSubmission(Contact):
    """A form submission: who the lead is, where they came from and what they did."""

    consent: bool | None = Field(default=None, description="Marketing consent as stated on the "
                                 "form; omit when the form does not ask.")
    source: Text200 = Field(default=None, description="The lead source as the sender names it, "
                            "e.g. web, 展示会, referral.")
    campaign: Text200 = None
    utm_source: Text200 = None
    utm_medium: Text200 = None
    utm_campaign: Text200 = None
    utm_term: Text200 = None
    utm_content: Text200 = None
    touchpoint: TouchpointIn = Field(default_factory=TouchpointIn)
    honeypot: Annotated[str | None, Field(max_length=1000)] = Field(
        default=None, description="A hidden form field people leave empty. When it is filled "
        "the answer is still 202, but nothing is stored or forwarded.")


class PartnerNotesIn(Strict):
    """An appointment-setting partner's hearing notes (BANT and context)."""

    partner: Text200 = Field(default=None, description="The partner's name; defaults to the "
                             "API key's source.")
    challenges: Text4000 = None
    background: Text4000 = None
    competitors: Text500 = None
    budget: Text500 = None
    authority: Text500 = None
    need: Text500 = None
    timeframe: Text500 = None
    temperature: Text32 = None
    meeting_at: Moment | None = Field(
        default=None, description="When the appointment with the lead takes place, with its "
        "UTC offset (e.g. 2026-12-01T14:00:00+09:00); a time without one is refused. The "
        "lead's first meeting starts the SLA clock for logging its record.")


class ActivitySubmission(Contact):
    """An activity of a lead: page view, download, webinar, e-mail, inquiry or appointment."""

    type: ActivityType = Field(description="What happened. Webinars: `webinar.registration` "
                               "for a registration, the webinar's kind for attendance (with "
                               "`interacted` for a question or chat).")
    occurred_at: Moment | None = None
    asset_id: Text200 = Field(default=None, description="The page, document, webinar or "
                              "e-mail the activity concerns.")
    interacted: bool = False
    campaign: Text200 = None
    partner_notes: PartnerNotesIn | None = None

    @model_validator(mode="after")
    def _notes_belong_to_appointments(self) -> Self:
        if (self.partner_notes is None) == (self.type == TouchpointType.APPOINTMENT_SET):
            raise ValueError("partner_notes are required for appointment.set and only there")
        return self


class LeadRecord(LeadSubmission):
    """One line of a batch: a lead, with the fields of a POST /v1/leads body."""

    kind: Literal["lead"] = Field(description="`lead`: the line is a lead.")


class ActivityRecord(ActivitySubmission):
    """One line of a batch: an activity, with the fields of a POST /v1/activities body."""

    kind: Literal["activity"] = Field(description="`activity`: the line is an activity.")


BatchRecord = Annotated[LeadRecord | ActivityRecord, Field(discriminator="kind")]
BATCH_RECORD: TypeAdapter[LeadRecord | ActivityRecord] = TypeAdapter(BatchRecord)
KINDS = ('"lead" for a lead (the other fields as in a POST /v1/leads body) or "activity" for '
         'an activity (as in a POST /v1/activities body)')
# What pydantic answers for a line whose kind picks no model: "Unable to extract tag using
# discriminator 'kind'", or a tag shown as Python ('None', 'True'), both at no field.
UNKNOWN_KIND = frozenset({"union_tag_not_found", "union_tag_invalid"})
# A refused kind is shown back, but not at any length: it is repeated in the answer.
SHOWN_KIND_LENGTH = 40


def batch_record(line: bytes) -> LeadRecord | ActivityRecord:
    """Return a batch line's lead or activity.

    Raises ValidationError as validating a BatchRecord does, except that a missing or
    unknown ``kind`` is refused as that field, with the kinds there are and what each holds.
    """
    try:
        return BATCH_RECORD.validate_json(line)
    except ValidationError as error:
        first, *others = error.errors(include_url=False)
        if (others or first["loc"] or first["type"] not in UNKNOWN_KIND
                or not isinstance(first["input"], dict)):
            raise
        raise ValidationError.from_exception_data(
            error.title, [_kind_error(first["input"])], input_type="json") from None


def _kind_error(line: dict[str, Any]) -> InitErrorDetails:
    """Return the error of a batch line (a JSON object) whose kind is missing or unknown."""
    if "kind" not in line:
        return {"type": PydanticCustomError(
                    "missing", f"Field required: each line says what it holds with \"kind\": "
                    f"{KINDS}"),
                "loc": ("kind",), "input": line}
    kind = line["kind"]
    return {"type": PydanticCustomError("literal_error", f"Input should be {KINDS}, not {{sent}}",
                                        {"sent": _shown(kind)}),
            "loc": ("kind",), "input": kind}


def _shown(value: object) -> str:
    """Return a JSON value as a refused kind names it: a string quoted, null, true and false
    as they are, anything else by its type."""
    if isinstance(value, str):
        if len(value) > SHOWN_KIND_LENGTH:
            value = value[:SHOWN_KIND_LENGTH] + "…"
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else "a number"


class Accepted(BaseModel):
    """What a 202 confirms: the touchpoint and its event are committed."""

    status: Literal["accepted"] = "accepted"
    lead_id: uuid.UUID
    event_id: str


class LineError(BaseModel):
    """What is wrong with a batch line, as a 422's `detail` says it of a single capture."""

    loc: list[str | int] = Field(description="Where: the line's kind, then the field's path "
                                 "(`[\"lead\", \"email\"]`: a lead's email); `[\"kind\"]`: "
                                 "the kind itself; `[]`: a line that is no JSON object.")
    msg: str = Field(description="What is wrong and what is expected instead.")
    type: str = Field(description="The kind of error, as in a 422's `detail`.")


class RecordResult(BaseModel):
    """The outcome of one batch line."""

    line: int = Field(description="1-based line number in the request body (blank lines "
                      "count).")
    status: Literal[202, 409, 422] = Field(
        description="202 accepted (a record sent before with the same `event_id` gets its "
        "first answer), 409 the `event_id` was used for another record, 422 invalid. A 409 or "
        "422 line wrote nothing.")
    lead_id: uuid.UUID | None = Field(default=None, description="With 202: the lead.")
    event_id: str | None = Field(default=None, description="With 202: the id of the "
                                 "lead.captured event.")
    errors: list[LineError] | None = Field(default=None, description="With 409 and 422: what "
                                           "is wrong with the line.")


class BatchResult(BaseModel):
    """The outcome of every line of a batch, in order."""

    accepted: int
    rejected: int
    results: list[RecordResult]
