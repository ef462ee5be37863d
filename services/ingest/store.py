"""Ingest's tables: leads and their touchpoints, API keys, idempotency and signature records."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    LargeBinary,
    Table,
    Text,
    any_,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_runtime.db import fetchrow, json_text, service_metadata
from services.ingest.access import ApiKey

metadata, plumbing = service_metadata("ingest")
KEYS_CHANGED_CHANNEL = "ingest_api_keys"

leads = Table(
    "leads",
    metadata,
    Column("lead_id", UUID(as_uuid=True), primary_key=True),
    Column("email", Text, nullable=False, unique=True),
    Column("account_key", Text, nullable=False),
    # Every profile field ever received, later values winning; the events carry it whole.
    Column("profile", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("first_seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
touchpoints = Table(
    "touchpoints",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("source", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("payload", JSONB, nullable=False),
)
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("source", Text, nullable=False),
    Column("key_hash", LargeBinary, nullable=False, unique=True),
    Column("key_hint", Text, nullable=False),
    # Kept as is: verifying an HMAC needs the secret itself.
    Column("signing_secret", Text),
    Column("rate_limit_per_minute", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
)
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("source", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("fingerprint", Text, nullable=False),
    Column("lead_id", UUID(as_uuid=True), nullable=False),
    Column("event_id", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now(),
           index=True),
)
request_signatures = Table(
    "request_signatures",
    metadata,
    Column("scope", Text, primary_key=True),
    Column("signature", Text, primary_key=True),
    Column("seen_at", DateTime(timezone=True), nullable=False, server_default=func.now(),
           index=True),
)


@dataclass(frozen=True)
class PriorRequest:
    """What an earlier request with the same idempotency key was and got."""

    fingerprint: str
    lead_id: uuid.UUID
    event_id: str | None


@dataclass(frozen=True)
class StoredLead:
    """A lead's merged profile and the account key stored with it."""

    profile: dict[str, Any]
    account_key: str


# The statements every capture runs go to asyncpg directly (baton_runtime.db.fetchrow).
CLAIM_KEY = (
    f"INSERT INTO {idempotency_keys.fullname} (source, key, fingerprint, lead_id) "
    "VALUES ($1, $2, $3, $4) ON CONFLICT (source, key) DO NOTHING RETURNING key"
)
PRIOR_REQUEST = (
    f"SELECT fingerprint, lead_id, event_id FROM {idempotency_keys.fullname} "
    "WHERE source = $1 AND key = $2"
)


async def claim_idempotency_key(connection: AsyncConnection, *, source: str, key: str,
                                fingerprint: str, lead_id: uuid.UUID) -> PriorRequest | None:
    """Claim ``key`` for this request; return the earlier request if it was claimed before.

    A concurrent request with the same key waits here until the first one's
    transaction ends, so only one of them ever goes on to write.
    """
    if await fetchrow(connection, CLAIM_KEY, source, key, fingerprint, lead_id) is not None:
        return None
    prior = await prior_request(connection, source=source, key=key)
    assert prior is not None  # claimed, and claims are deleted only long after
    return prior


async def prior_requests(connection: AsyncConnection, *, source: str,
                         keys: Sequence[str]) -> dict[str, PriorRequest]:
    """Return the earlier requests that claimed ``keys``, by key, in one query."""
    rows = await connection.execute(
        select(idempotency_keys.c.key, idempotency_keys.c.fingerprint,
               idempotency_keys.c.lead_id, idempotency_keys.c.event_id)
        # One array parameter: IN with a parameter a key was a new statement for the driver
        # to prepare at every distinct count.
        .where(idempotency_keys.c.source == source, idempotency_keys.c.key == any_(
            bindparam("keys", list(keys), type_=ARRAY(Text)))))
    return {row.key: PriorRequest(row.fingerprint, row.lead_id, row.event_id) for row in rows}


async def prior_request(connection: AsyncConnection, *, source: str, key: str
                        ) -> PriorRequest | None:
    """Return the earlier request that claimed ``key``, or None if none did."""
    prior = await fetchrow(connection, PRIOR_REQUEST, source, key)
    return None if prior is None else PriorRequest(prior["fingerprint"], prior["lead_id"],
                                                   prior["event_id"])


async def remember_signature(connection: AsyncConnection, scope: str, signature: str) -> bool:
    """Record a request signature; return False if it was seen before (a replay)."""
    result = await connection.execute(
        pg_insert(request_signatures).values(scope=scope, signature=signature)
        .on_conflict_do_nothing(index_elements=["scope", "signature"])
        .returning(request_signatures.c.signature)
    )
    return result.first() is not None


def _record_capture_statement(*, with_idempotency_key: bool) -> str:
    """Return the one statement that merges the lead, stores the touchpoint (and its key).

    Parameters: lead id, e-mail, account key, profile patch (JSON text), event id,
    source, touchpoint type, occurrence time, payload (JSON text) and idempotency key.
    """
    answered = f"""
        , answered AS (
            UPDATE {idempotency_keys.fullname} SET event_id = $5
            WHERE source = $6 AND key = $10
        )""" if with_idempotency_key else ""
    return f"""
        WITH merged AS (
            INSERT INTO {leads.fullname} AS lead (lead_id, email, account_key, profile)
            VALUES ($1, $2, $3, $4::json::jsonb)
            ON CONFLICT (lead_id) DO UPDATE
                SET profile = lead.profile || excluded.profile, updated_at = now()
            RETURNING lead.profile, lead.account_key
        ), touchpoint AS (
            INSERT INTO {touchpoints.fullname}
                (event_id, lead_id, source, type, occurred_at, payload)
            VALUES ($5, $1, $6, $7, $8, $9::text::jsonb)
        ){answered}
        SELECT profile::text, account_key FROM merged
    """


RECORD_CAPTURE = _record_capture_statement(with_idempotency_key=False)
RECORD_KEYED_CAPTURE = _record_capture_statement(with_idempotency_key=True)


async def record_capture(connection: AsyncConnection, *, lead_id: uuid.UUID, email: str,
                         patch: dict[str, Any], account_key: str, event_id: str, source: str,
                         type_: str, occurred_at: datetime, payload: str,
                         idempotency_key: str | None) -> StoredLead:
    """Merge ``patch`` into the lead (creating it) and store the touchpoint; return the lead.

    The touchpoint is stored under the id of the event that will announce it, and that
    id under the idempotency key; ``payload`` is the submission as JSON text.
    ``account_key`` is stored only for a new lead (see ``set_account_key``). One round
    trip for all of it.
    """
    arguments = (lead_id, email, account_key, json_text(patch), event_id, source, type_,
                 occurred_at, payload)
    if idempotency_key is None:
        row = await fetchrow(connection, RECORD_CAPTURE, *arguments)
    else:
        row = await fetchrow(connection, RECORD_KEYED_CAPTURE, *arguments, idempotency_key)
    assert row is not None  # the insert or update of the lead returns it
    return StoredLead(json.loads(row["profile"]), row["account_key"])


# Captures recorded together: one row each, sent as one JSON array (one text parameter).
# asyncpg encodes an array parameter element by element at about 4k instructions each;
# pydantic_core writes the whole document at a fraction of that, and PostgreSQL reads it
# with jsonb_to_recordset, which hands each patch to its jsonb column as it is (from a
# json text, each was parsed again: 22 against 16 us of server CPU a capture). Every
# lead appears once (a row can be merged once a statement).
RECORD_CAPTURES = f"""
    WITH capture AS (
        SELECT * FROM jsonb_to_recordset($1::jsonb) AS capture(
            lead_id uuid, email text, account_key text, patch jsonb, event_id text,
            source text, type text, occurred_at timestamptz, payload text)
    ), merged AS (
        INSERT INTO {leads.fullname} AS lead (lead_id, email, account_key, profile)
        -- The order /v1/batch locks leads in, so that the two never deadlock.
        SELECT lead_id, email, account_key, patch FROM capture ORDER BY lead_id
        ON CONFLICT (lead_id) DO UPDATE
            SET profile = lead.profile || excluded.profile, updated_at = now()
        RETURNING lead.lead_id, lead.profile, lead.account_key
    ), touchpoint AS (
        INSERT INTO {touchpoints.fullname}
            (event_id, lead_id, source, type, occurred_at, payload)
        SELECT event_id, lead_id, source, type, occurred_at, payload::jsonb FROM capture
    )
    SELECT json_agg(json_build_array(lead_id, profile, account_key))::text AS leads FROM merged
"""


@dataclass(frozen=True)
class CaptureRow:
    """What ``record_captures`` stores of one capture (see ``record_capture``)."""

    lead_id: uuid.UUID
    email: str
    patch: dict[str, Any]
    account_key: str
    event_id: str
    source: str
    type_: str
    occurred_at: datetime
    payload: str

    def fields(self) -> dict[str, Any]:
        """Return the row as RECORD_CAPTURES reads it: its columns by name."""
        # The moment in UTC, which PostgreSQL reads back exactly (to the microsecond);
        # the payload as the text it is (the statement casts it as the single statement
        # does), rather than parsed and written again.
        return {"lead_id": self.lead_id, "email": self.email, "account_key": self.account_key,
                "patch": self.patch, "event_id": self.event_id, "source": self.source,
                "type": self.type_, "occurred_at": self.occurred_at.astimezone(UTC),
                "payload": self.payload}


async def record_captures(connection: AsyncConnection, rows: Sequence[CaptureRow]
                          ) -> dict[uuid.UUID, StoredLead]:
    """Merge each row's patch into its lead and store its touchpoint; return the leads.

    ``record_capture`` for many captures of distinct leads, without idempotency keys, in
    one round trip. Raises ValueError if a lead appears twice.
    """
    if len({row.lead_id for row in rows}) != len(rows):
        raise ValueError("a lead can be merged once a statement")
    if not rows:
        return {}
    found = await fetchrow(connection, RECORD_CAPTURES,
                           json_text([row.fields() for row in rows]))
    assert found is not None and found["leads"] is not None  # each lead inserted or updated
    return {uuid.UUID(lead_id): StoredLead(profile, account_key)
            for lead_id, profile, account_key in json.loads(found["leads"])}


async def set_account_key(connection: AsyncConnection, lead_id: uuid.UUID, account_key: str
                          ) -> None:
    """Move the lead to another account (its company became known or changed)."""
    await connection.execute(
        update(leads).where(leads.c.lead_id == lead_id).values(account_key=account_key))


async def active_keys(connection: AsyncConnection) -> list[ApiKey]:
    """Return every API key that is not revoked."""
    rows = await connection.execute(
        select(api_keys.c.key_id, api_keys.c.source, api_keys.c.key_hash,
               api_keys.c.signing_secret, api_keys.c.rate_limit_per_minute)
        .where(api_keys.c.revoked_at.is_(None))
    )
    return [ApiKey(row.key_id, row.source, bytes(row.key_hash), row.signing_secret,
                   row.rate_limit_per_minute) for row in rows]


async def add_key(connection: AsyncConnection, key: ApiKey, hint: str) -> bool:
    """Store a key unless one with the same hash exists (even revoked); return if stored."""
    result = await connection.execute(
        pg_insert(api_keys)
        .values(key_id=key.key_id, source=key.source, key_hash=key.key_hash, key_hint=hint,
                signing_secret=key.signing_secret,
                rate_limit_per_minute=key.rate_limit_per_minute)
        .on_conflict_do_nothing(index_elements=["key_hash"])
        .returning(api_keys.c.key_id)
    )
    return result.first() is not None


async def all_keys(connection: AsyncConnection) -> list[dict[str, Any]]:
    """Return every key's public facts, newest first: never the hash or signing secret."""
    rows = await connection.execute(
        select(api_keys.c.key_id, api_keys.c.source, api_keys.c.key_hint,
               api_keys.c.signing_secret.is_not(None).label("signed"),
               api_keys.c.rate_limit_per_minute, api_keys.c.created_at, api_keys.c.revoked_at)
        .order_by(api_keys.c.created_at.desc(), api_keys.c.key_id)
    )
    return [dict(row._mapping) for row in rows]


async def revoke_key(connection: AsyncConnection, key_id: str, at: datetime) -> bool:
    """Revoke a key; return False if there is no such active key."""
    result = await connection.execute(
        update(api_keys).where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=at).returning(api_keys.c.key_id)
    )
    return result.first() is not None


async def announce_keys_changed(connection: AsyncConnection) -> None:
    """Tell running ingest processes, at commit, to reload their keys."""
    await connection.execute(text("SELECT pg_notify(:channel, '')"),
                             {"channel": KEYS_CHANGED_CHANNEL})


async def forget_before(connection: AsyncConnection, *, idempotency_cutoff: datetime,
                        signature_cutoff: datetime) -> tuple[int, int]:
    """Delete idempotency records and seen signatures older than their cutoffs; return counts."""
    keys = await connection.execute(
        idempotency_keys.delete().where(idempotency_keys.c.created_at < idempotency_cutoff))
    signatures = await connection.execute(
        request_signatures.delete().where(request_signatures.c.seen_at < signature_cutoff))
    return keys.rowcount, signatures.rowcount
