"""Ingest's background duties: loading API keys, and forgetting expired request records."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial

import structlog

from baton_runtime.periodic import holds_exclusive_lock, run_periodically
from baton_runtime.service import ServiceContext
from baton_runtime.wakeup import Wakeup
from services.ingest import access, store
from services.ingest.access import KeyRing
from services.ingest.settings import IngestSettings

log = structlog.get_logger(__name__)
# A revoked key stops working at once (NOTIFY); this is the fallback if a notification is lost.
KEY_RELOAD_SECONDS = 30.0
FORGET_INTERVAL_SECONDS = 300.0


async def bootstrap_keys(context: ServiceContext, *, keys: KeyRing) -> None:
    """Store the keys of BATON_INGEST_API_KEYS (hashed) unless known, then load every key.

    A key revoked with ``baton keys revoke`` stays revoked even if it is still listed.
    """
    settings: IngestSettings = context.settings
    async with context.unit_of_work() as uow:
        for source, secret in settings.ingest_api_keys.items():
            key = secret.get_secret_value()
            await store.add_key(uow.connection, access.ApiKey(
                access.new_key_id(), source, access.hash_api_key(key)), access.key_hint(key))
        await uow.commit()
    await load_keys(context, keys=keys)


async def load_keys(context: ServiceContext, *, keys: KeyRing) -> None:
    """Replace the process's keys with the active keys in the database."""
    async with context.engine.connect() as connection:
        keys.replace(await store.active_keys(connection))


async def keep_keys_current(context: ServiceContext, stop: asyncio.Event, *,
                            keys: KeyRing) -> None:
    """Reload the keys whenever ``baton keys`` changes them, and every little while anyway."""
    async with Wakeup(context.settings.database_url, store.KEYS_CHANGED_CHANNEL) as wakeup:
        while not stop.is_set():
            try:
                await load_keys(context, keys=keys)  # also catches changes made before LISTEN
            except Exception:
                log.exception("reloading API keys failed; keeping the ones loaded")
            await wakeup.wait(stop, KEY_RELOAD_SECONDS)


async def forget_expired(context: ServiceContext) -> None:
    """Delete idempotency records past their retention and signatures past any replay window.

    Runs on one replica at a time; the others skip the pass.
    """
    settings: IngestSettings = context.settings
    async with context.unit_of_work() as uow:
        if not await holds_exclusive_lock(uow.connection, "ingest-forget-expired"):
            return
        now = context.clock()
        # A timestamp is accepted up to the tolerance either side of now.
        window = timedelta(seconds=2 * settings.ingest_signature_tolerance_seconds)
        await store.forget_before(
            uow.connection,
            idempotency_cutoff=now - timedelta(hours=settings.ingest_idempotency_retention_hours),
            signature_cutoff=now - window)
        await uow.commit()


async def forget_expired_requests(context: ServiceContext, stop: asyncio.Event) -> None:
    """Forget expired request records every few minutes until ``stop``."""
    await run_periodically("ingest-forget-expired", partial(forget_expired, context),
                           interval_seconds=FORGET_INTERVAL_SECONDS, stop=stop)
