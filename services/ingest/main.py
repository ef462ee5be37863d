"""Ingest's wiring."""

from __future__ import annotations

import dataclasses
from functools import partial

from starlette.middleware import Middleware

from baton_runtime.group_commit import GroupCommit
from baton_runtime.service import ServiceDefinition, serve
from services.ingest import api, handlers, store, workers
from services.ingest.access import KeyRing, RateLimiter
from services.ingest.adapters import load_mapping_file
from services.ingest.direct import DirectCaptures
from services.ingest.guard import NDJSON, BodyGuard
from services.ingest.settings import IngestSettings

SETTINGS = IngestSettings


def definition(settings: IngestSettings) -> ServiceDefinition:
    """Return ingest's wiring."""
    service = ServiceDefinition(name="ingest", tables=store.plumbing)
    keys = KeyRing()
    collaborators = api.Collaborators(
        keys=keys, limiter=RateLimiter(settings.ingest_rate_limit_per_minute),
        mappings=load_mapping_file(settings.ingest_webhook_mapping_file),
        commits=GroupCommit(handlers.record_all),
        batch=api.BatchLimits(records=settings.ingest_max_batch_records,
                              body_bytes=settings.ingest_max_batch_bytes))
    routes = api.router(collaborators)
    return dataclasses.replace(
        service,
        routers=[routes],
        startup=[partial(workers.bootstrap_keys, keys=keys)],
        workers=[partial(workers.keep_keys_current, keys=keys), workers.forget_expired_requests],
        middleware=[Middleware(
            BodyGuard, max_body_bytes=settings.ingest_max_body_bytes,
            large_bodies={"/v1/batch": settings.ingest_max_batch_bytes},
            content_types={"/v1/batch": NDJSON}),
            Middleware(DirectCaptures, routes=routes.routes)],
    )


if __name__ == "__main__":
    serve(SETTINGS, definition)
