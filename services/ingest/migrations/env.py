"""Alembic environment of the ingest schema."""

from baton_runtime.migrations import run_env
from services.ingest.store import metadata

run_env(metadata)
