"""A minimal real service for runtime tests: consumes lead.captured, emits lead.scored,
and emits one on request too (``POST /probe/scores?email=...``).

Run as ``python -m tests.support.probe_service``. With ``PROBE_KILL_AFTER_DB_COMMIT=1``
it kills itself with SIGKILL right after its first batch's database commit, before
the Kafka offset commit: the window at-least-once delivery has to survive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated

from aiokafka import TopicPartition
from fastapi import APIRouter, Depends
from sqlalchemy import Column, Integer, Table, Text, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_runtime.consumer import BatchHook
from baton_runtime.db import service_metadata
from baton_runtime.service import ServiceContext, ServiceDefinition, context_of, serve
from baton_runtime.settings import RuntimeSettings
from baton_runtime.uow import UnitOfWork
from schemas.events import Account, LeadCaptured, LeadProfile, LeadScored, Tier

metadata, tables = service_metadata("probe")
received = Table(
    "received",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lead_id", Text, nullable=False),  # deliberately not unique: duplicates must show
    Column("email", Text, nullable=False),
)
POISON_PREFIX = "poison"
# A lead whose e-mail starts with ``hold`` is handled only once its handler gets this
# advisory lock: a test holding it keeps the probe's batch (and so its shutdown) in hand.
HOLD_PREFIX = "hold"
HOLD_LOCK = 424242
# A request for an e-mail that starts with ``hold`` commits only once it gets this lock:
# a test holding it keeps the request in flight.
REQUEST_HOLD_LOCK = 434343


class PoisonPill(ValueError):
    """Raised by the probe handler for e-mails that start with ``poison``."""


async def on_lead_captured(event: LeadCaptured, uow: UnitOfWork) -> None:
    """Record the lead and emit a lead.scored for it; refuse poison pills, and wait for
    HOLD_LOCK to handle a lead to hold."""
    if event.profile.email.startswith(POISON_PREFIX):
        raise PoisonPill(f"cannot handle {event.profile.email}")
    if event.profile.email.startswith(HOLD_PREFIX):
        await uow.connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                     {"key": HOLD_LOCK})
    await uow.connection.execute(
        insert(received).values(lead_id=str(event.lead_id), email=event.profile.email)
    )
    uow.emit(scored(event.lead_id, event.profile, event.account, event.source))


def scored(lead_id: uuid.UUID, profile: LeadProfile, account: Account,
           source: str) -> LeadScored:
    """Return the lead.scored the probe emits for a lead."""
    return LeadScored(lead_id=lead_id, scored_at=datetime.now(UTC), score=50, tier=Tier.B,
                      reasons=[], model_version="probe", profile=profile, account=account,
                      source=source)


router = APIRouter()


@router.post("/probe/scores", status_code=202)
async def score_on_request(
    email: str, context: Annotated[ServiceContext, Depends(context_of)]
) -> dict[str, str]:
    """Return the id of the lead.scored emitted for ``email``, once it is committed; for
    an e-mail that starts with ``hold``, only once REQUEST_HOLD_LOCK is free."""
    async with context.unit_of_work() as uow:
        if email.startswith(HOLD_PREFIX):
            await uow.connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                         {"key": REQUEST_HOLD_LOCK})
        domain = email.partition("@")[2]
        event_id = uow.emit(scored(uuid.uuid4(), LeadProfile(email=email),
                                   Account(account_key=domain, domain=domain), "probe-api"))
        await uow.commit()
    return {"event_id": event_id}


async def kill_self(_: Mapping[TopicPartition, int]) -> None:
    """Die at once, as a crash between the database commit and the offset commit would."""
    os.kill(os.getpid(), signal.SIGKILL)


def definition(after_db_commit: tuple[BatchHook, ...] = ()) -> ServiceDefinition:
    """Return the probe service's wiring."""
    return ServiceDefinition(
        name="probe",
        tables=tables,
        handlers={LeadCaptured.topic: on_lead_captured},
        routers=[router],
        after_db_commit=after_db_commit,
    )


async def create_tables(engine: AsyncEngine) -> None:
    """Create the probe schema and its tables."""
    async with engine.begin() as connection:
        await connection.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS probe")
        await connection.run_sync(metadata.create_all)


async def received_counts(engine: AsyncEngine) -> tuple[int, int]:
    """Return (rows, distinct leads) the probe has recorded."""
    async with engine.connect() as connection:
        row = (await connection.execute(
            select(func.count(), func.count(received.c.lead_id.distinct()))
        )).one()
    return int(row[0]), int(row[1])


def spawn(environment: Mapping[str, str], port: int, *, kill_after_commit: bool = False,
          batch_size: int = 10) -> subprocess.Popen[bytes]:
    """Start the probe service as its own process with ``environment``'s BATON_ settings."""
    env = {**os.environ, **environment, "BATON_HTTP_PORT": str(port),
           "BATON_LOG_FORMAT": "console", "BATON_CONSUMER_BATCH_SIZE": str(batch_size)}
    if kill_after_commit:
        env["PROBE_KILL_AFTER_DB_COMMIT"] = "1"
    return subprocess.Popen([sys.executable, "-m", "tests.support.probe_service"], env=env)


if __name__ == "__main__":
    hooks = (kill_self,) if os.environ.get("PROBE_KILL_AFTER_DB_COMMIT") == "1" else ()
    serve(RuntimeSettings, lambda _: definition(hooks))
