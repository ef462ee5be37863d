"""Routing's wiring."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial

from baton_runtime.business_time import BusinessCalendar
from baton_runtime.clock import Clock, system_clock
from baton_runtime.consumer import Batched
from baton_runtime.periodic import run_periodically
from baton_runtime.service import ServiceContext, ServiceDefinition, serve
from schemas.events import DealPhaseChanged, DealRecycled, LeadScored
from services.routing import api, handlers, slack, store
from services.routing.settings import RoutingSettings

SETTINGS = RoutingSettings
# A pass gives each team at most this many queued leads; the rest wait for the next pass.
QUEUE_PASS_LIMIT = 100


async def assign_queues(context: ServiceContext, stop: asyncio.Event, *,
                        calendar: BusinessCalendar) -> None:
    """Offer queued leads to reps who became available, every interval until ``stop``."""
    settings: RoutingSettings = context.settings
    await run_periodically(
        handlers.QUEUE_PASS_LOCK,
        partial(handlers.assign_all_queued, context.unit_of_work, context.clock, calendar,
                QUEUE_PASS_LIMIT),
        interval_seconds=settings.routing_queue_interval_seconds, stop=stop)


def definition(settings: RoutingSettings, clock: Clock = system_clock) -> ServiceDefinition:
    """Return routing's wiring for these settings (``clock`` is for tests)."""
    calendar = settings.business_calendar()
    return ServiceDefinition(
        name="routing",
        tables=store.plumbing,
        handlers={
            LeadScored.topic: Batched(partial(
                handlers.on_leads_scored, clock=clock,
                accept_within=timedelta(minutes=settings.mql_sla_minutes),
                calendar=calendar,
                outbound_sources=settings.routing_outbound_sources)),
            DealRecycled.topic: partial(handlers.on_deal_recycled, clock=clock),
            DealPhaseChanged.topic: partial(handlers.on_deal_phase_changed, clock=clock,
                                            calendar=calendar),
        },
        lock_first=partial(handlers.lock_batch,
                           outbound_sources=settings.routing_outbound_sources),
        routers=[api.router, slack.router],
        workers=[partial(assign_queues, calendar=calendar)],
        clock=clock,
    )


if __name__ == "__main__":
    serve(SETTINGS, definition)
