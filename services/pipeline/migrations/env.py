"""Alembic environment of the pipeline schema."""

from baton_runtime.migrations import run_env
from services.pipeline.store import metadata

run_env(metadata)
