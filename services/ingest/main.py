"""Ingest's wiring."""

from __future__ import annotations

from baton_runtime.service import ServiceDefinition, serve
from services.ingest import api, store
from services.ingest.settings import IngestSettings

SETTINGS = IngestSettings



def definition(settings: IngestSettings) -> ServiceDefinition:
    """Return ingest's wiring."""
    return ServiceDefinition(
        name="ingest",
        tables=store.plumbing,
        routers=[api.router],
    )


if __name__ == "__main__":
    serve(SETTINGS, definition)
