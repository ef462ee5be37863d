"""Notifier's event handlers: decide which alerts to send, and record them."""

from __future__ import annotations

from collections.abc import Sequence

from baton_runtime.uow import UnitOfWork
from schemas.events import LeadPromoted, LifecycleStage, Tier
from services.notifier import messages, store


async def on_lead_promoted(event: LeadPromoted, uow: UnitOfWork, *, channels: Sequence[str],
                           locale: str, timezone: str) -> None:
    """Record a hot-lead alert per channel when a tier-A lead becomes an MQL."""
    if event.to_stage is not LifecycleStage.MQL or event.tier is not Tier.A:
        return
    message = messages.hot_lead(event, locale, timezone).slack_payload()
    for channel in channels:
        await store.add_alert(
            uow.connection,
            dedupe_key=f"hot_lead:{event.lead_id}:{event.occurred_at.isoformat()}:{channel}",
            kind="hot_lead", channel=channel, lead_id=event.lead_id, message=message,
        )
