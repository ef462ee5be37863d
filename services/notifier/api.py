"""Notifier's API: the alerts it recorded, how their delivery went, and the SLA clocks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from baton_runtime.service import ServiceContext, context_of
from services.notifier import store
from services.notifier.domain import AlertKind, ClockKind

router = APIRouter(prefix="/v1", tags=["alerts"])
Limit = Annotated[int, Query(ge=1, le=500)]


class Alert(BaseModel):
    """One alert on one destination and its delivery state."""

    id: int
    kind: AlertKind
    channel: str
    title: str
    lead_id: uuid.UUID | None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_error: str | None
    digest_size: int | None
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None


ClockState = Literal["open", "overdue", "met", "breached", "superseded"]


class SlaClock(BaseModel):
    """One SLA clock: when it reminds, falls due and escalates, and how it ended.

    A superseded clock was taken over in time by another: one of its kind falling due
    earlier, the MQL clock, or the clock of its meeting set again. One taken over after its
    due time, or after its breach alert went out, is listed breached: a breach counts once,
    on the clock it was reported for. A first meeting's clock starts at the meeting's time,
    often days after the appointment that set it (``set_at``): it is listed open from the
    appointment on, and fires nothing before its reminder, which falls after the meeting.
    """

    id: int
    lead_id: uuid.UUID
    kind: ClockKind
    rule: str
    state: ClockState
    started_at: datetime
    remind_at: datetime
    due_at: datetime
    escalate_at: datetime
    rungs_fired: int
    stopped_at: datetime | None
    stop_reason: str | None
    set_at: datetime | None = Field(
        default=None, description="When the event that set a clock starting later happened "
                                  "(a partner's appointment, for a first meeting); none for "
                                  "a clock that started when it was set.")


class LeadSla(BaseModel):
    """A lead as the notifier knows it, with its SLA clocks, newest first."""

    lead_id: uuid.UUID
    stage: str | None
    owner_id: str | None
    team: str | None
    clocks: list[SlaClock]


def _clock(row: Any, now: datetime) -> SlaClock:
    """Return the API view of a clock; an open clock past its due time is overdue."""
    state = row.status
    if state == store.OPEN and now > row.due_at:
        state = store.OVERDUE
    return SlaClock.model_validate({**row._mapping, "state": state})


@router.get("/alerts", response_model=list[Alert])
async def list_alerts(
    context: Annotated[ServiceContext, Depends(context_of)],
    status: Literal["pending", "delivered", "failed"] | None = None,
    kind: AlertKind | None = None,
    lead_id: uuid.UUID | None = None,
    limit: Limit = 100,
) -> list[Alert]:
    """Return the newest alerts; ``status=failed`` lists permanent failures."""
    async with context.unit_of_work() as uow:
        rows = await store.list_alerts(uow.connection, status=status,
                                       kind=kind.value if kind else None, lead_id=lead_id,
                                       limit=limit)
    return [Alert.model_validate({**row._mapping, "title": row.message["title"]})
            for row in rows]


@router.get("/sla/clocks", response_model=list[SlaClock])
async def list_clocks(
    context: Annotated[ServiceContext, Depends(context_of)],
    lead_id: uuid.UUID | None = None,
    status: ClockState | None = None,
    limit: Limit = 100,
) -> list[SlaClock]:
    """Return the newest SLA clocks, optionally of one lead or in one state (the ``state``
    each clock is listed with)."""
    now = context.clock()
    async with context.unit_of_work() as uow:
        rows = await store.list_clocks(uow.connection, lead_id=lead_id, state=status, now=now,
                                       limit=limit)
    return [_clock(row, now) for row in rows]


@router.get("/leads/{lead_id}/sla", response_model=LeadSla,
            responses={404: {"description": "The notifier has seen no event of this lead."}})
async def lead_sla(lead_id: uuid.UUID,
                   context: Annotated[ServiceContext, Depends(context_of)]) -> LeadSla:
    """Return a lead's SLA clocks (open, overdue, met, breached or superseded) and owner."""
    async with context.unit_of_work() as uow:
        lead = await store.get_lead(uow.connection, lead_id)
        if lead is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead {lead_id}")
        now = context.clock()
        rows = await store.list_clocks(uow.connection, lead_id=lead_id, state=None, now=now,
                                       limit=500)
    return LeadSla(lead_id=lead_id, stage=lead.stage, owner_id=lead.owner_id, team=lead.team,
                   clocks=[_clock(row, now) for row in rows])

