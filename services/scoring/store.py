"""Scoring's tables: lead profiles and scores, the activity ledger, model versions, deals."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    Table,
    Text,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_runtime.db import json_text, service_metadata
from schemas.events import Account, LeadCaptured, LeadProfile, Tier, TouchpointType
from services.scoring.domain import Activity, Colleague, DealOutcome, DealRecord
from services.scoring.model import ModelOrigin

metadata, plumbing = service_metadata("scoring")

leads = Table(
    "leads",
    metadata,
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("profile", JSONB, nullable=False),
    Column("account", JSONB, nullable=False),
    Column("source", Text, nullable=False),
    Column("partner", Text),  # the appointment-setting partner who brought the lead, if any
    # Set only when the account names a company: anonymous free-mail leads share no account.
    Column("account_key", Text),
    Column("decision_maker", Boolean, nullable=False, server_default="false"),
    Column("last_engaged_at", DateTime(timezone=True)),
    Column("baseline_at", DateTime(timezone=True)),
    Column("score", Integer),
    Column("tier", Text),
    Column("surge", Boolean, nullable=False, server_default="false"),
    Column("dormancy", Text, nullable=False, server_default="active"),
    Column("high_intent_signals", JSONB, nullable=False, server_default="[]"),
    Column("reasons", JSONB, nullable=False, server_default="[]"),
    Column("model_version", Text),
    Column("scored_at", DateTime(timezone=True)),
    Column("next_review_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_scoring_leads_account_engaged", "account_key", "last_engaged_at"),
    Index("ix_scoring_leads_next_review_at", "next_review_at",
          postgresql_where=text("next_review_at IS NOT NULL")),
)
activities = Table(
    "activities",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("type", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("asset_id", Text),
    Column("interacted", Boolean, nullable=False, server_default="false"),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
# A lead's colleagues asked to be re-scored (their engagement points changed). Inserted
# without touching the colleagues' rows: a colleague may be locked by a transaction that
# read the account before the change, and must still be re-scored after it commits.
review_requests = Table(
    "review_requests",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("lead_id", UUID(as_uuid=True), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Index("ix_scoring_review_requests_requested_at", "requested_at"),
)
models = Table(
    "models",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),  # activation order
    Column("version", Text, nullable=False, unique=True),
    Column("definition", JSONB, nullable=False),
    Column("origin", Text, nullable=False, server_default="api"),  # a ModelOrigin
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
deals = Table(
    "deals",
    metadata,
    Column("deal_id", UUID(as_uuid=True), primary_key=True),
    Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("phase", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    # A recycled deal's closing time is also its lead's behaviour baseline if scoring
    # stores the lead only after it without a placeholder (see RECORDING).
    Column("closed_at", DateTime(timezone=True)),
    Column("changed_at", DateTime(timezone=True), nullable=False),  # of the event applied last
    # The lead's standing when the deal was first seen: what calibration compares.
    Column("score", Integer),
    Column("tier", Text),
    Column("model_version", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
# Stored touchpoint types by value: a dictionary lookup, not an enum call, per ledger row.
TOUCHPOINTS = {kind.value: kind for kind in TouchpointType}
LEDGER = (activities.c.type, activities.c.occurred_at, activities.c.asset_id,
          activities.c.interacted)


class LeadState(NamedTuple):
    """What ``record_touchpoints`` reads of a lead's row before its re-score."""

    lead_id: uuid.UUID
    partner: str | None
    account_key: str | None
    decision_maker: bool
    last_engaged_at: datetime | None
    baseline_at: datetime | None
    score: int | None
    tier: str | None
    surge: bool
    dormancy: str


STATE = tuple(leads.c[name] for name in LeadState._fields)


def account_key_of(account: Account) -> str | None:
    """Return the key that groups the lead with its colleagues, None if it names no company."""
    if account.free_mail and not account.company_name:
        return None
    return account.account_key


ZERO = timedelta(0)


class LeadsInsertedMeanwhile(RuntimeError):
    """Another transaction inserted leads of this batch while it was recorded (two
    consumers overlapping in a rebalance); recording them again finds them."""

    def __init__(self, lead_ids: Collection[uuid.UUID]) -> None:
        super().__init__(f"{len(lead_ids)} lead(s) were inserted by another transaction "
                         f"while this batch recorded them: {sorted(map(str, lead_ids))[:5]}")


@dataclass(frozen=True)
class Recorded:
    """A lead right after a batch's touchpoints were recorded: its state before (with the
    batch's account key and partner), its ledger (the new touchpoints included), its
    engaged colleagues, and the account key it had before the batch."""

    state: LeadState
    ledger: list[Activity]
    colleagues: list[Colleague]
    previous_account_key: str | None


def _recorded_state(column: str) -> str:
    """Return how RECORDING reads a STATE column: as stored, but for what the batch sets."""
    if column == "partner":
        return "coalesce(incoming.partner, stored.partner) AS partner"
    if column == "account_key":
        return "incoming.account_key"
    return f"stored.{column}"


# A batch's touchpoints and leads go as two JSON texts rather than a dozen arrays: the
# driver's array encoder checks every element against abstract base classes, which cost
# more than building the JSON did; profiles and accounts travel as nested objects.
# The leads' text is sent as jsonb: jsonb_to_recordset hands a nested object to a jsonb
# column as it is, where json_to_recordset gives its text to jsonb's parser again (for
# scoring's saved leads, 11 against 30 us of server CPU a row).
# A known lead is only locked here: save_scores writes its new profile with its score,
# one new row version per batch instead of two. A lead whose deal was recycled before
# its capture (they come on different topics) is known: a placeholder row holding its
# baseline (see reset_baseline). A new lead still starts from its latest recycled deal,
# for deals recycled without a placeholder: before this version stored them, or by a
# replica of it during a rolling upgrade (a probe of the deals' lead index per new lead).
# A lead another transaction inserts meanwhile is in neither ``added`` nor ``known``
# (the snapshot predates it): record_touchpoints raises LeadsInsertedMeanwhile, and the
# retry finds the lead known.
RECORDING = text(f"""
    WITH appended AS (
        INSERT INTO {activities.fullname} (lead_id, type, occurred_at, asset_id, interacted)
        SELECT * FROM json_to_recordset(CAST(:touchpoints AS json))
            AS touchpoint(lead_id uuid, type text, occurred_at timestamptz, asset_id text,
                          interacted boolean)
    ), incoming AS (
        SELECT * FROM jsonb_to_recordset(CAST(:leads AS jsonb))
            AS incoming(lead_id uuid, profile jsonb, account jsonb, source text,
                        account_key text, partner text, decision_maker boolean)
    ), added AS (
        INSERT INTO {leads.fullname}
            (lead_id, profile, account, source, account_key, partner, decision_maker,
             baseline_at)
        SELECT incoming.*, (
            SELECT max(deal.closed_at) FROM {deals.fullname} AS deal
            WHERE deal.lead_id = incoming.lead_id
              AND deal.outcome = '{DealOutcome.RECYCLED.value}')
        FROM incoming ORDER BY lead_id
        ON CONFLICT (lead_id) DO NOTHING
        RETURNING {", ".join(column.name for column in STATE)}
    ), known AS (
        SELECT {", ".join(column.name for column in STATE)} FROM {leads.fullname}
        WHERE lead_id IN (SELECT lead_id FROM incoming)
        ORDER BY lead_id
        FOR UPDATE
    ), stored AS (
        SELECT * FROM added UNION ALL SELECT * FROM known
    )
    -- The ledger and the colleagues are read from the snapshot taken before this
    -- statement: without the touchpoints it appends.
    SELECT {", ".join(_recorded_state(column.name) for column in STATE)},
           history.*, engaged.*, stored.account_key AS previous_account_key
    FROM stored JOIN incoming USING (lead_id)
    CROSS JOIN LATERAL (
        SELECT array_agg(type) AS type, array_agg(occurred_at) AS occurred_at,
               array_agg(asset_id) AS asset_id, array_agg(interacted) AS interacted
        FROM {activities.fullname} WHERE lead_id = stored.lead_id) AS history
    CROSS JOIN LATERAL (
        SELECT array_agg(last_engaged_at) AS colleague_last_engaged_at,
               array_agg(decision_maker) AS colleague_decision_maker
        FROM (
            (SELECT lead_id, last_engaged_at, decision_maker FROM {leads.fullname}
             WHERE account_key = incoming.account_key AND lead_id <> stored.lead_id
               AND last_engaged_at > :engaged_since
             ORDER BY last_engaged_at DESC LIMIT :recent)
            UNION
            (SELECT lead_id, last_engaged_at, decision_maker FROM {leads.fullname}
             WHERE account_key = incoming.account_key AND lead_id <> stored.lead_id
               AND last_engaged_at > :engaged_since AND decision_maker
             ORDER BY last_engaged_at DESC LIMIT :deciders)
        ) AS read) AS engaged
""")
# An account's engaged contacts that scoring reads (see domain.contacts_to_read), ranked
# the same way.
ENGAGED = text(f"""
    SELECT account_key, lead_id, last_engaged_at, decision_maker FROM (
        SELECT account_key, lead_id, last_engaged_at, decision_maker,
               row_number() OVER (PARTITION BY account_key
                                  ORDER BY last_engaged_at DESC) AS recency,
               row_number() OVER (PARTITION BY account_key, decision_maker
                                  ORDER BY last_engaged_at DESC) AS rank_in_kind
        FROM {leads.fullname}
        WHERE account_key = ANY(CAST(:account_keys AS text[]))
          AND last_engaged_at > :engaged_since) AS ranked
    WHERE recency <= :recent OR (decision_maker AND rank_in_kind <= :deciders)
""")

# A batch's lead ids are bound as one JSON text: the statement's text stays the same
# whatever the batch size, so the driver prepares it once (IN with a placeholder each
# was prepared again per distinct count), and no array encoder checks every id.
LEDGERS = text(f"""
    SELECT lead_id, {", ".join(column.name for column in LEDGER)} FROM {activities.fullname}
    WHERE lead_id IN (SELECT CAST(value AS uuid)
                      FROM json_array_elements_text(CAST(:lead_ids AS json)))
""")
COLLEAGUES_TO_REVIEW = text(f"""
    INSERT INTO {review_requests.fullname} (lead_id, requested_at)
    SELECT lead_id, :at FROM {leads.fullname}
    WHERE account_key = ANY(CAST(:account_keys AS text[]))
      AND lead_id NOT IN (SELECT CAST(value AS uuid)
                          FROM json_array_elements_text(CAST(:excluding AS json)))
""")
# Each requested lead's review is brought forward to its earliest request. Leads another
# transaction holds are skipped and keep their requests for a later sweep: waiting for
# them could deadlock with a consumer, which locks leads in an order of its own.
REVIEWS_REQUESTED = text(f"""
    WITH locked AS (
        SELECT lead_id FROM {leads.fullname}
        WHERE lead_id IN (SELECT lead_id FROM {review_requests.fullname}
                          WHERE requested_at <= :now)
        FOR UPDATE SKIP LOCKED
    ), taken AS (
        DELETE FROM {review_requests.fullname} AS request USING locked
        WHERE request.lead_id = locked.lead_id AND request.requested_at <= :now
        RETURNING request.lead_id, request.requested_at
    ), earliest AS (
        SELECT lead_id, min(requested_at) AS at FROM taken GROUP BY lead_id
    )
    UPDATE {leads.fullname} AS lead SET next_review_at = earliest.at
    FROM earliest
    WHERE lead.lead_id = earliest.lead_id
      AND (lead.next_review_at IS NULL OR lead.next_review_at > earliest.at)
""")


async def record_touchpoints(connection: AsyncConnection, events: Sequence[LeadCaptured], *,
                             decision_makers: Mapping[uuid.UUID, bool],
                             engaged_since: datetime, read: tuple[int, int]
                             ) -> dict[uuid.UUID, Recorded]:
    """Store new leads, append every touchpoint, and read what scoring needs; raise
    LeadsInsertedMeanwhile if another transaction inserted some of them meanwhile.

    One round trip for a whole batch. Per lead, locked until commit: its state as it
    was before these touchpoints, with the account key and partner the batch gives it
    (``save_scores`` stores them, the profile and the decision-maker standing); its
    ledger in the order given; and of the account's other contacts engaged after
    ``engaged_since``, the ``read`` = (most recent, decision makers) most recently
    engaged.
    """
    latest: dict[uuid.UUID, LeadCaptured] = {}
    partners: dict[uuid.UUID, str] = {}
    for event in events:
        latest[event.lead_id] = event
        if event.partner_notes and event.partner_notes.partner:
            partners[event.lead_id] = event.partner_notes.partner
    rows = await connection.execute(RECORDING, {
        "touchpoints": json_text([
            {"lead_id": event.lead_id, "type": event.touchpoint.type.value,
             "occurred_at": event.touchpoint.occurred_at, "asset_id": event.touchpoint.asset_id,
             "interacted": event.touchpoint.interacted} for event in events]),
        "leads": json_text([
            {"lead_id": lead_id, "profile": event.profile, "account": event.account,
             "source": event.source, "account_key": account_key_of(event.account),
             "partner": partners.get(lead_id), "decision_maker": decision_makers[lead_id]}
            for lead_id, event in latest.items()]),
        "engaged_since": engaged_since, "recent": read[0], "deciders": read[1],
    })
    recorded: dict[uuid.UUID, Recorded] = {}
    width = len(STATE)
    # By position: each column read by name from a SQLAlchemy row costs a failed attribute
    # lookup first (about 2,800 instructions), and scoring reads each a few times.
    for row in rows:
        state = LeadState._make(row[:width])
        kinds, moments, assets, interactions, engaged_at, deciders, previous_key = row[width:]
        ledger = [Activity(TOUCHPOINTS[kind], at, asset, interacted) for kind, at, asset,
                  interacted in zip(kinds or (), moments or (), assets or (),
                                    interactions or (), strict=True)]
        colleagues = [Colleague(at, decider) for at, decider in
                      zip(engaged_at or (), deciders or (), strict=True)]
        recorded[state.lead_id] = Recorded(state, ledger, colleagues, previous_key)
    if missing := latest.keys() - recorded.keys():
        raise LeadsInsertedMeanwhile(missing)
    for event in events:
        touchpoint = event.touchpoint
        recorded[event.lead_id].ledger.append(Activity(
            touchpoint.type, in_utc_if_utc(touchpoint.occurred_at), touchpoint.asset_id,
            touchpoint.interacted))
    return recorded


def in_utc_if_utc(moment: datetime) -> datetime:
    """Return ``moment`` with ``datetime.UTC`` as its zone if its offset is zero, else as is.

    The parser's own UTC zone is another object: comparing or subtracting two moments
    of different zone objects calls both zones' ``utcoffset`` first, and the ledger's
    moments read from the database, the clock's and the model's all have ``UTC``.
    """
    if moment.tzinfo is UTC or moment.utcoffset() != ZERO:
        return moment
    return moment.astimezone(UTC)  # the same local time: the offset is zero


async def ledgers(connection: AsyncConnection,
                  lead_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, list[Activity]]:
    """Return each lead's activities."""
    rows = await connection.execute(LEDGERS, {"lead_ids": json_text(list(lead_ids))})
    found: dict[uuid.UUID, list[Activity]] = defaultdict(list)
    for row in rows:
        found[row.lead_id].append(
            Activity(TOUCHPOINTS[row.type], row.occurred_at, row.asset_id, row.interacted))
    return found


async def engaged_contacts(connection: AsyncConnection, account_keys: Collection[str],
                           since: datetime, read: tuple[int, int]
                           ) -> dict[str, list[tuple[uuid.UUID, Colleague]]]:
    """Return, per account, of the contacts engaged after ``since`` the ``read`` = (most
    recent, decision makers) most recently engaged, with their lead ids."""
    if not account_keys:
        return {}
    rows = await connection.execute(ENGAGED, {
        "account_keys": list(account_keys), "engaged_since": since, "recent": read[0],
        "deciders": read[1]})
    found: dict[str, list[tuple[uuid.UUID, Colleague]]] = defaultdict(list)
    for row in rows:
        found[row.account_key].append(
            (row.lead_id, Colleague(row.last_engaged_at, row.decision_maker)))
    return found


async def ask_colleagues_for_review(connection: AsyncConnection, account_keys: Collection[str],
                                    excluding: Collection[uuid.UUID], at: datetime) -> None:
    """Ask the sweep to re-score, at ``at``, the contacts of ``account_keys`` other than
    ``excluding`` (their engagement points changed).

    Only a request is written, and no colleague is locked: a colleague another
    transaction holds may be scored from colleagues read before this change, so it must
    be re-scored after, and waiting for it could deadlock with that transaction.
    """
    if account_keys:
        await connection.execute(COLLEAGUES_TO_REVIEW, {
            "account_keys": list(account_keys), "excluding": json_text(list(excluding)),
            "at": at})


async def take_review_requests(connection: AsyncConnection, now: datetime) -> None:
    """Bring each lead asked for review by ``now`` due at its request, locking it, and drop
    its requests; leads another transaction holds keep theirs."""
    await connection.execute(REVIEWS_REQUESTED, {"now": now})


class Saved(NamedTuple):
    """A lead as ``save_scores`` stores it: who it is now and its new score."""

    lead_id: uuid.UUID
    profile: LeadProfile
    account: Account
    source: str
    partner: str | None
    score: int
    tier: str
    surge: bool
    dormancy: str
    high_intent_signals: list[str]
    reasons: list[dict[str, Any]]
    model_version: str
    scored_at: datetime
    next_review_at: datetime | None
    decision_maker: bool
    last_engaged_at: datetime | None


# One statement for a batch's leads, read from one jsonb text (see RECORDING): run once
# per lead, the UPDATE's own cost per execution (PostgreSQL's executor start-up and
# finish) was a large part of what saving cost there.
SAVING = text(f"""
    UPDATE {leads.fullname} AS lead SET profile = saved.profile, account = saved.account,
        source = saved.source, account_key = saved.account_key, partner = saved.partner,
        score = saved.score, tier = saved.tier, surge = saved.surge,
        dormancy = saved.dormancy, high_intent_signals = saved.high_intent_signals,
        reasons = saved.reasons, model_version = saved.model_version,
        scored_at = saved.scored_at, next_review_at = saved.next_review_at,
        decision_maker = saved.decision_maker, last_engaged_at = saved.last_engaged_at,
        updated_at = now()
    FROM jsonb_to_recordset(CAST(:leads AS jsonb)) AS saved(
        lead_id uuid, profile jsonb, account jsonb, source text, account_key text,
        partner text, score integer, tier text, surge boolean, dormancy text,
        high_intent_signals jsonb, reasons jsonb, model_version text,
        scored_at timestamptz, next_review_at timestamptz, decision_maker boolean,
        last_engaged_at timestamptz)
    WHERE lead.lead_id = saved.lead_id
""")


async def save_scores(connection: AsyncConnection, scores: Sequence[Saved]) -> None:
    """Store leads with their new scores (one entry per lead, each locked by this
    transaction)."""
    if scores:
        await connection.execute(SAVING, {"leads": json_text([
            {**saved._asdict(), "account_key": account_key_of(saved.account)}
            for saved in scores])})


async def lead(connection: AsyncConnection, lead_id: uuid.UUID,
               lock: bool = False) -> Row[Any] | None:
    """Return the lead's stored profile and score, optionally locking it for update."""
    query = select(leads).where(leads.c.lead_id == lead_id)
    if lock:
        query = query.with_for_update()
    return (await connection.execute(query)).first()


async def due_for_review(connection: AsyncConnection, now: datetime,
                         limit: int) -> Sequence[Row[Any]]:
    """Return (and lock) up to ``limit`` leads whose review time has come, oldest first."""
    return (await connection.execute(
        select(leads).where(leads.c.next_review_at <= now).order_by(leads.c.next_review_at)
        .limit(limit).with_for_update(skip_locked=True)
    )).all()


async def reset_baseline(connection: AsyncConnection, lead_id: uuid.UUID,
                         at: datetime) -> Row[Any]:
    """Make activities up to ``at`` stop counting for behaviour; return the lead, locked.

    A lead not stored yet is stored as a placeholder, unscored (``score`` null), that its
    first capture fills in. Through the row both write, a capture and a recycling of one
    lead in overlapping transactions wait for each other: neither sees the other's
    uncommitted rows, so an update finding no lead and a capture finding no recycled deal
    lost the reset.
    """
    placeholder = pg_insert(leads).values(lead_id=lead_id, profile={}, account={}, source="",
                                          baseline_at=at)
    return (await connection.execute(
        placeholder.on_conflict_do_update(index_elements=["lead_id"], set_={
            "baseline_at": func.greatest(func.coalesce(leads.c.baseline_at, at), at),
            "updated_at": func.now()})
        .returning(*leads.c)
    )).one()


async def record_deal(connection: AsyncConnection, *, deal_id: uuid.UUID, lead_id: uuid.UUID,
                      phase: str, outcome: DealOutcome, at: datetime) -> None:
    """Record a deal's phase; its first sighting keeps the lead's standing at that moment.

    Phase changes and recycling come on different topics, so they may arrive out of
    order: an event older than the one applied last changes nothing, and at the same
    moment a closing outcome wins over an open phase.
    """
    def of_lead(column: Column[Any]) -> Any:
        return select(column).where(leads.c.lead_id == lead_id).scalar_subquery()

    values = {"phase": phase, "outcome": outcome.value, "changed_at": at,
              "closed_at": None if outcome is DealOutcome.OPEN else at}
    upsert = pg_insert(deals).values(
        deal_id=deal_id, lead_id=lead_id, opened_at=at, score=of_lead(leads.c.score),
        tier=of_lead(leads.c.tier), model_version=of_lead(leads.c.model_version), **values)
    newer = upsert.excluded.changed_at > deals.c.changed_at
    closing_at_once = ((upsert.excluded.changed_at == deals.c.changed_at)
                       & (upsert.excluded.outcome != DealOutcome.OPEN.value))
    await connection.execute(upsert.on_conflict_do_update(
        index_elements=["deal_id"], set_={**values, "updated_at": func.now()},
        where=newer | closing_at_once))


async def deal_records(connection: AsyncConnection,
                       model_version: str | None = None) -> list[DealRecord]:
    """Return every deal whose lead had a score when it opened, optionally of one model."""
    query = select(deals.c.score, deals.c.tier, deals.c.outcome).where(deals.c.score.is_not(None))
    if model_version is not None:
        query = query.where(deals.c.model_version == model_version)
    return [DealRecord(row.score, Tier(row.tier), DealOutcome(row.outcome))
            for row in await connection.execute(query)]


async def lock_models(connection: AsyncConnection) -> None:
    """Hold the model versions until commit: models are added, and a start-up's check of
    what is active is made, one transaction at a time."""
    await connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('scoring.models'))"))


async def latest_model(connection: AsyncConnection) -> Row[Any] | None:
    """Return the model version activated last, with its definition."""
    return (await connection.execute(
        select(models).order_by(models.c.id.desc()).limit(1))).first()


async def model_version(connection: AsyncConnection, version: str) -> Row[Any] | None:
    """Return a stored model version, or None."""
    return (await connection.execute(select(models).where(models.c.version == version))).first()


async def add_model(connection: AsyncConnection, version: str,
                    definition: Mapping[str, Any], origin: ModelOrigin) -> Row[Any] | None:
    """Store a model version as the active one; return None if the version already exists."""
    return (await connection.execute(
        pg_insert(models).values(version=version, definition=definition, origin=origin.value)
        .on_conflict_do_nothing(index_elements=["version"]).returning(*models.c)
    )).first()
