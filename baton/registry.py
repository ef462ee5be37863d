"""The five services: their modules, migrations and default ports."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import services
from baton_runtime.service import ServiceDefinition, consumer_group_of
from baton_runtime.settings import RuntimeSettings

SERVICES: tuple[str, ...] = ("ingest", "scoring", "routing", "pipeline", "notifier")
DEFAULT_BASE_PORT = 8001


def default_port(name: str, base_port: int = DEFAULT_BASE_PORT) -> int:
    """Return the service's HTTP port in the local stack (ingest 8001 ... notifier 8005)."""
    return base_port + SERVICES.index(name)


def migrations_dir(name: str) -> Path:
    """Return the directory of the service's Alembic migrations."""
    return Path(services.__file__).parent / name / "migrations"


def load(name: str) -> tuple[type[RuntimeSettings], Callable[[Any], ServiceDefinition]]:
    """Return the service's settings class and the function that wires it."""
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")
    module = importlib.import_module(f"services.{name}.main")
    return module.SETTINGS, module.definition


def inbox_schemas() -> dict[str, str]:
    """Return each service's consumer group with the database schema of its inbox."""
    return {consumer_group_of(name):
            importlib.import_module(f"services.{name}.store").plumbing.schema
            for name in SERVICES}
