"""Recording captures: what the capture routes call inside their unit of work.

A capture claims its idempotency key first, so a repeat or a concurrent duplicate
writes nothing; then it merges the lead, emits lead.captured and stores the touchpoint.
A signed request received before writes nothing either: it gets the answer its first
sending got if that was recorded under its idempotency key, and is refused otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from typing import Any

from baton_runtime.consumer import distinct_runs
from baton_runtime.uow import UnitOfWork
from schemas.events import Attribution, LeadCaptured, PartnerNotes, Touchpoint
from services.ingest import domain, store
from services.ingest.submissions import Accepted, ActivitySubmission, LeadSubmission

PROFILE_FIELDS = ("name", "company", "company_domain", "title", "department", "phone",
                  "industry", "employee_band", "region")


class IdempotencyConflict(Exception):
    """The idempotency key was used before for a different request."""


class ReplayedSignature(Exception):
    """This exact signed request was received before, and is no retry of a recorded one."""


@dataclass(frozen=True)
class Capture:
    """A validated submission and the touchpoint it reports, as recording needs them."""

    submission: LeadSubmission | ActivitySubmission
    source: str
    touchpoint: Touchpoint
    idempotency_key: str | None = None
    campaign: str | None = None
    attribution: Attribution | None = None
    partner_notes: PartnerNotes | None = None
    lead_id: uuid.UUID = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lead_id", domain.lead_id_for(self.submission.email))

    def patch(self) -> dict[str, Any]:
        """Return the profile fields stated (absent ones leave the lead's as they are)."""
        values = {name: getattr(self.submission, name) for name in PROFILE_FIELDS}
        values["email"] = self.submission.email
        if isinstance(self.submission, LeadSubmission):
            values["consent"] = self.submission.consent
        return {name: value for name, value in values.items() if value is not None}

    def payload(self) -> str:
        """Return the submission as stored with its touchpoint, in JSON."""
        return self.submission.model_dump_json(exclude_none=True)

    def row(self, *, event_id: str) -> store.CaptureRow:
        """Return what storing this capture under ``event_id`` writes."""
        email, patch = self.submission.email, self.patch()
        return store.CaptureRow(
            lead_id=self.lead_id, email=email, patch=patch,
            account_key=domain.account_key(email, patch.get("company"),
                                           patch.get("company_domain")),
            event_id=event_id, source=self.source, type_=self.touchpoint.type.value,
            occurred_at=self.touchpoint.occurred_at, payload=self.payload())

    def fingerprint(self) -> str:
        """Return what tells a repeat of this request from other content under its key.

        A batch line's ``kind`` is left out: it says which endpoint a record would have
        gone to, so the same record posted alone and as a line is one request.
        """
        submission = self.submission
        return domain.fingerprint(submission.__pydantic_serializer__.to_json(
            submission, exclude={"kind"}))


@dataclass(frozen=True)
class Submitted:
    """A capture to record, and if it was signed, the (scope, signature) to remember."""

    capture: Capture
    signature: tuple[str, str] | None = None


@dataclass(frozen=True)
class Outcome:
    """What recording a capture answered, whether it was an earlier answer repeated, and
    whether that was for a signed request received before."""

    accepted: Accepted
    replayed: bool = False
    resent: bool = False


def lead_capture(submission: LeadSubmission, *, source: str, now: datetime,
                 idempotency_key: str | None) -> Capture:
    """Return the capture of a form submission."""
    stated = {"lead_source": submission.source, "utm_source": submission.utm_source,
              "utm_medium": submission.utm_medium, "utm_campaign": submission.utm_campaign,
              "utm_term": submission.utm_term, "utm_content": submission.utm_content}
    # Every field of Attribution defaults to None: it is empty unless one was stated.
    attribution = Attribution(**stated) if any(
        value is not None for value in stated.values()) else None
    touchpoint = submission.touchpoint
    return Capture(
        submission, source,
        Touchpoint(type=touchpoint.type, occurred_at=touchpoint.occurred_at or now,
                   asset_id=touchpoint.asset_id, interacted=touchpoint.interacted),
        idempotency_key=idempotency_key or submission.event_id,
        campaign=submission.campaign or submission.utm_campaign,
        attribution=attribution,
    )


def activity_capture(submission: ActivitySubmission, *, source: str, now: datetime,
                     idempotency_key: str | None) -> Capture:
    """Return the capture of an activity; partner notes name the key's source by default."""
    notes = submission.partner_notes
    return Capture(
        submission, source,
        Touchpoint(type=domain.touchpoint_type_for(submission.type),
                   occurred_at=submission.occurred_at or now,
                   asset_id=submission.asset_id, interacted=submission.interacted),
        idempotency_key=idempotency_key or submission.event_id,
        campaign=submission.campaign,
        partner_notes=None if notes is None else PartnerNotes(
            **{**notes.model_dump(exclude_none=True), "partner": notes.partner or source}),
    )


def recording_order(captures: Sequence[tuple[int, Capture]]) -> list[tuple[int, Capture]]:
    """Return numbered captures in the order a batch records them: by lead, then line.

    One lead's rows are locked in one order by every batch, so batches cannot deadlock.
    A line reusing an earlier line's idempotency key follows that line wherever its own
    lead sorts, so the earlier line claims the key as it would sent alone first; such a
    line writes no lead (it is a replay or a conflict), so the lock order still holds.
    """
    first_lead: dict[str, uuid.UUID] = {}
    for _, capture in captures:
        if capture.idempotency_key is not None:
            first_lead.setdefault(capture.idempotency_key, capture.lead_id)

    def position(item: tuple[int, Capture]) -> tuple[uuid.UUID, int]:
        number, capture = item
        key = capture.idempotency_key
        return (capture.lead_id if key is None else first_lead[key]), number

    return sorted(captures, key=position)


async def signature_is_new(uow: UnitOfWork, scope: str, signature: str) -> bool:
    """Remember a request signature; return False if it was seen before."""
    return await store.remember_signature(uow.connection, scope, signature)


async def earlier_answers(uow: UnitOfWork, captures: Sequence[Capture]
                          ) -> list[Outcome | None]:
    """Return the answer each capture of a resent signed request (of one source, the
    signing key's) got at its first sending, None for one whose idempotency key was used
    for different content; write nothing.

    One query, however many captures: a resend must cost no more than a refusal did.
    Raises ReplayedSignature if a capture has no idempotency key, or none was recorded
    under it: answering would record it a second time.
    """
    keys = [capture.idempotency_key for capture in captures]
    if not captures:
        return []
    if None in keys:
        raise ReplayedSignature
    source = captures[0].source
    assert all(capture.source == source for capture in captures), "one request, one source"
    priors = await store.prior_requests(uow.connection, source=source,
                                        keys=[key for key in keys if key is not None])
    answers: list[Outcome | None] = []
    for capture in captures:
        prior = priors.get(capture.idempotency_key or "")
        if prior is None:
            raise ReplayedSignature
        try:
            answers.append(_repeated(prior, capture.fingerprint(), resent=True))
        except IdempotencyConflict:
            answers.append(None)
    return answers


async def record_or_conflict(uow: UnitOfWork, capture: Capture) -> Outcome | None:
    """Return ``record``'s outcome, None if the capture's key was used for other content."""
    try:
        return await record(uow, capture)
    except IdempotencyConflict:
        return None


async def record_submitted(uow: UnitOfWork, item: Submitted) -> Outcome:
    """Return the outcome of a single capture: ``record``'s, or for a signature seen
    before, ``earlier_answers``'.

    Raises ReplayedSignature for a resent request that retries no request recorded under
    its idempotency key, and IdempotencyConflict as ``record`` does.
    """
    if item.signature is None or await signature_is_new(uow, *item.signature):
        return await record(uow, item.capture)
    [answer] = await earlier_answers(uow, [item.capture])
    if answer is None:
        # The Idempotency-Key header is not signed: sent under another request's key, a
        # signed request seen before is no retry of its own.
        raise ReplayedSignature
    return answer


async def record(uow: UnitOfWork, capture: Capture) -> Outcome:
    """Record a capture and queue its lead.captured; repeat the answer to a repeated request.

    Raises IdempotencyConflict when the key was used for different content.
    """
    connection = uow.connection
    if capture.idempotency_key is not None:
        fingerprint = capture.fingerprint()
        prior = await store.claim_idempotency_key(
            connection, source=capture.source, key=capture.idempotency_key,
            fingerprint=fingerprint, lead_id=capture.lead_id)
        if prior is not None:
            return _repeated(prior, fingerprint, resent=False)
    row = capture.row(event_id=str(uuid.uuid4()))
    lead = await store.record_capture(
        connection, lead_id=row.lead_id, email=row.email, patch=row.patch,
        account_key=row.account_key, event_id=row.event_id, source=row.source,
        type_=row.type_, occurred_at=row.occurred_at, payload=row.payload,
        idempotency_key=capture.idempotency_key)
    return await _announce(uow, capture, row.event_id, lead)


async def record_many(uow: UnitOfWork, captures: Sequence[Capture]) -> list[Outcome]:
    """Record captures of distinct leads, none with an idempotency key, and queue their
    lead.captured events in order; return each one's outcome (``record`` for each, in one
    round trip)."""
    rows = [capture.row(event_id=str(uuid.uuid4())) for capture in captures]
    leads = await store.record_captures(uow.connection, rows)
    return [await _announce(uow, capture, row.event_id, leads[capture.lead_id])
            for capture, row in zip(captures, rows, strict=True)]


async def record_all(uow: UnitOfWork, submitted: Sequence[Submitted]) -> list[Outcome]:
    """Return the outcome of each submitted capture, recorded one after another.

    What ``record_submitted`` does for each, in the same order; runs of unsigned
    captures without an idempotency key are recorded by ``record_many``, each run cut
    where a lead repeats (a lead's row is merged once a statement). Raises what those
    raise.
    """
    outcomes: list[Outcome] = []
    for plain, items in groupby(submitted, key=_is_plain):
        if plain:
            for run in distinct_runs([item.capture for item in items], key=_lead_of):
                outcomes += await _record_run(uow, run)
            continue
        for item in items:
            outcomes.append(await record_submitted(uow, item))
    return outcomes


def _repeated(prior: store.PriorRequest, fingerprint: str, *, resent: bool) -> Outcome:
    """Return the earlier request's answer, repeated for a request with ``fingerprint``.

    Raises IdempotencyConflict if that request had other content (or was not recorded).
    """
    if prior.fingerprint != fingerprint or prior.event_id is None:
        raise IdempotencyConflict
    return Outcome(Accepted(lead_id=prior.lead_id, event_id=prior.event_id), replayed=True,
                   resent=resent)


def _is_plain(item: Submitted) -> bool:
    """Return True for a capture with no signature and no idempotency key."""
    return item.signature is None and item.capture.idempotency_key is None


def _lead_of(capture: Capture) -> uuid.UUID:
    """Return the lead a capture is about."""
    return capture.lead_id


async def _record_run(uow: UnitOfWork, run: list[Capture]) -> list[Outcome]:
    """Return the outcomes of a run of plain captures of distinct leads, recorded."""
    if len(run) == 1:  # the statement of one capture costs less than the JSON for one
        return [await record(uow, run[0])]
    return await record_many(uow, run)


async def _announce(uow: UnitOfWork, capture: Capture, event_id: str, lead: store.StoredLead
                    ) -> Outcome:
    """Move the stored lead to the account its merged profile names, if that changed, and
    queue its lead.captured; return the capture's outcome."""
    email = capture.submission.email
    account = domain.account_for(email, lead.profile.get("company"),
                                 lead.profile.get("company_domain"))
    if account.account_key != lead.account_key:
        await store.set_account_key(uow.connection, capture.lead_id, account.account_key)
    # Emitted under the id chosen above, which the touchpoint row already carries.
    uow.emit(LeadCaptured(
        lead_id=capture.lead_id, source=capture.source, profile=domain.profile_of(lead.profile),
        account=account, touchpoint=capture.touchpoint, campaign=capture.campaign,
        partner_notes=capture.partner_notes, attribution=capture.attribution,
        consent=lead.profile.get("consent"),
    ), event_id=event_id)
    return Outcome(Accepted(lead_id=capture.lead_id, event_id=event_id))
