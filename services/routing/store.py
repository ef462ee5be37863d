"""Routing's tables: lifecycle state, transitions, teams, reps, the assignment log, contacts."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    Table,
    Text,
    Time,
    UniqueConstraint,
    bindparam,
    case,
    exists,
    func,
    null,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import URL, Row
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_runtime.business_time import BusinessCalendar
from baton_runtime.db import json_text, service_metadata
from schemas.events import LifecycleStage
from services.routing import domain

metadata, plumbing = service_metadata("routing")

leads = Table(
    "leads",
    metadata,
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("stage", Text, nullable=False),
    Column("owner_id", Text),
    Column("team", Text),
    Column("score", Integer, nullable=False),
    Column("tier", Text, nullable=False),
    Column("profile", JSONB, nullable=False),
    Column("account", JSONB, nullable=False),
    Column("top_reasons", JSONB, nullable=False),
    Column("last_touchpoint", Text),
    Column("source", Text, nullable=False),
    Column("partner", Text),
    Column("demo_or_quote_requested", Boolean, nullable=False, server_default="false"),
    Column("bant", JSONB),
    # The deal that made the lead an opportunity: only its recycling nurtures the lead.
    Column("deal_id", UUID(as_uuid=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
transitions = Table(
    "transitions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("from_stage", Text, nullable=False),
    Column("to_stage", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("owner_id", Text),
    Column("team", Text),
    Column("actor", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)
teams = Table(
    "teams",
    metadata,
    Column("team", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("manager_channel", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
reps = Table(
    "reps",
    metadata,
    Column("rep_id", Text, primary_key=True),
    Column("team", Text, nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("email", Text),
    Column("slack_user_id", Text, unique=True),
    Column("weight", Float, nullable=False),
    Column("daily_capacity", Integer, nullable=False),
    Column("timezone", Text, nullable=False),
    Column("work_starts", Time, nullable=False),
    Column("work_ends", Time, nullable=False),
    Column("workdays", ARRAY(Integer), nullable=False),
    Column("holidays", Text),
    Column("out_of_office", JSONB, nullable=False),
    Column("territory", JSONB),
    Column("active", Boolean, nullable=False),
    Column("position", Float, nullable=False),
    # The rep's place in their territory's rotation: null until their first turn in it.
    Column("territory_position", Float),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
assignments = Table(
    "assignments",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("team", Text, nullable=False),
    Column("stage", Text, nullable=False),
    Column("rep_id", Text),
    Column("rule", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("considered", JSONB, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Index("ix_routing_assignments_rep_decided", "rep_id", "decided_at"),
)
account_owners = Table(
    "account_owners",
    metadata,
    Column("account_key", Text, primary_key=True),
    Column("team", Text, primary_key=True),
    Column("rep_id", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
contacts = Table(
    "contacts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("lead_id", UUID(as_uuid=True), nullable=False),
    Column("rep_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("note", Text),
    Column("logged_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("lead_id", "rep_id", "kind", "occurred_at",
                     name="uq_routing_contacts_once"),
)
slack_requests = Table(
    "slack_requests",
    metadata,
    Column("signature", Text, primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False, index=True),
)


# --- leads --------------------------------------------------------------------------------


UPSERTING_LEADS = text(f"""
    INSERT INTO {leads.fullname} AS lead
        (lead_id, stage, score, tier, profile, account, top_reasons, last_touchpoint, source,
         partner, demo_or_quote_requested, created_at)
    SELECT lead_id, 'lead', score, tier, CAST(profile AS jsonb), CAST(account AS jsonb),
           CAST(top_reasons AS jsonb), last_touchpoint, source, partner,
           demo_or_quote_requested, :now
    FROM unnest(CAST(:lead_ids AS uuid[]), CAST(:scores AS integer[]), CAST(:tiers AS text[]),
                CAST(:profiles AS text[]), CAST(:accounts AS text[]),
                CAST(:top_reasons AS text[]), CAST(:last_touchpoints AS text[]),
                CAST(:sources AS text[]), CAST(:partners AS text[]),
                CAST(:demo_or_quote_requested AS boolean[]))
        AS scored(lead_id, score, tier, profile, account, top_reasons, last_touchpoint, source,
                  partner, demo_or_quote_requested)
    ORDER BY lead_id
    ON CONFLICT (lead_id) DO UPDATE SET
        score = excluded.score, tier = excluded.tier, profile = excluded.profile,
        account = excluded.account, top_reasons = excluded.top_reasons,
        last_touchpoint = excluded.last_touchpoint, source = excluded.source,
        partner = excluded.partner, updated_at = now(),
        demo_or_quote_requested = lead.demo_or_quote_requested
                                  OR excluded.demo_or_quote_requested
    RETURNING lead.*
""")


@dataclass(frozen=True)
class ScoredLead:
    """What routing keeps of a lead.scored event; the JSON fields are JSON text."""

    lead_id: uuid.UUID
    score: int
    tier: str
    profile: str
    account: str
    top_reasons: str
    last_touchpoint: str | None
    source: str
    partner: str | None
    demo_or_quote_requested: bool


async def upsert_leads(connection: AsyncConnection, scored: Sequence[ScoredLead], *,
                       now: datetime) -> dict[uuid.UUID, Row[Any]]:
    """Store leads' latest scores and profiles in one statement; return them by id, locked
    until commit. Each lead may appear once; a new lead starts in ``lead``.

    A demo or quote request, once seen, stays on the lead: it qualifies it for SQL later.
    Rows are written in id order, so concurrent batches lock them in the same order.
    """
    rows = await connection.execute(UPSERTING_LEADS, {
        "now": now, "lead_ids": [lead.lead_id for lead in scored],
        "scores": [lead.score for lead in scored], "tiers": [lead.tier for lead in scored],
        "profiles": [lead.profile for lead in scored],
        "accounts": [lead.account for lead in scored],
        "top_reasons": [lead.top_reasons for lead in scored],
        "last_touchpoints": [lead.last_touchpoint for lead in scored],
        "sources": [lead.source for lead in scored],
        "partners": [lead.partner for lead in scored],
        "demo_or_quote_requested": [lead.demo_or_quote_requested for lead in scored]})
    return {row.lead_id: row for row in rows}


async def get_lead(connection: AsyncConnection, lead_id: uuid.UUID,
                   lock: bool = False) -> Row[Any] | None:
    """Return the lead's state, optionally locked for update."""
    query = select(leads).where(leads.c.lead_id == lead_id)
    if lock:
        query = query.with_for_update()
    return (await connection.execute(query)).first()


RECORDING_TRANSITION = text(f"""
    WITH moved AS (
        UPDATE {leads.fullname} SET stage = :to_stage, owner_id = :owner_id, team = :team,
                                    deal_id = coalesce(:deal_id, deal_id), updated_at = now()
        WHERE lead_id = :lead_id
    )
    INSERT INTO {transitions.fullname}
        (lead_id, from_stage, to_stage, reason, owner_id, team, actor, occurred_at)
    VALUES (:lead_id, :from_stage, :to_stage, :reason, :owner_id, :team, :actor, :occurred_at)
    RETURNING (SELECT name FROM {reps.fullname} WHERE rep_id = :owner_id)
""").bindparams(bindparam("lead_id", type_=UUID(as_uuid=True)),
                bindparam("deal_id", type_=UUID(as_uuid=True)))


async def record_transition(connection: AsyncConnection, lead_id: uuid.UUID, *,
                            from_stage: str, to_stage: str, reason: str, owner_id: str | None,
                            team: str | None, actor: str, occurred_at: datetime,
                            deal_id: uuid.UUID | None = None) -> str | None:
    """Move the lead to its new stage and owner (and deal, if ``deal_id``), log the
    transition, and return the owner's name, None without one (one statement)."""
    return cast(str | None, await connection.scalar(RECORDING_TRANSITION, {
        "lead_id": lead_id, "from_stage": from_stage, "to_stage": to_stage, "reason": reason,
        "owner_id": owner_id, "team": team, "actor": actor, "occurred_at": occurred_at,
        "deal_id": deal_id}))


async def set_owner(connection: AsyncConnection, lead_id: uuid.UUID, owner_id: str) -> None:
    """Give the lead an owner without moving it (taken from the team's queue)."""
    await connection.execute(leads.update().where(leads.c.lead_id == lead_id).values(
        owner_id=owner_id, updated_at=func.now()))


async def save_bant(connection: AsyncConnection, lead_id: uuid.UUID,
                    bant: Mapping[str, Any]) -> None:
    """Keep the BANT the rep confirmed when qualifying the lead."""
    await connection.execute(leads.update().where(leads.c.lead_id == lead_id).values(
        bant=dict(bant), updated_at=func.now()))


async def history(connection: AsyncConnection, lead_id: uuid.UUID) -> list[Row[Any]]:
    """Return the lead's transitions, oldest first."""
    rows = await connection.execute(
        select(transitions).where(transitions.c.lead_id == lead_id).order_by(transitions.c.id))
    return list(rows)


# Stages a lead waits in for a rep of its team. A queued SQL's deal opens while it waits,
# so an unowned opportunity still waits for field sales.
QUEUED_STAGES = (LifecycleStage.MQL, LifecycleStage.SQL, LifecycleStage.OPPORTUNITY)
# The moves that hand a lead to a team: it has waited since the latest of them.
HAND_OFFS = (LifecycleStage.MQL, LifecycleStage.SQL)


async def queue(connection: AsyncConnection, team: str) -> list[Row[Any]]:
    """Return the team's unowned leads with ``waiting_since`` (their hand-off to the team),
    oldest first."""
    waiting_since = func.max(transitions.c.occurred_at).label("waiting_since")
    rows = await connection.execute(
        select(leads, waiting_since)
        .join(transitions, transitions.c.lead_id == leads.c.lead_id)
        .where(leads.c.team == team, leads.c.owner_id.is_(None),
               leads.c.stage.in_([stage.value for stage in QUEUED_STAGES]),
               transitions.c.to_stage.in_([stage.value for stage in HAND_OFFS]))
        .group_by(leads.c.lead_id)
        .order_by(waiting_since, leads.c.lead_id))
    return list(rows)


async def lock_queued(connection: AsyncConnection, team: str, limit: int, *,
                      owned_accounts_only: bool = False) -> list[Row[Any]]:
    """Return up to ``limit`` of the team's unowned leads, longest waiting first, locked
    (only those of accounts with an owner in the team, if ``owned_accounts_only``); leads
    another transaction holds (being scored, or acted on) are skipped."""
    waiting_since = (select(func.max(transitions.c.occurred_at))
                     .where(transitions.c.lead_id == leads.c.lead_id,
                            transitions.c.to_stage.in_([stage.value for stage in HAND_OFFS]))
                     .scalar_subquery())
    query = (select(leads)
             .where(leads.c.team == team, leads.c.owner_id.is_(None),
                    leads.c.stage.in_([stage.value for stage in QUEUED_STAGES])))
    if owned_accounts_only:
        query = query.where(exists().where(
            account_owners.c.team == team,
            account_owners.c.account_key == leads.c.account["account_key"].astext))
    rows = await connection.execute(
        query.order_by(waiting_since, leads.c.lead_id).limit(limit)
        .with_for_update(of=leads, skip_locked=True))
    return list(rows)


# --- teams and reps -----------------------------------------------------------------------


async def list_teams(connection: AsyncConnection) -> list[Row[Any]]:
    """Return every team."""
    return list(await connection.execute(select(teams).order_by(teams.c.team)))


async def update_team(connection: AsyncConnection, team: str, **values: Any) -> Row[Any]:
    """Change a team's name and manager channel; return it."""
    row: Row[Any] | None = (await connection.execute(
        teams.update().where(teams.c.team == team)
        .values(**values, updated_at=func.now()).returning(teams))).first()
    assert row is not None, f"team {team} is created by the migration"
    return row


async def lock_teams(connection: AsyncConnection, names: Collection[str]) -> None:
    """Hold the teams until commit, so that their assignments are decided one at a time;
    taken in name order, as every transaction that holds two takes them."""
    await connection.execute(select(teams.c.team).where(teams.c.team.in_(sorted(names)))
                             .order_by(teams.c.team).with_for_update())


async def lock_leads(connection: AsyncConnection, lead_ids: Collection[uuid.UUID]
                     ) -> dict[uuid.UUID, str]:
    """Hold the leads stored under ``lead_ids`` until commit, taken in id order (as
    ``upsert_leads`` writes them); return their stages by id (none for a lead not stored)."""
    rows = await connection.execute(
        select(leads.c.lead_id, leads.c.stage).where(leads.c.lead_id.in_(lead_ids))
        .order_by(leads.c.lead_id).with_for_update())
    return {row.lead_id: row.stage for row in rows}


async def get_rep(connection: AsyncConnection, rep_id: str) -> Row[Any] | None:
    """Return one rep."""
    return (await connection.execute(select(reps).where(reps.c.rep_id == rep_id))).first()


async def rep_name(connection: AsyncConnection, rep_id: str) -> str | None:
    """Return a rep's name, None if no rep has ``rep_id``."""
    return cast(str | None, await connection.scalar(
        select(reps.c.name).where(reps.c.rep_id == rep_id)))


async def rep_by_slack_user(connection: AsyncConnection, slack_user_id: str
                            ) -> Row[Any] | None:
    """Return the rep linked to a Slack user id."""
    return (await connection.execute(
        select(reps).where(reps.c.slack_user_id == slack_user_id))).first()


async def list_reps(connection: AsyncConnection, team: str | None = None) -> list[Row[Any]]:
    """Return the reps, of one team or all, by id."""
    query = select(reps).order_by(reps.c.rep_id)
    if team is not None:
        query = query.where(reps.c.team == team)
    return list(await connection.execute(query))


async def team_positions(connection: AsyncConnection, team: str) -> list[float]:
    """Return the round-robin positions of the team's active reps, or of all its reps while
    none is active: those come back where they were, and a rep joining meanwhile must
    start level with them, not at 0, ahead of them all."""
    rows = (await connection.execute(
        select(reps.c.position, reps.c.active).where(reps.c.team == team))).all()
    active = [row.position for row in rows if row.active]
    return active or [row.position for row in rows]


async def put_rep(connection: AsyncConnection, rep_id: str, *, position: float,
                  **values: Any) -> Row[Any]:
    """Return the rep after creating or replacing it, at ``position`` in the round robin
    (``domain.round_robin_place``).

    One changing team or territory has no place in a territory rotation until their next
    territory lead (``domain.assign`` puts them level with its front runner).
    """
    insert = pg_insert(reps).values(rep_id=rep_id, position=position, **values)
    same_team = reps.c.team == insert.excluded.team
    row: Row[Any] | None = (await connection.execute(insert.on_conflict_do_update(
        index_elements=["rep_id"],
        # clock_timestamp: each write of a rep gets its own version, even within a transaction.
        set_={**values, "updated_at": func.clock_timestamp(),
              "position": insert.excluded.position,
              "territory_position": case(
                  (same_team & reps.c.territory.is_not_distinct_from(insert.excluded.territory),
                   reps.c.territory_position), else_=null())},
    ).returning(reps))).first()
    assert row is not None
    return row


def rep_from_row(row: Row[Any], closed_days: frozenset[tuple[int, int]] = frozenset()
                 ) -> domain.Rep:
    """Return the rep as assignment sees them; nobody works on the company's ``closed_days``
    (as (month, day))."""
    territory = row.territory
    return domain.Rep(
        rep_id=row.rep_id, team=domain.TeamKind(row.team), weight=row.weight,
        daily_capacity=row.daily_capacity,
        hours=BusinessCalendar(timezone=row.timezone, opens=row.work_starts,
                               closes=row.work_ends, holidays=row.holidays,
                               workdays=frozenset(row.workdays), closed_days=closed_days),
        out_of_office=tuple(domain.Period(datetime.fromisoformat(p["starts_at"]),
                                          datetime.fromisoformat(p["ends_at"]))
                            for p in row.out_of_office),
        territory=None if territory is None else domain.Territory(
            regions=frozenset(territory["regions"]),
            industries=frozenset(territory["industries"]),
            employee_bands=frozenset(territory["employee_bands"])),
        active=row.active, position=row.position, territory_position=row.territory_position,
    )


# One row even for a team without reps, to carry the account's owner.
TEAM_LINEUP = text(f"""
    SELECT rep.rep_id, rep.updated_at, rep.position, rep.territory_position,
           (SELECT owner.rep_id FROM {account_owners.fullname} AS owner
            WHERE owner.account_key = CAST(:account_key AS text) AND owner.team = :team)
               AS account_owner
    FROM (SELECT CAST(:team AS text) AS team) AS wanted
    LEFT JOIN {reps.fullname} AS rep ON rep.team = wanted.team
    ORDER BY rep.rep_id
""")
REPS_BY_ID = select(reps).where(reps.c.rep_id.in_(bindparam("rep_ids", expanding=True)))


@dataclass(frozen=True)
class Lineup:
    """A team as an assignment sees it: its reps by id, and the account's owner in it."""

    reps: list[domain.Rep]
    account_owner: str | None


class TeamRoster:
    """Reps as assignment sees them, each parsed once per version of their row.

    Assigning a lead looks at every rep of the team; reading and parsing every rep's
    hours, leave and territory each time cost more than the rest of the decision.
    A row's version is its ``updated_at``, which every write but a position bump sets.
    """

    def __init__(self) -> None:
        # Per database, then per rep: a database URL is costly to hash, once per rep it
        # took more CPU than choosing among a hundred reps did.
        self._parsed: dict[tuple[URL, frozenset[tuple[int, int]]],
                           dict[str, tuple[datetime, domain.Rep]]] = {}

    async def lineup(self, connection: AsyncConnection, team: str, account_key: str | None,
                     closed_days: frozenset[tuple[int, int]]) -> Lineup:
        """Return the team's lineup, with the reps' positions as they are now and the
        company's ``closed_days`` in their hours."""
        parsed = self._parsed.setdefault((connection.engine.url, closed_days), {})
        rows = list(await connection.execute(TEAM_LINEUP, {"team": team,
                                                           "account_key": account_key}))
        versions = [row for row in rows if row.rep_id is not None]
        stale = [v.rep_id for v in versions
                 if parsed.get(v.rep_id, (None,))[0] != v.updated_at]
        fresh = {}
        if stale:
            for row in await connection.execute(REPS_BY_ID, {"rep_ids": stale}):
                fresh[row.rep_id] = rep_from_row(row, closed_days)
                parsed[row.rep_id] = (row.updated_at, fresh[row.rep_id])
        current = []
        for version in versions:
            rep = fresh.get(version.rep_id) or parsed[version.rep_id][1]
            if (rep.position, rep.territory_position) != (
                    version.position, version.territory_position):
                # Moved by an assignment since we parsed it.
                rep = replace(rep, position=version.position,
                              territory_position=version.territory_position)
                parsed[rep.rep_id] = (version.updated_at, rep)
            current.append(rep)
        return Lineup(current, rows[0].account_owner if rows else None)


ROSTER = TeamRoster()


# --- assignment ---------------------------------------------------------------------------


# A lead a colleague took from the rep (accepting it, say: the lead's next decision, in the
# same team) is no longer theirs to count. One they worked and passed on (qualified for
# field sales, rejected and later taken from the queue) still is. Each rep's decisions
# are read through the (rep_id, decided_at) index and each lead's next decision through
# the lead_id one: a join the planner chose to make by hash read the whole table.
ASSIGNED_SINCE = text(f"""
    SELECT since.rep_id, count(DISTINCT a.lead_id) AS leads
    FROM unnest(CAST(:rep_ids AS text[]), CAST(:moments AS timestamptz[])) AS since(rep_id, at)
    CROSS JOIN LATERAL (
        SELECT mine.id, mine.lead_id, mine.team FROM {assignments.fullname} AS mine
        WHERE mine.rep_id = since.rep_id AND mine.decided_at >= since.at OFFSET 0) AS a
    WHERE NOT EXISTS (
        SELECT FROM (SELECT later.rule, later.team, later.rep_id
                     FROM {assignments.fullname} AS later
                     WHERE later.lead_id = a.lead_id AND later.id > a.id
                     ORDER BY later.id LIMIT 1) AS following
        WHERE following.rule = '{domain.Rule.TAKEN.value}' AND following.team = a.team
          AND following.rep_id <> since.rep_id)
    GROUP BY since.rep_id
""")


async def assigned_since(connection: AsyncConnection, since: Mapping[str, datetime]
                         ) -> dict[str, int]:
    """Return how many leads each rep was given since their own moment in ``since`` and
    still holds as far as assignment knows: not those a colleague took from them since.

    One statement built once, whatever the number of reps: an OR of a condition per rep
    cost more to build than to run.
    """
    if not since:
        return {}
    rows = await connection.execute(ASSIGNED_SINCE, {"rep_ids": list(since),
                                                     "moments": list(since.values())})
    return {row.rep_id: row.leads for row in rows}


RECORDING_DECISION = text(f"""
    WITH logged AS (
        INSERT INTO {assignments.fullname}
            (lead_id, team, stage, rep_id, rule, reason, considered, decided_at)
        VALUES (:lead_id, :team, :stage, :rep_id, :rule, :reason,
                CAST(CAST(:considered AS json) AS jsonb), :decided_at)
    ), repositioned AS (
        UPDATE {reps.fullname} AS rep
        SET position = coalesce(moved.position, rep.position),
            territory_position = coalesce(moved.territory_position, rep.territory_position)
        FROM unnest(CAST(:moved_rep_ids AS text[]), CAST(:positions AS float8[]),
                    CAST(:territory_positions AS float8[]))
            AS moved(rep_id, position, territory_position)
        WHERE rep.rep_id = moved.rep_id
    )
    INSERT INTO {account_owners.fullname} AS account (account_key, team, rep_id, updated_at)
    SELECT owned.account_key, :team, :rep_id, :decided_at
    FROM (SELECT CAST(:account_key AS text) AS account_key) AS owned
    WHERE owned.account_key IS NOT NULL AND CAST(:rep_id AS text) IS NOT NULL
    ON CONFLICT (account_key, team) DO UPDATE
        SET rep_id = excluded.rep_id, updated_at = excluded.updated_at
        WHERE CAST(:moves_account AS boolean)
           OR NOT EXISTS (SELECT FROM {reps.fullname} AS owner
                          WHERE owner.rep_id = account.rep_id AND owner.active)
""").bindparams(bindparam("lead_id", type_=UUID(as_uuid=True)))


async def record_decision(connection: AsyncConnection, lead_id: uuid.UUID, stage: str,
                          decision: domain.Decision, now: datetime,
                          account_key: str | None) -> None:
    """Log the decision with every rep considered, store the reps' new round-robin and
    territory-rotation positions, and make the chosen rep the account's owner (if the lead
    has an account, and nobody in the team owns it, its owner has left (is inactive) or
    ``decision.moves_account``); one statement."""
    considered = [{"rep_id": c.rep_id, "blocked_because": c.blocked_because}
                  for c in decision.considered]
    moved = list({**decision.positions, **decision.territory_positions})
    await connection.execute(RECORDING_DECISION, {
        "lead_id": lead_id, "team": decision.team.value, "stage": stage,
        "rep_id": decision.rep_id, "rule": decision.rule.value, "reason": decision.reason,
        "considered": json_text(considered), "decided_at": now,
        "moved_rep_ids": moved, "positions": [decision.positions.get(r) for r in moved],
        "territory_positions": [decision.territory_positions.get(r) for r in moved],
        "account_key": account_key,
        "moves_account": decision.moves_account})


async def decisions(connection: AsyncConnection, *, lead_id: uuid.UUID | None = None,
                    team: str | None = None, rep_id: str | None = None,
                    limit: int = 100) -> list[Row[Any]]:
    """Return logged decisions, newest first, filtered by lead, team or rep."""
    query = select(assignments).order_by(assignments.c.id.desc()).limit(limit)
    for column, value in ((assignments.c.lead_id, lead_id), (assignments.c.team, team),
                          (assignments.c.rep_id, rep_id)):
        if value is not None:
            query = query.where(column == value)
    return list(await connection.execute(query))


# --- contacts and the funnel --------------------------------------------------------------


async def add_contact(connection: AsyncConnection, lead_id: uuid.UUID, **values: Any) -> bool:
    """Log a contact; return False if that very contact was logged before."""
    inserted = await connection.execute(
        pg_insert(contacts).values(lead_id=lead_id, **values)
        .on_conflict_do_nothing(constraint="uq_routing_contacts_once")
        .returning(contacts.c.id))
    return inserted.first() is not None


async def contacts_of(connection: AsyncConnection, lead_id: uuid.UUID) -> list[Row[Any]]:
    """Return the lead's logged contacts, in the order they happened (then were logged)."""
    rows = await connection.execute(
        select(contacts).where(contacts.c.lead_id == lead_id)
        .order_by(contacts.c.occurred_at, contacts.c.id))
    return list(rows)


async def journeys(connection: AsyncConnection, *, since: datetime, until: datetime,
                   source: str | None, partner: str | None) -> list[domain.Journey]:
    """Return the journeys of leads first seen in ``[since, until)``."""
    first_entry = (select(transitions.c.lead_id, transitions.c.to_stage,
                          func.min(transitions.c.occurred_at).label("at"))
                   .group_by(transitions.c.lead_id, transitions.c.to_stage).subquery())
    # Speed to lead counts from the MQL: a touch while marketing held the lead is earlier.
    mql_at = (select(transitions.c.lead_id, func.min(transitions.c.occurred_at).label("at"))
              .where(transitions.c.to_stage == LifecycleStage.MQL.value)
              .group_by(transitions.c.lead_id).subquery())
    first_contact = (select(contacts.c.lead_id, func.min(contacts.c.occurred_at).label("at"))
                     .join(mql_at, mql_at.c.lead_id == contacts.c.lead_id)
                     .where(contacts.c.occurred_at >= mql_at.c.at)
                     .group_by(contacts.c.lead_id).subquery())
    mqls = (select(func.array_agg(transitions.c.occurred_at))
            .where(transitions.c.lead_id == leads.c.lead_id,
                   transitions.c.to_stage == LifecycleStage.MQL.value)
            .scalar_subquery())
    query = (
        select(leads.c.lead_id, leads.c.source, leads.c.partner, leads.c.created_at,
               first_contact.c.at.label("first_contact_at"), mqls.label("mqls"),
               func.coalesce(func.jsonb_object_agg(first_entry.c.to_stage, first_entry.c.at)
                             .filter(first_entry.c.to_stage.is_not(None)),
                             func.jsonb_build_object()).label("entered"))
        .select_from(leads.outerjoin(first_entry, first_entry.c.lead_id == leads.c.lead_id)
                     .outerjoin(first_contact, first_contact.c.lead_id == leads.c.lead_id))
        .where(leads.c.created_at >= since, leads.c.created_at < until)
        .group_by(leads.c.lead_id, first_contact.c.at)
    )
    if source is not None:
        query = query.where(leads.c.source == source)
    if partner is not None:
        query = query.where(leads.c.partner == partner)
    return [
        domain.Journey(
            source=row.source, partner=row.partner, created_at=row.created_at,
            entered={LifecycleStage(stage): datetime.fromisoformat(at)
                     for stage, at in row.entered.items()},
            first_contact_at=row.first_contact_at, mqls=tuple(row.mqls or ()))
        for row in await connection.execute(query)
    ]


# --- Slack --------------------------------------------------------------------------------


async def claim_slack_request(connection: AsyncConnection, signature: str, now: datetime,
                              remember: timedelta) -> bool:
    """Record a signed Slack request; return False if it was seen before (a replay).

    Signatures older than ``remember`` are forgotten: Slack's timestamp check refuses
    those requests anyway.
    """
    await connection.execute(
        slack_requests.delete().where(slack_requests.c.received_at < now - remember))
    claimed = await connection.execute(
        pg_insert(slack_requests).values(signature=signature, received_at=now)
        .on_conflict_do_nothing(index_elements=["signature"])
        .returning(slack_requests.c.signature))
    return claimed.first() is not None
