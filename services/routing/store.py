"""Routing's tables: each lead's lifecycle state and every transition it made."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, Table, Text, func, select
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_runtime.db import service_metadata

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
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)


async def upsert_lead(connection: AsyncConnection, lead_id: uuid.UUID, **values: Any) -> Row[Any]:
    """Store the lead's latest score and profile (a new lead starts in ``lead``); lock it."""
    await connection.execute(
        pg_insert(leads)
        .values(lead_id=lead_id, stage="lead", **values)
        .on_conflict_do_update(index_elements=["lead_id"], set_={**values,
                                                                  "updated_at": func.now()})
    )
    row = await get_lead(connection, lead_id, lock=True)
    assert row is not None
    return row


async def get_lead(connection: AsyncConnection, lead_id: uuid.UUID,
                   lock: bool = False) -> Row[Any] | None:
    """Return the lead's state, optionally locked for update."""
    query = select(leads).where(leads.c.lead_id == lead_id)
    if lock:
        query = query.with_for_update()
    return (await connection.execute(query)).first()


async def record_transition(connection: AsyncConnection, lead_id: uuid.UUID, **values: Any
                            ) -> None:
    """Move the lead to its new stage and log the transition."""
    await connection.execute(
        leads.update().where(leads.c.lead_id == lead_id).values(
            stage=values["to_stage"], owner_id=values["owner_id"], team=values["team"],
            updated_at=func.now())
    )
    await connection.execute(transitions.insert().values(lead_id=lead_id, **values))


async def history(connection: AsyncConnection, lead_id: uuid.UUID) -> list[Row[Any]]:
    """Return the lead's transitions, oldest first."""
    rows = await connection.execute(
        select(transitions).where(transitions.c.lead_id == lead_id).order_by(transitions.c.id))
    return list(rows)
