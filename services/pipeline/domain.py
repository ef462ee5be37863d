"""Pipeline's pure rules: phases and their exit criteria, holds, zombies, health and the
weighted forecast by month and fiscal quarter."""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from baton_runtime.fiscal import fiscal_year_of, parse_label, quarter_label, year_label
from baton_runtime.text import clip
from schemas.events import SHORT_TEXT_LENGTH, DealPhase, is_blank

P = DealPhase
OPEN_PHASES: tuple[DealPhase, ...] = (P.P1, P.P2, P.P3, P.P4, P.P5)
# The design's win probabilities by phase, in percent: the default of
# PipelineRules.probabilities (BATON_PHASE_PROBABILITIES sets the open phases').
PROBABILITY: dict[DealPhase, int] = {
    P.P1: 10, P.P2: 30, P.P3: 60, P.P4: 80, P.P5: 90, P.WON: 100, P.LOST: 0,
}
Probabilities = Mapping[DealPhase, int]
COMMIT_PHASES = frozenset({P.P4, P.P5})


class Outcome(StrEnum):
    """How a deal was closed."""

    WON = "won"
    LOST = "lost"
    RECYCLED = "recycled"


class Action(StrEnum):
    """What a phase-history entry records."""

    OPENED = "opened"
    UPDATED = "updated"
    ADVANCED = "advanced"
    MOVED_BACK = "moved_back"
    WON = "won"
    LOST = "lost"
    HELD = "held"
    HOLD_RELEASED = "hold_released"
    RECYCLED = "recycled"


# --- errors -------------------------------------------------------------------------------


class DealRuleError(ValueError):
    """A change the pipeline's rules refuse."""


class UnknownDeal(LookupError):
    """No deal has this id."""


class DealConflict(DealRuleError):
    """The deal's state does not allow the change (closed, wrong direction, no hold)."""


class InvalidChange(DealRuleError):
    """A value in the request breaks a rule; ``field`` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class MissingCriterion:
    """An exit criterion not yet recorded: the field to record and what it means."""

    phase: DealPhase
    field: str
    label: str


class ExitCriteriaNotMet(DealRuleError):
    """The deal cannot leave its phase before these criteria are recorded."""

    def __init__(self, target: DealPhase, missing: Sequence[MissingCriterion]) -> None:
        listed = "; ".join(f"{m.label} ({m.phase.value})" for m in missing)
        super().__init__(f"cannot move to {target.value}: record first {listed}")
        self.target = target
        self.missing = tuple(missing)


# --- exit criteria ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExitCriteria:
    """What the rep has recorded about the deal; each phase needs some of it to advance."""

    problem_agreed: bool = False
    business_issue: str | None = None
    problem: str | None = None
    solution: str | None = None
    benefit: str | None = None
    demo_done: bool = False
    proposal_sent: bool = False
    quote_presented: bool = False
    approval_route: str | None = None
    legal_checked: bool = False
    final_terms_agreed: bool = False
    approval_requested: bool = False

    def recorded(self, name: str) -> bool:
        """Return True if the criterion ``name`` is ticked or has non-blank text."""
        value = getattr(self, name)
        return value is True or (isinstance(value, str) and not is_blank(value))

    def as_dict(self) -> dict[str, bool | str | None]:
        """Return the criteria as a plain mapping (for storage)."""
        return {item.name: getattr(self, item.name) for item in fields(self)}

    def blank_texts(self) -> list[str]:
        """Return the names of the text criteria holding only blanks (not entered)."""
        return [item.name for item in fields(self)
                if isinstance(value := getattr(self, item.name), str) and is_blank(value)]

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> ExitCriteria:
        """Return criteria from a stored mapping; unknown keys are ignored, and blank text
        (stored before it was refused) reads as not entered."""
        return cls(**{k: None if isinstance(v, str) and is_blank(v) else v  # type: ignore[arg-type]
                      for k, v in values.items() if k in CRITERIA_FIELDS})


CRITERIA_FIELDS = frozenset(item.name for item in fields(ExitCriteria))


@dataclass(frozen=True)
class Requirement:
    """One exit criterion: any of ``fields`` recorded satisfies it."""

    fields: tuple[str, ...]
    label: str


EXIT_CRITERIA: dict[DealPhase, tuple[Requirement, ...]] = {
    P.P1: (Requirement(("problem_agreed",), "problem agreed with the customer"),),
    P.P2: (
        Requirement(("business_issue",), "business issue"),
        Requirement(("problem",), "problem"),
        Requirement(("solution",), "solution"),
        Requirement(("benefit",), "benefit"),
        Requirement(("demo_done", "proposal_sent"), "demo done or proposal sent"),
    ),
    P.P3: (Requirement(("quote_presented",), "quote presented"),
           Requirement(("approval_route",), "approval route")),
    P.P4: (Requirement(("legal_checked",), "legal check"),
           Requirement(("final_terms_agreed",), "final terms agreed")),
    P.P5: (Requirement(("approval_requested",), "approval request submitted"),),
}


def missing_criteria(current: DealPhase, target: DealPhase,
                     criteria: ExitCriteria) -> list[MissingCriterion]:
    """Return what must be recorded to leave every phase from ``current`` up to ``target``."""
    end = OPEN_PHASES.index(target) if target in OPEN_PHASES else len(OPEN_PHASES)
    return [
        MissingCriterion(phase, requirement.fields[0], requirement.label)
        for phase in OPEN_PHASES[OPEN_PHASES.index(current):end]
        for requirement in EXIT_CRITERIA[phase]
        if not any(criteria.recorded(name) for name in requirement.fields)
    ]


# --- the deal -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NextAction:
    """The rep's next step with the customer."""

    due: date
    text: str


@dataclass(frozen=True)
class Hold:
    """The owner's exemption from the zombie sweep, through ``until`` inclusive."""

    until: date
    reason: str
    placed_at: datetime


@dataclass(frozen=True)
class Deal:
    """A deal as the rules see it."""

    deal_id: uuid.UUID
    lead_id: uuid.UUID
    phase: DealPhase
    owner_id: str | None
    team: str | None
    company: str | None
    opened_at: datetime
    phase_changed_at: datetime
    amount: int | None = None
    expected_close_date: date | None = None
    next_action: NextAction | None = None
    next_action_entered_at: datetime | None = None
    handed_off_at: datetime | None = None
    criteria: ExitCriteria = ExitCriteria()
    hold: Hold | None = None
    closed_at: datetime | None = None
    outcome: Outcome | None = None
    close_reason: str | None = None
    # When the latest change of the deal was recorded (its phase history's last entry): the
    # deal list's order. Kept by whoever records changes; a change here leaves it as it was.
    changed_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        """Return True until the deal is won, lost or recycled."""
        return self.closed_at is None

    # Both idle clocks count from the later of their own event and the deal's latest
    # start. A new deal starts at its opening, which both already record (phase_changed_at
    # is its opening, the next-action clock falls back to opened_at); a deal kept for a
    # lead qualified again restarts at that hand-off (``handed_off_at``, None until one).
    # The events themselves stay as they happened: no phase change or entry is invented.
    def _since_hand_off(self, clock: datetime) -> datetime:
        """Return ``clock``, or the deal's latest hand-off if that came later."""
        return clock if self.handed_off_at is None else max(clock, self.handed_off_at)

    @property
    def phase_clock(self) -> datetime:
        """Return the phase idle clock's start: the last phase change, or a later hand-off."""
        return self._since_hand_off(self.phase_changed_at)

    @property
    def next_action_clock(self) -> datetime:
        """Return the next-action idle clock's start: last entry or opening, or a later hand-off."""
        return self._since_hand_off(self.next_action_entered_at or self.opened_at)

    def held_on(self, day: date) -> bool:
        """Return True if a hold covers ``day``."""
        return self.hold is not None and self.hold.until >= day


@dataclass(frozen=True)
class Change:
    """One entry of the phase history, and the deal.phase_changed event it becomes."""

    action: Action
    from_phase: DealPhase | None
    to_phase: DealPhase
    reason: str
    # The rep who made the change; None when the service made it itself (a lead handed
    # over by routing, the zombie sweep).
    actor: str | None = None


@dataclass(frozen=True)
class Changed:
    """A deal after a change, and the change."""

    deal: Deal
    change: Change


def made_by(changed: Changed, actor: str | None) -> Changed:
    """Return the change recorded as made by ``actor`` (None: by the service itself)."""
    return replace(changed, change=replace(changed.change, actor=actor))


def _short(text: str) -> str:
    """Return ``text`` cut to what an event's reason holds."""
    return clip(text, SHORT_TEXT_LENGTH)


def _require_open(deal: Deal) -> None:
    """Raise DealConflict if the deal is closed."""
    if not deal.is_open:
        closed = deal.outcome.value if deal.outcome else "closed"
        raise DealConflict(f"deal {deal.deal_id} is closed ({closed}); it cannot change")


def _changed(deal: Deal, action: Action, reason: str, *, before: Deal) -> Changed:
    """Return the deal with the change that led from ``before`` to it."""
    return Changed(deal, Change(action, before.phase, deal.phase, _short(reason)))


def open_deal(*, deal_id: uuid.UUID, lead_id: uuid.UUID, owner_id: str | None,
              team: str | None, company: str | None, now: datetime, reason: str,
              amount: int | None = None, expected_close_date: date | None = None,
              next_action: NextAction | None = None) -> Changed:
    """Return a new deal in P1 and its opening entry."""
    deal = Deal(deal_id=deal_id, lead_id=lead_id, phase=P.P1, owner_id=owner_id, team=team,
                company=company, opened_at=now, phase_changed_at=now, amount=amount,
                expected_close_date=expected_close_date, next_action=next_action,
                next_action_entered_at=now if next_action else None, changed_at=now)
    return Changed(deal, Change(Action.OPENED, None, P.P1, _short(reason)))


def update(deal: Deal, now: datetime, *, amount: int | None, expected_close_date: date | None,
           next_action: NextAction | None, criteria: ExitCriteria) -> Changed | None:
    """Return the deal with these values, or None if nothing changed."""
    _require_open(deal)
    notes = []
    if amount != deal.amount:
        notes.append(f"amount {_money(deal.amount)} -> {_money(amount)}")
    if expected_close_date != deal.expected_close_date:
        notes.append(f"expected close {expected_close_date or 'none'}")
    if next_action != deal.next_action:
        notes.append(f"next action {next_action.due} {next_action.text}" if next_action
                     else "next action cleared")
    if criteria != deal.criteria:
        # Blank text is no criterion entered: refused, as a blank reason is, so that
        # history never logs as entered what missing_criteria still lists as missing.
        if blank := criteria.blank_texts():
            raise InvalidChange(f"criteria.{blank[0]}", f"{blank[0]} must not be blank: leave "
                                                        "it out to keep it, or send null to "
                                                        "clear it")
        before, after = deal.criteria.as_dict(), criteria.as_dict()
        notes.append("criteria " + ", ".join(k for k in after if after[k] != before[k]))
    if not notes:
        return None
    entered = now if next_action is not None and next_action != deal.next_action else None
    after_deal = replace(deal, amount=amount, expected_close_date=expected_close_date,
                         next_action=next_action, criteria=criteria,
                         next_action_entered_at=entered or deal.next_action_entered_at)
    return _changed(after_deal, Action.UPDATED, "; ".join(notes), before=deal)


def follow_lead(deal: Deal, *, owner_id: str | None, team: str | None,
                qualified_at: datetime | None, last_change_at: datetime) -> Changed | None:
    """Return the lead's open deal handed to the rep who owns the lead, or None if nothing
    changes.

    ``qualified_at`` is when the lead was handed to field sales as an SQL, if this is that
    hand-off; ``last_change_at`` when the deal last changed. A deal unchanged since before
    the hand-off (opened by hand, or left open by an earlier one) is the SQL's deal: it
    is announced even if its owner stays, so that the lead becomes an opportunity, and
    announced as a deal opened for the SQL is (no from-phase): nobody acted on it since
    the hand-off. The hand-off is recorded as ``handed_off_at``, from which its idle clocks
    (phase and next action) count, as a new deal's count from its opening: a deal left
    idle before it is the new SQL's, not a zombie to recycle days later. Its last phase
    change and next-action entry stay as they were. A hand-off that names no owner
    (queued) leaves the owner as it is.
    """
    if not deal.is_open:
        return None
    kept = qualified_at is not None and last_change_at < qualified_at
    if kept:
        deal = replace(deal, handed_off_at=qualified_at)
    owner, team = (owner_id, team) if owner_id is not None else (deal.owner_id, deal.team)
    notes = ["kept for the lead qualified again"] if kept else []
    if owner != deal.owner_id:
        notes.append(f"owner {deal.owner_id or 'none'} -> {owner}")
    if team != deal.team:  # it moves the deal between teams' forecasts: on the record too
        notes.append(f"team {deal.team or 'none'} -> {team}")
    if not notes:
        return None
    return Changed(replace(deal, owner_id=owner, team=team),
                   Change(Action.UPDATED, None if kept else deal.phase, deal.phase,
                          _short("; ".join(notes))))


def _money(amount: int | None) -> str:
    """Return an amount for a history line."""
    return "none" if amount is None else f"{amount:,}"


def probability(deal: Deal, probabilities: Probabilities) -> int:
    """Return the deal's win probability in percent: its phase's, or 0 once recycled."""
    return 0 if deal.outcome is Outcome.RECYCLED else probabilities[deal.phase]


def advance(deal: Deal, now: datetime, to_phase: DealPhase | None = None,
            from_phase: DealPhase | None = None) -> Changed:
    """Return the deal moved forward (to the next phase by default) if its criteria allow,
    and if it is still in ``from_phase`` when that is given."""
    _require_open(deal)
    if from_phase is not None and deal.phase is not from_phase:
        # A request sent again after its answer was lost would move the deal on once more.
        raise DealConflict(f"the deal is in {deal.phase.value}, not {from_phase.value}: it "
                           "moved since you read it (a retried advance moved it already)")
    position = OPEN_PHASES.index(deal.phase)
    if to_phase is None:
        if position == len(OPEN_PHASES) - 1:
            raise DealConflict("P5 is the last phase: close the deal as won or lost")
        to_phase = OPEN_PHASES[position + 1]
    if to_phase not in OPEN_PHASES or OPEN_PHASES.index(to_phase) <= position:
        raise DealConflict(f"cannot advance from {deal.phase.value} to {to_phase.value}: "
                           "advance goes to a later open phase")
    missing = missing_criteria(deal.phase, to_phase, deal.criteria)
    if missing:
        raise ExitCriteriaNotMet(to_phase, missing)
    return _changed(replace(deal, phase=to_phase, phase_changed_at=now), Action.ADVANCED,
                    f"{deal.phase.value} -> {to_phase.value}: exit criteria met", before=deal)


def move_back(deal: Deal, now: datetime, to_phase: DealPhase, reason: str) -> Changed:
    """Return the deal moved back to an earlier phase, for ``reason``."""
    _require_open(deal)
    if to_phase not in OPEN_PHASES or OPEN_PHASES.index(to_phase) >= OPEN_PHASES.index(deal.phase):
        raise DealConflict(f"cannot move back from {deal.phase.value} to {to_phase.value}: "
                           "move back goes to an earlier open phase")
    _require_text("reason", reason)
    return _changed(replace(deal, phase=to_phase, phase_changed_at=now), Action.MOVED_BACK,
                    reason, before=deal)


def win(deal: Deal, now: datetime, note: str | None = None) -> Changed:
    """Return the deal closed as won, once every exit criterion through P5 is recorded."""
    _require_open(deal)
    missing = missing_criteria(deal.phase, P.WON, deal.criteria)
    if missing:
        raise ExitCriteriaNotMet(P.WON, missing)
    closed = replace(deal, phase=P.WON, phase_changed_at=now, closed_at=now,
                     outcome=Outcome.WON, close_reason=note, hold=None)
    return _changed(closed, Action.WON, note or "won", before=deal)


def lose(deal: Deal, now: datetime, reason: str, lost_reasons: Sequence[str],
         note: str | None = None) -> Changed:
    """Return the deal closed as lost for one of ``lost_reasons``."""
    _require_open(deal)
    if reason not in lost_reasons:
        raise InvalidChange("reason", f"{reason!r} is not a lost reason; "
                                      f"use one of: {', '.join(lost_reasons)}")
    closed = replace(deal, phase=P.LOST, phase_changed_at=now, closed_at=now,
                     outcome=Outcome.LOST, close_reason=reason, hold=None)
    return _changed(closed, Action.LOST, f"{reason}: {note}" if note else reason, before=deal)


def place_hold(deal: Deal, now: datetime, until: date, reason: str, *, today: date,
               max_hold: timedelta) -> Changed:
    """Return the deal held (kept from the zombie sweep) through ``until``."""
    _require_open(deal)
    _require_text("reason", reason)
    if until < today:
        raise InvalidChange("until", f"the hold's end date {until} is in the past")
    if until > today + max_hold:
        raise InvalidChange("until", f"a hold lasts at most {max_hold.days} days "
                                     f"(until {today + max_hold} at the latest)")
    held = replace(deal, hold=Hold(until=until, reason=reason, placed_at=now))
    return _changed(held, Action.HELD, f"on hold until {until}: {reason}", before=deal)


def put_hold(deal: Deal, now: datetime, until: date, reason: str, *, today: date,
             max_hold: timedelta) -> Changed | None:
    """Return the deal held through ``until`` for ``reason``, or None if that hold is on."""
    # A repeated request (a retried PUT) changes nothing: no second entry or announcement,
    # and the hold keeps the time it was placed at.
    hold = deal.hold
    if (deal.is_open and deal.held_on(today) and hold is not None
            and (hold.until, hold.reason) == (until, reason)):
        return None
    return place_hold(deal, now, until, reason, today=today, max_hold=max_hold)


def release_hold(deal: Deal, *, today: date) -> Changed:
    """Return the deal without its hold."""
    _require_open(deal)
    if not deal.held_on(today):
        raise DealConflict(f"deal {deal.deal_id} is not on hold")
    return _changed(replace(deal, hold=None), Action.HOLD_RELEASED, "hold released", before=deal)


def recycle(deal: Deal, now: datetime, reason: str) -> Changed:
    """Return the deal closed as recycled: its lead goes back to nurturing."""
    _require_open(deal)
    closed = replace(deal, closed_at=now, outcome=Outcome.RECYCLED, close_reason=_short(reason))
    return _changed(closed, Action.RECYCLED, reason, before=deal)


def _require_text(name: str, value: str) -> None:
    """Raise InvalidChange if ``value`` is blank."""
    if is_blank(value):
        raise InvalidChange(name, f"{name} must not be blank")


# --- zombies and health -------------------------------------------------------------------


@dataclass(frozen=True)
class Cutoffs:
    """The instants and day the zombie and health rules compare against."""

    today: date
    phase_changed_before: datetime
    next_action_entered_before: datetime
    stuck_since: datetime


@dataclass(frozen=True)
class PipelineRules:
    """The configurable rules: time zone, lost reasons, zombie and health thresholds."""

    timezone: ZoneInfo
    lost_reasons: tuple[str, ...]
    zombie_no_phase_change: timedelta = timedelta(days=90)
    zombie_no_next_action: timedelta = timedelta(days=60)
    stuck_after: timedelta = timedelta(days=30)
    max_hold: timedelta = timedelta(days=180)
    win_rate_lookback: timedelta = timedelta(days=365)
    fiscal_year_start_month: int = 4
    probabilities: Probabilities = field(default_factory=lambda: dict(PROBABILITY))

    def today(self, now: datetime) -> date:
        """Return the business day ``now`` falls on."""
        return now.astimezone(self.timezone).date()

    def cutoffs(self, now: datetime) -> Cutoffs:
        """Return what a deal is compared against at ``now``."""
        return Cutoffs(today=self.today(now),
                       phase_changed_before=now - self.zombie_no_phase_change,
                       next_action_entered_before=now - self.zombie_no_next_action,
                       stuck_since=now - self.stuck_after)

    @property
    def fiscal(self) -> FiscalCalendar:
        """Return the fiscal calendar."""
        return FiscalCalendar(self.fiscal_year_start_month)


def zombie_reason(deal: Deal, now: datetime, rules: PipelineRules) -> str | None:
    """Return why the sweep must recycle the deal, or None if it must not."""
    cutoffs = rules.cutoffs(now)
    if not deal.is_open or deal.held_on(cutoffs.today):
        return None
    reasons = []
    if deal.phase_clock <= cutoffs.phase_changed_before:
        reasons.append(f"no phase change for {rules.zombie_no_phase_change.days} days")
    if deal.next_action_clock <= cutoffs.next_action_entered_before:
        reasons.append(f"no next action entered for {rules.zombie_no_next_action.days} days")
    return "; ".join(reasons) or None


class Issue(StrEnum):
    """What pipeline health reports about an open deal."""

    ZOMBIE = "zombie"
    PAST_DUE_CLOSE = "past_due_close"
    NO_NEXT_ACTION = "no_next_action"
    STUCK = "stuck"
    NO_EXPECTED_CLOSE = "no_expected_close"


def issues(deal: Deal, now: datetime, rules: PipelineRules) -> dict[Issue, str]:
    """Return the open deal's health issues, each with a one-line detail."""
    if not deal.is_open:
        return {}
    cutoffs = rules.cutoffs(now)
    found: dict[Issue, str] = {}
    if reason := zombie_reason(deal, now, rules):
        found[Issue.ZOMBIE] = reason
    if deal.expected_close_date is not None and deal.expected_close_date < cutoffs.today:
        found[Issue.PAST_DUE_CLOSE] = f"expected to close on {deal.expected_close_date}"
    if deal.next_action is None:
        found[Issue.NO_NEXT_ACTION] = "no next action"
    elif deal.next_action.due < cutoffs.today:
        found[Issue.NO_NEXT_ACTION] = f"next action overdue since {deal.next_action.due}"
    # Stuck counts from the hand-off too: it is the early warning on the zombie rule's
    # phase clock, and health is read per owner, whose rep got a kept deal only then. The
    # detail still gives the real time in the phase.
    if deal.phase_clock <= cutoffs.stuck_since:
        detail = f"in {deal.phase.value} for {(now - deal.phase_changed_at).days} days"
        if deal.phase_clock != deal.phase_changed_at:
            detail += f", {(now - deal.phase_clock).days} since the hand-off"
        found[Issue.STUCK] = detail
    if deal.expected_close_date is None:
        found[Issue.NO_EXPECTED_CLOSE] = ("no expected close date: set one, or the forecast "
                                          "counts it in no period (only as unscheduled)")
    return found


# --- the forecast -------------------------------------------------------------------------


class PeriodKind(StrEnum):
    """How long a forecast period is."""

    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


@dataclass(frozen=True)
class TimeSpan:
    """Instants from ``starts`` inclusive to ``ends`` exclusive."""

    starts: datetime
    ends: datetime

    def __contains__(self, at: object) -> bool:
        return isinstance(at, datetime) and self.starts <= at < self.ends


@dataclass(frozen=True)
class Period:
    """A forecast period: ``starts`` inclusive, ``ends`` exclusive."""

    label: str
    kind: PeriodKind
    starts: date
    ends: date

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.starts <= day < self.ends

    def in_zone(self, zone: ZoneInfo) -> TimeSpan:
        """Return the instants of the period's days in ``zone``, midnight to midnight;
        raise ValueError if one has no UTC time (0001-01-01 in Tokyo begins in year 0)."""
        span = TimeSpan(datetime.combine(self.starts, time(), zone),
                        datetime.combine(self.ends, time(), zone))
        try:
            span.starts.astimezone(UTC), span.ends.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{self.label} begins or ends beyond the times stored (UTC "
                             "years 1 to 9999)") from None
        return span


# Months are pipeline's own periods; fiscal years and quarters are named in baton_runtime.fiscal.
# The whole text, ASCII digits only: a target stored under "2026-04\n" matched no month.
MONTH_LABEL = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


def _add_months(day: date, months: int) -> date:
    """Return the first of the month ``months`` after ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class FiscalCalendar:
    """Fiscal years named after the calendar year they start in (FY2026 = April 2026 on)."""

    start_month: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.start_month <= 12:
            raise ValueError("the fiscal year starts in a month 1..12")

    def fiscal_year_of(self, day: date) -> int:
        """Return the fiscal year ``day`` belongs to."""
        return fiscal_year_of(day, self.start_month)

    def year(self, fiscal_year: int) -> Period:
        """Return the fiscal year as a period."""
        starts = date(fiscal_year, self.start_month, 1)
        return Period(year_label(fiscal_year), PeriodKind.YEAR, starts, _add_months(starts, 12))

    def quarters(self, fiscal_year: int) -> list[Period]:
        """Return the fiscal year's four quarters."""
        starts = self.year(fiscal_year).starts
        return [Period(quarter_label(fiscal_year, n + 1), PeriodKind.QUARTER,
                       _add_months(starts, 3 * n), _add_months(starts, 3 * n + 3))
                for n in range(4)]

    def months(self, fiscal_year: int) -> list[Period]:
        """Return the fiscal year's twelve months."""
        starts = self.year(fiscal_year).starts
        return [Period(f"{first:%Y-%m}", PeriodKind.MONTH, first, _add_months(first, 1))
                for first in (_add_months(starts, n) for n in range(12))]

    def periods(self, fiscal_year: int) -> list[Period]:
        """Return the year's months, then its quarters, then the year."""
        return [*self.months(fiscal_year), *self.quarters(fiscal_year), self.year(fiscal_year)]

    def period(self, label: str) -> Period:
        """Return the period a label names (``2026-04``, ``FY2026-Q1``, ``FY2026``)."""
        if match := MONTH_LABEL.fullmatch(label):
            first = date(int(match[1]), int(match[2]), 1)
            return Period(label, PeriodKind.MONTH, first, _add_months(first, 1))
        if (named := parse_label(label)) is not None:
            fiscal_year, quarter = named
            if quarter is None:
                return self.year(fiscal_year)
            return self.quarters(fiscal_year)[quarter - 1]
        raise ValueError(f"{label!r} is not a period: use YYYY-MM, FYyyyy-Qn or FYyyyy")


class Scope(StrEnum):
    """Whose numbers a forecast group or a target is."""

    ALL = "all"
    OWNER = "owner"
    TEAM = "team"


@dataclass(frozen=True)
class GroupKey:
    """A forecast group: everyone, one owner or one team."""

    scope: Scope
    name: str | None = None


@dataclass(frozen=True)
class Slice:
    """Deals of one owner and team in one phase (or won), summed over one month: the month
    of an open deal's expected close date (None: it has none), of a won deal's closing."""

    month: date | None
    owner_id: str | None
    team: str | None
    phase: DealPhase
    amount: int
    deals: int


@dataclass(frozen=True)
class ClosedCount:
    """How many deals of one owner and team were won and lost in the lookback window."""

    owner_id: str | None
    team: str | None
    won: int
    lost: int


@dataclass(frozen=True)
class Target:
    """A sales target for a period, for everyone, an owner or a team."""

    period: str
    group: GroupKey
    amount: int


@dataclass(frozen=True)
class PeriodForecast:
    """One period of one group's forecast."""

    period: str
    kind: PeriodKind
    starts: date
    ends: date
    deals: int
    pipeline: int
    weighted: int
    commit: int
    won: int
    won_deals: int
    forecast: int
    target: int | None
    partial_target: int | None
    periods_without_target: tuple[str, ...]
    coverage: float | None
    needed_pipeline: int | None


@dataclass(frozen=True)
class Unscheduled:
    """A group's open deals without an expected close date, in no period's numbers."""

    deals: int
    pipeline: int
    weighted: int
    commit: int


@dataclass(frozen=True)
class GroupForecast:
    """One group's forecast over the fiscal year."""

    scope: Scope
    name: str | None
    win_rate: float | None
    periods: list[PeriodForecast]
    unscheduled: Unscheduled


@dataclass
class _Sums:
    deals: int = 0
    pipeline: int = 0
    weighted_cents: int = 0  # amount x percent, divided by 100 only at the end
    commit: int = 0
    won: int = 0
    won_deals: int = 0

    def add_open(self, item: Slice, probabilities: Probabilities) -> None:
        """Count an open slice in, weighted by its phase's probability."""
        self.deals += item.deals
        self.pipeline += item.amount
        self.weighted_cents += item.amount * probabilities[item.phase]
        self.commit += item.amount if item.phase in COMMIT_PHASES else 0

    @property
    def weighted(self) -> int:
        """Return the weighted pipeline, rounded once."""
        return (self.weighted_cents + 50) // 100


@dataclass(frozen=True)
class ResolvedTarget:
    """A period's target: its own, or its parts' sum when every part has one; else None,
    and, when only some parts have one, what they sum to and the parts without one."""

    amount: int | None = None
    partial: int | None = None
    missing: tuple[str, ...] = ()


def _groups_of(owner_id: str | None, team: str | None) -> list[GroupKey]:
    """Return every group a deal of this owner and team counts in."""
    keys = [GroupKey(Scope.ALL)]
    if owner_id is not None:
        keys.append(GroupKey(Scope.OWNER, owner_id))
    if team is not None:
        keys.append(GroupKey(Scope.TEAM, team))
    return keys


def win_rates(closed: Iterable[ClosedCount]) -> dict[GroupKey, float]:
    """Return each group's observed win rate: won / (won + lost), where any closed."""
    counts: dict[GroupKey, list[int]] = defaultdict(lambda: [0, 0])
    for row in closed:
        for key in _groups_of(row.owner_id, row.team):
            counts[key][0] += row.won
            counts[key][1] += row.won + row.lost
    return {key: won / total for key, (won, total) in counts.items() if total}


def forecast(*, fiscal_year: int, calendar: FiscalCalendar, open_slices: Iterable[Slice],
             won_slices: Iterable[Slice], closed: Iterable[ClosedCount],
             targets: Iterable[Target], probabilities: Probabilities = PROBABILITY,
             only: GroupKey | None = None) -> list[GroupForecast]:
    """Return the forecast of every group (or ``only`` one) for the fiscal year.

    Open deals count in the period of their expected close date (those without one in the
    group's ``unscheduled``), won deals in the period they were won in. Weighted = open
    amount x phase probability; forecast = won (at 100 %) + weighted; commit = open P4 and
    P5; coverage = open pipeline / (target - won);
    needed pipeline = (target - won) / win rate - open pipeline, at the group's observed
    win rate (everyone's where the group has none).
    """
    periods = calendar.periods(fiscal_year)
    sums: dict[GroupKey, dict[str, _Sums]] = defaultdict(lambda: defaultdict(_Sums))
    undated: dict[GroupKey, _Sums] = defaultdict(_Sums)
    for item in open_slices:
        for key in _groups_of(item.owner_id, item.team):
            if item.month is None:
                undated[key].add_open(item, probabilities)
            for period in periods:
                if item.month in period:
                    sums[key][period.label].add_open(item, probabilities)
    for item in won_slices:
        for key in _groups_of(item.owner_id, item.team):
            for period in periods:
                if item.month in period:
                    sums[key][period.label].won += item.amount
                    sums[key][period.label].won_deals += item.deals
    rates = win_rates(closed)
    goals = _resolve_targets(calendar, fiscal_year, targets)
    keys = set(sums) | set(undated) | {key for key, _ in goals} | {GroupKey(Scope.ALL)}
    if only is not None:
        keys = {only}
    order = {Scope.ALL: 0, Scope.TEAM: 1, Scope.OWNER: 2}
    result = []
    for key in sorted(keys, key=lambda k: (order[k.scope], k.name or "")):
        rate = rates.get(key, rates.get(GroupKey(Scope.ALL)))
        unscheduled = undated[key]
        result.append(GroupForecast(
            scope=key.scope, name=key.name, win_rate=rate,
            periods=[_period_forecast(period, sums[key][period.label],
                                      goals.get((key, period.label), ResolvedTarget()), rate)
                     for period in periods],
            unscheduled=Unscheduled(deals=unscheduled.deals, pipeline=unscheduled.pipeline,
                                    weighted=unscheduled.weighted, commit=unscheduled.commit)))
    return result


def _period_forecast(period: Period, total: _Sums, target: ResolvedTarget,
                     win_rate: float | None) -> PeriodForecast:
    """Return one period's numbers, with coverage and need where the whole target is known."""
    coverage = needed = None
    if target.amount is not None:
        gap = max(0, target.amount - total.won)
        coverage = round(total.pipeline / gap, 3) if gap else None
        if not gap:
            needed = 0  # met: nothing more is needed, whatever the win rate
        elif win_rate:
            needed = max(0, round(gap / win_rate) - total.pipeline)
    return PeriodForecast(
        period=period.label, kind=period.kind, starts=period.starts, ends=period.ends,
        deals=total.deals, pipeline=total.pipeline, weighted=total.weighted,
        commit=total.commit, won=total.won, won_deals=total.won_deals,
        forecast=total.won + total.weighted, target=target.amount,
        partial_target=target.partial, periods_without_target=target.missing,
        coverage=coverage, needed_pipeline=needed)


def _resolve_targets(calendar: FiscalCalendar, fiscal_year: int,
                     targets: Iterable[Target]) -> dict[tuple[GroupKey, str], ResolvedTarget]:
    """Return each group's target per period: its own, else its parts' (months of a
    quarter, quarters of a year) sum if every part has a target; else none, with the sum
    of the targets its parts do have and which parts have none."""
    # Summing only the parts that have one would pass Q1's target off as the year's, and
    # measure the year's coverage and need against it: the whole is known once every part is.
    resolved = {(t.group, t.period): ResolvedTarget(t.amount) for t in targets}
    months = calendar.months(fiscal_year)
    quarters = calendar.quarters(fiscal_year)
    # Quarters first: the year sums what they resolve to.
    parts: list[tuple[Period, list[Period]]] = [
        *((quarter, [m for m in months if m.starts in quarter]) for quarter in quarters),
        (calendar.year(fiscal_year), quarters)]
    for group in {group for group, _ in resolved}:
        for whole, pieces in parts:
            if (group, whole.label) in resolved:
                continue
            found = [resolved.get((group, piece.label), ResolvedTarget()) for piece in pieces]
            if all(part.amount is None and part.partial is None for part in found):
                continue
            missing = tuple(piece.label for piece, part in zip(pieces, found, strict=True)
                            if part.amount is None)
            total = sum(part.amount if part.amount is not None else part.partial or 0
                        for part in found)
            resolved[(group, whole.label)] = (ResolvedTarget(total) if not missing
                                              else ResolvedTarget(None, total, missing))
    return resolved


# --- the deal list ------------------------------------------------------------------------


class InvalidFilter(ValueError):
    """A deal-list query no answer fits; ``field`` names the query parameter at fault."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


# Every (phase, open, outcome) a deal can be in: open in P1-P5 without an outcome, won,
# lost, or recycled in the open phase it idled in.
DEAL_STATES: frozenset[tuple[DealPhase, bool, Outcome | None]] = frozenset({
    *((phase, True, None) for phase in OPEN_PHASES),
    (P.WON, False, Outcome.WON), (P.LOST, False, Outcome.LOST),
    *((phase, False, Outcome.RECYCLED) for phase in OPEN_PHASES)})


@dataclass(frozen=True)
class DealFilter:
    """Which deals a list keeps; an empty or None criterion keeps every deal."""

    owner_id: str | None = None
    team: str | None = None
    phases: frozenset[DealPhase] = frozenset()
    is_open: bool | None = None
    outcomes: frozenset[Outcome] = frozenset()
    # The expected close date's period, and the instants the deal closed (won, lost or
    # recycled) in: the forecast dates open deals by the one and won deals by the other.
    closing: Period | None = None
    closed: TimeSpan | None = None
    # False keeps the deals the forecast can date by neither: open ones are its unscheduled.
    has_expected_close: bool | None = None

    def admits(self, phase: DealPhase, is_open: bool, outcome: Outcome | None) -> bool:
        """Return True if a deal in this phase, open or not, with this outcome is kept."""
        return ((not self.phases or phase in self.phases)
                and (self.is_open is None or self.is_open == is_open)
                and (not self.outcomes or outcome in self.outcomes)
                and (self.closed is None or not is_open))

    def keeps(self, deal: Deal) -> bool:
        """Return True if the filter keeps ``deal`` (what the store's query selects)."""
        return (self.admits(deal.phase, deal.is_open, deal.outcome)
                and self.owner_id in (None, deal.owner_id)
                and self.team in (None, deal.team)
                and (self.closing is None or deal.expected_close_date in self.closing)
                and (self.closed is None or deal.closed_at in self.closed)
                and self.has_expected_close in (None, deal.expected_close_date is not None))


def deal_filter(*, owner_id: str | None = None, team: str | None = None,
                phases: Iterable[DealPhase] = (), is_open: bool | None = None,
                outcomes: Iterable[Outcome] = (), closing: Period | None = None,
                closed: TimeSpan | None = None,
                has_expected_close: bool | None = None) -> DealFilter:
    """Return the filter; raise InvalidFilter if its criteria contradict each other (no
    deal could ever match, e.g. open and won, or a period of an expected close date for
    deals without one)."""
    chosen = DealFilter(owner_id=owner_id, team=team, phases=frozenset(phases),
                        is_open=is_open, outcomes=frozenset(outcomes), closing=closing,
                        closed=closed, has_expected_close=has_expected_close)
    if closing is not None and has_expected_close is False:
        raise InvalidFilter("has_expected_close", (
            f"deals with has_expected_close=false have no expected close date, so none falls "
            f"in expected_close={closing.label}: leave out one of the two"))
    if any(chosen.admits(*state) for state in DEAL_STATES):
        return chosen
    if any(replace(chosen, closed=None).admits(*state) for state in DEAL_STATES):
        raise InvalidFilter("closed", "open deals have not closed: a closed period lists "
                                      "won, lost and recycled deals, so leave out is_open=true")
    asked = []
    if chosen.is_open is not None:
        asked.append("open" if chosen.is_open else "closed")
    if chosen.phases:
        asked.append("in phase " + " or ".join(sorted(p.value for p in chosen.phases)))
    if chosen.outcomes:
        asked.append("with outcome " + " or ".join(sorted(o.value for o in chosen.outcomes)))
    raise InvalidFilter("outcome" if chosen.outcomes else "phase",
                        f"no deal can be {', '.join(asked)}: open deals are in P1-P5 without "
                        "an outcome, won and lost deals in phase won and lost, and recycled "
                        "deals keep the open phase they idled in")


@dataclass(frozen=True)
class ListPosition:
    """Where a page of the deal list ended: its last deal's change time and id."""

    changed_at: datetime
    deal_id: uuid.UUID

    def cursor(self) -> str:
        """Return the position as the opaque cursor of the next page."""
        raw = json.dumps([self.changed_at.isoformat(), str(self.deal_id)],
                         separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def from_cursor(cls, cursor: str) -> ListPosition:
        """Return the position a cursor names; raise InvalidFilter if it names none."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            changed_at, deal_id = json.loads(raw)
            at = datetime.fromisoformat(changed_at)
            # A naive time, or one beyond UTC's range (astimezone overflows), is no cursor
            # this service wrote.
            if at.tzinfo is None:
                raise ValueError(cursor)
            return cls(at.astimezone(UTC), uuid.UUID(deal_id))
        except (ValueError, TypeError, AttributeError, OverflowError, binascii.Error):
            raise InvalidFilter("cursor", "not a cursor of this list: pass a page's "
                                          "next_cursor unchanged") from None


def next_position(page: Sequence[Deal], limit: int) -> ListPosition | None:
    """Return where the next page starts, given up to ``limit + 1`` deals fetched for a
    page of ``limit``; None if this page is the last."""
    if len(page) <= limit:
        return None
    last = page[limit - 1]
    assert last.changed_at is not None, "stored deals record when they changed"
    return ListPosition(last.changed_at, last.deal_id)
