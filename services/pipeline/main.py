"""Pipeline's wiring."""

from __future__ import annotations

from functools import partial

from baton_runtime.clock import system_clock
from baton_runtime.service import ServiceDefinition, serve
from schemas.events import LeadPromoted
from services.pipeline import api, handlers, store
from services.pipeline.settings import PipelineSettings

SETTINGS = PipelineSettings


def definition(settings: PipelineSettings) -> ServiceDefinition:
    """Return pipeline's wiring."""
    return ServiceDefinition(
        name="pipeline",
        tables=store.plumbing,
        handlers={LeadPromoted.topic: partial(handlers.on_lead_promoted, clock=system_clock)},
        routers=[api.router],
    )


if __name__ == "__main__":
    serve(SETTINGS, definition)
