"""Alembic environment of the routing schema."""

from baton_runtime.migrations import run_env
from services.routing.store import metadata

run_env(metadata)
