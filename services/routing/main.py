"""Routing's wiring."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from baton_runtime.clock import system_clock
from baton_runtime.service import ServiceDefinition, serve
from schemas.events import DealPhaseChanged, DealRecycled, LeadScored
from services.routing import api, handlers, store
from services.routing.settings import RoutingSettings

SETTINGS = RoutingSettings


def definition(settings: RoutingSettings) -> ServiceDefinition:
    """Return routing's wiring for these settings."""
    return ServiceDefinition(
        name="routing",
        tables=store.plumbing,
        handlers={
            LeadScored.topic: partial(handlers.on_lead_scored, clock=system_clock,
                                      accept_within=timedelta(minutes=settings.mql_sla_minutes)),
            DealRecycled.topic: partial(handlers.on_deal_recycled, clock=system_clock),
            DealPhaseChanged.topic: partial(handlers.on_deal_phase_changed, clock=system_clock),
        },
        routers=[api.router],
    )


if __name__ == "__main__":
    serve(SETTINGS, definition)
