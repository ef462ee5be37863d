"""Routing's pure rules: the lifecycle, SLA due times, assignment, BANT and the funnel."""

from __future__ import annotations

import math
import unicodedata
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import MAXYEAR, datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from zoneinfo import ZoneInfo

from baton_runtime.business_time import BusinessCalendar
from baton_runtime.fiscal import fiscal_quarter_of
from schemas.events import DealPhase, LifecycleStage, Tier, TouchpointType

S = LifecycleStage
ALLOWED: dict[LifecycleStage, frozenset[LifecycleStage]] = {
    S.LEAD: frozenset({S.MQL, S.NURTURE, S.DISQUALIFIED}),
    S.MQL: frozenset({S.SAL, S.NURTURE, S.DISQUALIFIED}),
    S.SAL: frozenset({S.SQL, S.NURTURE, S.DISQUALIFIED}),
    S.SQL: frozenset({S.OPPORTUNITY, S.NURTURE, S.DISQUALIFIED}),
    S.OPPORTUNITY: frozenset({S.WON, S.LOST, S.NURTURE}),
    S.NURTURE: frozenset({S.MQL, S.DISQUALIFIED}),
    S.LOST: frozenset({S.NURTURE}),
    S.WON: frozenset(),
    S.DISQUALIFIED: frozenset(),
}
FAST_LANE_TRIGGERS = frozenset({TouchpointType.INQUIRY_DEMO_REQUEST,
                                TouchpointType.INQUIRY_QUOTE_REQUEST})
FAST_LANE = timedelta(minutes=5)
# DESIGN's "24 hours" and "2 weeks", counted as the notifier's clocks count them by default
# (its first_contact and owner_activity rules): business days of the calendar.
SQL_FIRST_CONTACT_BUSINESS_DAYS = 1
OWNED_ACTIVITY_BUSINESS_DAYS = 10
OWNED_STAGES = frozenset({S.SAL, S.SQL, S.OPPORTUNITY})
# Leads marketing holds: a rep's contact with one is its first touch (a tier-B or surging
# lead's SLA), and the lead stays with marketing, owned by nobody.
MARKETING_STAGES = frozenset({S.LEAD, S.NURTURE})
CONTACT_STAGES = OWNED_STAGES | MARKETING_STAGES
REJECTABLE = frozenset({S.MQL, S.SAL, S.SQL})
# Stages in which only the lead's owner works it (qualifies it, logs its contacts): a lead
# accepted by a rep or handed to one in field sales, whose SLA clocks are the owner's.
WORKED_BY_OWNER = OWNED_STAGES
# Stages in which only the lead's owner ends it (rejects or disqualifies it): those, and a
# lead assigned to a rep.
ENDED_BY_OWNER = frozenset({S.MQL}) | WORKED_BY_OWNER


def rejection(rep_id: str, reason: str) -> str:
    """Return the transition reason of ``rep_id`` rejecting a lead for ``reason``."""
    return f"rejected by {rep_id}: {reason}"


def disqualification(rep_id: str, reason: str) -> str:
    """Return the transition reason of ``rep_id`` disqualifying a lead for ``reason``."""
    return f"disqualified by {rep_id}: {reason}"


def already_ended(lead_id: uuid.UUID, recorded: str) -> str:
    """Return why a disqualified lead cannot be disqualified again for another reason or by
    another rep, given its recorded reason."""
    return f"lead {lead_id} was already {recorded}"


def already_nurtured(lead_id: uuid.UUID, recorded: str) -> str:
    """Return why a nurtured lead cannot be rejected (again), given its nurture move's
    recorded reason."""
    if recorded.startswith("rejected by "):
        return already_ended(lead_id, recorded)
    return f"lead {lead_id} is already in nurture ({recorded})"


class ActionRefused(ValueError):
    """A sales action the lead's state or the rep's team does not allow."""


class UnknownLead(LookupError):
    """No lead has this id."""


class UnknownRep(LookupError):
    """No rep has this id (or Slack user id)."""


class IllegalTransition(ActionRefused):
    """A lifecycle move the state machine does not allow."""

    def __init__(self, current: LifecycleStage, target: LifecycleStage) -> None:
        allowed = ", ".join(sorted(s.value for s in ALLOWED[current])) or "none"
        super().__init__(f"a lead cannot move from {current.value} to {target.value} "
                         f"(allowed from {current.value}: {allowed})")
        self.current, self.target = current, target


def can_move(current: LifecycleStage, target: LifecycleStage) -> bool:
    """Return True if the lifecycle allows ``current -> target``."""
    return target in ALLOWED[current]


def check_transition(current: LifecycleStage, target: LifecycleStage) -> None:
    """Return if ``current -> target`` is legal; raise IllegalTransition otherwise."""
    if not can_move(current, target):
        raise IllegalTransition(current, target)


def after_deal(stage: LifecycleStage, phase: DealPhase) -> LifecycleStage | None:
    """Return the stage a deal reaching ``phase`` moves a lead in ``stage`` to next, or None.

    Any open deal makes an SQL an opportunity (one opened for it, or an older one the
    lead kept); winning makes an opportunity won; losing makes it lost, and a lost lead
    is then nurtured, so that it may become an MQL again.
    """
    if phase is DealPhase.WON:
        return S.WON if stage is S.OPPORTUNITY else None
    if phase is DealPhase.LOST:
        return {S.OPPORTUNITY: S.LOST, S.LOST: S.NURTURE}.get(stage)
    return S.OPPORTUNITY if stage is S.SQL else None


# Stages in which a lead has a deal of its own: the one that made it an opportunity.
DEAL_STAGES = frozenset({S.OPPORTUNITY, S.LOST})


def after_recycling(stage: LifecycleStage, *, recycled: uuid.UUID,
                    own_deal: uuid.UUID | None) -> LifecycleStage | None:
    """Return the stage a recycled deal sends a lead in ``stage`` to, or None to stay.

    Only the lead's own deal sends it back to nurture: the deal that made it an
    opportunity (``own_deal``; None for a lead routed before deals were remembered,
    which any recycling nurtures). Any other deal is an older one, left open when field
    sales rejected an earlier SQL: the lead is being worked afresh (an MQL, SAL, or an SQL
    whose new deal is on its way, whichever event comes first). A won, disqualified or
    nurtured lead stays where it is.
    """
    if stage not in DEAL_STAGES or own_deal not in (None, recycled):
        return None
    return S.NURTURE


# A lead asking us something: heat enough for a nurtured lead that stayed tier A.
INQUIRIES = frozenset({TouchpointType.INQUIRY_DEMO_REQUEST,
                       TouchpointType.INQUIRY_QUOTE_REQUEST, TouchpointType.INQUIRY_GENERAL})


def promotion_for(stage: LifecycleStage, tier: Tier, *, previous_tier: Tier | None = None,
                  trigger: TouchpointType | None = None) -> LifecycleStage | None:
    """Return MQL when a hot lead is still with marketing, else None.

    A nurtured lead (rejected, lost, recycled) must earn MQL again: it reaches tier A
    anew, or an inquiry keeps it there. Staying hot is not enough: a lead rejected at
    tier A would otherwise be an MQL again at its next e-mail open.
    """
    if tier is not Tier.A or stage not in MARKETING_STAGES:
        return None
    if stage is S.NURTURE and previous_tier is Tier.A and trigger not in INQUIRIES:
        return None
    return S.MQL


class TeamKind(StrEnum):
    """The three sales teams a lead is handed to."""

    SDR = "sdr"
    BDR = "bdr"
    FIELD_SALES = "field_sales"


INBOUND_TEAM = TeamKind.SDR


def team_for_source(source: str, outbound_sources: Iterable[str]) -> TeamKind:
    """Return BDR for target-account outbound sources, else the inbound SDR team."""
    return TeamKind.BDR if source in set(outbound_sources) else INBOUND_TEAM


# --- business time: the shared calendar (baton_runtime.business_time) ------------------


def acceptance_due(trigger: TouchpointType | None, promoted_at: datetime,
                   accept_within: timedelta, calendar: BusinessCalendar) -> datetime:
    """Return when an MQL must be accepted: 5 minutes for demo or quote requests, else
    ``accept_within`` of business time.

    The fast lane is wall-clock time: a buyer who asked for a demo is waiting now.
    """
    if trigger in FAST_LANE_TRIGGERS:
        return promoted_at + FAST_LANE
    return calendar.add(promoted_at, accept_within)


def due_after_move(target: LifecycleStage, now: datetime,
                   calendar: BusinessCalendar) -> datetime | None:
    """Return when the owner must act next after a move, in business time (None when
    nobody must).

    First contact within one business day of an SQL hand-off; any activity within ten
    while a rep owns the lead. MQLs have their own rule, ``acceptance_due``.
    """
    if target is S.SQL:
        return calendar.add(now, SQL_FIRST_CONTACT_BUSINESS_DAYS * calendar.business_day)
    if target in OWNED_STAGES:
        return due_after_contact(now, calendar)
    return None


def due_after_contact(now: datetime, calendar: BusinessCalendar) -> datetime:
    """Return when the next activity on an owned lead is due: ten business days on."""
    return calendar.add(now, OWNED_ACTIVITY_BUSINESS_DAYS * calendar.business_day)


# --- assignment ---------------------------------------------------------------------------


def normalised(text: str) -> str:
    """Return ``text`` folded for comparison: NFKC (full/half width), trimmed, casefolded."""
    return unicodedata.normalize("NFKC", text).strip().casefold()


@dataclass(frozen=True)
class Period:
    """A half-open interval ``[starts_at, ends_at)``, e.g. an out-of-office period."""

    starts_at: datetime
    ends_at: datetime

    def covers(self, at: datetime) -> bool:
        """Return True if ``at`` falls inside the period."""
        return self.starts_at <= at < self.ends_at


@dataclass(frozen=True)
class RoutableLead:
    """What assignment looks at: the account (None for free mail) and the territory facts."""

    account_key: str | None
    region: str | None = None
    industry: str | None = None
    employee_band: str | None = None


@dataclass(frozen=True)
class Territory:
    """A rep's patch: an empty dimension matches anything, a set one the lead's value."""

    regions: frozenset[str] = frozenset()
    industries: frozenset[str] = frozenset()
    employee_bands: frozenset[str] = frozenset()

    @property
    def specificity(self) -> int:
        """Return how many dimensions the territory restricts."""
        return sum(1 for values in self._dimensions() if values)

    def matches(self, lead: RoutableLead) -> bool:
        """Return True if the lead falls inside every restricted dimension."""
        facts = (lead.region, lead.industry, lead.employee_band)
        return self.specificity > 0 and all(
            not values or (fact is not None and normalised(fact) in {normalised(v)
                                                                     for v in values})
            for values, fact in zip(self._dimensions(), facts, strict=True))

    def describe(self) -> str:
        """Return the territory as ``region=..., industry=...``."""
        names = ("region", "industry", "employee_band")
        return ", ".join(f"{name}={'|'.join(sorted(values))}"
                         for name, values in zip(names, self._dimensions(), strict=True)
                         if values)

    def _dimensions(self) -> tuple[frozenset[str], ...]:
        return self.regions, self.industries, self.employee_bands


@dataclass(frozen=True)
class Rep:
    """A rep as assignment sees them; ``position`` is their place in the round robin,
    ``territory_position`` in their territory's rotation (None until they have one)."""

    rep_id: str
    team: TeamKind
    weight: float = 1.0
    daily_capacity: int = 20
    hours: BusinessCalendar = field(default_factory=BusinessCalendar)
    out_of_office: tuple[Period, ...] = ()
    territory: Territory | None = None
    active: bool = True
    position: float = 0.0
    territory_position: float | None = None

    @property
    def stride(self) -> float:
        """Return how far one lead moves the rep back in a rotation: 1 / weight."""
        return 1.0 / self.weight


def _until_text(ends_at: datetime, zone: ZoneInfo) -> str:
    """Return ``until <local end>`` in ``zone``, or ``until further notice`` if open-ended."""
    try:
        local = ends_at.astimezone(zone)
    except OverflowError:
        # An open-ended leave ends at the last representable instant (9999-12-31), which lies
        # past year 9999 in zones east of UTC.
        return "until further notice"
    if local.year == MAXYEAR:
        # The same sentinel seen from zones west of UTC: read alike wherever the rep works.
        return "until further notice"
    return f"until {local:%Y-%m-%d %H:%M %Z}"


def back_at(leaves: Iterable[Period], now: datetime) -> datetime | None:
    """Return when a rep on leave at ``now`` is back, or None if no leave covers ``now``.

    Leaves that continue or overlap one another are one absence: a week booked as two
    periods ends with the second.
    """
    periods = tuple(leaves)
    back = None
    while covering := [p.ends_at for p in periods if p.covers(now)]:
        back = now = max(covering)
    return back


def absent_because(rep: Rep, now: datetime) -> str | None:
    """Return why the rep cannot take any lead now (inactive, on leave), or None."""
    if not rep.active:
        return "inactive"
    back = back_at(rep.out_of_office, now)
    if back is not None:
        return f"out of office {_until_text(back, rep.hours.zone)}"
    return None


def unavailable_because(rep: Rep, now: datetime, assigned_today: int) -> str | None:
    """Return why the round robin must skip the rep now, or None if they can take a lead."""
    if (absent := absent_because(rep, now)) is not None:
        return absent
    if not rep.hours.is_open(now):
        hours = rep.hours
        day = now.astimezone(hours.zone).date()
        # Said as such: "outside 09:00-18:00" at 11:00 on a holiday left the reader guessing.
        if (day_off := hours.day_off(day)) is not None:
            return f"{day.isoformat()} is {day_off} ({hours.timezone})"
        return (f"outside working hours ({hours.opens:%H:%M}-{hours.closes:%H:%M} "
                f"{hours.timezone})")
    if assigned_today >= rep.daily_capacity:
        return f"at daily capacity ({assigned_today} of {rep.daily_capacity})"
    return None


class Rule(StrEnum):
    """Which assignment rule decided."""

    ACCOUNT_OWNER = "account_owner"
    TERRITORY = "territory"
    ROUND_ROBIN = "round_robin"
    QUEUED = "queued"
    TAKEN = "taken"


@dataclass(frozen=True)
class Considered:
    """A rep assignment looked at, and why they could not take the lead (None if they could)."""

    rep_id: str
    blocked_because: str | None


@dataclass(frozen=True)
class Decision:
    """Who gets the lead, by which rule and why; ``positions`` are round-robin updates,
    ``territory_positions`` territory-rotation ones; ``owner_on_leave`` if the account's
    owner was passed over only for being on leave."""

    team: TeamKind
    rep_id: str | None
    rule: Rule
    reason: str
    considered: tuple[Considered, ...] = ()
    positions: Mapping[str, float] = field(default_factory=dict)
    territory_positions: Mapping[str, float] = field(default_factory=dict)
    owner_on_leave: bool = False

    @property
    def moves_account(self) -> bool:
        """Return True if the chosen rep becomes the account's owner even if another rep
        owns it: a routing rule chose them, not the rep themselves, and its owner is not
        only on leave.

        A rep who takes a lead (accepting a colleague's, or one from the queue), or gets
        it while the account's owner is on leave, gets that lead; the account becomes
        theirs only if nobody in the team owns it, or its owner has left (is inactive).
        """
        return self.rule is not Rule.TAKEN and not self.owner_on_leave

    @property
    def summary(self) -> str:
        """Return the decision in a few words, for the lead.promoted reason."""
        if self.rep_id is None:
            return f"queued for team {self.team.value}: no rep can take it now"
        return f"assigned to {self.rep_id} ({self.rule.value})"


def assign(lead: RoutableLead, team: TeamKind, reps: Sequence[Rep], *,
           account_owner: str | None, assigned_today: Mapping[str, int],
           now: datetime) -> Decision:
    """Return who in ``team`` gets the lead.

    (1) The account's owner, unless inactive or on leave: continuity beats working hours
    and capacity; an owner on leave keeps the account. (2) Territory: the available reps
    whose territory matches most specifically, in a weighted rotation of their own, trying
    broader matching territories when none of those is available. (3) Weighted round robin
    among the team's reps who are working, present and under capacity. Nobody available:
    the lead waits in the team's queue.

    An account's or a territory's lead is no round-robin turn: its rep keeps their place
    in the round robin, and the lead counts only against their daily capacity.
    """
    members = sorted((r for r in reps if r.team is team), key=lambda r: r.rep_id)
    blocked = {r.rep_id: unavailable_because(r, now, assigned_today.get(r.rep_id, 0))
               for r in members}
    considered = tuple(Considered(r.rep_id, blocked[r.rep_id]) for r in members)
    owner = next((r for r in members if r.rep_id == account_owner), None)
    if owner is not None and absent_because(owner, now) is None:
        although = blocked[owner.rep_id]
        return Decision(team, owner.rep_id, Rule.ACCOUNT_OWNER,
                        f"{owner.rep_id} owns account {lead.account_key}"
                        + (f" (assigned although {although})" if although else ""),
                        considered)
    # Passed over, an active owner is only on leave: the account is theirs when they return.
    on_leave = owner is not None and owner.active
    tried: list[Rep] = []
    fallback = ""
    for level in _territory_levels(lead, members):
        # Skipped reps of a more specific level join the scope, so their time away banks
        # no credit against the broader level's reps either.
        tried.extend(level)
        pool = [r for r in level if blocked[r.rep_id] is None]
        if pool:
            chosen, moved = _territory_turn(pool, tried)
            return Decision(team, chosen.rep_id, Rule.TERRITORY,
                            f"weighted rotation (territory {_describe_level(level)}"
                            f"{fallback}) among {_names(pool)}", considered,
                            territory_positions=moved, owner_on_leave=on_leave)
        fallback += f"; territory {_describe_level(level)} reps unavailable"
    available = [r for r in members if blocked[r.rep_id] is None]
    if available:
        chosen, moved = _rotate(available, members, {r.rep_id: r.position for r in members})
        return Decision(team, chosen.rep_id, Rule.ROUND_ROBIN,
                        f"weighted round robin (team {team.value}{fallback}) among "
                        f"{_names(available)}", considered, moved, owner_on_leave=on_leave)
    why = "; ".join(f"{rep_id}: {reason}" for rep_id, reason in blocked.items())
    return Decision(team, None, Rule.QUEUED,
                    f"no rep of team {team.value} can take it now "
                    f"({why or 'the team has no reps'}): queued for team {team.value}",
                    considered, owner_on_leave=on_leave)


def _territory_levels(lead: RoutableLead, members: Sequence[Rep]) -> list[list[Rep]]:
    """Return the members whose territory matches the lead, grouped most specific first."""
    levels: dict[int, list[Rep]] = defaultdict(list)
    for member in members:
        if member.territory is not None and member.territory.matches(lead):
            levels[member.territory.specificity].append(member)
    return [levels[specificity] for specificity in sorted(levels, reverse=True)]


def _describe_level(level: Sequence[Rep]) -> str:
    """Return the distinct territories of one specificity level, joined by `` or ``."""
    return " or ".join(sorted({r.territory.describe() for r in level if r.territory is not None}))


def _territory_turn(pool: Sequence[Rep], scope: Sequence[Rep]) -> tuple[Rep, dict[str, float]]:
    """Return the pool's rep whose turn it is in the territory rotation, and the places that
    change (``_rotate``); a rep of the scope without one yet (new to the team or to their
    territory) gets theirs level with its front runner, as one joining a team does."""
    front = starting_position(r.territory_position for r in scope
                              if r.territory_position is not None)
    places = {r.rep_id: front if r.territory_position is None else r.territory_position
              for r in scope}
    placed = {r.rep_id: front for r in scope if r.territory_position is None}
    chosen, moved = _rotate(pool, scope, places)
    # Placed for good: one left level with whoever leads would lose every tie to them.
    return chosen, {**placed, **moved}


def _rotate(pool: Sequence[Rep], everyone: Sequence[Rep], places: Mapping[str, float]
            ) -> tuple[Rep, dict[str, float]]:
    """Return the pool's rep with the lowest place, and the places that change: theirs,
    moved back by their stride, and those of ``everyone`` outside the pool who are behind.

    Reps of the pool's scope who cannot take leads now are pulled up to the current
    round, so that time away (leave, evenings, a full day) banks no credit: a rep back
    from leave takes their normal turn, not a flood.
    """
    chosen = min(pool, key=lambda r: (places[r.rep_id], r.rep_id))
    at = places[chosen.rep_id]
    taking = {r.rep_id for r in pool}
    moved = {r.rep_id: at for r in everyone if r.rep_id not in taking and places[r.rep_id] < at}
    moved[chosen.rep_id] = at + chosen.stride
    return chosen, moved


def _names(pool: Sequence[Rep]) -> str:
    """Return the pool's rep ids, comma-separated."""
    return ", ".join(r.rep_id for r in pool)


def colleague_refusal(rep_id: str, action: str, lead_id: uuid.UUID, stage: LifecycleStage,
                      owner_id: str | None, *, owner_present: bool,
                      guarded: frozenset[LifecycleStage]) -> str | None:
    """Return why ``rep_id`` may not ``action`` a lead another rep holds, or None if they may.

    In a ``guarded`` stage a lead is its owner's alone, unless the owner is no longer
    present in its team (inactive, or moved to another): a departed rep's leads stay open
    to the team, as unowned (queued) ones are. An MQL assigned to a colleague may still be
    taken, by accepting it.
    """
    # A colleague's click on the same alert must not undo the owner's work nor act in
    # their name: a second accept does not take an accepted lead either.
    if stage not in guarded or owner_id in (None, rep_id) or not owner_present:
        return None
    if stage is S.MQL:
        return (f"lead {lead_id} is assigned to {owner_id}; only they can {action} it "
                f"(to {action} it yourself, take it first by accepting it)")
    held = "was accepted by" if stage is S.SAL else "is owned by"
    return (f"lead {lead_id} {held} {owner_id}; only they can {action} it (ask them to, "
            f"or, if they have left the team, mark them inactive so that the team can)")


def actor_refusal(rep: Rep, lead_team: str | None) -> str | None:
    """Return why ``rep`` may not act on a lead held by ``lead_team``, or None if they may."""
    if not rep.active:
        return f"rep {rep.rep_id} is inactive"
    if lead_team is not None and rep.team.value != lead_team:
        return f"rep {rep.rep_id} is in team {rep.team.value}; the lead is with team {lead_team}"
    return None


def starting_position(team_positions: Iterable[float]) -> float:
    """Return where a rep joining a team starts: level with its front runner, never ahead."""
    return min(team_positions, default=0.0)


def round_robin_place(team_positions: Sequence[float], team: TeamKind, weight: float,
                      current: Rep | None) -> float:
    """Return where a rep put in ``team`` at ``weight`` stands in its round robin, given the
    positions of its active reps and the rep as stored (None if new).

    New to the team, they start level with its front runner. Staying, they keep their
    place; if their weight changes, as many turns behind the front runner as before: each
    lead moved them back by 1 / weight, so their distance is rescaled to the new weight.
    Measured from their own place where it is the front (a team of no active reps, say).
    """
    if current is None or current.team is not team:
        return starting_position(team_positions)
    if current.weight == weight:
        return current.position
    front = min([*team_positions, current.position])
    return front + (current.position - front) * current.weight / weight


# --- qualification ------------------------------------------------------------------------


class BantRank(StrEnum):
    """BANT rank: A all four confirmed, B need plus two, C need plus at most one, D no need."""

    A = "A"
    B = "B"
    C = "C"
    D = "D"


@dataclass(frozen=True)
class Bant:
    """Which of budget, authority, need and timeframe the rep confirmed."""

    budget: bool
    authority: bool
    need: bool
    timeframe: bool

    @property
    def rank(self) -> BantRank:
        """Return the BANT rank."""
        if not self.need:
            return BantRank.D
        others = self.budget + self.authority + self.timeframe
        return {3: BantRank.A, 2: BantRank.B}.get(others, BantRank.C)


def qualifies(rank: BantRank, demo_or_quote_requested: bool) -> bool:
    """Return True if the lead becomes an SQL: rank A or B, or a demo / quote request."""
    return rank in (BantRank.A, BantRank.B) or demo_or_quote_requested


# --- funnel -------------------------------------------------------------------------------

FUNNEL = (S.LEAD, S.MQL, S.SAL, S.SQL, S.OPPORTUNITY, S.WON)
EXITS = (S.NURTURE, S.DISQUALIFIED, S.LOST)


class Granularity(StrEnum):
    """How leads are grouped in time; fiscal quarters follow the fiscal year start."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    FISCAL_QUARTER = "fiscal_quarter"


class Dimension(StrEnum):
    """What funnel rows can be grouped by."""

    PERIOD = "period"
    SOURCE = "source"
    PARTNER = "partner"


def period_of(at: datetime, granularity: Granularity, zone: ZoneInfo,
              fiscal_year_start: int = 4) -> str:
    """Return the period label of ``at`` in ``zone``: 2026-11-21, 2026-W47, 2026-11, FY2026-Q3."""
    local = at.astimezone(zone)
    if granularity is Granularity.DAY:
        return local.date().isoformat()
    if granularity is Granularity.WEEK:
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if granularity is Granularity.MONTH:
        return f"{local:%Y-%m}"
    return fiscal_quarter_of(local.date(), fiscal_year_start)


@dataclass(frozen=True)
class Journey:
    """One lead's path: where it came from, when it first entered each stage, first contact,
    and every time it became an MQL (``mqls``; a nurtured lead may become one again)."""

    source: str
    partner: str | None
    created_at: datetime
    entered: Mapping[LifecycleStage, datetime]
    first_contact_at: datetime | None = None
    mqls: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class Speed:
    """Minutes from MQL to a milestone over the leads that reached it."""

    leads: int
    p50_minutes: float | None
    p95_minutes: float | None


@dataclass(frozen=True)
class Conversion:
    """The share of leads that reached ``from_stage`` and went on to ``to_stage``."""

    from_stage: LifecycleStage
    to_stage: LifecycleStage
    rate: float | None


@dataclass(frozen=True)
class FunnelRow:
    """Counts, conversions and speed-to-lead of one group of leads."""

    group: Mapping[Dimension, str | None]
    leads: int
    reached: Mapping[LifecycleStage, int]
    exited: Mapping[LifecycleStage, int]
    conversions: tuple[Conversion, ...]
    to_acceptance: Speed
    to_first_contact: Speed


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Return the nearest-rank ``fraction`` percentile of ``values``, None if there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _speed(samples: Sequence[float]) -> Speed:
    return Speed(len(samples), percentile(samples, 0.5), percentile(samples, 0.95))


def _minutes_since_mql(journey: Journey, milestone: datetime | None) -> float | None:
    """Return minutes to ``milestone`` from the MQL it answered (at least 0); None if either
    is missing.

    That is the latest MQL at or before it: a lead rejected at its first MQL and accepted
    at a later one was accepted that much after the later one.
    """
    if milestone is None:
        return None
    mql = max((at for at in journey.mqls if at <= milestone),
              default=journey.entered.get(S.MQL))
    if mql is None:
        return None
    return max(0.0, (milestone - mql).total_seconds() / 60)


def funnel_row(group: Mapping[Dimension, str | None], journeys: Sequence[Journey]) -> FunnelRow:
    """Return the funnel of ``journeys``: every lead counts as having reached ``lead``."""
    reached = {stage: sum(1 for j in journeys if stage is S.LEAD or stage in j.entered)
               for stage in FUNNEL}
    exited = {stage: sum(1 for j in journeys if stage in j.entered) for stage in EXITS}
    conversions = tuple(
        Conversion(before, after, reached[after] / reached[before] if reached[before] else None)
        for before, after in pairwise(FUNNEL))
    accepted = [m for j in journeys
                if (m := _minutes_since_mql(j, j.entered.get(S.SAL))) is not None]
    contacted = [m for j in journeys
                 if (m := _minutes_since_mql(j, j.first_contact_at)) is not None]
    return FunnelRow(group, len(journeys), reached, exited, conversions, _speed(accepted),
                     _speed(contacted))


def funnel(journeys: Iterable[Journey], group_by: Sequence[Dimension],
           granularity: Granularity, zone: ZoneInfo, fiscal_year_start: int = 4
           ) -> tuple[list[FunnelRow], FunnelRow]:
    """Return one funnel row per group (sorted) and the total over every journey."""
    groups: dict[tuple[str | None, ...], list[Journey]] = defaultdict(list)
    everything = list(journeys)
    for journey in everything:
        values = {Dimension.PERIOD: period_of(journey.created_at, granularity, zone,
                                              fiscal_year_start),
                  Dimension.SOURCE: journey.source, Dimension.PARTNER: journey.partner}
        groups[tuple(values[d] for d in group_by)].append(journey)
    rows = [funnel_row(dict(zip(group_by, key, strict=True)), members)
            for key, members in sorted(groups.items(),
                                       key=lambda item: tuple(v or "" for v in item[0]))]
    return rows, funnel_row({}, everything)
