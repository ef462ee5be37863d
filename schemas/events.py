"""The five Baton events: pydantic v2 contracts shared by every service.

Rules for changing a contract (enforced by tests/unit/test_contracts.py):
new fields must be optional, no field may be removed or change type.
A breaking change needs a new ``SCHEMA_VERSION`` and a new topic contract.
"""

from __future__ import annotations

import unicodedata
import uuid
from enum import StrEnum
from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1


class Contract(BaseModel):
    """Base of every payload: unknown fields are refused, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TouchpointType(StrEnum):
    """Every kind of touchpoint the scoring model knows, as ``family.detail``."""

    PAGE_VIEW_PRICING = "page_view.pricing"
    PAGE_VIEW_CASE_STUDY = "page_view.case_study"
    PAGE_VIEW_BLOG = "page_view.blog"
    PAGE_VIEW_OTHER = "page_view.other"
    DOWNLOAD_IMPLEMENTATION_GUIDE = "download.implementation_guide"
    DOWNLOAD_INDUSTRY_REPORT = "download.industry_report"
    DOWNLOAD_BEGINNER_GUIDE = "download.beginner_guide"
    WEBINAR_PRODUCT_DEMO = "webinar.product_demo"
    WEBINAR_TREND_SEMINAR = "webinar.trend_seminar"
    WEBINAR_ARCHIVE = "webinar.archive"
    INQUIRY_DEMO_REQUEST = "inquiry.demo_request"
    INQUIRY_QUOTE_REQUEST = "inquiry.quote_request"
    INQUIRY_GENERAL = "inquiry.general"
    EMAIL_OPEN = "email.open"
    EMAIL_CLICK = "email.click"
    APPOINTMENT_SET = "appointment.set"
    FORM_SUBMISSION = "form.submission"


class Tier(StrEnum):
    """Lead temperature: A is hot."""

    A = "A"
    B = "B"
    C = "C"


class LifecycleStage(StrEnum):
    """Where a lead is in the relay from Marketing to Field Sales."""

    LEAD = "lead"
    MQL = "mql"
    SAL = "sal"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    WON = "won"
    LOST = "lost"
    NURTURE = "nurture"
    DISQUALIFIED = "disqualified"


class DealPhase(StrEnum):
    """Deal phases P1..P5 and the two closed outcomes."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"
    P5 = "P5"
    WON = "won"
    LOST = "lost"


class ContactKind(StrEnum):
    """How a rep reached a lead, as logged in routing."""

    CALL = "call"
    EMAIL = "email"
    MEETING = "meeting"
    VISIT = "visit"
    OTHER = "other"


SHORT_TEXT_LENGTH = 500
SOURCE_LENGTH = 100  # a lead's source: the sender named by its API key
PHONE_LENGTH = 32  # E.164 with an RFC 3966 extension
ACCOUNT_KEY_LENGTH = 320
ShortText = Annotated[str, Field(max_length=SHORT_TEXT_LENGTH)]
Score = Annotated[int, Field(ge=0, le=100)]
REP_ID_PATTERN = r"^[A-Za-z0-9._@-]+$"


def is_blank(text: str) -> bool:
    """Return True if ``text`` shows nothing: only spaces (full-width too) and invisible
    format characters, such as the zero-width space or the byte-order mark a paste from a
    spreadsheet may bring."""
    return all(char.isspace() or unicodedata.category(char) == "Cf" for char in text)


def refuse_blank(message: str) -> BeforeValidator:
    """Return a validator refusing blank text (``is_blank``) with ``message``: a ``\\S``
    pattern or a minimum length would refuse some of it too, but in their own terms."""

    def said(value: object) -> object:
        if isinstance(value, str) and is_blank(value):
            raise PydanticCustomError("value_error", message)
        return value

    return BeforeValidator(said)


# The id of a rep in routing's directory, as routing's and pipeline's APIs take it.
RepId = Annotated[str, Field(min_length=1, max_length=100, pattern=REP_ID_PATTERN,
                             description="A rep's id, e.g. `sato` or `rep-001`."),
                  refuse_blank("a rep id must not be blank")]


class LeadProfile(Contract):
    """Who the lead is: what routing and alerts need, never credentials."""

    email: Annotated[str, Field(max_length=320)]
    name: ShortText | None = None
    company: ShortText | None = None
    title: ShortText | None = None
    department: ShortText | None = None
    phone: Annotated[str, Field(max_length=PHONE_LENGTH)] | None = None
    industry: ShortText | None = None
    employee_band: Annotated[str, Field(max_length=32)] | None = None
    region: ShortText | None = None


class Account(Contract):
    """The company a lead belongs to, identified by domain or normalised name."""

    account_key: Annotated[str, Field(max_length=ACCOUNT_KEY_LENGTH)]
    domain: Annotated[str, Field(max_length=253)] | None = None
    company_name: ShortText | None = None
    free_mail: bool = False


class Touchpoint(Contract):
    """One interaction of a lead with us."""

    type: TouchpointType
    occurred_at: AwareDatetime
    asset_id: Annotated[str, Field(max_length=200)] | None = None
    interacted: bool = Field(
        default=False, description="A question or chat during a webinar."
    )


class PartnerNotes(Contract):
    """An appointment-setting partner's hearing notes."""

    partner: ShortText
    challenges: Annotated[str, Field(max_length=4000)] | None = None
    background: Annotated[str, Field(max_length=4000)] | None = None
    competitors: ShortText | None = None
    budget: ShortText | None = None
    authority: ShortText | None = None
    need: ShortText | None = None
    timeframe: ShortText | None = None
    temperature: Annotated[str, Field(max_length=32)] | None = None
    meeting_at: AwareDatetime | None = Field(
        default=None, description="When the appointment with the lead takes place, with "
                                  "its UTC offset; the lead's first meeting starts an SLA "
                                  "clock then.")


class Attribution(Contract):
    """Where a lead came from: the submitter's lead source and the UTM parameters."""

    lead_source: ShortText | None = None
    utm_source: ShortText | None = None
    utm_medium: ShortText | None = None
    utm_campaign: ShortText | None = None
    utm_term: ShortText | None = None
    utm_content: ShortText | None = None


class ScoreReason(Contract):
    """One contribution to a score: what added or removed how many points."""

    code: Annotated[str, Field(max_length=100)]
    label: ShortText
    points: float


class Event(Contract):
    """Base of the five events; ``topic`` and ``key_field`` bind it to Kafka."""

    topic: ClassVar[str]
    key_field: ClassVar[str]
    schema_version: Literal[1] = 1

    def partition_key(self) -> str:
        """Return the Kafka message key that keeps this entity's events in order."""
        return str(getattr(self, self.key_field))


class LeadCaptured(Event):
    """Ingest accepted a touchpoint for a lead."""

    topic: ClassVar[str] = "lead.captured"
    key_field: ClassVar[str] = "lead_id"

    lead_id: uuid.UUID
    source: Annotated[str, Field(max_length=SOURCE_LENGTH)]
    profile: LeadProfile
    account: Account
    touchpoint: Touchpoint
    campaign: ShortText | None = None
    partner_notes: PartnerNotes | None = None
    attribution: Attribution | None = None
    consent: bool | None = Field(
        default=None, description="Marketing consent as last stated by the lead; None if unknown."
    )


class LeadScored(Event):
    """Scoring recomputed a lead: its standing changed, it inquired, or a meeting was set for it."""

    topic: ClassVar[str] = "lead.scored"
    key_field: ClassVar[str] = "lead_id"

    lead_id: uuid.UUID
    scored_at: AwareDatetime
    score: Score
    previous_score: Score | None = None
    tier: Tier
    previous_tier: Tier | None = None
    surge: bool = False
    high_intent_signals: list[ShortText] = Field(default_factory=list)
    reasons: list[ScoreReason]
    model_version: Annotated[str, Field(max_length=50)]
    profile: LeadProfile
    account: Account
    source: Annotated[str, Field(max_length=SOURCE_LENGTH)]
    last_touchpoint: TouchpointType | None = Field(
        default=None, description="The touchpoint that made this re-score: of several in one "
                                  "batch, the weightiest inquiry made within the high-intent "
                                  "window, else the latest; none for a re-score by time "
                                  "(decay). A fresh inquiry is announced even when the "
                                  "standing stays the same (a score capped at 100).")
    partner: ShortText | None = Field(
        default=None, description="The appointment-setting partner who brought the lead."
    )
    dormancy: Literal["active", "dormant", "excluded"] = Field(
        default="active",
        description="No activity for 3 months: dormant; 6 months: excluded from nurturing.",
    )
    meeting_at: AwareDatetime | None = Field(
        default=None, description="When the appointment a partner set among the touchpoints "
                                  "that made this re-score takes place (of several, the "
                                  "first set); none otherwise. Such a re-score is announced "
                                  "even when score, tier, surge and dormancy stay the same: "
                                  "the lead's first meeting starts an SLA clock.")


class LeadPromoted(Event):
    """Routing moved a lead from one lifecycle stage to another, or in its stage logged a
    contact (``contact``) or gave a queued lead its owner."""

    topic: ClassVar[str] = "lead.promoted"
    key_field: ClassVar[str] = "lead_id"

    lead_id: uuid.UUID
    occurred_at: AwareDatetime
    from_stage: LifecycleStage
    to_stage: LifecycleStage
    reason: ShortText
    owner_id: Annotated[str, Field(max_length=100)] | None = None
    owner_name: ShortText | None = Field(
        default=None, description="The owner's name in routing's rep directory, for people "
                                  "to read; `owner_id` stays the key.")
    team: Annotated[str, Field(max_length=100)] | None = None
    sla_due_at: AwareDatetime | None = None
    profile: LeadProfile
    account: Account
    score: Score
    tier: Tier
    top_reasons: list[ScoreReason] = Field(default_factory=list)
    trigger: TouchpointType | None = None
    contact: ContactKind | None = Field(
        default=None,
        description="Set when the event records a contact a rep logged; the stage is unchanged.",
    )


class DealPhaseChanged(Event):
    """A deal opened, moved between phases, or closed."""

    topic: ClassVar[str] = "deal.phase_changed"
    key_field: ClassVar[str] = "deal_id"

    deal_id: uuid.UUID
    lead_id: uuid.UUID
    occurred_at: AwareDatetime
    from_phase: DealPhase | None = None
    to_phase: DealPhase
    probability: Annotated[int, Field(ge=0, le=100)]
    owner_id: Annotated[str, Field(max_length=100)] | None = None
    amount: Annotated[int, Field(ge=0)] | None = None
    reason: ShortText | None = None


class DealRecycled(Event):
    """A zombie deal was closed and its lead handed back to nurturing."""

    topic: ClassVar[str] = "deal.recycled"
    key_field: ClassVar[str] = "deal_id"

    deal_id: uuid.UUID
    lead_id: uuid.UUID
    recycled_at: AwareDatetime
    last_phase: DealPhase
    reason: ShortText


EVENT_TYPES: tuple[type[Event], ...] = (
    LeadCaptured,
    LeadScored,
    LeadPromoted,
    DealPhaseChanged,
    DealRecycled,
)
EVENTS_BY_TOPIC: dict[str, type[Event]] = {event.topic: event for event in EVENT_TYPES}
TOPICS: tuple[str, ...] = tuple(EVENTS_BY_TOPIC)


def dead_letter_topic(topic: str) -> str:
    """Return the dead-letter topic of ``topic``."""
    return f"{topic}.dlq"

