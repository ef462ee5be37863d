"""Pipeline's tables: deals and their phase history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Table, Text, func, select
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_runtime.db import service_metadata

metadata, plumbing = service_metadata("pipeline")

deals = Table(
    "deals",
    metadata,
    Column("deal_id", UUID(as_uuid=True), primary_key=True),
    Column("lead_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("phase", Text, nullable=False),
    Column("owner_id", Text),
    Column("company", Text),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("phase_changed_at", DateTime(timezone=True), nullable=False),
)
phase_history = Table(
    "phase_history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("deal_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("from_phase", Text),
    Column("to_phase", Text, nullable=False),
    Column("reason", Text),
    Column("occurred_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


async def open_deal(connection: AsyncConnection, *, deal_id: uuid.UUID, lead_id: uuid.UUID,
                    phase: str, owner_id: str | None, company: str | None,
                    now: datetime) -> bool:
    """Open a deal for the lead; return False if the lead already has one."""
    opened = await connection.execute(
        pg_insert(deals)
        .values(deal_id=deal_id, lead_id=lead_id, phase=phase, owner_id=owner_id,
                company=company, opened_at=now, phase_changed_at=now)
        .on_conflict_do_nothing(index_elements=["lead_id"])
        .returning(deals.c.deal_id)
    )
    if opened.first() is None:
        return False
    await connection.execute(phase_history.insert().values(
        deal_id=deal_id, from_phase=None, to_phase=phase, reason="opened from SQL",
        occurred_at=now))
    return True


async def get_deal(connection: AsyncConnection, deal_id: uuid.UUID) -> Row[Any] | None:
    """Return the deal, or None."""
    return (await connection.execute(select(deals).where(deals.c.deal_id == deal_id))).first()


async def deal_for_lead(connection: AsyncConnection, lead_id: uuid.UUID) -> Row[Any] | None:
    """Return the lead's deal, or None."""
    return (await connection.execute(select(deals).where(deals.c.lead_id == lead_id))).first()
