"""Pipeline's API: deals and their phases, holds, the forecast, targets and pipeline health."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from baton_runtime.service import ServiceContext, context_of
from baton_runtime.text import NOT_BLANK
from schemas.events import DealPhase, RepId, refuse_blank
from services.pipeline import domain, handlers, store
from services.pipeline.domain import (
    OPEN_PHASES,
    Changed,
    Deal,
    GroupKey,
    Issue,
    PipelineRules,
    Scope,
)

router = APIRouter(prefix="/v1")

OwnerId = Annotated[str, Field(min_length=1, max_length=100, description="The rep's id.")]
# Pipeline keeps no rep directory: any well-formed id is recorded as given.
ActorId = Annotated[RepId, Field(description=("The id of the rep making the change, e.g. "
                                              "`sato` or `rep-001`; the deal's history "
                                              "shows it as `actor`."))]
TeamName = Annotated[str, Field(min_length=1, max_length=100)]
Amount = Annotated[int, Field(ge=0, le=10**15, description="In the smallest currency unit.")]
Reason = Annotated[str, Field(min_length=1, max_length=400)]
Note = Annotated[str, Field(min_length=1, max_length=400, pattern=NOT_BLANK)]


# Blank, an exit criterion would read as entered while it still counts as missing.
CriterionText = Annotated[str, refuse_blank("must not be blank: leave it out to keep it, or "
                                             "send null to clear it"),
                          Field(max_length=2000, pattern=NOT_BLANK)]

OpenPhase = Literal["P1", "P2", "P3", "P4", "P5"]
DEFAULT_PAGE = 50
MAX_PAGE = 200

Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: {"description": "No such deal."}}
INVALID_CHANGE = ("Invalid body (field-level detail), e.g. a missing or blank `rep_id`. "
                  "Nothing was changed.")
CHANGE_ERRORS: Responses = {
    **NOT_FOUND,
    409: {"description": "The deal's state does not allow the change: it is closed, the "
                         "move goes the wrong way, or exit criteria are missing (listed "
                         "per criterion in `detail`)."},
    422: {"description": INVALID_CHANGE},
}
LIST_ERRORS: Responses = {
    422: {"description": "Invalid filter, limit or cursor (field-level detail), or filters "
                         "no deal can match (e.g. `is_open=true` with an `outcome`)."},
}
GROUP_ERRORS: Responses = {
    422: {"description": "Invalid query (field-level detail), e.g. both owner and team."},
}


class Strict(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


# --- bodies -------------------------------------------------------------------------------


class NextActionBody(Strict):
    """The rep's next step: when and what."""

    due: date
    # Blank, it would restart the zombie rule's next-action clock with nothing entered.
    text: Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK)]


class DealCreate(Strict):
    """A deal a rep opens by hand in P1 (SQLs open theirs from lead.promoted)."""

    rep_id: ActorId
    lead_id: uuid.UUID
    owner_id: OwnerId
    team: TeamName | None = None
    company: Annotated[str, Field(max_length=500)] | None = None
    amount: Amount | None = None
    expected_close_date: date | None = None
    next_action: NextActionBody | None = None


class CriteriaUpdate(Strict):
    """Exit criteria to record; those left out keep their value, null clears a text (blank
    text is refused)."""

    problem_agreed: bool = False
    business_issue: CriterionText | None = None
    problem: CriterionText | None = None
    solution: CriterionText | None = None
    benefit: CriterionText | None = None
    demo_done: bool = False
    proposal_sent: bool = False
    quote_presented: bool = False
    approval_route: CriterionText | None = None
    legal_checked: bool = False
    final_terms_agreed: bool = False
    approval_requested: bool = False


class DealUpdate(Strict):
    """Fields a rep changes; those left out keep their value, null clears one."""

    rep_id: ActorId
    amount: Amount | None = None
    expected_close_date: date | None = None
    next_action: NextActionBody | None = None
    criteria: CriteriaUpdate | None = None


class Advance(Strict):
    """A rep moving the deal forward: to ``to_phase``, or to the next phase if it is left
    out."""

    rep_id: ActorId
    to_phase: OpenPhase | None = None
    from_phase: OpenPhase | None = Field(
        default=None, description="The phase the deal is in as you saw it: if it is no longer "
                                  "there, the advance is refused (409) instead of moving it "
                                  "again. Send it when you leave out to_phase and may retry.")


class MoveBack(Strict):
    """A rep moving the deal back to an earlier phase, with the reason."""

    rep_id: ActorId
    to_phase: OpenPhase
    reason: Reason


class Win(Strict):
    """A rep closing the deal as won."""

    rep_id: ActorId
    note: Note | None = None


class Lose(Strict):
    """A rep closing the deal as lost; ``reason`` is one of the configured lost reasons."""

    rep_id: ActorId
    reason: Annotated[str, Field(min_length=1, max_length=100)]
    note: Note | None = None


class HoldBody(Strict):
    """A rep keeping the deal from the zombie sweep through ``until`` (inclusive)."""

    rep_id: ActorId
    until: date
    reason: Reason


class TargetBody(Strict):
    """A target of a month (2026-04), fiscal quarter (FY2026-Q1) or year (FY2026).

    In the forecast, a quarter or year without a target of its own takes the sum of its
    parts' targets only when every part has one."""

    period: Annotated[str, Field(min_length=1, max_length=20, examples=["FY2026-Q3"])]
    owner_id: OwnerId | None = None
    team: TeamName | None = None
    amount: Amount

    @model_validator(mode="after")
    def one_group(self) -> TargetBody:
        """Return the body if it names an owner or a team, not both."""
        if self.owner_id is not None and self.team is not None:
            raise ValueError("give owner_id or team, not both")
        return self


# --- responses ----------------------------------------------------------------------------


HANDED_OFF_AT = (
    "When this deal, kept open from before, was last handed to field sales with its lead "
    "qualified again as an SQL; null if not since it opened. The zombie rules (no phase "
    "change, no next action entered) and the stuck-phase check count from it when it is "
    "later than the last phase change or next-action entry, as a new deal's count from its "
    "opening.")


class NextActionView(BaseModel):
    """The rep's next step and when it was entered."""

    due: date
    text: str
    entered_at: datetime | None


class HoldView(BaseModel):
    """The owner's hold; ``active`` is False once its end date has passed."""

    until: date
    reason: str
    placed_at: datetime
    active: bool


class MissingView(BaseModel):
    """An exit criterion not recorded yet."""

    phase: DealPhase
    field: str
    label: str


class DealView(BaseModel):
    """A deal: phase, money, dates, next action, exit criteria, hold and outcome."""

    deal_id: uuid.UUID
    lead_id: uuid.UUID
    phase: DealPhase
    probability: int
    is_open: bool
    outcome: domain.Outcome | None
    close_reason: str | None
    owner_id: str | None
    team: str | None
    company: str | None
    amount: int | None
    expected_close_date: date | None
    next_action: NextActionView | None
    criteria: domain.ExitCriteria
    missing_to_advance: list[MissingView] = Field(
        description="What to record before the next phase (or won, from P5).")
    hold: HoldView | None
    opened_at: datetime
    phase_changed_at: datetime
    handed_off_at: datetime | None = Field(description=HANDED_OFF_AT)
    closed_at: datetime | None
    changed_at: datetime = Field(
        description="When the deal's latest change (any entry of its history) was recorded.")


class DealPage(BaseModel):
    """A page of deals, most recently changed first, and where the next page starts."""

    deals: list[DealView]
    next_cursor: str | None = Field(description=(
        "Pass as `cursor` (with the same filters) for the next page; null on the last page."))


class HistoryEntry(BaseModel):
    """One change of a deal, and who made it."""

    action: domain.Action
    from_phase: DealPhase | None
    to_phase: DealPhase
    reason: str | None
    actor: str | None = Field(description=(
        "The rep who made the change: the `rep_id` of the call that made it. Null when the "
        "service made it itself (a deal opened, kept or handed to a new owner for a lead "
        "routing qualified; a zombie recycled by the sweep), and for changes recorded before "
        "changes named their rep."))
    occurred_at: datetime


PERIOD_PARTS = "a quarter's three months, the year's four quarters"


class PeriodForecast(BaseModel):
    """One period of one group's forecast: open deals by their expected close date, won
    deals by the day they were won."""

    period: str = Field(description="A month (`2026-04`), fiscal quarter (`FY2026-Q1`) or "
                                    "the fiscal year (`FY2026`).")
    kind: domain.PeriodKind
    starts: date = Field(description="The period's first day.")
    ends: date = Field(description="The day after the period's last.")
    deals: int = Field(description=(
        "Open deals whose expected close date falls in the period; "
        "`GET /v1/deals?is_open=true&expected_close=<period>` lists them."))
    pipeline: int = Field(description="Their amounts, unweighted (no amount counts 0).")
    weighted: int = Field(description=(
        "Their amounts x phase probability: open deals only (won deals are in `won` and "
        "`forecast`)."))
    commit: int = Field(description="The amounts of those in P4 and P5.")
    won: int = Field(description=(
        "The amounts of the deals won in the period: by the day each was won, in the "
        "pipeline's time zone, not by its expected close date; "
        "`GET /v1/deals?outcome=won&closed=<period>` lists them."))
    won_deals: int = Field(description="How many deals `won` sums.")
    forecast: int = Field(description=(
        "What the period is expected to book: `won` (at a won deal's 100 %) + `weighted` "
        "(open deals at their phase's probability); lost and recycled deals count 0."))
    target: int | None = Field(description=(
        f"The period's own target or, without one, its parts' ({PERIOD_PARTS}) sum when "
        "every part has a target; null otherwise (see `partial_target`)."))
    partial_target: int | None = Field(description=(
        "Only when the period has no target of its own and only some of its parts have "
        "one: what its parts' targets, as far as set, sum to. It is not the period's target: "
        "`target`, `coverage` and `needed_pipeline` stay null. Null otherwise."))
    periods_without_target: list[str] = Field(description=(
        f"With `partial_target`, the parts ({PERIOD_PARTS}) that have no target; empty "
        "otherwise."))
    coverage: float | None = Field(description=(
        "Open pipeline / (target - won); null without a target, or once it is met."))
    needed_pipeline: int | None = Field(description=(
        "Open pipeline still needed to meet the target at the group's win rate: "
        "(target - won) / win rate - pipeline, at least 0 (0 once met); null without a "
        "target, or without a win rate while it is not met."))


class Unscheduled(BaseModel):
    """A group's open deals with no expected close date."""

    deals: int = Field(description=(
        "Open deals without an expected close date; "
        "`GET /v1/deals?is_open=true&has_expected_close=false` lists them."))
    pipeline: int = Field(description="Their amounts, unweighted (no amount counts 0).")
    weighted: int = Field(description="Their amounts x phase probability.")
    commit: int = Field(description="The amounts of those in P4 and P5.")


class GroupForecast(BaseModel):
    """One group's forecast over the fiscal year."""

    scope: Scope
    name: str | None = Field(description="The owner's id or the team; null for everyone.")
    win_rate: float | None = Field(description=(
        "Won / (won + lost) of the group's deals closed in the lookback window; everyone's "
        "when the group closed none; null when nobody did."))
    periods: list[PeriodForecast] = Field(description=(
        "The fiscal year's twelve months, then its four quarters, then the year."))
    unscheduled: Unscheduled = Field(description=(
        "Open deals with no expected close date, as they are now (whatever the fiscal "
        "year): they fall in no period, so no period's numbers, coverage or need count "
        "them; they are counted here instead of being left out, and pipeline health lists "
        "them as `no_expected_close`."))


class ForecastView(BaseModel):
    """The fiscal year's forecast for everyone, each team and each owner."""

    fiscal_year: int
    starts: date
    ends: date
    fiscal_year_start_month: int
    win_rate_lookback_days: int
    groups: list[GroupForecast]


class TargetView(BaseModel):
    """A target."""

    period: str
    scope: Scope
    name: str | None
    amount: int


class DealIssue(BaseModel):
    """An open deal with a health issue, and what is wrong."""

    deal_id: uuid.UUID
    lead_id: uuid.UUID
    owner_id: str | None
    team: str | None
    company: str | None
    phase: DealPhase
    amount: int | None
    expected_close_date: date | None
    phase_changed_at: datetime
    handed_off_at: datetime | None = Field(description=HANDED_OFF_AT)
    detail: str


class IssueList(BaseModel):
    """How many open deals have the issue, and the longest-unmoved of them."""

    total: int
    deals: list[DealIssue]


class Thresholds(BaseModel):
    """The rules health was measured against."""

    zombie_no_phase_change_days: int
    zombie_no_next_action_days: int
    stuck_phase_days: int


class Health(BaseModel):
    """Zombies, past-due close dates, missing or overdue next actions, stuck phases and
    missing expected close dates."""

    as_of: datetime
    today: date
    thresholds: Thresholds
    zombies: IssueList
    past_due_close: IssueList
    no_next_action: IssueList
    stuck: IssueList
    no_expected_close: IssueList = Field(description=(
        "Open deals without an expected close date: the forecast places them in no period "
        "(it counts them as `unscheduled`)."))


# --- helpers ------------------------------------------------------------------------------


Context = Annotated[ServiceContext, Depends(context_of)]


def _rules(context: ServiceContext) -> PipelineRules:
    """Return the service's pipeline rules."""
    rules: PipelineRules = context.settings.rules()
    return rules


def _view(deal: Deal, rules: PipelineRules, now: datetime) -> DealView:
    """Return the API's view of a deal at ``now``."""
    missing: list[domain.MissingCriterion] = []
    if deal.is_open:
        position = OPEN_PHASES.index(deal.phase)
        target = OPEN_PHASES[position + 1] if position + 1 < len(OPEN_PHASES) else DealPhase.WON
        missing = domain.missing_criteria(deal.phase, target, deal.criteria)
    return DealView(
        deal_id=deal.deal_id, lead_id=deal.lead_id, phase=deal.phase,
        probability=domain.probability(deal, rules.probabilities), is_open=deal.is_open,
        outcome=deal.outcome,
        close_reason=deal.close_reason, owner_id=deal.owner_id, team=deal.team,
        company=deal.company, amount=deal.amount, expected_close_date=deal.expected_close_date,
        next_action=NextActionView(due=deal.next_action.due, text=deal.next_action.text,
                                   entered_at=deal.next_action_entered_at)
        if deal.next_action else None,
        criteria=deal.criteria,
        missing_to_advance=[MissingView(phase=m.phase, field=m.field, label=m.label)
                            for m in missing],
        hold=HoldView(until=deal.hold.until, reason=deal.hold.reason,
                      placed_at=deal.hold.placed_at, active=deal.held_on(rules.today(now)))
        if deal.hold else None,
        opened_at=deal.opened_at, phase_changed_at=deal.phase_changed_at,
        handed_off_at=deal.handed_off_at, closed_at=deal.closed_at,
        # A deal not stored yet has changed only by opening.
        changed_at=deal.changed_at or deal.opened_at)


def _period_query(name: str, label: str | None, rules: PipelineRules) -> domain.Period | None:
    """Return the period the query parameter ``name`` names (None if not given); 422 if it
    names none."""
    if label is None:
        return None
    try:
        return rules.fiscal.period(label)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [
            {"loc": ["query", name], "msg": str(error), "type": "value_error"}]) from None


def _instants(name: str, period: domain.Period | None, rules: PipelineRules
              ) -> domain.TimeSpan | None:
    """Return the instants of the period the query parameter ``name`` names, in the
    pipeline's time zone (None if not given); 422 if they have no UTC time."""
    if period is None:
        return None
    try:
        return period.in_zone(rules.timezone)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [
            {"loc": ["query", name], "msg": str(error), "type": "value_error"}]) from None


def _invalid_query(error: domain.InvalidFilter) -> HTTPException:
    """Return the 422 that names the query parameter at fault."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [
        {"loc": ["query", error.field], "msg": str(error), "type": "value_error"}])


def _http_error(error: Exception) -> HTTPException:
    """Return the HTTP error a refused change answers with."""
    if isinstance(error, domain.UnknownDeal):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(error))
    if isinstance(error, domain.ExitCriteriaNotMet):
        return HTTPException(status.HTTP_409_CONFLICT, [
            {"loc": ["deal", "criteria", m.field],
             "msg": f"record {m.label} to leave {m.phase.value} (towards {error.target.value})",
             "type": "exit_criterion_missing"} for m in error.missing])
    if isinstance(error, domain.InvalidChange):
        return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [
            {"loc": ["body", *error.field.split(".")], "msg": str(error),
             "type": "value_error"}])
    return HTTPException(status.HTTP_409_CONFLICT, str(error))


DealChange = Callable[[Deal, datetime], Changed | None]


async def _change(context: ServiceContext, deal_id: uuid.UUID, change: DealChange, *,
                  actor: str) -> DealView:
    """Apply a change ``actor`` made in one unit of work and return the deal after it."""
    now, rules = context.clock(), _rules(context)
    async with context.unit_of_work() as uow:
        try:
            deal = await handlers.change_deal(uow, deal_id, now, lambda d: change(d, now),
                                              actor=actor, probabilities=rules.probabilities)
        except (domain.UnknownDeal, domain.DealRuleError) as error:
            raise _http_error(error) from None
        await uow.commit()
    return _view(deal, rules, now)


def _group(owner_id: str | None, team: str | None) -> GroupKey | None:
    """Return the group the query asks for (None for every group); 422 if both are given."""
    if owner_id is not None and team is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [
            {"loc": ["query", "team"], "msg": "give owner_id or team, not both",
             "type": "value_error"}])
    if owner_id is not None:
        return GroupKey(Scope.OWNER, owner_id)
    if team is not None:
        return GroupKey(Scope.TEAM, team)
    return None


# --- deals --------------------------------------------------------------------------------


@router.post("/deals", response_model=DealView, status_code=status.HTTP_201_CREATED,
             tags=["deals"], responses={
                 409: {"description": "The lead already has an open deal."},
                 422: {"description": INVALID_CHANGE}})
async def create_deal(body: DealCreate, context: Context) -> DealView:
    """Open a deal in P1 for a lead; emits deal.phase_changed."""
    now, rules = context.clock(), _rules(context)
    opened = domain.open_deal(
        deal_id=uuid.uuid4(), lead_id=body.lead_id, owner_id=body.owner_id, team=body.team,
        company=body.company, now=now, reason="opened by hand", amount=body.amount,
        expected_close_date=body.expected_close_date,
        next_action=domain.NextAction(body.next_action.due, body.next_action.text)
        if body.next_action else None)
    async with context.unit_of_work() as uow:
        try:
            deal = await handlers.create_deal(uow, opened, actor=body.rep_id,
                                              probabilities=rules.probabilities)
        except domain.DealRuleError as error:
            raise _http_error(error) from None
        await uow.commit()
    return _view(deal, rules, now)


@router.get("/deals", response_model=DealPage, responses=LIST_ERRORS, tags=["deals"])
async def list_deals(
    context: Context,
    owner_id: Annotated[str | None, Query(min_length=1, max_length=100,
                                          description="The owning rep's id.")] = None,
    team: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    phase: Annotated[list[DealPhase] | None, Query(description=(
        "Repeat for several. A recycled deal keeps the open phase it idled in."))] = None,
    is_open: Annotated[bool | None, Query(description=(
        "true: open deals; false: closed ones (won, lost, recycled)."))] = None,
    outcome: Annotated[list[domain.Outcome] | None, Query(description=(
        "How closed deals ended; repeat for several."))] = None,
    expected_close: Annotated[str | None, Query(
        min_length=1, max_length=20, examples=["2026-04", "FY2026-Q3", "FY2026"],
        description=("The month (YYYY-MM), fiscal quarter (FYyyyy-Qn) or fiscal year "
                     "(FYyyyy) the expected close date falls in, open or closed deal "
                     "alike: the date the forecast counts open deals by (with "
                     "`is_open=true`, its `deals` and `pipeline`). It counts won deals by "
                     "the day they were won instead: see `closed`."))] = None,
    closed: Annotated[str | None, Query(
        min_length=1, max_length=20, examples=["2026-04", "FY2026-Q3", "FY2026"],
        description=("The month, fiscal quarter or fiscal year (as `expected_close`) the "
                     "deal was closed (won, lost or recycled) in, by the day in the "
                     "pipeline's time zone: the date the forecast counts won deals by "
                     "(with `outcome=won`, its `won` and `won_deals`). Open deals have "
                     "none: with `is_open=true` it is a 422."))] = None,
    has_expected_close: Annotated[bool | None, Query(description=(
        "true: deals with an expected close date; false: deals without one (with "
        "`is_open=true`, the forecast's `unscheduled`). false with `expected_close` is a "
        "422."))] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Deals per page.")
                     ] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(min_length=1, max_length=200, description=(
        "The previous page's `next_cursor`; leave out for the first page."))] = None,
) -> DealPage:
    """Return deals, most recently changed first (then by id), a page at a time.

    Filters combine (all must hold). A deal that changes while you page moves to the
    front of the list: the pages after it skip it, and the next first page shows it.
    """
    rules = _rules(context)
    closing = _period_query("expected_close", expected_close, rules)
    closed_in = _period_query("closed", closed, rules)
    try:
        where = domain.deal_filter(owner_id=owner_id, team=team, phases=phase or (),
                                   is_open=is_open, outcomes=outcome or (), closing=closing,
                                   closed=_instants("closed", closed_in, rules),
                                   has_expected_close=has_expected_close)
        after = domain.ListPosition.from_cursor(cursor) if cursor is not None else None
    except domain.InvalidFilter as error:
        raise _invalid_query(error) from None
    async with context.unit_of_work() as uow:
        found = await store.list_deals(uow.connection, where, after=after, limit=limit + 1)
    following = domain.next_position(found, limit)
    now = context.clock()
    return DealPage(deals=[_view(deal, rules, now) for deal in found[:limit]],
                    next_cursor=following.cursor() if following else None)


@router.get("/deals/{deal_id}", response_model=DealView, responses=NOT_FOUND, tags=["deals"])
async def get_deal(deal_id: uuid.UUID, context: Context) -> DealView:
    """Return the deal."""
    async with context.unit_of_work() as uow:
        deal = await store.get_deal(uow.connection, deal_id)
    if deal is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no deal {deal_id}")
    return _view(deal, _rules(context), context.clock())


@router.get("/deals/{deal_id}/history", response_model=list[HistoryEntry], responses=NOT_FOUND,
            tags=["deals"])
async def deal_history(deal_id: uuid.UUID, context: Context) -> list[HistoryEntry]:
    """Return every change of the deal, oldest first, each with the rep who made it."""
    async with context.unit_of_work() as uow:
        if await store.get_deal(uow.connection, deal_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no deal {deal_id}")
        rows = await store.history(uow.connection, deal_id)
    return [HistoryEntry.model_validate(row, from_attributes=True) for row in rows]


@router.get("/leads/{lead_id}/deals", response_model=list[DealView], tags=["deals"])
async def deals_of_lead(lead_id: uuid.UUID, context: Context) -> list[DealView]:
    """Return the lead's deals, newest first (at most one is open)."""
    async with context.unit_of_work() as uow:
        found = await store.deals_of_lead(uow.connection, lead_id)
    now = context.clock()
    return [_view(deal, _rules(context), now) for deal in found]


@router.patch("/deals/{deal_id}", response_model=DealView, responses=CHANGE_ERRORS,
              tags=["deals"])
async def update_deal(deal_id: uuid.UUID, body: DealUpdate, context: Context) -> DealView:
    """Change amount, expected close date, next action or exit criteria.

    Emits deal.phase_changed (phase unchanged) unless nothing changed.
    """
    given = body.model_fields_set

    def change(deal: Deal, now: datetime) -> Changed | None:
        next_action = deal.next_action
        if "next_action" in given:
            next_action = (domain.NextAction(body.next_action.due, body.next_action.text)
                           if body.next_action else None)
        criteria = deal.criteria
        if body.criteria is not None:
            criteria = replace(criteria, **body.criteria.model_dump(exclude_unset=True))
        return domain.update(
            deal, now,
            amount=body.amount if "amount" in given else deal.amount,
            expected_close_date=body.expected_close_date if "expected_close_date" in given
            else deal.expected_close_date,
            next_action=next_action, criteria=criteria)

    return await _change(context, deal_id, change, actor=body.rep_id)


@router.post("/deals/{deal_id}/advance", response_model=DealView, responses=CHANGE_ERRORS,
             tags=["phases"])
async def advance_deal(deal_id: uuid.UUID, body: Advance, context: Context) -> DealView:
    """Move the deal forward if the exit criteria of every phase it leaves are recorded."""
    target = DealPhase(body.to_phase) if body.to_phase else None
    seen = DealPhase(body.from_phase) if body.from_phase else None
    return await _change(context, deal_id,
                         lambda deal, now: domain.advance(deal, now, target, seen),
                         actor=body.rep_id)


@router.post("/deals/{deal_id}/move-back", response_model=DealView, responses=CHANGE_ERRORS,
             tags=["phases"])
async def move_deal_back(deal_id: uuid.UUID, body: MoveBack, context: Context) -> DealView:
    """Move the deal back to an earlier phase, with the reason."""
    return await _change(context, deal_id, lambda deal, now: domain.move_back(
        deal, now, DealPhase(body.to_phase), body.reason), actor=body.rep_id)


@router.post("/deals/{deal_id}/win", response_model=DealView, responses=CHANGE_ERRORS,
             tags=["phases"])
async def win_deal(deal_id: uuid.UUID, body: Win, context: Context) -> DealView:
    """Close the deal as won, once every exit criterion through P5 is recorded."""
    return await _change(context, deal_id, lambda deal, now: domain.win(deal, now, body.note),
                         actor=body.rep_id)


@router.post("/deals/{deal_id}/lose", response_model=DealView, responses=CHANGE_ERRORS,
             tags=["phases"])
async def lose_deal(deal_id: uuid.UUID, body: Lose, context: Context) -> DealView:
    """Close the deal as lost, for one of the configured lost reasons (`BATON_LOST_REASONS`)."""
    reasons = _rules(context).lost_reasons
    return await _change(context, deal_id, lambda deal, now: domain.lose(
        deal, now, body.reason, reasons, body.note), actor=body.rep_id)


@router.put("/deals/{deal_id}/hold", response_model=DealView, responses=CHANGE_ERRORS,
            tags=["phases"])
async def hold_deal(deal_id: uuid.UUID, body: HoldBody, context: Context) -> DealView:
    """Keep the deal from the zombie sweep through an end date, for a reason.

    Putting the hold the deal already has changes nothing (and announces nothing).
    """
    rules = _rules(context)
    return await _change(context, deal_id, lambda deal, now: domain.put_hold(
        deal, now, body.until, body.reason, today=rules.today(now), max_hold=rules.max_hold),
        actor=body.rep_id)


@router.delete("/deals/{deal_id}/hold", response_model=DealView, responses=CHANGE_ERRORS,
               tags=["phases"])
async def release_deal_hold(deal_id: uuid.UUID, rep_id: Annotated[ActorId, Query()],
                            context: Context) -> DealView:
    """End the deal's hold before its end date (``rep_id`` names the rep ending it: a
    query parameter, as a DELETE carries no body)."""
    rules = _rules(context)
    return await _change(context, deal_id, lambda deal, now: domain.release_hold(
        deal, today=rules.today(now)), actor=rep_id)


# --- forecast and targets -----------------------------------------------------------------


@router.get("/forecast", response_model=ForecastView, responses=GROUP_ERRORS, tags=["forecast"])
async def get_forecast(
    context: Context,
    fiscal_year: Annotated[int | None, Query(ge=2000, le=2100,
                                             description="Default: the current one.")] = None,
    owner_id: Annotated[str | None, Query(max_length=100)] = None,
    team: Annotated[str | None, Query(max_length=100)] = None,
) -> ForecastView:
    """Return the forecast by month, fiscal quarter and year, for everyone, teams and owners.

    Per period: open deals, unweighted and weighted pipeline, commit (open P4 and P5),
    won, the forecast (won + weighted), target, coverage (pipeline / (target - won)) and
    the pipeline still needed at the observed win rate. An open deal counts in the period
    of its expected close date (as `GET /v1/deals?expected_close=` lists it); those
    without that date count in their group's `unscheduled` (as
    `GET /v1/deals?is_open=true&has_expected_close=false` lists them). A won deal counts
    in the period it was won in (as `GET /v1/deals?closed=` lists it): its sale is booked
    then, whatever it was expected. A quarter or year without a target of its own sums
    its parts' targets only when every part has one.
    """
    only = _group(owner_id, team)
    rules = _rules(context)
    now = context.clock()
    calendar = rules.fiscal
    year = fiscal_year or calendar.fiscal_year_of(rules.today(now))
    span = calendar.year(year)
    zone = rules.timezone
    won_in = span.in_zone(zone)
    async with context.unit_of_work() as uow:
        connection = uow.connection
        open_slices = await store.open_slices(connection, span.starts, span.ends)
        won_slices = await store.won_slices(connection, won_in.starts, won_in.ends, str(zone))
        closed = await store.closed_counts(connection, now - rules.win_rate_lookback)
        targets = await store.targets_for(connection, [p.label for p in calendar.periods(year)])
    groups = domain.forecast(fiscal_year=year, calendar=calendar, open_slices=open_slices,
                             won_slices=won_slices, closed=closed, targets=targets,
                             probabilities=rules.probabilities, only=only)
    return ForecastView(fiscal_year=year, starts=span.starts, ends=span.ends,
                        fiscal_year_start_month=calendar.start_month,
                        win_rate_lookback_days=rules.win_rate_lookback.days,
                        groups=[GroupForecast.model_validate(group, from_attributes=True)
                                for group in groups])


@router.put("/targets", response_model=TargetView, tags=["forecast"], responses={
    422: {"description": "Invalid period or body (field-level detail)."}})
async def set_target(body: TargetBody, context: Context) -> TargetView:
    """Set the target of a period for everyone, an owner or a team (replacing any)."""
    try:
        period = _rules(context).fiscal.period(body.period)
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [
            {"loc": ["body", "period"], "msg": str(error), "type": "value_error"}]) from None
    group = _group(body.owner_id, body.team) or GroupKey(Scope.ALL)
    target = domain.Target(period.label, group, body.amount)
    async with context.unit_of_work() as uow:
        await store.save_target(uow.connection, target, at=context.clock())
        await uow.commit()
    return TargetView(period=target.period, scope=group.scope, name=group.name,
                      amount=target.amount)


@router.get("/targets", response_model=list[TargetView], tags=["forecast"],
            responses={422: {"description": "Invalid fiscal year."}})
async def list_targets(
    context: Context,
    fiscal_year: Annotated[int | None, Query(ge=2000, le=2100,
                                             description="Default: the current one.")] = None,
) -> list[TargetView]:
    """Return the targets set for the fiscal year's months, quarters and the year, as set:
    the forecast shows what a quarter or year without its own target rolls up to."""
    rules = _rules(context)
    calendar = rules.fiscal
    year = fiscal_year or calendar.fiscal_year_of(rules.today(context.clock()))
    async with context.unit_of_work() as uow:
        found = await store.targets_for(uow.connection,
                                        [p.label for p in calendar.periods(year)])
    return [TargetView(period=t.period, scope=t.group.scope, name=t.group.name, amount=t.amount)
            for t in found]


# --- pipeline health ----------------------------------------------------------------------


@router.get("/pipeline/health", response_model=Health, responses=GROUP_ERRORS,
            tags=["pipeline health"])
async def pipeline_health(
    context: Context,
    owner_id: Annotated[str | None, Query(max_length=100)] = None,
    team: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Deals listed per issue.")] = 100,
) -> Health:
    """Return zombies, past-due close dates, missing next actions, stuck phases and open
    deals without an expected close date (which the forecast places in no period).

    Zombies are what the next sweep recycles; a next action past its date counts as
    missing. A deal kept for a lead qualified again counts its idle days (zombie, stuck)
    from that hand-off (`handed_off_at`) when it is later. Each list gives the total and
    the longest-unmoved deals (by last phase change).
    """
    group = _group(owner_id, team) or GroupKey(Scope.ALL)
    rules = _rules(context)
    now = context.clock()
    cutoffs = rules.cutoffs(now)
    lists: dict[Issue, IssueList] = {}
    async with context.unit_of_work() as uow:
        for issue in Issue:
            total, found = await store.deals_with_issue(uow.connection, cutoffs, issue,
                                                        group=group, limit=limit)
            lists[issue] = IssueList(total=total, deals=[
                DealIssue(deal_id=d.deal_id, lead_id=d.lead_id, owner_id=d.owner_id,
                          team=d.team, company=d.company, phase=d.phase, amount=d.amount,
                          expected_close_date=d.expected_close_date,
                          phase_changed_at=d.phase_changed_at,
                          handed_off_at=d.handed_off_at,
                          detail=domain.issues(d, now, rules).get(issue, issue.value))
                for d in found])
    return Health(
        as_of=now, today=cutoffs.today,
        thresholds=Thresholds(
            zombie_no_phase_change_days=rules.zombie_no_phase_change.days,
            zombie_no_next_action_days=rules.zombie_no_next_action.days,
            stuck_phase_days=rules.stuck_after.days),
        zombies=lists[Issue.ZOMBIE], past_due_close=lists[Issue.PAST_DUE_CLOSE],
        no_next_action=lists[Issue.NO_NEXT_ACTION], stuck=lists[Issue.STUCK],
        no_expected_close=lists[Issue.NO_EXPECTED_CLOSE])
