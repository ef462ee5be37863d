"""Notifier's pure rules: business time, SLA clocks, the escalation ladder and who is told."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from zoneinfo import ZoneInfo

from baton_runtime.business_time import BusinessCalendar
from schemas.events import ContactKind, DealPhase, LifecycleStage, Tier, TouchpointType

S = LifecycleStage
FAST_LANE_TRIGGERS = frozenset({TouchpointType.INQUIRY_DEMO_REQUEST,
                                TouchpointType.INQUIRY_QUOTE_REQUEST})
# Stages after which nobody owes the lead anything more.
FINAL_STAGES = frozenset({S.WON, S.LOST, S.NURTURE, S.DISQUALIFIED})
# Stages where a lead still waits for sales' first touch.
UNTOUCHED_STAGES = frozenset({S.LEAD, S.NURTURE})
# Stages no lead leaves and where no contact can be logged: a meeting set there is
# nobody's to record.
CLOSED_STAGES = frozenset({S.WON, S.DISQUALIFIED})


class ClockKind(StrEnum):
    """What an SLA clock waits for."""

    MQL_ACCEPTANCE = "mql_acceptance"  # a tier-A MQL accepted (SAL)
    FIRST_TOUCH = "first_touch"  # a tier-B or surging lead touched by sales
    FIRST_CONTACT = "first_contact"  # an SQL contacted by field sales
    OWNER_ACTIVITY = "owner_activity"  # any activity on an owned lead
    FIRST_MEETING = "first_meeting"  # the record of a lead's first meeting logged


@dataclass(frozen=True)
class SlaRule:
    """One SLA: what it waits for, how long, and whether that is business or wall time."""

    name: str
    kind: ClockKind
    duration: timedelta
    business: bool


@dataclass(frozen=True)
class SlaRules:
    """The SLA table (DESIGN.md section 3); 'hours' there are read as working days."""

    mql_acceptance: SlaRule
    mql_fast_lane: SlaRule
    first_touch: SlaRule
    first_touch_surge: SlaRule
    first_contact: SlaRule
    owner_activity: SlaRule
    first_meeting: SlaRule

    def by_name(self) -> dict[str, SlaRule]:
        """Return the rules by their names."""
        rules = (self.mql_acceptance, self.mql_fast_lane, self.first_touch,
                 self.first_touch_surge, self.first_contact, self.owner_activity,
                 self.first_meeting)
        return {rule.name: rule for rule in rules}


class Rung(IntEnum):
    """The escalation ladder, in the order its rungs fire."""

    REMINDER = 1  # 50%: remind the owner
    BREACH = 2  # 100%: alert the owner and the manager channel
    ESCALATION = 3  # 200%: escalate to the team lead


LADDER: tuple[tuple[Rung, float], ...] = ((Rung.REMINDER, 0.5), (Rung.BREACH, 1.0),
                                          (Rung.ESCALATION, 2.0))


@dataclass(frozen=True)
class ClockPlan:
    """When a clock's rungs fire: 50%, 100% (due) and 200% of its duration.

    ``set_at`` is when the event that set a clock starting later happened (a partner's
    appointment, for the meeting's time); None for a clock that starts when it is set.
    """

    started_at: datetime
    remind_at: datetime
    due_at: datetime
    escalate_at: datetime
    set_at: datetime | None = None

    def at(self, rung: Rung) -> datetime:
        """Return when ``rung`` fires."""
        return {Rung.REMINDER: self.remind_at, Rung.BREACH: self.due_at,
                Rung.ESCALATION: self.escalate_at}[rung]

    def rungs_due(self, fired: int, now: datetime) -> list[Rung]:
        """Return the rungs after the ``fired`` ones whose time has come by ``now``."""
        return [rung for rung, _ in LADDER if rung > fired and self.at(rung) <= now]

    def next_fire_at(self, fired: int) -> datetime | None:
        """Return when the next rung after the ``fired`` ones fires, or None after the last."""
        upcoming = [self.at(rung) for rung, _ in LADDER if rung > fired]
        return upcoming[0] if upcoming else None


def rungs_to_alert(crossed: Sequence[Rung]) -> list[Rung]:
    """Return the rungs worth an alert: a reminder overtaken by the breach is dropped."""
    if Rung.BREACH in crossed:
        return [rung for rung in crossed if rung is not Rung.REMINDER]
    return list(crossed)


def plan_clock(rule: SlaRule, started_at: datetime, calendar: BusinessCalendar,
               set_at: datetime | None = None) -> ClockPlan:
    """Return when a clock of ``rule`` started at ``started_at`` reminds, falls due, escalates
    (``set_at``: when an event set it to start then, if it did)."""

    def after(fraction: float) -> datetime:
        span = rule.duration * fraction
        return calendar.add(started_at, span) if rule.business else started_at + span

    remind, due, escalate = (after(fraction) for _, fraction in LADDER)
    return ClockPlan(started_at=started_at, remind_at=remind, due_at=due, escalate_at=escalate,
                     set_at=set_at)


class Outcome(StrEnum):
    """How a stopped clock ended."""

    MET = "met"
    BREACHED = "breached"
    # Replaced, before its due time and before its breach was reported, by a clock that
    # takes it over: one of its kind falling due earlier (a surge during the tier-B
    # first-touch wait), the MQL clock, or the clock of its meeting set again. SLA
    # compliance counts the clock that took over, not this one.
    SUPERSEDED = "superseded"


def outcome(due_at: datetime, stopped_at: datetime) -> Outcome:
    """Return whether a clock stopped at ``stopped_at`` met its due time."""
    return Outcome.MET if stopped_at <= due_at else Outcome.BREACHED


def outcome_taken_over(due_at: datetime, taken_over_at: datetime, *,
                       breach_reported: bool) -> Outcome:
    """Return how a clock another takes over at ``taken_over_at`` ends: superseded, unless
    it fell due before then or its breach was reported already: that breach stands.

    The timer sweep reports a breach at the due time; an event that takes the clock over
    before that time but is handled after it (its topic was behind) does not take the alert
    back, so SLA compliance counts the clock breached, once, like the alert.
    """
    if breach_reported or outcome(due_at, taken_over_at) is Outcome.BREACHED:
        return Outcome.BREACHED
    return Outcome.SUPERSEDED


def breach_reported(status: str, rungs_fired: int) -> bool:
    """Return True if a clock's breach was reported: by the sweep's breach rung, or by a
    late stop (a clock ended breached)."""
    return status == Outcome.BREACHED.value or rungs_fired >= Rung.BREACH


def late_stop_reports_breach(due_at: datetime, stopped_at: datetime, fired: int) -> bool:
    """Return True if a stop must itself report the breach: late, and no breach alert yet."""
    return outcome(due_at, stopped_at) is Outcome.BREACHED and fired < Rung.BREACH


def stop_clears_breach(ended: Outcome, *, breach_reported: bool) -> bool:
    """Return True if a stop must tell who heard of a clock's breach that it was met after
    all: the stop ended it met, and its breach had been reported (``breach_reported``).

    The stop happened by the due time but was handled after the sweep alerted the breach
    (its topic was behind). A late stop, or one taking the clock over after its breach
    alert (``outcome_taken_over``), leaves the breach standing.
    """
    return ended is Outcome.MET and breach_reported


def is_sales_activity(from_stage: LifecycleStage, to_stage: LifecycleStage) -> bool:
    """Return True if a lifecycle event is someone in sales acting, not the pipeline itself.

    Promotion to MQL follows a score, and SQL -> opportunity follows the deal that
    pipeline opens for every SQL: neither is a touch. Every other event is, including
    one that keeps the stage (a logged contact).
    """
    automatic = ((from_stage in UNTOUCHED_STAGES and to_stage is S.MQL)
                 or (from_stage is S.SQL and to_stage is S.OPPORTUNITY))
    return not automatic


@dataclass(frozen=True)
class ClockChanges:
    """What one event does to a lead's clocks: which stop, then which start.

    A stop ends the lead's open clocks of those kinds started before the event; a
    start opens a clock from the event's time, unless one of its kind is open: then
    the earlier deadline wins, and an open clock started before the event that falls
    due later is superseded (a later deadline never loosens an open clock).

    A cancel ends the lead's open clocks of those kinds set before the event, even one
    whose start is still ahead (the lead left sales before its meeting); a scheduled
    start opens a clock from a moment of its own (the meeting's), set at the event's.

    A supersede is a stop by an event that is no stopping event of the clock but starts
    one that takes it over (the automatic promotion to MQL, for a first-touch clock): a
    clock it ends in time is superseded, not met; one it ends late, or after its breach
    was reported, is still breached (``outcome_taken_over``).
    """

    stop: frozenset[ClockKind] = frozenset()
    supersede: frozenset[ClockKind] = frozenset()
    start: tuple[SlaRule, ...] = ()
    cancel: frozenset[ClockKind] = frozenset()
    scheduled: tuple[tuple[SlaRule, datetime], ...] = ()

    @property
    def starts(self) -> bool:
        """Return True if the event starts a clock, now or later."""
        return bool(self.start or self.scheduled)


def on_promotion(rules: SlaRules, *, from_stage: LifecycleStage, to_stage: LifecycleStage,
                 tier: Tier, trigger: TouchpointType | None, owner_id: str | None,
                 contact: ContactKind | None = None) -> ClockChanges:
    """Return the clock changes a lead.promoted event causes (``contact``: the kind of
    contact it records, if it does)."""
    stop: set[ClockKind] = set()
    supersede: frozenset[ClockKind] = frozenset()
    if to_stage is S.MQL and not is_sales_activity(from_stage, to_stage):
        # A score made the lead an MQL: nobody touched it, and the tier-A MQL clock takes
        # the first-touch clock over.
        supersede = frozenset({ClockKind.FIRST_TOUCH})
    else:
        stop.add(ClockKind.FIRST_TOUCH)  # any other lifecycle event is the first touch
    start: list[SlaRule] = []
    cancel: frozenset[ClockKind] = frozenset()
    if to_stage is not S.MQL:
        stop.add(ClockKind.MQL_ACCEPTANCE)
    if contact is not None:
        # DESIGN: an SQL's clock waits for the first contact *logged*; other moves of the
        # lead are activity (owner_activity), and leaving sales ends it below.
        stop.add(ClockKind.FIRST_CONTACT)
    if contact is ContactKind.MEETING:
        # Its record: a stop ends only a clock started before it, so a meeting logged
        # before the first meeting's time is not taken for that meeting's record.
        stop.add(ClockKind.FIRST_MEETING)
    if to_stage in FINAL_STAGES:
        stop |= {ClockKind.FIRST_CONTACT, ClockKind.OWNER_ACTIVITY}
        if from_stage is not to_stage:  # leaving sales; a contact on a nurtured lead is not
            cancel = frozenset({ClockKind.FIRST_MEETING})
    else:
        # Every event is activity: the idleness counted so far ends, and counts again from
        # now for the owner. A lead queued with nobody to take it (an SQL no field rep is
        # free for) has no owner to remind, as on_deal_phase has it.
        stop.add(ClockKind.OWNER_ACTIVITY)
        if owner_id is not None:
            start.append(rules.owner_activity)
    if to_stage is S.MQL and from_stage is not S.MQL and tier is Tier.A:
        start.append(rules.mql_fast_lane if trigger in FAST_LANE_TRIGGERS
                     else rules.mql_acceptance)
    if to_stage is S.SQL and from_stage is not S.SQL:
        start.append(rules.first_contact)
    return ClockChanges(stop=frozenset(stop), start=tuple(start), cancel=cancel,
                        supersede=supersede)


def on_score(rules: SlaRules, *, tier: Tier, previous_tier: Tier | None, surge: bool,
             awaiting_touch: bool, meeting_at: datetime | None = None,
             first_meeting: bool = False) -> ClockChanges:
    """Return the clocks a lead.scored event starts: first touch for a new tier B or a surge,
    and the first meeting's record for the meeting a partner set.

    ``awaiting_touch`` says whether the lead waited for sales' first touch when it was
    scored (``awaited_touch_at``); ``first_meeting`` whether a meeting at ``meeting_at``
    is owed a clock (``meeting_owed``). A clock starts even when the lifecycle event that
    ends it was handled first (the two topics are consumed independently): it is then
    recorded as already stopped, met or breached.
    """
    scheduled = ((rules.first_meeting, meeting_at),) if (
        meeting_at is not None and first_meeting) else ()
    return ClockChanges(start=_first_touch(rules, tier=tier, previous_tier=previous_tier,
                                           surge=surge, awaiting_touch=awaiting_touch),
                        scheduled=scheduled)


def _first_touch(rules: SlaRules, *, tier: Tier, previous_tier: Tier | None, surge: bool,
                 awaiting_touch: bool) -> tuple[SlaRule, ...]:
    """Return the first-touch clock a score starts, if it starts one."""
    if not awaiting_touch or tier is Tier.A:  # a hot lead gets the MQL clock
        return ()
    if surge:
        return (rules.first_touch_surge,)
    if tier is Tier.B and previous_tier is not Tier.B:
        return (rules.first_touch,)
    return ()


@dataclass(frozen=True)
class MeetingClock:
    """A first-meeting clock of a lead: when it was set, when its meeting is, when it ended
    (None: open), whether it was replaced: it no longer stands for the lead's meeting
    (the meeting was set again, or turned out not to be the lead's first), and whether a
    meeting's record ended it (not the lead leaving sales)."""

    set_at: datetime
    started_at: datetime
    stopped_at: datetime | None = None
    replaced: bool = False
    recorded: bool = False

    @property
    def called_off(self) -> bool:
        """Return True if it ended before its meeting (the lead left sales first)."""
        return self.stopped_at is not None and self.stopped_at < self.started_at

    def running_at(self, moment: datetime) -> bool:
        """Return True if it had not ended by ``moment``."""
        return self.stopped_at is None or self.stopped_at > moment


@dataclass(frozen=True)
class MeetingSchedule:
    """What a meeting a partner set does to the lead's first-meeting clocks: whether it is
    the lead's first meeting, still to be clocked, and the starts of the clocks it replaces."""

    first: bool
    moves: tuple[datetime, ...] = ()


def schedule_meeting(moment: datetime, meeting_at: datetime,
                     clocks: Sequence[MeetingClock]) -> MeetingSchedule:
    """Return what a meeting at ``meeting_at``, set at ``moment``, does to ``clocks``.

    The lead's first meeting is the first that takes place. A meeting set while the clocked
    one's clock runs replaces it: a meeting moved before its time, or set again for a later
    time after it (it did not take place: a no-show rescheduled). That clock ends then
    (``outcome_taken_over``: superseded, or breached if it fell due first or its breach
    was reported), and one starts at the new time. A clocked meeting whose clock ended after
    its time (its record logged, or the lead left sales) took place: a later meeting is not
    the first; one called off before its time (the lead left sales) does not count. A
    meeting clocked already, set by an older appointment, or set after the clocked one's
    time for an earlier time changes nothing; nor does one at a time a clock of the lead
    started at before (moved back there): a lead's clocks of a kind start at distinct
    moments, so the one running keeps running.

    A clock is running at ``moment`` when it ended after it: that end was handled first (a
    lifecycle event consumed ahead of the appointment); the new meeting replaces it as if
    handled in time. A meeting set again after the clocked one's time replaces it only
    provisionally: a record logged before the new time is the clocked meeting's
    (``record_before_follow_up``), so one handled first shows that meeting took place.
    """
    if any(clock.started_at == meeting_at for clock in clocks):
        return MeetingSchedule(first=False)
    current = [clock for clock in clocks if not clock.replaced]
    if any(clock.set_at >= moment for clock in current):
        return MeetingSchedule(first=False)
    running = [clock for clock in current if clock.running_at(moment)]
    held = [clock for clock in current if not clock.running_at(moment) and not clock.called_off]
    earlier_after_its_time = [clock for clock in running
                              if clock.started_at <= moment and meeting_at < clock.started_at]
    recorded_before_the_new_time = [
        clock for clock in running if clock.recorded and clock.stopped_at is not None
        and record_before_follow_up(clock.started_at, moment, meeting_at, clock.stopped_at)]
    if held or earlier_after_its_time or recorded_before_the_new_time:
        return MeetingSchedule(first=False)
    return MeetingSchedule(first=True, moves=tuple(clock.started_at for clock in running))


def record_before_follow_up(meeting_at: datetime, set_again_at: datetime,
                            follow_up_at: datetime, recorded_at: datetime) -> bool:
    """Return True if a record at ``recorded_at`` is the meeting's at ``meeting_at``, though
    set again at ``set_again_at`` for ``follow_up_at``."""
    # Set again after its time, it may have taken place. A record at the new time itself is
    # the old meeting's too: a stop ends only clocks started before it.
    return meeting_at <= set_again_at and meeting_at < recorded_at <= follow_up_at


@dataclass(frozen=True)
class EarlierMeetingEnd:
    """What a stop of the first meeting's clock changes when handled after an appointment
    it precedes replaced the clock it ends: that clock (its start) ends at the stop
    instead, and the clocks set after the stop (their starts), when the meeting took place
    before it, stand for no first meeting."""

    ends: datetime
    voids: tuple[datetime, ...] = ()


def end_before_replacement(at: datetime, *, cancels: bool,
                           clocks: Sequence[MeetingClock]) -> EarlierMeetingEnd | None:
    """Return what a stop at ``at`` (a cancel: ``cancels``) changes in ``clocks`` replaced
    after it, or None when it ends no replaced clock.

    Handled in time, the stop would have ended the clock running then (one started before
    it; for a cancel, set before it), and the appointment that replaced that clock later
    would have found its meeting held (``schedule_meeting``): no first meeting, unless the
    stop called the meeting off before its time. Both handling orders end the same way.

    A record (not a cancel) after an appointment that set the meeting again after its time,
    and before the new time, is the replaced meeting's (``record_before_follow_up``): it
    ends that clock, and the clocks set since it was replaced stand for no first meeting.
    """
    ended = [clock for clock in clocks
             if clock.replaced and clock.stopped_at is not None and clock.stopped_at > at
             and (clock.set_at if cancels else clock.started_at) < at]
    if not ended:
        return None if cancels else _end_before_follow_up(at, clocks)
    running = min(ended, key=lambda clock: clock.set_at)
    if running.started_at > at:  # called off before its meeting: the next one is the first
        return EarlierMeetingEnd(running.started_at)
    return EarlierMeetingEnd(running.started_at, tuple(
        clock.started_at for clock in clocks if not clock.replaced and clock.set_at > at))


def _end_before_follow_up(at: datetime, clocks: Sequence[MeetingClock]
                          ) -> EarlierMeetingEnd | None:
    """Return what a record at ``at`` of a meeting set again after its time changes, or None."""
    for clock in sorted(clocks, key=lambda clock: clock.set_at):
        if not clock.replaced or clock.stopped_at is None:
            continue
        replaced_at = clock.stopped_at  # when the appointment that set it again was made
        follow_ups = [later for later in clocks
                      if later is not clock and later.set_at == replaced_at]
        if follow_ups and record_before_follow_up(clock.started_at, replaced_at,
                                                  follow_ups[0].started_at, at):
            return EarlierMeetingEnd(clock.started_at, tuple(
                later.started_at for later in clocks
                if not later.replaced and later.set_at >= replaced_at))
    return None


def meeting_owed(moment: datetime, *, clocked_before: bool, stage: LifecycleStage | None,
                 moved_at: datetime | None) -> bool:
    """Return True if a meeting a partner set, scored at ``moment``, starts the lead's
    first-meeting clock.

    Only the lead's first meeting does (``clocked_before``: it is not, ``schedule_meeting``).
    ``stage`` and ``moved_at`` are where and when the latest lifecycle event seen left the
    lead: one at or before ``moment`` that closed it for good (won, disqualified) leaves
    nobody to log the meeting's record. A closing event after ``moment`` cancels the
    clock as it starts, whichever was handled first.
    """
    closed = stage in CLOSED_STAGES and moved_at is not None and moved_at <= moment
    return not clocked_before and not closed


@dataclass(frozen=True)
class LifecycleMove:
    """A lifecycle event the notifier kept: when it happened and the stage it left."""

    at: datetime
    from_stage: LifecycleStage | None  # None: kept before stages were


def awaited_touch_at(moment: datetime, *, stage: LifecycleStage | None,
                     moved_at: datetime | None, next_move: LifecycleMove | None) -> bool:
    """Return True if a lead waited for sales' first touch at ``moment``, by event times.

    ``stage`` is where the latest lifecycle event seen left the lead, ``moved_at`` when that
    happened (both None: none seen). When that event is not older than ``moment``, the
    handling order says nothing: the stage at ``moment`` is the one the first lifecycle
    event after it left (``next_move``, the first kept at or after ``moment``). One at the
    very moment, or none still known (forgotten, or kept without its stage), is taken as
    the lead handled by then, as before stages were kept: nothing is owed.
    """
    if moved_at is None or moved_at < moment:
        return stage is None or stage in UNTOUCHED_STAGES
    return (next_move is not None and next_move.at > moment
            and next_move.from_stage in UNTOUCHED_STAGES)


@dataclass(frozen=True)
class EndedClock:
    """A clock a stop already ended: when it started and fell due, and how it ended."""

    started_at: datetime
    due_at: datetime
    outcome: Outcome


@dataclass(frozen=True)
class SettledStart:
    """How a start handled after the stop that ends it is recorded.

    ``outcome`` is None when it is not recorded at all (it would never have opened);
    ``rival_superseded_at`` says when the clock the stop had ended is superseded, if it is.
    """

    outcome: Outcome | None
    stopped_at: datetime
    rival_superseded_at: datetime | None = None
    reports_breach: bool = False


def settle_late_start(plan: ClockPlan, stopped_at: datetime, rival: EndedClock | None, *,
                      superseded: bool = False) -> SettledStart:
    """Return how to record a clock started before ``stopped_at`` but handled after it.

    ``rival`` is the clock of the same kind that stop already ended, started with no stop
    between the two (a tier-B rise and a surge before one late first touch, handled in any
    order). The result is what handling both in time gives (``ClockChanges``): the later
    start replaces the earlier only if it falls due earlier; the other is superseded, or
    never opened. The stop ends one clock, and its breach is reported once: not again when
    the rival, breached, already reported it. A ``superseded`` stop (``ClockChanges``)
    made in time records it superseded.
    """
    if superseded and outcome(plan.due_at, stopped_at) is Outcome.MET:
        return SettledStart(Outcome.SUPERSEDED, stopped_at)
    if rival is not None:
        if plan.started_at < rival.started_at and rival.due_at < plan.due_at:
            return SettledStart(Outcome.SUPERSEDED, rival.started_at)  # the rival replaced it
        if plan.started_at > rival.started_at and plan.due_at >= rival.due_at:
            return SettledStart(None, stopped_at)  # a later due time never loosens a clock
    ended = outcome(plan.due_at, stopped_at)
    reported = rival is not None and rival.outcome is Outcome.BREACHED
    return SettledStart(ended, stopped_at,
                        rival_superseded_at=None if rival is None
                        else max(plan.started_at, rival.started_at),
                        reports_breach=ended is Outcome.BREACHED and not reported)


def on_deal_phase(rules: SlaRules, *, from_phase: DealPhase | None, to_phase: DealPhase,
                  owner_id: str | None) -> ClockChanges:
    """Return the clock changes a deal moving causes: a rep moved it, so it is activity.

    An edit (P1 -> P1) or an advance is no contact logged (DESIGN: the SQL's clock waits
    for "first contact logged", which only routing's contact log records): it leaves the
    first-contact clock running. A closed deal ends it, as the lead leaves sales.
    A closed deal does not end the first meeting's clock: the lifecycle event routing emits
    when the lead leaves sales with it does, and an older deal of the lead (left open when
    an earlier SQL was rejected) closing leaves the lead where it is.
    """
    if from_phase is None:
        return ClockChanges()  # pipeline opened (or kept) it for an SQL: nobody acted yet
    if to_phase in (DealPhase.WON, DealPhase.LOST):
        return ClockChanges(stop=frozenset({ClockKind.FIRST_CONTACT, ClockKind.OWNER_ACTIVITY}))
    start = (rules.owner_activity,) if owner_id is not None else ()
    return ClockChanges(stop=frozenset({ClockKind.OWNER_ACTIVITY}), start=start)


def on_deal_recycled() -> ClockChanges:
    """Return the clock changes of a recycled deal: its lead goes back to marketing.

    The first meeting's clock is ended by routing's move of the lead to nurture, made only
    for the lead's own deal (``on_deal_phase``).
    """
    return ClockChanges(stop=frozenset({ClockKind.FIRST_CONTACT, ClockKind.OWNER_ACTIVITY}))


class AlertKind(StrEnum):
    """Every alert the notifier sends."""

    HOT_LEAD = "hot_lead"
    SLA_REMINDER = "sla_reminder"
    SLA_BREACH = "sla_breach"
    SLA_ESCALATION = "sla_escalation"
    SLA_CLEARED = "sla_cleared"  # a breach alerted before a stop in time was known
    DEAL_WON = "deal_won"
    DEAL_RECYCLED = "deal_recycled"


class Audience(StrEnum):
    """Who an alert is for; the directory turns each into destinations."""

    OWNER = "owner"
    TEAM = "team"
    MANAGER = "manager"
    TEAM_LEAD = "team_lead"


AUDIENCES: dict[AlertKind, tuple[Audience, ...]] = {
    AlertKind.HOT_LEAD: (Audience.OWNER, Audience.TEAM),
    AlertKind.SLA_REMINDER: (Audience.OWNER,),
    AlertKind.SLA_BREACH: (Audience.OWNER, Audience.MANAGER),
    AlertKind.SLA_ESCALATION: (Audience.TEAM_LEAD,),
    AlertKind.DEAL_WON: (Audience.OWNER, Audience.TEAM),
    AlertKind.DEAL_RECYCLED: (Audience.OWNER, Audience.TEAM),
}
RUNG_ALERTS = {Rung.REMINDER: AlertKind.SLA_REMINDER, Rung.BREACH: AlertKind.SLA_BREACH,
               Rung.ESCALATION: AlertKind.SLA_ESCALATION}


@dataclass(frozen=True)
class Directory:
    """Destination keys per recipient; each falls back to a wider one when not configured.

    A rep without channels of their own hears through their team's; a team
    without channels, the manager and team leads, through the default.
    """

    default: tuple[str, ...]
    teams: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    team_leads: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    reps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    manager: tuple[str, ...] = ()

    def team(self, team: str | None) -> tuple[str, ...]:
        """Return the team channel's destinations."""
        return self.teams.get(team or "", ()) or self.default

    def destinations(self, audiences: Sequence[Audience], *, owner_id: str | None,
                     team: str | None) -> list[str]:
        """Return the distinct destinations of ``audiences``, in order."""
        found: list[str] = []
        for audience in audiences:
            if audience is Audience.OWNER:
                keys = self.reps.get(owner_id or "", ()) or self.team(team)
            elif audience is Audience.TEAM:
                keys = self.team(team)
            elif audience is Audience.MANAGER:
                keys = self.manager or self.default
            else:
                keys = self.team_leads.get(team or "", ()) or self.manager or self.default
            found += [key for key in keys if key not in found]
        return found


@dataclass(frozen=True)
class Policy:
    """Everything the notifier's rules need: calendar, SLA table, directory, language."""

    calendar: BusinessCalendar
    rules: SlaRules
    directory: Directory
    locale: str
    display_timezone: ZoneInfo
