"""Ingest's tables: every touchpoint received and the leads they belong to."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_runtime.db import service_metadata

metadata, plumbing = service_metadata("ingest")

leads = Table(
    "leads",
    metadata,
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("email", Text, nullable=False, unique=True),
    Column("account_key", Text, nullable=False),
    Column("first_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
touchpoints = Table(
    "touchpoints",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("source", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("payload", JSONB, nullable=False),
)


async def record_lead(connection: AsyncConnection, lead_id: uuid.UUID, email: str,
                      account: str) -> None:
    """Remember the lead for an e-mail address if it is new."""
    await connection.execute(
        pg_insert(leads)
        .values(lead_id=lead_id, email=email, account_key=account)
        .on_conflict_do_nothing(index_elements=["lead_id"])
    )


async def record_touchpoint(connection: AsyncConnection, *, event_id: str, lead_id: uuid.UUID,
                            source: str, type_: str, occurred_at: datetime,
                            payload: dict[str, Any]) -> None:
    """Store the touchpoint as received, under the id of the event that announces it."""
    await connection.execute(
        touchpoints.insert().values(event_id=event_id, lead_id=lead_id, source=source,
                                    type=type_, occurred_at=occurred_at, payload=payload)
    )
