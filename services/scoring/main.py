"""Scoring's wiring."""

from __future__ import annotations

import asyncio
from functools import partial

from baton_runtime.clock import Clock, system_clock
from baton_runtime.consumer import Batched
from baton_runtime.periodic import run_periodically
from baton_runtime.service import ServiceContext, ServiceDefinition, serve
from schemas.events import DealPhaseChanged, DealRecycled, LeadCaptured
from services.scoring import api, handlers, store
from services.scoring.model import ActiveModel, ModelOrigin
from services.scoring.settings import ScoringSettings

SETTINGS = ScoringSettings
MODEL_RELOAD_SECONDS = 5.0  # how soon a model replaced on another replica is used here


async def install_model(context: ServiceContext, *, active: ActiveModel) -> None:
    """Store the configured model if it is new, and start from the latest version."""
    settings: ScoringSettings = context.settings
    await handlers.install_model(context.unit_of_work, active,
                                 ModelOrigin.PACKAGED if settings.scoring_model_file is None
                                 else ModelOrigin.FILE)


async def decay_sweep(context: ServiceContext, stop: asyncio.Event, *,
                      active: ActiveModel) -> None:
    """Re-score leads whose decayed score, signals or activity change their standing."""
    settings: ScoringSettings = context.settings
    await run_periodically(
        handlers.SWEEP_LOCK,
        partial(handlers.sweep, context.unit_of_work, active, context.clock,
                settings.scoring_sweep_batch_size),
        interval_seconds=settings.scoring_sweep_interval_seconds, stop=stop)


async def follow_model(context: ServiceContext, stop: asyncio.Event, *,
                       active: ActiveModel) -> None:
    """Pick up a model another replica stored through the API."""
    await run_periodically("scoring.model-reload",
                           partial(handlers.reload_model, context.unit_of_work, active),
                           interval_seconds=MODEL_RELOAD_SECONDS, stop=stop)


def definition(settings: ScoringSettings, clock: Clock = system_clock) -> ServiceDefinition:
    """Return scoring's wiring; the model file is validated here, before anything starts."""
    active = ActiveModel(settings.scoring_model(), settings.scoring_reason_locale)
    return ServiceDefinition(
        name="scoring",
        tables=store.plumbing,
        handlers={
            LeadCaptured.topic: Batched(partial(handlers.on_leads_captured, active=active,
                                                clock=clock)),
            DealPhaseChanged.topic: handlers.on_deal_phase_changed,
            DealRecycled.topic: partial(handlers.on_deal_recycled, active=active, clock=clock),
        },
        routers=[api.router, api.model_router(active)],
        workers=[partial(decay_sweep, active=active), partial(follow_model, active=active)],
        startup=[partial(install_model, active=active)],
        clock=clock,
    )


if __name__ == "__main__":
    serve(SETTINGS, definition)
