"""Notifier's API: the alerts it recorded and how their delivery went."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from baton_runtime.service import ServiceContext, context_of
from services.notifier import store

router = APIRouter(prefix="/v1", tags=["alerts"])


class Alert(BaseModel):
    """One alert on one channel and its delivery state."""

    id: int
    kind: str
    channel: str
    lead_id: uuid.UUID | None
    status: str
    attempts: int
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@router.get("/alerts", response_model=list[Alert])
async def list_alerts(
    context: Annotated[ServiceContext, Depends(context_of)],
    status: Literal["pending", "delivered", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[Alert]:
    """Return the newest alerts; ``status=failed`` lists permanent failures."""
    async with context.unit_of_work() as uow:
        rows = await store.list_alerts(uow.connection, status, limit)
    return [Alert.model_validate(row, from_attributes=True) for row in rows]
