"""Routing's API: lifecycle state, the sales team's actions, teams and reps, the
assignment log and the funnel."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Self

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from baton_runtime.business_time import BusinessCalendar, known_holiday_country, known_timezone
from baton_runtime.service import ServiceContext, context_of
from baton_runtime.text import NOT_BLANK
from baton_runtime.uow import UnitOfWork
from schemas.events import REP_ID_PATTERN, ContactKind, LifecycleStage, RepId, refuse_blank
from services.routing import domain, handlers, store
from services.routing.settings import RoutingSettings

router = APIRouter(prefix="/v1")

RepIdPath = Annotated[str, Path(min_length=1, max_length=100, pattern=REP_ID_PATTERN)]


Reason = Annotated[str, Field(min_length=1, max_length=400, pattern=NOT_BLANK),
                   refuse_blank("reason must not be blank")]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK)]
Label = Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK)]
SLACK_USER = r"^[UW][A-Z0-9]{2,30}$"
# A time of day without a UTC offset: JSON Schema's `format: time` requires one.
LOCAL_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.,][0-9]+)?)?$"
LocalTime = Annotated[time, WithJsonSchema({
    "type": "string", "pattern": LOCAL_TIME, "examples": ["09:00", "18:30:00"],
    "description": "Local time of day, `HH:MM[:SS[.ffffff]]`, without a UTC offset."})]
MAX_FUNNEL_DAYS = 3 * 366
# Far enough from date.min / date.max that defaults and time-zone shifts cannot overflow.
FUNNEL_DAYS = (date(1900, 1, 1), date(9998, 12, 31))

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such lead."}}
ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"description": "The lead's stage or the rep's team does not allow the action, or "
                         "another rep holds the lead (the answer names them)."},
    422: {"description": "Invalid body, or `rep_id` names no rep (field-level detail)."},
}


class Strict(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


# --- leads and actions --------------------------------------------------------------------


class Transition(BaseModel):
    """One lifecycle move of a lead."""

    from_stage: LifecycleStage
    to_stage: LifecycleStage
    reason: str
    owner_id: str | None
    team: str | None
    actor: str
    occurred_at: datetime


class Considered(BaseModel):
    """A rep an assignment looked at; ``blocked_because`` is None if they could take it."""

    rep_id: str
    blocked_because: str | None


class Assignment(BaseModel):
    """One logged assignment decision and its reason."""

    lead_id: uuid.UUID
    team: domain.TeamKind
    stage: LifecycleStage
    rep_id: str | None
    rule: domain.Rule
    reason: str
    considered: list[Considered]
    decided_at: datetime


class LoggedContact(BaseModel):
    """A contact a rep logged with the lead: what kind, when it happened, who logged it
    (``rep_id``), their note, and when it was logged."""

    rep_id: str
    kind: ContactKind
    occurred_at: datetime
    note: str | None
    logged_at: datetime


class LeadState(BaseModel):
    """Where a lead is, who owns it, how it got there, how it was assigned and the
    contacts reps logged with it."""

    lead_id: uuid.UUID
    stage: LifecycleStage
    owner_id: str | None
    team: str | None
    score: int
    tier: str
    source: str
    partner: str | None
    bant: dict[str, Any] | None
    history: list[Transition]
    assignments: list[Assignment]
    contacts: list[LoggedContact] = Field(description=(
        "Contacts logged with `POST /v1/leads/{lead_id}/contacts`, in the order they "
        "happened."))


class Acceptance(Strict):
    """A rep accepting an MQL (it becomes an SAL)."""

    rep_id: RepId


class Rejection(Strict):
    """A rep sending a lead back to nurturing, with the reason."""

    rep_id: RepId
    reason: Reason


class Qualification(Strict):
    """What the rep confirmed (BANT); SQL needs rank A or B, or a demo or quote request."""

    rep_id: RepId
    budget: bool
    authority: bool
    need: bool
    timeframe: bool
    demo_or_quote_requested: bool = Field(
        default=False, description="The lead asked for a demo or quote on the call.")


class Disqualification(Strict):
    """A rep disqualifying a lead for good, with the reason."""

    rep_id: RepId
    reason: Reason


class Contact(Strict):
    """A contact with the lead; logging the same rep, kind and time again changes nothing."""

    rep_id: RepId
    kind: ContactKind
    occurred_at: AwareDatetime
    note: Annotated[str, Field(max_length=2000)] | None = None

    @field_validator("occurred_at")
    @classmethod
    def storable(cls, value: datetime) -> datetime:
        """Return the time if it exists in UTC (the first hours of year 1 east of it do not)."""
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("the time lies before 0001-01-01 in UTC") from None
        return value


def unknown_rep(error: domain.UnknownRep) -> HTTPException:
    """Return the 422 that names ``rep_id`` as the bad field."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [
        {"loc": ["body", "rep_id"], "msg": str(error), "type": "unknown_rep"}])


def _assignment(row: Row[Any]) -> Assignment:
    return Assignment.model_validate(row, from_attributes=True)


async def _state(uow: UnitOfWork, lead_id: uuid.UUID) -> LeadState:
    """Return the lead's state; raise 404 if there is no such lead."""
    lead = await store.get_lead(uow.connection, lead_id)
    if lead is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead {lead_id}")
    transitions = await store.history(uow.connection, lead_id)
    decisions = await store.decisions(uow.connection, lead_id=lead_id)
    contacts = await store.contacts_of(uow.connection, lead_id)
    return LeadState(
        lead_id=lead_id, stage=lead.stage, owner_id=lead.owner_id, team=lead.team,
        score=lead.score, tier=lead.tier, source=lead.source, partner=lead.partner,
        bant=lead.bant,
        history=[Transition.model_validate(t, from_attributes=True) for t in transitions],
        assignments=[_assignment(d) for d in reversed(decisions)],
        contacts=[LoggedContact.model_validate(c, from_attributes=True) for c in contacts])


Action = Callable[[UnitOfWork, datetime], Awaitable[None]]


def _calendar(context: ServiceContext) -> BusinessCalendar:
    """Return the business calendar routing's SLA due times count in."""
    settings: RoutingSettings = context.settings
    return settings.business_calendar()


async def _act(context: ServiceContext, lead_id: uuid.UUID, action: Action) -> LeadState:
    """Run a sales action in one unit of work and return the lead's state after it."""
    async with context.unit_of_work() as uow:
        try:
            await action(uow, context.clock())
        except domain.UnknownLead as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
        except domain.UnknownRep as error:
            raise unknown_rep(error) from None
        except domain.ActionRefused as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        await uow.commit()
    async with context.unit_of_work() as uow:
        return await _state(uow, lead_id)


Context = Annotated[ServiceContext, Depends(context_of)]


@router.get("/leads/{lead_id}", response_model=LeadState, responses=NOT_FOUND,
            tags=["lifecycle"])
async def lead_state(lead_id: uuid.UUID, context: Context) -> LeadState:
    """Return the lead's stage, owner, transition history, assignment decisions and
    logged contacts."""
    async with context.unit_of_work() as uow:
        return await _state(uow, lead_id)


@router.post("/leads/{lead_id}/accept", response_model=LeadState, responses=ACTION_ERRORS,
             tags=["lifecycle"])
async def accept_lead(lead_id: uuid.UUID, body: Acceptance, context: Context) -> LeadState:
    """Accept an MQL for a rep of its team (SAL); accepting it again changes nothing."""
    calendar = _calendar(context)
    return await _act(context, lead_id, lambda uow, now: handlers.accept(
        uow, lead_id, body.rep_id, now=now, actor=body.rep_id, calendar=calendar))


@router.post("/leads/{lead_id}/reject", response_model=LeadState, responses=ACTION_ERRORS,
             tags=["lifecycle"])
async def reject_lead(lead_id: uuid.UUID, body: Rejection, context: Context) -> LeadState:
    """Send an MQL, SAL or SQL back to nurturing with a reason; a repeat changes nothing.

    A lead a rep holds is theirs alone to reject, unless they are inactive; a colleague
    may take an MQL by accepting it.
    """
    return await _act(context, lead_id, lambda uow, now: handlers.reject(
        uow, lead_id, body.rep_id, body.reason, now=now, actor=body.rep_id))


@router.post("/leads/{lead_id}/qualify", response_model=LeadState, responses=ACTION_ERRORS,
             tags=["lifecycle"])
async def qualify_lead(lead_id: uuid.UUID, body: Qualification, context: Context) -> LeadState:
    """Qualify an SAL (SQL) and hand it to field sales; a repeat changes nothing.

    BANT rank A or B, or a demo or quote request (on the call or earlier), qualifies;
    otherwise 409 with the rank.
    """
    bant = domain.Bant(budget=body.budget, authority=body.authority, need=body.need,
                       timeframe=body.timeframe)
    calendar = _calendar(context)
    return await _act(context, lead_id, lambda uow, now: handlers.qualify(
        uow, lead_id, body.rep_id, bant, body.demo_or_quote_requested, now=now,
        actor=body.rep_id, calendar=calendar))


@router.post("/leads/{lead_id}/disqualify", response_model=LeadState, responses=ACTION_ERRORS,
             tags=["lifecycle"])
async def disqualify_lead(lead_id: uuid.UUID, body: Disqualification,
                          context: Context) -> LeadState:
    """Disqualify a lead for good with a reason; a repeat changes nothing.

    A lead a rep holds is theirs alone to disqualify, unless they are inactive; a colleague
    may take an MQL by accepting it.
    """
    return await _act(context, lead_id, lambda uow, now: handlers.disqualify(
        uow, lead_id, body.rep_id, body.reason, now=now, actor=body.rep_id))


@router.post("/leads/{lead_id}/contacts", response_model=LeadState, responses=ACTION_ERRORS,
             tags=["lifecycle"])
async def log_contact(lead_id: uuid.UUID, body: Contact, context: Context) -> LeadState:
    """Log a call, e-mail, meeting or visit with an accepted lead, or a first touch of a
    lead marketing holds (lead, nurture: the tier-B and surge SLA's first touch).

    An unowned accepted lead (waiting in its team's queue) becomes the rep's; a lead
    marketing holds stays unowned. A lead a rep owns (SAL, SQL, opportunity) is theirs
    alone to log contacts on, unless they are inactive (409 naming them). Contacts in the
    future are refused (422). The answer's `contacts` include this one.
    """
    if body.occurred_at > context.clock():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [
            {"loc": ["body", "occurred_at"], "msg": "a contact cannot be in the future",
             "type": "future_contact"}])
    calendar = _calendar(context)
    return await _act(context, lead_id, lambda uow, now: handlers.log_contact(
        uow, lead_id, body.rep_id, body.kind, body.occurred_at, body.note, now=now,
        calendar=calendar))


@router.get("/leads/{lead_id}/contacts", response_model=list[LoggedContact],
            responses=NOT_FOUND, tags=["lifecycle"])
async def lead_contacts(lead_id: uuid.UUID, context: Context) -> list[LoggedContact]:
    """Return the contacts reps logged with the lead, in the order they happened."""
    return (await lead_state(lead_id, context)).contacts


@router.get("/leads/{lead_id}/assignments", response_model=list[Assignment],
            responses=NOT_FOUND, tags=["assignment"])
async def lead_assignments(lead_id: uuid.UUID, context: Context) -> list[Assignment]:
    """Return every assignment decision about the lead, oldest first."""
    return (await lead_state(lead_id, context)).assignments


@router.get("/assignments", response_model=list[Assignment], tags=["assignment"])
async def recent_assignments(
    context: Context, team: domain.TeamKind | None = None,
    rep_id: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Assignment]:
    """Return the latest assignment decisions, newest first, by team or rep."""
    async with context.unit_of_work() as uow:
        rows = await store.decisions(uow.connection, team=team.value if team else None,
                                     rep_id=rep_id, limit=limit)
    return [_assignment(row) for row in rows]


# --- teams and reps -----------------------------------------------------------------------


class TeamIn(Strict):
    """A team's display name and the Slack channel of its manager."""

    name: Name
    manager_channel: Annotated[str, Field(max_length=200)] | None = Field(
        default=None, description="Where escalations go, e.g. `#sdr-managers`.")


class Team(TeamIn):
    """A team."""

    team: domain.TeamKind


class QueuedLead(BaseModel):
    """A lead waiting in a team's queue for someone to take it."""

    lead_id: uuid.UUID
    stage: LifecycleStage
    score: int
    tier: str
    company: str | None
    waiting_since: datetime


@router.get("/teams", response_model=list[Team], tags=["teams"])
async def list_teams(context: Context) -> list[Team]:
    """Return the SDR, BDR and field-sales teams."""
    async with context.unit_of_work() as uow:
        rows = await store.list_teams(uow.connection)
    return [Team.model_validate(row, from_attributes=True) for row in rows]


@router.put("/teams/{team}", response_model=Team, tags=["teams"],
            responses={422: {"description": "Unknown team or invalid body."}})
async def put_team(team: domain.TeamKind, body: TeamIn, context: Context) -> Team:
    """Set a team's name and manager channel."""
    async with context.unit_of_work() as uow:
        row = await store.update_team(uow.connection, team.value, **body.model_dump())
        await uow.commit()
    return Team.model_validate(row, from_attributes=True)


@router.get("/teams/{team}/queue", response_model=list[QueuedLead], tags=["teams"])
async def team_queue(team: domain.TeamKind, context: Context) -> list[QueuedLead]:
    """Return the team's leads that nobody could take, oldest first.

    A rep takes one by accepting it (or, for an SQL or opportunity, logging a contact);
    routing also offers them again every `BATON_ROUTING_QUEUE_INTERVAL_SECONDS` (60) and
    gives each to the first rep who can take it.
    """
    async with context.unit_of_work() as uow:
        rows = await store.queue(uow.connection, team.value)
    return [QueuedLead(lead_id=row.lead_id, stage=row.stage, score=row.score, tier=row.tier,
                       company=row.profile.get("company") or row.account.get("company_name"),
                       waiting_since=row.waiting_since) for row in rows]


class WorkingHours(Strict):
    """When a rep works: local hours on ISO weekdays (1 = Monday), minus public holidays."""

    timezone: str = "Asia/Tokyo"
    starts: LocalTime = time(9)
    ends: LocalTime = time(18)
    workdays: Annotated[list[Annotated[int, Field(ge=1, le=7)]],
                        Field(min_length=1, max_length=7)] = [1, 2, 3, 4, 5]
    holidays: Annotated[str, Field(max_length=10)] | None = Field(
        default="JP", description="ISO country code of the public holidays, or null.")

    @field_validator("timezone")
    @classmethod
    def known_zone(cls, value: str) -> str:
        """Return the time zone name if the system knows it."""
        return known_timezone(value)

    @field_validator("holidays")
    @classmethod
    def known_country(cls, value: str | None) -> str | None:
        """Return the country code if the holidays package has its calendar."""
        return known_holiday_country(value)

    @field_validator("starts", "ends")
    @classmethod
    def local_time(cls, value: time) -> time:
        """Return the time if it has no UTC offset (it is local to ``timezone``)."""
        if value.tzinfo is not None:
            raise ValueError("give a local time without a UTC offset; the zone is `timezone`")
        return value

    @field_validator("workdays")
    @classmethod
    def distinct_days(cls, value: list[int]) -> list[int]:
        """Return the weekdays sorted, refusing repeats."""
        if len(set(value)) != len(value):
            raise ValueError("a weekday is listed twice")
        return sorted(value)

    @model_validator(mode="after")
    def starts_before_ends(self) -> Self:
        """Return the hours if the working day starts before it ends."""
        if self.starts >= self.ends:
            raise ValueError("starts must be before ends (overnight shifts are not supported)")
        return self


class Leave(Strict):
    """An out-of-office period: the rep gets no leads from ``starts_at`` until ``ends_at``."""

    starts_at: AwareDatetime
    ends_at: AwareDatetime
    note: Annotated[str, Field(max_length=200)] | None = None

    @model_validator(mode="after")
    def starts_before_ends(self) -> Self:
        """Return the period if it starts before it ends."""
        if self.starts_at >= self.ends_at:
            raise ValueError("starts_at must be before ends_at")
        return self


Values = Annotated[list[Label], Field(max_length=100)]


class TerritoryIn(Strict):
    """Which leads the rep covers; an empty list matches anything (full/half width ignored)."""

    regions: Values = []
    industries: Values = []
    employee_bands: Values = []

    @model_validator(mode="after")
    def restricts_something(self) -> Self:
        """Return the territory if at least one dimension is set."""
        if not (self.regions or self.industries or self.employee_bands):
            raise ValueError("a territory needs regions, industries or employee_bands; "
                             "use null for a rep without one")
        return self


class RepIn(Strict):
    """A rep: team, Slack user, round-robin weight, daily capacity, hours, leave, territory."""

    name: Name
    team: domain.TeamKind
    email: Annotated[str, Field(max_length=320)] | None = None
    slack_user_id: Annotated[str, Field(pattern=SLACK_USER)] | None = Field(
        default=None, description="Links Slack button clicks to this rep, e.g. `U024BE7LH`.")
    weight: Annotated[float, Field(ge=0.01, le=100)] = Field(
        default=1.0, description=("Share of the round robin, and of a territory's leads, "
                                  "relative to teammates."))
    daily_capacity: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=20, description="Leads per local day, counted from midnight in the rep's zone.")
    working_hours: WorkingHours = WorkingHours()
    out_of_office: Annotated[list[Leave], Field(max_length=100)] = []
    territory: TerritoryIn | None = None
    active: bool = True


class Rep(RepIn):
    """A rep as stored."""

    rep_id: str


def _rep(row: Row[Any]) -> Rep:
    return Rep(
        rep_id=row.rep_id, name=row.name, team=row.team, email=row.email,
        slack_user_id=row.slack_user_id, weight=row.weight, daily_capacity=row.daily_capacity,
        working_hours=WorkingHours(timezone=row.timezone, starts=row.work_starts,
                                   ends=row.work_ends, workdays=row.workdays,
                                   holidays=row.holidays),
        out_of_office=row.out_of_office, territory=row.territory, active=row.active)


@router.put("/reps/{rep_id}", response_model=Rep, tags=["reps"], responses={
    409: {"description": "The Slack user is linked to another rep."},
    422: {"description": "Invalid body (field-level detail)."}})
async def put_rep(rep_id: RepIdPath, body: RepIn, context: Context) -> Rep:
    """Create or replace a rep; a new rep starts level with the team's round robin, and
    one new to a territory level with its rotation at its next lead."""
    async with context.unit_of_work() as uow:
        connection = uow.connection
        if body.slack_user_id is not None:
            linked = await store.rep_by_slack_user(connection, body.slack_user_id)
            if linked is not None and linked.rep_id != rep_id:
                raise HTTPException(status.HTTP_409_CONFLICT,
                                    f"Slack user {body.slack_user_id} is linked to rep "
                                    f"{linked.rep_id}")
        await store.lock_teams(connection, [body.team.value])
        stored = await store.get_rep(connection, rep_id)
        position = domain.round_robin_place(
            await store.team_positions(connection, body.team.value), body.team, body.weight,
            store.rep_from_row(stored) if stored is not None else None)
        hours = body.working_hours
        try:
            row = await store.put_rep(
                connection, rep_id, position=position, name=body.name,
                team=body.team.value, email=body.email, slack_user_id=body.slack_user_id,
                weight=body.weight, daily_capacity=body.daily_capacity,
                timezone=hours.timezone, work_starts=hours.starts, work_ends=hours.ends,
                workdays=hours.workdays, holidays=hours.holidays,
                out_of_office=[leave.model_dump(mode="json") for leave in body.out_of_office],
                territory=body.territory.model_dump() if body.territory else None,
                active=body.active)
        except IntegrityError:
            # The Slack user is the only unique value left: another rep linked it after the
            # check above, in a transaction committed while this one waited for it.
            if body.slack_user_id is None:
                raise
            raise HTTPException(status.HTTP_409_CONFLICT,
                                f"Slack user {body.slack_user_id} is linked to another rep"
                                ) from None
        await uow.commit()
    return _rep(row)


@router.get("/reps", response_model=list[Rep], tags=["reps"])
async def list_reps(context: Context, team: domain.TeamKind | None = None) -> list[Rep]:
    """Return the reps, of one team or all."""
    async with context.unit_of_work() as uow:
        rows = await store.list_reps(uow.connection, team.value if team else None)
    return [_rep(row) for row in rows]


@router.get("/reps/{rep_id}", response_model=Rep, tags=["reps"],
            responses={404: {"description": "No such rep."}})
async def get_rep(rep_id: RepIdPath, context: Context) -> Rep:
    """Return one rep."""
    async with context.unit_of_work() as uow:
        row = await store.get_rep(uow.connection, rep_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no rep {rep_id!r}")
    return _rep(row)


# --- funnel -------------------------------------------------------------------------------


class Speed(BaseModel):
    """Minutes from MQL to a milestone: how many leads got there, median and 95th percentile."""

    leads: int
    p50_minutes: float | None
    p95_minutes: float | None


class Conversion(BaseModel):
    """Share of the leads that reached ``from_stage`` and went on to ``to_stage``."""

    from_stage: LifecycleStage
    to_stage: LifecycleStage
    rate: float | None


class FunnelRow(BaseModel):
    """One group's funnel; ``group`` holds the grouped dimensions' values."""

    group: dict[str, str | None]
    leads: int
    reached: dict[str, int]
    exited: dict[str, int]
    conversions: list[Conversion]
    speed_to_acceptance: Speed
    speed_to_first_contact: Speed


class Funnel(BaseModel):
    """Leads first seen from ``since`` until (before) ``until``, by the requested groups."""

    since: date
    until: date
    timezone: str
    period: domain.Granularity
    group_by: list[domain.Dimension]
    rows: list[FunnelRow]
    total: FunnelRow


def _funnel_row(row: domain.FunnelRow) -> FunnelRow:
    return FunnelRow(
        group={dimension.value: value for dimension, value in row.group.items()},
        leads=row.leads,
        reached={stage.value: count for stage, count in row.reached.items()},
        exited={stage.value: count for stage, count in row.exited.items()},
        conversions=[Conversion(from_stage=c.from_stage, to_stage=c.to_stage, rate=c.rate)
                     for c in row.conversions],
        speed_to_acceptance=Speed.model_validate(row.to_acceptance, from_attributes=True),
        speed_to_first_contact=Speed.model_validate(row.to_first_contact,
                                                    from_attributes=True))


def _invalid_range(message: str, field: str = "until") -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [
        {"loc": ["query", field], "msg": message, "type": "invalid_range"}])


@router.get("/funnel", response_model=Funnel, tags=["funnel"],
            responses={422: {"description": "Invalid dates or grouping (field-level detail)."}})
async def funnel(
    context: Context,
    since: Annotated[date | None, Query(description="First day (default: 90 days ago).")] = None,
    until: Annotated[date | None, Query(description="Day after the last (default: tomorrow).")
                     ] = None,
    period: domain.Granularity = domain.Granularity.MONTH,
    group_by: Annotated[list[domain.Dimension] | None, Query(
        description="Repeat to group by several: period, source, partner.")] = None,
    source: Annotated[str | None, Query(max_length=100)] = None,
    partner: Annotated[str | None, Query(max_length=500)] = None,
) -> Funnel:
    """Return stage counts, stage-to-stage conversion and speed-to-lead (MQL to acceptance,
    MQL to first contact, p50 / p95) for leads first seen in the range, in the business
    time zone; fiscal quarters follow BATON_FISCAL_YEAR_START_MONTH (April by default)."""
    settings: RoutingSettings = context.settings
    zone = settings.business_calendar().zone
    today = context.clock().astimezone(zone).date()
    first, last = FUNNEL_DAYS
    for field, day in (("since", since), ("until", until)):
        if day is not None and not first <= day <= last:
            raise _invalid_range(f"{field} must be between {first} and {last}", field)
    until = until or today + timedelta(days=1)
    since = since or until - timedelta(days=90)
    if since >= until:
        raise _invalid_range("until must be after since")
    if (until - since).days > MAX_FUNNEL_DAYS:
        raise _invalid_range(f"the range may span at most {MAX_FUNNEL_DAYS} days")
    dimensions = list(dict.fromkeys(group_by or [domain.Dimension.PERIOD]))

    def start_of(day: date) -> datetime:
        return datetime.combine(day, time(0), zone).astimezone(UTC)

    async with context.unit_of_work() as uow:
        journeys = await store.journeys(uow.connection, since=start_of(since),
                                        until=start_of(until), source=source, partner=partner)
    rows, total = domain.funnel(journeys, dimensions, period, zone,
                                settings.fiscal_year_start_month)
    return Funnel(since=since, until=until, timezone=settings.routing_timezone, period=period,
                  group_by=dimensions, rows=[_funnel_row(r) for r in rows],
                  total=_funnel_row(total))
