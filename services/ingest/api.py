"""Ingest's capture API."""

from __future__ import annotations

import hmac
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from baton_runtime.service import ServiceContext, context_of
from schemas.events import Account, LeadCaptured, LeadProfile, Touchpoint, TouchpointType
from services.ingest import domain, store
from services.ingest.settings import IngestSettings

router = APIRouter(prefix="/v1", tags=["capture"])

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class TouchpointIn(BaseModel):
    """The interaction being reported."""

    model_config = ConfigDict(extra="forbid")

    type: TouchpointType
    occurred_at: AwareDatetime | None = None
    asset_id: Annotated[str, Field(max_length=200)] | None = None
    interacted: bool = False


class LeadSubmission(BaseModel):
    """A form submission: who the lead is and what they did."""

    model_config = ConfigDict(extra="forbid")

    email: Annotated[str, Field(max_length=320, pattern=EMAIL_PATTERN)]
    name: Annotated[str, Field(max_length=200)] | None = None
    company: Annotated[str, Field(max_length=200)] | None = None
    title: Annotated[str, Field(max_length=200)] | None = None
    department: Annotated[str, Field(max_length=200)] | None = None
    phone: Annotated[str, Field(max_length=32)] | None = None
    industry: Annotated[str, Field(max_length=100)] | None = None
    employee_band: Annotated[str, Field(max_length=32)] | None = None
    region: Annotated[str, Field(max_length=100)] | None = None
    consent: bool = False
    campaign: Annotated[str, Field(max_length=200)] | None = None
    touchpoint: TouchpointIn


class Accepted(BaseModel):
    """What a 202 confirms: the touchpoint and its event are committed."""

    status: str = "accepted"
    lead_id: uuid.UUID
    event_id: str


def authenticated_source(
    context: Annotated[ServiceContext, Depends(context_of)],
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    """Return the source whose API key the request carries; refuse it otherwise."""
    settings: IngestSettings = context.settings
    if x_api_key is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing X-API-Key header")
    for source, key in settings.ingest_api_keys.items():
        if hmac.compare_digest(x_api_key.encode(), key.get_secret_value().encode()):
            return source
    raise HTTPException(status.HTTP_403_FORBIDDEN, "unknown API key")


@router.post(
    "/leads",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses={401: {"description": "No API key."}, 403: {"description": "Unknown API key."}},
)
async def capture_lead(
    submission: LeadSubmission,
    source: Annotated[str, Depends(authenticated_source)],
    context: Annotated[ServiceContext, Depends(context_of)],
) -> Accepted:
    """Commit the touchpoint and its lead.captured event, then answer 202."""
    email = domain.normalise_email(submission.email)
    company = domain.normalise_text(submission.company)
    lead_id = domain.lead_id_for(email)
    mail_domain = domain.email_domain(email)
    free_mail = domain.is_free_mail(mail_domain)
    event = LeadCaptured(
        lead_id=lead_id,
        source=source,
        profile=LeadProfile(
            email=email,
            name=domain.normalise_text(submission.name),
            company=company,
            title=domain.normalise_text(submission.title),
            department=domain.normalise_text(submission.department),
            phone=domain.normalise_text(submission.phone),
            industry=domain.normalise_text(submission.industry),
            employee_band=domain.normalise_text(submission.employee_band),
            region=domain.normalise_text(submission.region),
        ),
        account=Account(
            account_key=domain.account_key(email, company),
            domain=None if free_mail else mail_domain,
            company_name=company,
            free_mail=free_mail,
        ),
        touchpoint=Touchpoint(
            type=submission.touchpoint.type,
            occurred_at=submission.touchpoint.occurred_at or datetime.now(UTC),
            asset_id=submission.touchpoint.asset_id,
            interacted=submission.touchpoint.interacted,
        ),
        campaign=domain.normalise_text(submission.campaign),
    )
    async with context.unit_of_work() as uow:
        await store.record_lead(uow.connection, lead_id, email, event.account.account_key)
        event_id = uow.emit(event)
        await store.record_touchpoint(
            uow.connection, event_id=event_id, lead_id=lead_id, source=source,
            type_=event.touchpoint.type.value, occurred_at=event.touchpoint.occurred_at,
            payload=submission.model_dump(mode="json"),
        )
        await uow.commit()
    return Accepted(lead_id=lead_id, event_id=event_id)
