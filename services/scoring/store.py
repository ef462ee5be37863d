"""Scoring's tables: each lead's profile and current score, and its activity ledger."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Boolean, Column, DateTime, Integer, Table, Text, func, select
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_runtime.db import service_metadata
from schemas.events import Account, LeadProfile, TouchpointType
from services.scoring.domain import Activity

metadata, plumbing = service_metadata("scoring")

lead_scores = Table(
    "lead_scores",
    metadata,
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("profile", JSONB, nullable=False),
    Column("account", JSONB, nullable=False),
    Column("source", Text, nullable=False),
    Column("score", Integer),
    Column("tier", Text),
    Column("reasons", JSONB, nullable=False, server_default="[]"),
    Column("model_version", Text),
    Column("scored_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
activities = Table(
    "activities",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("type", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("asset_id", Text),
    Column("interacted", Boolean, nullable=False, server_default="false"),
)


async def upsert_profile(connection: AsyncConnection, lead_id: uuid.UUID, profile: LeadProfile,
                         account: Account, source: str) -> None:
    """Store the lead's latest profile and account, keeping its score."""
    values = {"profile": profile.model_dump(mode="json"),
              "account": account.model_dump(mode="json"), "source": source}
    await connection.execute(
        pg_insert(lead_scores)
        .values(lead_id=lead_id, **values)
        .on_conflict_do_update(index_elements=["lead_id"],
                               set_={**values, "updated_at": func.now()})
    )


async def add_activity(connection: AsyncConnection, lead_id: uuid.UUID,
                       activity: Activity) -> None:
    """Append one touchpoint to the lead's ledger."""
    await connection.execute(
        activities.insert().values(lead_id=lead_id, type=activity.type.value,
                                   occurred_at=activity.occurred_at, asset_id=activity.asset_id,
                                   interacted=activity.interacted)
    )


async def ledger(connection: AsyncConnection, lead_id: uuid.UUID) -> list[Activity]:
    """Return the lead's activities, oldest first."""
    rows = await connection.execute(
        select(activities).where(activities.c.lead_id == lead_id)
        .order_by(activities.c.occurred_at, activities.c.id)
    )
    return [Activity(TouchpointType(r.type), r.occurred_at, r.asset_id, r.interacted)
            for r in rows]


async def current(connection: AsyncConnection, lead_id: uuid.UUID,
                  lock: bool = False) -> Row[Any] | None:
    """Return the lead's stored profile and score, optionally locking it for update."""
    query = select(lead_scores).where(lead_scores.c.lead_id == lead_id)
    if lock:
        query = query.with_for_update()
    return (await connection.execute(query)).first()


async def save_score(connection: AsyncConnection, lead_id: uuid.UUID, **values: Any) -> None:
    """Store the lead's new score, tier, reasons and model version."""
    await connection.execute(
        lead_scores.update().where(lead_scores.c.lead_id == lead_id)
        .values(**values, updated_at=func.now())
    )
