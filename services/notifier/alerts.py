"""Recording alerts: one delivery record per alert and destination, never two."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier import messages, store
from services.notifier.domain import AUDIENCES, RUNG_ALERTS, AlertKind, ClockKind, Policy, Rung
from services.notifier.messages import AlertMessage, LeadCard, SlaNotice


async def record(connection: AsyncConnection, policy: Policy, kind: AlertKind,
                 message: AlertMessage, *, key: str, lead_id: uuid.UUID | None,
                 owner_id: str | None, team: str | None, clock_id: int | None = None) -> int:
    """Record ``message`` for each destination of ``kind``'s audience; return how many are
    new.

    ``key`` names the alert; with the destination it is the dedupe key, so an
    event delivered twice, or a timer fired twice, records nothing the second time.
    """
    destinations = policy.directory.destinations(AUDIENCES[kind], owner_id=owner_id, team=team)
    return await store.add_alerts(connection, key=key, kind=kind.value, channels=destinations,
                                  lead_id=lead_id, message=message.to_json(), clock_id=clock_id)


def card_of(lead: Row[Any] | None, lead_id: uuid.UUID) -> LeadCard:
    """Return the card of a lead as the notifier knows it, with its current owner and team."""
    if lead is None:
        return LeadCard(lead_id=lead_id, email="-")
    return replace(LeadCard.from_json(lead.card), owner_id=lead.owner_id,
                   owner_name=lead.owner_name, team=lead.team)


async def name_of(connection: AsyncConnection, rep_id: str | None, card: LeadCard
                  ) -> str | None:
    """Return the name of ``rep_id`` (a deal's owner, say): as read with the lead's card if
    they own the lead, else as last heard; None if unknown."""
    if rep_id is None:
        return None
    if rep_id == card.owner_id:
        return card.owner_name
    return await store.rep_name(connection, rep_id)


async def record_sla_alert(connection: AsyncConnection, policy: Policy, clock: Row[Any],
                           rung: Rung, *, at: datetime, stopped_late: bool = False) -> int:
    """Record the alert of a clock's ``rung``, or of a clock stopped after its due time."""
    kind = RUNG_ALERTS[rung]
    card, message = await _sla_message(connection, policy, clock, kind, at=at,
                                       stopped_late=stopped_late)
    # A late stop uses the breach's key: the breach is reported once, whoever sees it first.
    return await record(connection, policy, kind, message, key=f"sla:{clock.id}:{rung.name}",
                        lead_id=clock.lead_id, owner_id=card.owner_id, team=card.team,
                        clock_id=clock.id)


async def record_sla_cleared(connection: AsyncConnection, policy: Policy, clock: Row[Any]
                             ) -> int:
    """Record word that a clock whose breach was reported was met after all, for the
    destinations its breach and escalation alerts went to; return how many are new."""
    _, message = await _sla_message(connection, policy, clock, AlertKind.SLA_CLEARED,
                                    at=clock.stopped_at)
    # Where those alerts went, not where the directory points now: a rep who took the lead
    # since never heard of its breach. One per clock, whichever stop or redelivery finds
    # it met first.
    told = await store.alerted_channels(
        connection, lead_id=clock.lead_id, clock_id=clock.id,
        kinds=(AlertKind.SLA_BREACH.value, AlertKind.SLA_ESCALATION.value))
    return await store.add_alerts(connection, key=f"sla:{clock.id}:CLEARED",
                                  kind=AlertKind.SLA_CLEARED.value, channels=told,
                                  lead_id=clock.lead_id, message=message.to_json(),
                                  clock_id=clock.id)


async def _sla_message(connection: AsyncConnection, policy: Policy, clock: Row[Any],
                       kind: AlertKind, *, at: datetime, stopped_late: bool = False
                       ) -> tuple[LeadCard, AlertMessage]:
    """Return the card of a clock's lead and the SLA alert of ``kind`` about the clock."""
    card = card_of(await store.get_lead(connection, clock.lead_id), clock.lead_id)
    notice = SlaNotice(kind=kind, clock=ClockKind(clock.kind), lead=card,
                       started_at=clock.started_at, due_at=clock.due_at, at=at,
                       stopped_late=stopped_late)
    return card, messages.sla_alert(notice, policy.locale, str(policy.display_timezone))
