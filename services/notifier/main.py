"""Notifier's wiring."""

from __future__ import annotations

import asyncio
from functools import partial

import httpx

from baton_runtime.service import ServiceContext, ServiceDefinition, serve
from schemas.events import LeadPromoted
from services.notifier import api, handlers, store
from services.notifier.channels import Channel, ConsoleChannel, SlackWebhookChannel
from services.notifier.delivery import DeliveryWorker
from services.notifier.settings import NotifierSettings

SETTINGS = NotifierSettings


def channel_names(settings: NotifierSettings) -> list[str]:
    """Return the channels alerts go to: Slack if configured, else the console."""
    return [SlackWebhookChannel.name] if settings.slack_webhook_url else [ConsoleChannel.name]


async def deliver_alerts(context: ServiceContext, stop: asyncio.Event) -> None:
    """Run the delivery worker with the configured channels."""
    settings: NotifierSettings = context.settings
    async with httpx.AsyncClient() as client:
        channels: dict[str, Channel] = {ConsoleChannel.name: ConsoleChannel()}
        if settings.slack_webhook_url:
            channels[SlackWebhookChannel.name] = SlackWebhookChannel(
                client, str(settings.slack_webhook_url))
        worker = DeliveryWorker(context.engine, channels, database_url=settings.database_url,
                                max_attempts=settings.delivery_max_attempts,
                                clock=context.clock)
        await worker.run(stop)


def definition(settings: NotifierSettings) -> ServiceDefinition:
    """Return notifier's wiring."""
    return ServiceDefinition(
        name="notifier",
        tables=store.plumbing,
        handlers={
            LeadPromoted.topic: partial(handlers.on_lead_promoted,
                                        channels=channel_names(settings),
                                        locale=settings.alert_locale,
                                        timezone=settings.alert_timezone),
        },
        routers=[api.router],
        workers=[deliver_alerts],
    )


if __name__ == "__main__":
    serve(SETTINGS, definition)
