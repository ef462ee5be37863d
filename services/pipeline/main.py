"""Pipeline's wiring."""

from __future__ import annotations

import asyncio
from functools import partial

from baton_runtime.clock import Clock, system_clock
from baton_runtime.periodic import run_periodically
from baton_runtime.service import ServiceContext, ServiceDefinition, serve
from schemas.events import LeadPromoted
from services.pipeline import api, handlers, store, sweep
from services.pipeline.settings import PipelineSettings

SETTINGS = PipelineSettings


async def sweep_zombies(context: ServiceContext, stop: asyncio.Event) -> None:
    """Recycle zombie deals every sweep interval until ``stop``."""
    settings: PipelineSettings = context.settings
    job = partial(sweep.sweep_zombies, context.unit_of_work, settings.rules(), context.clock,
                  batch_size=settings.zombie_sweep_batch_size)
    await run_periodically("zombie-sweep", job,
                           interval_seconds=settings.zombie_sweep_interval_seconds, stop=stop)


def definition(settings: PipelineSettings, clock: Clock = system_clock) -> ServiceDefinition:
    """Return pipeline's wiring (tests pass a clock they control)."""
    return ServiceDefinition(
        name="pipeline",
        tables=store.plumbing,
        handlers={LeadPromoted.topic: partial(handlers.on_lead_promoted, clock=clock,
                                              probabilities=settings.rules().probabilities)},
        routers=[api.router],
        workers=[sweep_zombies],
        clock=clock,
    )


if __name__ == "__main__":
    serve(SETTINGS, definition)
