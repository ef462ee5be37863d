"""Notifier's wiring."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial

import httpx

from baton_runtime.consumer import Batched
from baton_runtime.periodic import holds_exclusive_lock, run_periodically
from baton_runtime.service import ServiceContext, ServiceDefinition, serve
from schemas.events import DealPhaseChanged, DealRecycled, LeadPromoted, LeadScored
from services.notifier import api, handlers, store
from services.notifier.channels import (
    SLACK_API_URL,
    allowed_hosts,
    host_guard,
    open_channels,
)
from services.notifier.config import NotifierConfig
from services.notifier.delivery import DeliveryWorker
from services.notifier.settings import NotifierSettings
from services.notifier.timers import TimerSweeper

SETTINGS = NotifierSettings


async def deliver_alerts(context: ServiceContext, stop: asyncio.Event, *,
                         config: NotifierConfig) -> None:
    """Run the delivery worker over the configured destinations."""
    settings: NotifierSettings = context.settings
    destinations = config.destinations
    guard = host_guard(allowed_hosts(destinations.values(), bot_api_url=SLACK_API_URL))
    async with httpx.AsyncClient(event_hooks={"request": [guard]}) as client:
        channels = open_channels(
            destinations, client,
            bot_token=settings.slack_bot_token.get_secret_value()
            if settings.slack_bot_token else None,
            smtp_url=settings.smtp_url, sender=settings.alert_email_from,
            slack_interval=timedelta(milliseconds=settings.slack_min_interval_ms))
        worker = DeliveryWorker(context.engine, channels, database_url=settings.database_url,
                                max_attempts=settings.delivery_max_attempts,
                                locale=config.policy.locale)
        await worker.run(stop)


async def sweep_timers(context: ServiceContext, stop: asyncio.Event, *,
                       config: NotifierConfig) -> None:
    """Fire SLA rungs as they fall due."""
    settings: NotifierSettings = context.settings
    sweeper = TimerSweeper(context.unit_of_work, config.policy, context.clock)
    await run_periodically("sla-timers", sweeper.fire_due,
                           interval_seconds=settings.sla_sweep_interval_ms / 1000, stop=stop)


# A start can arrive this late: replayed from a dead-letter topic, kept 30 days. A stop
# older than that can end no clock still to be handled.
STOPS_KEPT = timedelta(days=35)
FORGET_STOPS_SECONDS = 3600.0


async def forget_old_stops(context: ServiceContext) -> None:
    """Delete the clock stops no start can still arrive for (one replica at a time)."""
    async with context.unit_of_work() as uow:
        if not await holds_exclusive_lock(uow.connection, "notifier-forget-stops"):
            return
        await store.forget_stops_before(uow.connection, context.clock() - STOPS_KEPT)
        await uow.commit()


async def keep_stops_bounded(context: ServiceContext, stop: asyncio.Event) -> None:
    """Forget old clock stops every hour until ``stop``."""
    await run_periodically("notifier-forget-stops", partial(forget_old_stops, context),
                           interval_seconds=FORGET_STOPS_SECONDS, stop=stop)


def definition(settings: NotifierSettings) -> ServiceDefinition:
    """Return notifier's wiring."""
    config = settings.notifier_config()
    return ServiceDefinition(
        name="notifier",
        tables=store.plumbing,
        handlers={
            LeadScored.topic: Batched(partial(handlers.on_leads_scored, policy=config.policy)),
            LeadPromoted.topic: Batched(partial(handlers.on_leads_promoted,
                                                policy=config.policy)),
            DealPhaseChanged.topic: partial(handlers.on_deal_phase_changed,
                                            policy=config.policy),
            DealRecycled.topic: partial(handlers.on_deal_recycled, policy=config.policy),
        },
        routers=[api.router],
        workers=[partial(deliver_alerts, config=config), partial(sweep_timers, config=config),
                 keep_stops_bounded],
    )


if __name__ == "__main__":
    serve(SETTINGS, definition)
