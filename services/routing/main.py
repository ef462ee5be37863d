"""Routing's wiring."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from baton_runtime.clock import Clock, system_clock
from baton_runtime.consumer import Batched
from baton_runtime.service import ServiceDefinition, serve
from schemas.events import DealPhaseChanged, DealRecycled, LeadScored
from services.routing import api, handlers, slack, store
from services.routing.settings import RoutingSettings

SETTINGS = RoutingSettings


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
        routers=[api.router, slack.router],
        clock=clock,
    )


if __name__ == "__main__":
    serve(SETTINGS, definition)
