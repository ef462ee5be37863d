"""Alembic environment of the notifier schema."""

from baton_runtime.migrations import run_env
from services.notifier.store import metadata

run_env(metadata)
