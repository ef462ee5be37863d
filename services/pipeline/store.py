"""Pipeline's tables: deals, their phase history and sales targets."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from baton_runtime.db import service_metadata
from schemas.events import DealPhase
from services.pipeline import domain
from services.pipeline.domain import Changed, Cutoffs, Deal, GroupKey, Issue, Scope

metadata, plumbing = service_metadata("pipeline")
UUID_ARRAY = ARRAY(UUID(as_uuid=True))
TEXT_ARRAY = ARRAY(Text)

deals = Table(
    "deals",
    metadata,
    Column("deal_id", UUID(as_uuid=True), primary_key=True),
    Column("lead_id", UUID(as_uuid=True), nullable=False),
    Column("phase", Text, nullable=False),
    Column("owner_id", Text),
    Column("team", Text),
    Column("company", Text),
    Column("amount", BigInteger),
    Column("expected_close_date", Date),
    Column("next_action_date", Date),
    Column("next_action_text", Text),
    Column("next_action_entered_at", DateTime(timezone=True)),
    Column("criteria", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("hold_until", Date),
    Column("hold_reason", Text),
    Column("hold_placed_at", DateTime(timezone=True)),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("phase_changed_at", DateTime(timezone=True), nullable=False),
    # A kept deal's latest hand-off to a new SQL (null until one): its idle clocks restart.
    Column("handed_off_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("outcome", Text),
    Column("close_reason", Text),
    # When the latest change was recorded (as the phase history's last entry): the deal
    # list's order. The default serves rows written by a release that did not set it.
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
is_open = deals.c.closed_at.is_(None)
next_action_clock = func.coalesce(deals.c.next_action_entered_at, deals.c.opened_at)
# One open deal per lead; a recycled lead that becomes an SQL again opens a new one.
Index("uq_pipeline_deals_open_lead", deals.c.lead_id, unique=True, postgresql_where=is_open)
# The zombie sweep and pipeline health look only at open deals, by these values.
Index("ix_pipeline_deals_open_phase_changed_at", deals.c.phase_changed_at,
      postgresql_where=is_open)
Index("ix_pipeline_deals_open_next_action_clock", next_action_clock, postgresql_where=is_open)
Index("ix_pipeline_deals_open_next_action_date", deals.c.next_action_date,
      postgresql_where=is_open)
Index("ix_pipeline_deals_open_expected_close", deals.c.expected_close_date,
      postgresql_where=is_open)
# Health per owner or team, longest-unmoved first.
Index("ix_pipeline_deals_open_owner", deals.c.owner_id, deals.c.phase_changed_at,
      postgresql_where=is_open)
Index("ix_pipeline_deals_open_team", deals.c.team, deals.c.phase_changed_at,
      postgresql_where=is_open)
# The forecast's won amounts and observed win rate.
Index("ix_pipeline_deals_closed_at", deals.c.closed_at, postgresql_where=~is_open)
# The deal list, most recently changed first: for everyone, an owner or a team.
Index("ix_pipeline_deals_changed", deals.c.changed_at, deals.c.deal_id)
Index("ix_pipeline_deals_owner_changed", deals.c.owner_id, deals.c.changed_at, deals.c.deal_id)
Index("ix_pipeline_deals_team_changed", deals.c.team, deals.c.changed_at, deals.c.deal_id)

phase_history = Table(
    "phase_history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("deal_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("action", Text, nullable=False),
    Column("from_phase", Text),
    Column("to_phase", Text, nullable=False),
    Column("reason", Text),
    Column("occurred_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The rep who made the change; null for the service's own changes, and for entries
    # recorded before changes named their rep.
    Column("actor", Text),
)
targets = Table(
    "targets",
    metadata,
    Column("period", Text, primary_key=True),
    Column("scope", Text, primary_key=True),
    Column("name", Text, primary_key=True),  # '' for everyone
    Column("amount", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


# --- deals --------------------------------------------------------------------------------


def deal_from_row(row: Row[Any]) -> Deal:
    """Return the domain deal stored in ``row``."""
    next_action = (domain.NextAction(row.next_action_date, row.next_action_text)
                   if row.next_action_date is not None else None)
    hold = (domain.Hold(row.hold_until, row.hold_reason, row.hold_placed_at)
            if row.hold_until is not None else None)
    return Deal(
        deal_id=row.deal_id, lead_id=row.lead_id, phase=DealPhase(row.phase),
        owner_id=row.owner_id, team=row.team, company=row.company, opened_at=row.opened_at,
        phase_changed_at=row.phase_changed_at, amount=row.amount,
        expected_close_date=row.expected_close_date, next_action=next_action,
        next_action_entered_at=row.next_action_entered_at, handed_off_at=row.handed_off_at,
        criteria=domain.ExitCriteria.from_dict(row.criteria), hold=hold,
        closed_at=row.closed_at, outcome=domain.Outcome(row.outcome) if row.outcome else None,
        close_reason=row.close_reason, changed_at=row.changed_at)


def _values(deal: Deal) -> dict[str, Any]:
    """Return the deal's column values."""
    return {
        "deal_id": deal.deal_id, "lead_id": deal.lead_id, "phase": deal.phase.value,
        "owner_id": deal.owner_id, "team": deal.team, "company": deal.company,
        "amount": deal.amount, "expected_close_date": deal.expected_close_date,
        "next_action_date": deal.next_action.due if deal.next_action else None,
        "next_action_text": deal.next_action.text if deal.next_action else None,
        "next_action_entered_at": deal.next_action_entered_at,
        "handed_off_at": deal.handed_off_at,
        "criteria": deal.criteria.as_dict(),
        "hold_until": deal.hold.until if deal.hold else None,
        "hold_reason": deal.hold.reason if deal.hold else None,
        "hold_placed_at": deal.hold.placed_at if deal.hold else None,
        "opened_at": deal.opened_at, "phase_changed_at": deal.phase_changed_at,
        "closed_at": deal.closed_at, "outcome": deal.outcome.value if deal.outcome else None,
        "close_reason": deal.close_reason,
    }


async def insert_deal(connection: AsyncConnection, opened: Changed) -> bool:
    """Store a new deal and its opening entry; return False if the lead has an open deal."""
    inserted = await connection.execute(
        pg_insert(deals).values({**_values(opened.deal), "changed_at": opened.deal.opened_at})
        .on_conflict_do_nothing(index_elements=["lead_id"], index_where=is_open)
        .returning(deals.c.deal_id))
    if inserted.first() is None:
        return False
    await add_history(connection, [opened], at=opened.deal.opened_at)
    return True


async def open_deal_of(connection: AsyncConnection, lead_id: uuid.UUID, *,
                       lock: bool = False) -> uuid.UUID | None:
    """Return the id of the lead's open deal (locked for this transaction if ``lock``), or
    None."""
    query = select(deals.c.deal_id).where(deals.c.lead_id == lead_id, is_open)
    return (await connection.execute(
        query.with_for_update() if lock else query)).scalar_one_or_none()


async def last_change_at(connection: AsyncConnection, deal_id: uuid.UUID) -> datetime:
    """Return when the deal's latest change (its opening at the least) was recorded."""
    latest: datetime = (await connection.execute(
        select(func.max(phase_history.c.occurred_at))
        .where(phase_history.c.deal_id == deal_id))).scalar_one()
    return latest


async def get_deal(connection: AsyncConnection, deal_id: uuid.UUID, *,
                   lock: bool = False) -> Deal | None:
    """Return the deal (locked for this transaction if ``lock``), or None."""
    query = select(deals).where(deals.c.deal_id == deal_id)
    row = (await connection.execute(query.with_for_update() if lock else query)).first()
    return deal_from_row(row) if row is not None else None


async def deals_of_lead(connection: AsyncConnection, lead_id: uuid.UUID) -> list[Deal]:
    """Return the lead's deals, newest first."""
    rows = await connection.execute(select(deals).where(deals.c.lead_id == lead_id)
                                    .order_by(deals.c.opened_at.desc()))
    return [deal_from_row(row) for row in rows]


async def save_change(connection: AsyncConnection, changed: Changed, *, at: datetime) -> None:
    """Store the deal after a change, and the change in its history."""
    values = {**_values(changed.deal), "changed_at": at}
    await connection.execute(update(deals).where(deals.c.deal_id == values.pop("deal_id"))
                             .values(values))
    await add_history(connection, [changed], at=at)


_ADD_HISTORY = text(
    """
    INSERT INTO pipeline.phase_history (deal_id, action, from_phase, to_phase, reason,
                                        actor, occurred_at)
    SELECT h.deal_id, h.action, h.from_phase, h.to_phase, h.reason, h.actor, :at
    FROM unnest(:ids, :actions, :from_phases, :to_phases, :reasons, :actors)
         AS h(deal_id, action, from_phase, to_phase, reason, actor)
    """
).bindparams(bindparam("ids", type_=UUID_ARRAY), bindparam("actions", type_=TEXT_ARRAY),
             bindparam("from_phases", type_=TEXT_ARRAY),
             bindparam("to_phases", type_=TEXT_ARRAY), bindparam("reasons", type_=TEXT_ARRAY),
             bindparam("actors", type_=TEXT_ARRAY))


async def add_history(connection: AsyncConnection, changes: Sequence[Changed], *,
                      at: datetime) -> None:
    """Append the changes to their deals' phase history, in order, in one statement."""
    await connection.execute(_ADD_HISTORY, {
        "at": at, "ids": [c.deal.deal_id for c in changes],
        "actions": [c.change.action.value for c in changes],
        "from_phases": [c.change.from_phase.value if c.change.from_phase else None
                        for c in changes],
        "to_phases": [c.change.to_phase.value for c in changes],
        "reasons": [c.change.reason for c in changes],
        "actors": [c.change.actor for c in changes]})


async def history(connection: AsyncConnection, deal_id: uuid.UUID) -> Sequence[Row[Any]]:
    """Return the deal's phase history, oldest first."""
    return (await connection.execute(
        select(phase_history).where(phase_history.c.deal_id == deal_id)
        .order_by(phase_history.c.id))).all()


async def list_deals(connection: AsyncConnection, where: domain.DealFilter, *,
                     after: domain.ListPosition | None, limit: int) -> list[Deal]:
    """Return up to ``limit`` deals the filter keeps, most recently changed first, from
    after ``after`` (the previous page's last deal) on."""
    conditions: list[ColumnElement[bool]] = []
    if where.owner_id is not None:
        conditions.append(deals.c.owner_id == where.owner_id)
    if where.team is not None:
        conditions.append(deals.c.team == where.team)
    if where.phases:
        conditions.append(deals.c.phase.in_(sorted(p.value for p in where.phases)))
    if where.is_open is not None:
        conditions.append(is_open if where.is_open else ~is_open)
    if where.outcomes:
        conditions.append(deals.c.outcome.in_(sorted(o.value for o in where.outcomes)))
    if where.closing is not None:
        conditions.extend((deals.c.expected_close_date >= where.closing.starts,
                           deals.c.expected_close_date < where.closing.ends))
    if where.closed is not None:
        conditions.extend((deals.c.closed_at >= where.closed.starts,
                           deals.c.closed_at < where.closed.ends))
    if where.has_expected_close is not None:
        conditions.append(deals.c.expected_close_date.is_not(None) if where.has_expected_close
                          else deals.c.expected_close_date.is_(None))
    if after is not None:
        # A row comparison, so the (changed_at, deal_id) indexes serve the page's start.
        conditions.append(tuple_(deals.c.changed_at, deals.c.deal_id) < tuple_(
            literal(after.changed_at, DateTime(timezone=True)),
            literal(after.deal_id, UUID(as_uuid=True))))
    rows = await connection.execute(
        select(deals).where(*conditions)
        .order_by(deals.c.changed_at.desc(), deals.c.deal_id.desc()).limit(limit))
    return [deal_from_row(row) for row in rows]


# --- zombies and health -------------------------------------------------------------------


def _idle_since(clock: ColumnElement[Any], cutoff: datetime) -> ColumnElement[bool]:
    """Return the SQL that an idle clock started at or before ``cutoff`` (domain.Deal's)."""
    # An idle clock starts at ``clock`` or at a later hand-off: both must be that old.
    # Spelled out rather than greatest(clock, handed_off_at) <= cutoff: the clock's own
    # index (phase_changed_at, next_action_clock) still narrows the scan, and the few deals
    # handed off since are dropped by the second test.
    return and_(clock <= cutoff,
                or_(deals.c.handed_off_at.is_(None), deals.c.handed_off_at <= cutoff))


def _issue_conditions(cutoffs: Cutoffs) -> dict[Issue, ColumnElement[bool]]:
    """Return, per health issue, the SQL that picks the open deals domain.issues flags."""
    not_held = or_(deals.c.hold_until.is_(None), deals.c.hold_until < cutoffs.today)
    return {
        Issue.ZOMBIE: and_(is_open, not_held, or_(
            _idle_since(deals.c.phase_changed_at, cutoffs.phase_changed_before),
            _idle_since(next_action_clock, cutoffs.next_action_entered_before))),
        Issue.PAST_DUE_CLOSE: and_(is_open, deals.c.expected_close_date < cutoffs.today),
        Issue.NO_NEXT_ACTION: and_(is_open, or_(deals.c.next_action_date.is_(None),
                                             deals.c.next_action_date < cutoffs.today)),
        Issue.STUCK: and_(is_open, _idle_since(deals.c.phase_changed_at, cutoffs.stuck_since)),
        Issue.NO_EXPECTED_CLOSE: and_(is_open, deals.c.expected_close_date.is_(None)),
    }


async def zombie_ids(connection: AsyncConnection, cutoffs: Cutoffs) -> list[uuid.UUID]:
    """Return the ids of every zombie deal (one pass over the open-deal indexes)."""
    query = select(deals.c.deal_id).where(_issue_conditions(cutoffs)[Issue.ZOMBIE])
    return list((await connection.execute(query)).scalars())


async def claim_zombies(connection: AsyncConnection, cutoffs: Cutoffs,
                        deal_ids: Sequence[uuid.UUID]) -> list[Deal]:
    """Return those of ``deal_ids`` that are still zombies, locked; rows another
    transaction holds are skipped."""
    query = (select(deals)
             .where(deals.c.deal_id == any_(bindparam("ids", list(deal_ids), type_=UUID_ARRAY)),
                    _issue_conditions(cutoffs)[Issue.ZOMBIE])
             .with_for_update(skip_locked=True))
    return [deal_from_row(row) for row in await connection.execute(query)]


_RECYCLE = text(
    """
    UPDATE pipeline.deals AS d
    SET closed_at = :now, outcome = 'recycled', close_reason = r.reason, changed_at = :now
    FROM unnest(:ids, :reasons) AS r(deal_id, reason)
    WHERE d.deal_id = r.deal_id
    """
).bindparams(bindparam("ids", type_=UUID_ARRAY),
             bindparam("reasons", type_=TEXT_ARRAY))


async def save_recycled(connection: AsyncConnection, recycled: Sequence[Changed], *,
                        at: datetime) -> None:
    """Store many recycled deals at once, and their history entries."""
    await connection.execute(_RECYCLE, {
        "now": at, "ids": [c.deal.deal_id for c in recycled],
        "reasons": [c.deal.close_reason for c in recycled]})
    await add_history(connection, recycled, at=at)


async def deals_with_issue(connection: AsyncConnection, cutoffs: Cutoffs, issue: Issue, *,
                           group: GroupKey, limit: int) -> tuple[int, list[Deal]]:
    """Return how many open deals of the group have ``issue``, and the oldest ``limit``."""
    condition = and_(_issue_conditions(cutoffs)[issue], _group_filter(group))
    total = (await connection.execute(select(func.count()).where(condition))).scalar_one()
    rows = await connection.execute(
        select(deals).where(condition).order_by(deals.c.phase_changed_at, deals.c.deal_id)
        .limit(limit))
    return int(total), [deal_from_row(row) for row in rows]


def _group_filter(group: GroupKey) -> ColumnElement[bool]:
    """Return the SQL that keeps the group's deals."""
    if group.scope is Scope.OWNER:
        return deals.c.owner_id == group.name
    if group.scope is Scope.TEAM:
        return deals.c.team == group.name
    return literal_column("true")


# --- the forecast -------------------------------------------------------------------------


async def open_slices(connection: AsyncConnection, starts: date,
                      ends: date) -> list[domain.Slice]:
    """Return open deals expected to close in [starts, ends) or with no expected close
    date (month None), summed by month, owner, team and phase."""
    close = deals.c.expected_close_date
    month = func.date_trunc("month", close).cast(Date).label("month")
    query = (select(month, deals.c.owner_id, deals.c.team, deals.c.phase,
                    func.coalesce(func.sum(deals.c.amount), 0).label("amount"),
                    func.count().label("deals"))
             .where(is_open, or_(close.is_(None), and_(close >= starts, close < ends)))
             .group_by(month, deals.c.owner_id, deals.c.team, deals.c.phase))
    return [domain.Slice(row.month, row.owner_id, row.team, DealPhase(row.phase),
                         int(row.amount), row.deals)
            for row in await connection.execute(query)]


async def won_slices(connection: AsyncConnection, starts: datetime, ends: datetime,
                     timezone: str) -> list[domain.Slice]:
    """Return deals won in [starts, ends), summed by the month of ``timezone`` they were won
    in, owner and team."""
    month = func.date_trunc("month", func.timezone(timezone, deals.c.closed_at)).cast(Date)
    query = (select(month.label("month"), deals.c.owner_id, deals.c.team,
                    func.coalesce(func.sum(deals.c.amount), 0).label("amount"),
                    func.count().label("deals"))
             .where(~is_open, deals.c.outcome == domain.Outcome.WON.value,
                    deals.c.closed_at >= starts, deals.c.closed_at < ends)
             .group_by(month, deals.c.owner_id, deals.c.team))
    return [domain.Slice(row.month, row.owner_id, row.team, DealPhase.WON, int(row.amount),
                         row.deals)
            for row in await connection.execute(query)]


async def closed_counts(connection: AsyncConnection, since: datetime) -> list[domain.ClosedCount]:
    """Return how many deals each owner and team won and lost since ``since``."""
    won = func.count().filter(deals.c.outcome == domain.Outcome.WON.value)
    lost = func.count().filter(deals.c.outcome == domain.Outcome.LOST.value)
    query = (select(deals.c.owner_id, deals.c.team, won.label("won"), lost.label("lost"))
             .where(~is_open, deals.c.closed_at >= since,
                    deals.c.outcome.in_([domain.Outcome.WON.value, domain.Outcome.LOST.value]))
             .group_by(deals.c.owner_id, deals.c.team))
    return [domain.ClosedCount(row.owner_id, row.team, row.won, row.lost)
            for row in await connection.execute(query)]


async def save_target(connection: AsyncConnection, target: domain.Target, *,
                      at: datetime) -> None:
    """Set (or replace) a target."""
    values = {"period": target.period, "scope": target.group.scope.value,
              "name": target.group.name or "", "amount": target.amount, "updated_at": at}
    await connection.execute(
        pg_insert(targets).values(values)
        .on_conflict_do_update(index_elements=["period", "scope", "name"],
                               set_={"amount": target.amount, "updated_at": at}))


async def targets_for(connection: AsyncConnection,
                      periods: Sequence[str]) -> list[domain.Target]:
    """Return the targets set for these periods."""
    rows = await connection.execute(select(targets).where(targets.c.period.in_(periods))
                                    .order_by(targets.c.period, targets.c.scope, targets.c.name))
    return [domain.Target(row.period, GroupKey(Scope(row.scope), row.name or None), row.amount)
            for row in rows]
