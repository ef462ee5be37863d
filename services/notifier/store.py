"""Notifier's tables: one delivery record per alert and channel."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
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

from baton_runtime.db import service_metadata

metadata, plumbing = service_metadata("notifier")
ALERTS_CHANNEL = "notifier_alerts"

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("dedupe_key", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("lead_id", UUID(as_uuid=True)),
    Column("message", JSONB, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False,
           server_default=func.now()),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
    Index("ix_notifier_alerts_due", "status", "next_attempt_at"),
)


async def add_alert(connection: AsyncConnection, *, dedupe_key: str, kind: str, channel: str,
                    lead_id: uuid.UUID | None, message: dict[str, Any]) -> bool:
    """Record an alert to deliver; return False if its dedupe key exists already."""
    created = await connection.execute(
        pg_insert(alerts)
        .values(dedupe_key=dedupe_key, kind=kind, channel=channel, lead_id=lead_id,
                message=message)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(alerts.c.id)
    )
    if created.first() is None:
        return False
    # Delivered at commit: wakes the delivery worker.
    await connection.execute(text("SELECT pg_notify(:c, '')"), {"c": ALERTS_CHANNEL})
    return True


async def claim_due(connection: AsyncConnection, limit: int) -> list[Row[Any]]:
    """Lock and return pending alerts that are due, skipping those another replica holds."""
    rows = await connection.execute(
        select(alerts)
        .where(alerts.c.status == "pending", alerts.c.next_attempt_at <= func.now())
        .order_by(alerts.c.id).limit(limit).with_for_update(skip_locked=True)
    )
    return list(rows)


async def mark_delivered(connection: AsyncConnection, alert_id: int, now: datetime) -> None:
    """Record a successful delivery."""
    await connection.execute(alerts.update().where(alerts.c.id == alert_id).values(
        status="delivered", attempts=alerts.c.attempts + 1, delivered_at=now, last_error=None))


async def mark_failed_attempt(connection: AsyncConnection, alert_id: int, *, error: str,
                              retry_at: datetime | None) -> None:
    """Record a failed attempt: retry at ``retry_at``, or give up when it is None."""
    values: dict[str, Any] = {"attempts": alerts.c.attempts + 1, "last_error": error[:2000]}
    if retry_at is None:
        values["status"] = "failed"
    else:
        values["next_attempt_at"] = retry_at
    await connection.execute(alerts.update().where(alerts.c.id == alert_id).values(**values))


async def list_alerts(connection: AsyncConnection, status: str | None,
                      limit: int) -> list[Row[Any]]:
    """Return the newest alerts, optionally only those with ``status``."""
    query = select(alerts).order_by(alerts.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(alerts.c.status == status)
    return list(await connection.execute(query))
