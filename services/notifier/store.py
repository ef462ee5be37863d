"""Notifier's tables: what it knows of leads and deals, SLA clocks, destinations and alerts."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    exists,
    false,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_runtime.db import service_metadata
from services.notifier.domain import ClockKind, ClockPlan, Outcome, Rung, SlaRule

metadata, plumbing = service_metadata("notifier")
ALERTS_CHANNEL = "notifier_alerts"
OPEN = "open"

leads = Table(
    "leads",
    metadata,
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("card", JSONB, nullable=False),
    Column("stage", Text),
    Column("owner_id", Text),
    Column("team", Text),
    Column("last_promoted_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Reps' names as routing's lead.promoted last gave them: alerts show people, not ids.
rep_names = Table(
    "rep_names",
    metadata,
    Column("rep_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("named_at", DateTime(timezone=True), nullable=False),  # the naming event's time
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

RECYCLED = "recycled"  # a recycled deal's phase as the notifier keeps it
deals = Table(
    "deals",
    metadata,
    Column("deal_id", UUID(as_uuid=True), primary_key=True),
    Column("lead_id", UUID(as_uuid=True), nullable=False),
    Column("owner_id", Text),
    Column("phase", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

sla_clocks = Table(
    "sla_clocks",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("lead_id", UUID(as_uuid=True), nullable=False),
    Column("kind", Text, nullable=False),
    Column("rule", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("remind_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("escalate_at", DateTime(timezone=True), nullable=False),
    Column("rungs_fired", Integer, nullable=False, server_default="0"),
    Column("next_fire_at", DateTime(timezone=True)),
    Column("status", Text, nullable=False, server_default=OPEN),
    Column("stopped_at", DateTime(timezone=True)),
    Column("stop_reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # When the event that set a clock starting later happened (a partner's appointment, for
    # the meeting's time); NULL for a clock that started when it was set.
    Column("set_at", DateTime(timezone=True)),
    # A first meeting's clock that no longer stands for the lead's meeting: the meeting was
    # set again (moved, or a no-show rescheduled), or turned out not to be the lead's
    # first. Its status says how it counts: superseded, or breached when that breach stood.
    Column("replaced", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("lead_id", "kind", "started_at", name="uq_notifier_sla_clocks_start"),
    Index("uq_notifier_sla_clocks_open", "lead_id", "kind", unique=True,
          postgresql_where=text("status = 'open'")),
    Index("ix_notifier_sla_clocks_due", "next_fire_at",
          postgresql_where=text("status = 'open'")),
)

# Every stop handled, whether or not it ended a clock: a start handled after a stop that
# follows it (another topic, behind) is recorded as stopped by the first such stop. A
# lifecycle event's stops keep the stage it moved the lead from: the stage the lead was in
# just before, for a score of that time handled after it. A cancel ends clocks set before
# it rather than started before it (``ClockChanges``).
clock_stops = Table(
    "clock_stops",
    metadata,
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("stopped_at", DateTime(timezone=True), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("from_stage", Text),
    Column("cancels", Boolean, nullable=False, server_default=false()),
    # A supersede (``ClockChanges``): a clock it ends in time is superseded, not met.
    Column("supersedes", Boolean, nullable=False, server_default=false()),
)

destinations = Table(
    "destinations",
    metadata,
    Column("key", Text, primary_key=True),
    Column("next_send_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("dedupe_key", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("lead_id", UUID(as_uuid=True)),
    Column("clock_id", BigInteger),
    Column("message", JSONB, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False,
           server_default=func.now()),
    Column("last_error", Text),
    Column("digest_size", Integer),
    # A digest holding the alert was refused as a message: it is then sent on its own.
    Column("send_alone", Boolean, nullable=False, server_default=false()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
    Index("ix_notifier_alerts_pending", "channel", "id",
          postgresql_where=text("status = 'pending'")),
    Index("ix_notifier_alerts_lead", "lead_id"),
)


# Advisory rather than row locks: a lead a deal event names may have no row, and a row
# another transaction is inserting cannot be locked. Taken in key order, so handlers
# locking several leads never wait for each other in a circle.
LOCKING_LEADS = text("""
    SELECT pg_advisory_xact_lock(hashtext('notifier.leads'), key)
    FROM (SELECT DISTINCT hashtext(CAST(lead_id AS text)) AS key
          FROM unnest(CAST(:lead_ids AS uuid[])) AS lead_id ORDER BY key) AS keys
""")


async def lock_leads(connection: AsyncConnection, lead_ids: Collection[uuid.UUID]) -> None:
    """Hold the leads until the transaction ends: every handler moving a lead's clocks takes
    its lock first, so each sees the clocks, stops and state the others committed."""
    if lead_ids:
        await connection.execute(LOCKING_LEADS, {"lead_ids": list(lead_ids)})


def _recording_promotion() -> Any:
    """Return the statement ``record_promotions`` runs for each lead, built once."""
    columns = ("card", "stage", "owner_id", "team", "last_promoted_at")
    insert = pg_insert(leads).values(lead_id=bindparam("lead_id"),
                                     **{name: bindparam(name) for name in columns})
    # An older event arriving late does not overwrite what a newer one recorded.
    return insert.on_conflict_do_update(
        index_elements=["lead_id"],
        set_={**{name: insert.excluded[name] for name in columns}, "updated_at": func.now()},
        where=or_(leads.c.last_promoted_at.is_(None),
                  leads.c.last_promoted_at <= insert.excluded.last_promoted_at))


RECORDING_PROMOTION = _recording_promotion()


async def record_promotions(connection: AsyncConnection, promotions: Sequence[Mapping[str, Any]]
                            ) -> None:
    """Keep each lead's card, stage, owner and team as of its latest lifecycle event.

    Each mapping holds lead_id, card, stage, owner_id, team and last_promoted_at.
    """
    if promotions:
        await connection.execute(RECORDING_PROMOTION, list(promotions))


def _recording_score() -> Any:
    """Return the statement ``record_scores`` runs for each lead, built once."""
    insert = pg_insert(leads).values(lead_id=bindparam("lead_id"), card=bindparam("card"))
    return insert.on_conflict_do_update(
        index_elements=["lead_id"], set_={"card": insert.excluded.card, "updated_at": func.now()})


RECORDING_SCORE = _recording_score()
LEADS_BY_ID = select(leads).where(leads.c.lead_id.in_(bindparam("lead_ids", expanding=True)))


async def record_scores(connection: AsyncConnection, cards: Mapping[uuid.UUID, dict[str, Any]]
                        ) -> None:
    """Keep each lead's latest card."""
    if cards:
        await connection.execute(RECORDING_SCORE, [{"lead_id": lead_id, "card": card}
                                                   for lead_id, card in cards.items()])


async def get_lead(connection: AsyncConnection, lead_id: uuid.UUID) -> Row[Any] | None:
    """Return what the notifier knows of a lead, with its owner's name (``owner_name``,
    None if unknown), or None."""
    return (await connection.execute(
        select(leads, rep_names.c.name.label("owner_name"))
        .outerjoin(rep_names, rep_names.c.rep_id == leads.c.owner_id)
        .where(leads.c.lead_id == lead_id))).first()


# A name is kept with the time of the event that gave it, and only a later one replaces
# it: an event delivered late (another partition's lane behind, a replay) must not bring
# an old name back, whichever transaction inserted the rep first.
RECORDING_REP_NAMES = text(f"""
    INSERT INTO {rep_names.fullname} AS rep (rep_id, name, named_at)
    SELECT * FROM unnest(CAST(:rep_ids AS text[]), CAST(:names AS text[]),
                         CAST(:named_at AS timestamptz[]))
    ON CONFLICT (rep_id) DO UPDATE
    SET name = excluded.name, named_at = excluded.named_at, updated_at = now()
    WHERE rep.named_at < excluded.named_at
""")


async def record_rep_names(connection: AsyncConnection,
                           names: Mapping[str, tuple[str, datetime]]) -> None:
    """Keep each rep's name, by rep id, as named at the time given with it, unless a name
    given later is kept already."""
    if names:
        rep_ids = sorted(names)  # locked in one order by every transaction: no deadlock
        await connection.execute(RECORDING_REP_NAMES, {
            "rep_ids": rep_ids, "names": [names[rep_id][0] for rep_id in rep_ids],
            "named_at": [names[rep_id][1] for rep_id in rep_ids]})


async def rep_name(connection: AsyncConnection, rep_id: str) -> str | None:
    """Return a rep's name as last heard, None if never heard."""
    name: str | None = await connection.scalar(
        select(rep_names.c.name).where(rep_names.c.rep_id == rep_id))
    return name


async def get_leads(connection: AsyncConnection, lead_ids: Collection[uuid.UUID]
                    ) -> dict[uuid.UUID, Row[Any]]:
    """Return what the notifier knows of the leads, by id; leads it never saw are left out."""
    rows = await connection.execute(LEADS_BY_ID, {"lead_ids": list(lead_ids)})
    return {row.lead_id: row for row in rows}


async def record_deal(connection: AsyncConnection, deal_id: uuid.UUID, *, lead_id: uuid.UUID,
                      owner_id: str | None, phase: str) -> bool:
    """Keep a deal's lead, owner and phase; return False, changing nothing, if the deal was
    recycled: only its recycling may be recorded again.

    Decided on the row as last committed (the upsert waits for a transaction recording the
    deal at the same time), so a change handled beside the recycling cannot undo it.
    """
    values = {"lead_id": lead_id, "owner_id": owner_id, "phase": phase,
              "updated_at": func.now()}
    recorded = await connection.execute(
        pg_insert(deals).values(deal_id=deal_id, **values)
        .on_conflict_do_update(index_elements=["deal_id"], set_=values,
                               where=None if phase == RECYCLED else deals.c.phase != RECYCLED)
        .returning(deals.c.deal_id))
    return recorded.first() is not None


async def get_deal(connection: AsyncConnection, deal_id: uuid.UUID) -> Row[Any] | None:
    """Return what the notifier knows of a deal, or None."""
    return (await connection.execute(select(deals).where(deals.c.deal_id == deal_id))).first()


_CLOCK_COLUMNS = ("lead_id", "kind", "rule", "started_at", "remind_at", "due_at", "escalate_at",
                  "next_fire_at", "set_at")
# The open-clock index is the arbiter, so that a clock committed by another replica since
# this statement's snapshot is still found, locked and compared (a plain read would miss
# it). A clock started later that falls due earlier supersedes the open one, which is
# ended and opened anew in the same statement; otherwise the open one stays as it is, and
# so does one whose breach was alerted already (a start handled late): that breach stands
# (domain.outcome_taken_over), and a clock opened past due would alert the wait again.
# A start seen before (same lead, kind and moment) changes nothing, even if since stopped.
START_CLOCK = text(f"""
    WITH proposed AS (
        SELECT CAST(:lead_id AS uuid) AS lead_id, CAST(:kind AS text) AS kind,
               CAST(:rule AS text) AS rule, CAST(:started_at AS timestamptz) AS started_at,
               CAST(:remind_at AS timestamptz) AS remind_at,
               CAST(:due_at AS timestamptz) AS due_at,
               CAST(:escalate_at AS timestamptz) AS escalate_at,
               CAST(:next_fire_at AS timestamptz) AS next_fire_at,
               CAST(:set_at AS timestamptz) AS set_at
    ), opened AS (
        INSERT INTO {sla_clocks.fullname} AS clock ({", ".join(_CLOCK_COLUMNS)})
        SELECT {", ".join(_CLOCK_COLUMNS)} FROM proposed
        WHERE NOT EXISTS (SELECT FROM {sla_clocks.fullname} AS seen
                          WHERE seen.lead_id = proposed.lead_id AND seen.kind = proposed.kind
                            AND seen.started_at = proposed.started_at)
        ON CONFLICT (lead_id, kind) WHERE status = '{OPEN}' DO UPDATE SET
            status = '{Outcome.SUPERSEDED.value}', stopped_at = excluded.started_at,
            stop_reason = CAST(:superseded_because AS text), next_fire_at = NULL
        WHERE clock.due_at > excluded.due_at AND clock.started_at < excluded.started_at
          AND clock.rungs_fired < {Rung.BREACH.value}
        RETURNING clock.status
    )
    INSERT INTO {sla_clocks.fullname} ({", ".join(_CLOCK_COLUMNS)})
    SELECT {", ".join(_CLOCK_COLUMNS)} FROM proposed
    WHERE EXISTS (SELECT FROM opened WHERE opened.status = '{Outcome.SUPERSEDED.value}')
""")


async def start_clocks(connection: AsyncConnection,
                       plans: Sequence[tuple[uuid.UUID, SlaRule, ClockPlan]]) -> None:
    """Open each lead's clocks, in order; where one of the kind is open, the one falling due
    earlier wins, unless it started earlier (older news than the open clock's start) or the
    open one's breach was alerted already.

    A clock that loses is not opened; an open one that loses is ended as superseded. A start
    seen before (lead, kind and moment) changes nothing.
    """
    if not plans:
        return
    # One row's statement run for many rows, one after another: a row must see the clocks
    # the rows before it opened, and a multi-row statement would be compiled on every call.
    await connection.execute(START_CLOCK, [
        {"lead_id": lead_id, "kind": rule.kind.value, "rule": rule.name,
         "started_at": plan.started_at, "remind_at": plan.remind_at, "due_at": plan.due_at,
         "escalate_at": plan.escalate_at, "next_fire_at": plan.next_fire_at(0),
         "set_at": plan.set_at, "superseded_because": f"superseded by {rule.name} started "
                               f"{plan.started_at.isoformat()}, due earlier "
                               f"{plan.due_at.isoformat()}"}
        for lead_id, rule, plan in plans
    ])


# Each start not seen before (lead, kind and moment) that a stop kept after it ends (a
# cancel kept after it was set): the first such stop, and the clock of its kind that stop
# already ended, if that one started with no stop between (handled in time, the two would
# have met as open clocks).
FINDING_LATE_STARTS = text(f"""
    SELECT start.n, stop.stopped_at, stop.reason, stop.supersedes, rival.id AS rival_id,
           rival.rule AS rival_rule, rival.started_at AS rival_started_at,
           rival.due_at AS rival_due_at, rival.status AS rival_status
    FROM unnest(CAST(:lead_ids AS uuid[]), CAST(:kinds AS text[]),
                CAST(:started AS timestamptz[]), CAST(:set AS timestamptz[])) WITH ORDINALITY
        AS start(lead_id, kind, started_at, set_at, n)
    CROSS JOIN LATERAL (
        SELECT seen.stopped_at, seen.reason, seen.supersedes
        FROM {clock_stops.fullname} AS seen
        WHERE seen.lead_id = start.lead_id AND seen.kind = start.kind
          AND seen.stopped_at > CASE WHEN seen.cancels THEN start.set_at
                                     ELSE start.started_at END
        ORDER BY seen.stopped_at LIMIT 1) AS stop
    LEFT JOIN LATERAL (
        SELECT clock.id, clock.rule, clock.started_at, clock.due_at, clock.status
        FROM {sla_clocks.fullname} AS clock
        WHERE clock.lead_id = start.lead_id AND clock.kind = start.kind
          AND clock.stopped_at = stop.stopped_at
          AND clock.status IN ('{Outcome.MET.value}', '{Outcome.BREACHED.value}')
          AND NOT EXISTS (SELECT FROM {clock_stops.fullname} AS other
                          WHERE other.lead_id = clock.lead_id AND other.kind = clock.kind
                            AND other.stopped_at > clock.started_at
                            AND other.stopped_at < stop.stopped_at)
        ORDER BY clock.id LIMIT 1) AS rival ON TRUE
    WHERE NOT EXISTS (SELECT FROM {sla_clocks.fullname} AS seen
                      WHERE seen.lead_id = start.lead_id AND seen.kind = start.kind
                        AND seen.started_at = start.started_at)
    ORDER BY start.n
""")


@dataclass(frozen=True)
class LateStart:
    """A start handled after a stop kept that ends it: that stop, and the clock it ended."""

    index: int  # of the start in the plans looked up
    stopped_at: datetime
    reason: str
    rival: Row[Any] | None  # that clock's rival_id, rival_rule, rival_started_at, ...
    supersedes: bool = False  # the stop is a supersede (``ClockChanges``)


async def find_late_starts(connection: AsyncConnection,
                           plans: Sequence[tuple[uuid.UUID, SlaRule, ClockPlan]]
                           ) -> list[LateStart]:
    """Return the starts among ``plans``, not seen before, that a stop kept already ends.

    Call with the leads locked; each lead's kind may appear once.
    """
    if not plans:
        return []
    rows = await connection.execute(FINDING_LATE_STARTS, {
        "lead_ids": [lead_id for lead_id, _, _ in plans],
        "kinds": [rule.kind.value for _, rule, _ in plans],
        "started": [plan.started_at for _, _, plan in plans],
        "set": [plan.set_at or plan.started_at for _, _, plan in plans]})
    return [LateStart(row.n - 1, row.stopped_at, row.reason,
                      row if row.rival_id is not None else None, row.supersedes)
            for row in rows]


@dataclass(frozen=True)
class StoppedClock:
    """A clock to record already ended: how, when and why."""

    lead_id: uuid.UUID
    rule: SlaRule
    plan: ClockPlan
    status: Outcome
    stopped_at: datetime
    reason: str


RECORDING_STOPPED = text(f"""
    INSERT INTO {sla_clocks.fullname} AS clock (lead_id, kind, rule, started_at, remind_at,
                                                due_at, escalate_at, status, stopped_at,
                                                stop_reason, set_at)
    SELECT * FROM unnest(CAST(:lead_ids AS uuid[]), CAST(:kinds AS text[]),
                         CAST(:rules AS text[]), CAST(:started AS timestamptz[]),
                         CAST(:reminds AS timestamptz[]), CAST(:dues AS timestamptz[]),
                         CAST(:escalates AS timestamptz[]), CAST(:statuses AS text[]),
                         CAST(:stopped AS timestamptz[]), CAST(:reasons AS text[]),
                         CAST(:set AS timestamptz[]))
    ON CONFLICT DO NOTHING
    RETURNING clock.*
""")
SUPERSEDING = text(f"""
    UPDATE {sla_clocks.fullname} AS clock SET
        status = '{Outcome.SUPERSEDED.value}', stopped_at = replaced.at,
        stop_reason = replaced.reason, next_fire_at = NULL
    FROM unnest(CAST(:ids AS bigint[]), CAST(:moments AS timestamptz[]),
                CAST(:reasons AS text[])) AS replaced(id, at, reason)
    WHERE clock.id = replaced.id
""")


async def record_stopped_clocks(connection: AsyncConnection, clocks: Sequence[StoppedClock],
                                superseded: Sequence[tuple[int, datetime, str]]
                                ) -> list[Row[Any]]:
    """Record ``clocks`` as already ended, and end the ``superseded`` ones (id, when, why)
    as superseded; return the clocks recorded, oldest first. Call with the leads locked."""
    if superseded:
        await connection.execute(SUPERSEDING, {
            "ids": [clock_id for clock_id, _, _ in superseded],
            "moments": [at for _, at, _ in superseded],
            "reasons": [reason[:500] for _, _, reason in superseded]})
    if not clocks:
        return []
    rows = await connection.execute(RECORDING_STOPPED, {
        "lead_ids": [clock.lead_id for clock in clocks],
        "kinds": [clock.rule.kind.value for clock in clocks],
        "rules": [clock.rule.name for clock in clocks],
        "started": [clock.plan.started_at for clock in clocks],
        "reminds": [clock.plan.remind_at for clock in clocks],
        "dues": [clock.plan.due_at for clock in clocks],
        "escalates": [clock.plan.escalate_at for clock in clocks],
        "statuses": [clock.status.value for clock in clocks],
        "stopped": [clock.stopped_at for clock in clocks],
        "reasons": [clock.reason[:500] for clock in clocks],
        "set": [clock.plan.set_at for clock in clocks]})
    return sorted(rows, key=lambda row: row.id)


FIRST_STOPS = text(f"""
    SELECT stop.stopped_at, stop.from_stage
    FROM unnest(CAST(:lead_ids AS uuid[]), CAST(:moments AS timestamptz[])) WITH ORDINALITY
        AS asked(lead_id, at, n)
    LEFT JOIN LATERAL (
        SELECT seen.stopped_at, seen.from_stage FROM {clock_stops.fullname} AS seen
        WHERE seen.lead_id = asked.lead_id AND seen.kind = CAST(:kind AS text)
          AND seen.stopped_at >= asked.at
        ORDER BY seen.stopped_at LIMIT 1) AS stop ON TRUE
    ORDER BY asked.n
""")


async def first_stops(connection: AsyncConnection, kind: ClockKind,
                      moments: Sequence[tuple[uuid.UUID, datetime]]) -> list[Row[Any] | None]:
    """Return, for each (lead, moment), the first stop of ``kind`` kept at or after the
    moment (its stopped_at and from_stage), or None."""
    if not moments:
        return []
    rows = await connection.execute(FIRST_STOPS, {
        "kind": kind.value, "lead_ids": [lead_id for lead_id, _ in moments],
        "moments": [at for _, at in moments]})
    return [row if row.stopped_at is not None else None for row in rows]


# The status is domain.outcome's, and for a supersede domain.outcome_taken_over's, decided
# on the row the UPDATE locks: a sweep firing the breach meanwhile is waited for and seen.
STOPPING_CLOCKS = text(f"""
    WITH stop AS (
        SELECT * FROM unnest(CAST(:lead_ids AS uuid[]), CAST(:kinds AS text[]),
                             CAST(:moments AS timestamptz[]), CAST(:reasons AS text[]),
                             CAST(:from_stages AS text[]), CAST(:cancels AS boolean[]),
                             CAST(:supersedes AS boolean[]))
            AS stop(lead_id, kind, at, reason, from_stage, cancels, supersedes)
    ), kept AS (
        INSERT INTO {clock_stops.fullname} (lead_id, kind, stopped_at, reason, from_stage,
                                            cancels, supersedes)
        SELECT lead_id, kind, at, reason, from_stage, cancels, supersedes FROM stop
        ON CONFLICT DO NOTHING
    )
    UPDATE {sla_clocks.fullname} AS clock SET
        status = CASE WHEN clock.due_at < stop.at THEN '{Outcome.BREACHED.value}'
                      WHEN stop.supersedes AND clock.rungs_fired >= {int(Rung.BREACH)}
                          THEN '{Outcome.BREACHED.value}'
                      WHEN stop.supersedes THEN '{Outcome.SUPERSEDED.value}'
                      ELSE '{Outcome.MET.value}' END,
        stopped_at = stop.at, stop_reason = stop.reason, next_fire_at = NULL
    FROM stop
    WHERE clock.lead_id = stop.lead_id AND clock.kind = stop.kind
      AND clock.status = '{OPEN}'
      AND CASE WHEN stop.cancels THEN coalesce(clock.set_at, clock.started_at)
               ELSE clock.started_at END < stop.at
    RETURNING clock.*, stop.supersedes AS superseded
""")


@dataclass(frozen=True)
class ClockStop:
    """Which of a lead's open clocks to end, when and why: ``kinds`` those started before
    ``at``, ``cancels`` those set before it, ``supersedes`` those started before it, ended
    as superseded if in time and their breach not reported (``outcome_taken_over``)."""

    lead_id: uuid.UUID
    kinds: Collection[ClockKind]
    at: datetime
    reason: str
    from_stage: str | None = None  # a lifecycle event's: the stage it moved the lead from
    cancels: Collection[ClockKind] = ()
    supersedes: Collection[ClockKind] = ()


async def forget_stops_before(connection: AsyncConnection, cutoff: datetime) -> int:
    """Delete the stops made before ``cutoff``; return how many were deleted."""
    result = await connection.execute(clock_stops.delete().where(
        clock_stops.c.stopped_at < cutoff))
    return int(result.rowcount)


async def stop_clocks(connection: AsyncConnection, stops: Sequence[ClockStop]
                      ) -> list[Row[Any]]:
    """End each lead's open clocks of the kinds given, started before the stop, and keep the
    stop (with the stage a lifecycle event left); return the clocks as ended, oldest first,
    each with whether another clock took it over (``superseded``). Each lead may appear once.

    A clock the timer sweep holds is waited for, so the returned rows show every
    rung it fired.
    """
    # A kind both stopped and cancelled is cancelled: that ends every clock a stop would;
    # a kind both stopped and superseded is stopped.
    pairs = [(stop, kind, kind in stop.cancels) for stop in stops
             for kind in sorted({*stop.kinds, *stop.cancels, *stop.supersedes})]

    def superseding(stop: ClockStop, kind: ClockKind, cancels: bool) -> bool:
        return not cancels and kind in stop.supersedes and kind not in stop.kinds

    if not pairs:
        return []
    rows = await connection.execute(STOPPING_CLOCKS, {
        "lead_ids": [stop.lead_id for stop, _, _ in pairs],
        "kinds": [kind.value for _, kind, _ in pairs],
        "moments": [stop.at for stop, _, _ in pairs],
        "reasons": [(f"superseded: {stop.reason}" if superseding(stop, kind, cancels)
                     else stop.reason)[:500] for stop, kind, cancels in pairs],
        "from_stages": [stop.from_stage for stop, _, _ in pairs],
        "cancels": [cancels for _, _, cancels in pairs],
        "supersedes": [superseding(*pair) for pair in pairs]})
    return sorted(rows, key=lambda row: row.id)


CLOCKS_OF_LEADS = (select(sla_clocks.c.id, sla_clocks.c.lead_id, sla_clocks.c.started_at,
                          sla_clocks.c.stopped_at, sla_clocks.c.due_at, sla_clocks.c.status,
                          sla_clocks.c.rungs_fired,
                          func.coalesce(sla_clocks.c.set_at, sla_clocks.c.started_at)
                          .label("set_at"),
                          (sla_clocks.c.replaced
                           | (sla_clocks.c.status == Outcome.SUPERSEDED.value)).label("replaced"),
                          # Ended by a stop that was no cancel: a meeting's record, not the
                          # lead leaving sales (a stop kept as long as stops are).
                          exists().where(clock_stops.c.lead_id == sla_clocks.c.lead_id,
                                         clock_stops.c.kind == sla_clocks.c.kind,
                                         clock_stops.c.stopped_at == sla_clocks.c.stopped_at,
                                         ~clock_stops.c.cancels).label("recorded"))
                   .where(sla_clocks.c.kind == bindparam("kind"),
                          sla_clocks.c.lead_id.in_(bindparam("lead_ids", expanding=True)))
                   .order_by(sla_clocks.c.id)
                   .with_for_update(of=sla_clocks))


async def clocks_of_leads(connection: AsyncConnection, kind: ClockKind,
                          lead_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, list[Row[Any]]]:
    """Lock and return the clocks of ``kind`` the leads had, in any state, oldest first: their
    id, set_at (started_at when set as they started), started_at, stopped_at, due_at, status,
    rungs_fired, whether replaced (or superseded), and whether a stop other than a cancel
    ended them.

    The lock makes a sweep firing one of them finish first, and then skip it until the
    transaction ends: what the caller decides from rungs_fired still holds when it writes.
    """
    if not lead_ids:
        return {}
    rows: list[Row[Any]] = list(await connection.execute(
        CLOCKS_OF_LEADS, {"kind": kind.value, "lead_ids": list(lead_ids)}))
    found: dict[uuid.UUID, list[Row[Any]]] = {}
    for row in rows:
        found.setdefault(row.lead_id, []).append(row)
    return found


@dataclass(frozen=True)
class ClockEnd:
    """A clock to end (or end again) by its id: how, when, why, and whether it is replaced."""

    clock_id: int
    status: Outcome
    at: datetime
    reason: str
    replaced: bool


ENDING_CLOCKS = text(f"""
    UPDATE {sla_clocks.fullname} AS clock SET
        status = ended.status, stopped_at = ended.at, stop_reason = ended.reason,
        replaced = ended.replaced, next_fire_at = NULL
    FROM unnest(CAST(:ids AS bigint[]), CAST(:statuses AS text[]),
                CAST(:moments AS timestamptz[]), CAST(:reasons AS text[]),
                CAST(:replaced AS boolean[])) AS ended(id, status, at, reason, replaced)
    WHERE clock.id = ended.id
    RETURNING clock.*
""")


async def end_clocks(connection: AsyncConnection, ends: Sequence[ClockEnd]) -> list[Row[Any]]:
    """End each clock as given, open or ended before; return them as ended, oldest first.
    Call with their leads locked."""
    if not ends:
        return []
    rows = await connection.execute(ENDING_CLOCKS, {
        "ids": [end.clock_id for end in ends],
        "statuses": [end.status.value for end in ends],
        "moments": [end.at for end in ends],
        "reasons": [end.reason[:500] for end in ends],
        "replaced": [end.replaced for end in ends]})
    return sorted(rows, key=lambda row: row.id)


async def claim_due_clocks(connection: AsyncConnection, now: datetime,
                           limit: int) -> list[Row[Any]]:
    """Lock and return open clocks with a rung due, skipping those another replica holds."""
    rows = await connection.execute(
        select(sla_clocks)
        .where(sla_clocks.c.status == OPEN, sla_clocks.c.next_fire_at <= now)
        .order_by(sla_clocks.c.next_fire_at).limit(limit)
        .with_for_update(skip_locked=True))
    return list(rows)


async def advance_clock(connection: AsyncConnection, clock_id: int, *, rungs_fired: int,
                        next_fire_at: datetime | None) -> None:
    """Record the rungs a clock has fired and when its next one is due."""
    await connection.execute(sla_clocks.update().where(sla_clocks.c.id == clock_id)
                             .values(rungs_fired=rungs_fired, next_fire_at=next_fire_at))


OVERDUE = "overdue"  # not a stored status: an open clock past its due time


async def list_clocks(connection: AsyncConnection, *, lead_id: uuid.UUID | None,
                      state: str | None, now: datetime, limit: int) -> list[Row[Any]]:
    """Return the newest clocks, optionally of one lead or in one state at ``now``: a stored
    status, with ``open`` split into open (not yet due) and ``overdue``."""
    query = select(sla_clocks).order_by(sla_clocks.c.id.desc()).limit(limit)
    if lead_id is not None:
        query = query.where(sla_clocks.c.lead_id == lead_id)
    if state == OVERDUE:
        query = query.where(sla_clocks.c.status == OPEN, sla_clocks.c.due_at < now)
    elif state == OPEN:
        query = query.where(sla_clocks.c.status == OPEN, sla_clocks.c.due_at >= now)
    elif state is not None:
        query = query.where(sla_clocks.c.status == state)
    return list(await connection.execute(query))


# NOTIFY is delivered at commit, once per transaction: it wakes the delivery worker.
ADD_ALERTS = text(f"""
    WITH created AS (
        INSERT INTO {alerts.fullname} (dedupe_key, kind, channel, lead_id, clock_id, message)
        SELECT CAST(:key AS text) || ':' || channel, :kind, channel, :lead_id, :clock_id, :message
        FROM unnest(CAST(:channels AS text[])) AS channel
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING channel
    ), known AS (
        INSERT INTO {destinations.fullname} (key) SELECT DISTINCT channel FROM created
        ON CONFLICT (key) DO NOTHING
    )
    SELECT count(*), pg_notify('{ALERTS_CHANNEL}', '') FROM created
""").bindparams(bindparam("lead_id", type_=UUID(as_uuid=True)),
                bindparam("clock_id", type_=BigInteger), bindparam("message", type_=JSONB))


async def alerted_channels(connection: AsyncConnection, *, lead_id: uuid.UUID, clock_id: int,
                           kinds: Collection[str]) -> list[str]:
    """Return the destinations alerts of ``kinds`` about a clock went to, first recorded
    first, each once."""
    rows = await connection.execute(
        select(alerts.c.channel)
        .where(alerts.c.lead_id == lead_id, alerts.c.clock_id == clock_id,
               alerts.c.kind.in_(list(kinds)))
        .order_by(alerts.c.id))
    return list(dict.fromkeys(row.channel for row in rows))


async def add_alerts(connection: AsyncConnection, *, key: str, kind: str,
                     channels: Sequence[str], lead_id: uuid.UUID | None,
                     message: dict[str, Any], clock_id: int | None = None) -> int:
    """Record an alert for each destination in one statement; return how many are new.

    ``key:destination`` is each record's dedupe key: an alert recorded twice is not
    recorded again. The delivery worker is woken at commit.
    """
    if not channels:
        return 0
    count = await connection.scalar(ADD_ALERTS, {
        "key": key, "kind": kind, "channels": list(channels), "lead_id": lead_id,
        "clock_id": clock_id, "message": message})
    return int(count or 0)


def _sendable() -> Any:
    """Return the condition of an alert that may be sent now."""
    return (alerts.c.status == "pending") & (alerts.c.next_attempt_at <= func.now())


async def claim_destinations(connection: AsyncConnection, limit: int) -> list[str]:
    """Lock destinations free to send with alerts waiting, skipping another replica's."""
    waiting = select(alerts.c.id).where(alerts.c.channel == destinations.c.key,
                                        _sendable()).exists()
    rows = await connection.execute(
        select(destinations.c.key)
        .where(destinations.c.next_send_at <= func.now(), waiting)
        .order_by(destinations.c.next_send_at).limit(limit)
        .with_for_update(skip_locked=True))
    return [row.key for row in rows]


async def sendable_alerts(connection: AsyncConnection, keys: Sequence[str],
                          per_destination: int) -> list[Row[Any]]:
    """Return the oldest sendable alerts of each destination in ``keys`` (whose lock we hold)."""
    rank = func.row_number().over(partition_by=alerts.c.channel, order_by=alerts.c.id)
    ranked = (select(alerts, rank.label("rank"))
              .where(alerts.c.channel.in_(keys), _sendable()).subquery())
    rows = await connection.execute(
        select(ranked).where(ranked.c.rank <= per_destination).order_by(ranked.c.id))
    return list(rows)


async def mark_delivered(connection: AsyncConnection,
                         messages: Sequence[Sequence[int]]) -> None:
    """Record deliveries: each item lists the alerts that went out together in one message."""
    if not messages:
        return
    await connection.execute(
        alerts.update().where(alerts.c.id == bindparam("alert_id")).values(
            status="delivered", attempts=alerts.c.attempts + 1,
            delivered_at=func.clock_timestamp(), last_error=None,
            digest_size=bindparam("size")),
        [{"alert_id": alert_id, "size": len(ids)} for ids in messages for alert_id in ids])


async def mark_failed_attempt(connection: AsyncConnection, alert_id: int, *, error: str,
                              retry_in: timedelta | None, counted: bool = True) -> None:
    """Record a failed attempt: retry after ``retry_in``, or give up when it is None.

    An attempt not ``counted`` (the server asked to wait) uses up none of the alert's attempts.
    """
    values: dict[str, Any] = {"attempts": alerts.c.attempts + int(counted),
                              "last_error": error[:2000]}
    if retry_in is None:
        values["status"] = "failed"
    else:
        values["next_attempt_at"] = func.now() + retry_in
    await connection.execute(alerts.update().where(alerts.c.id == alert_id).values(**values))


async def unfold(connection: AsyncConnection, alert_ids: Sequence[int], *, error: str) -> None:
    """Record that a digest of these alerts was refused: each is retried now, on its own."""
    await connection.execute(
        alerts.update().where(alerts.c.id.in_(alert_ids)).values(
            send_alone=True, attempts=alerts.c.attempts + 1, last_error=error[:2000],
            next_attempt_at=func.now()))


async def hold_destinations(connection: AsyncConnection,
                            pauses: Mapping[str, timedelta]) -> None:
    """Send nothing more to each destination for its pause: its pace, or the server's wish."""
    if not pauses:
        return
    # clock_timestamp, not now(): the pause counts from after the send, not the transaction start.
    await connection.execute(
        destinations.update().where(destinations.c.key == bindparam("destination"))
        .values(next_send_at=func.clock_timestamp() + bindparam("pause")),
        [{"destination": key, "pause": pause} for key, pause in pauses.items()])


async def seconds_until_sendable(connection: AsyncConnection) -> float | None:
    """Return how long until the next pending alert may be sent (<= 0: now), or None."""
    earliest = func.min(func.greatest(destinations.c.next_send_at, alerts.c.next_attempt_at))
    seconds = await connection.scalar(
        select(func.extract("epoch", earliest - func.now()))
        .select_from(alerts.join(destinations, destinations.c.key == alerts.c.channel))
        .where(alerts.c.status == "pending"))
    return None if seconds is None else float(seconds)


async def list_alerts(connection: AsyncConnection, *, status: str | None, kind: str | None,
                      lead_id: uuid.UUID | None, limit: int) -> list[Row[Any]]:
    """Return the newest alerts, optionally filtered by status, kind and lead."""
    query = select(alerts).order_by(alerts.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(alerts.c.status == status)
    if kind is not None:
        query = query.where(alerts.c.kind == kind)
    if lead_id is not None:
        query = query.where(alerts.c.lead_id == lead_id)
    return list(await connection.execute(query))
