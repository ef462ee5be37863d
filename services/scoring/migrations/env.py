"""Alembic environment of the scoring schema."""

from baton_runtime.migrations import run_env
from services.scoring.store import metadata

run_env(metadata)
