"""Fixtures shared by every tier: real PostgreSQL and a real Kafka-protocol broker."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from baton_runtime.embedded import embedded_kafka
from baton_runtime.settings import RuntimeSettings
from tests.support.infrastructure import (
    FAST_GROUP_SETTINGS,
    PostgresServer,
    delete_baton_topics,
    postgres_server,
    shared_kafka_broker,
)

SettingsT = TypeVar("SettingsT", bound=RuntimeSettings)
# Each worker starts its own PostgreSQL and brokers: beyond a few, they only crowd the CPUs.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Return how many worker processes ``-n auto`` starts: one per core this process may
    run on, at most MAX_WORKERS; none when the tests use servers given in the environment.
    """
    if os.environ.get("BATON_DATABASE_URL") or os.environ.get("BATON_KAFKA_BOOTSTRAP_SERVERS"):
        # Shared servers: workers would delete each other's topics between tests, join
        # each other's consumer groups and see each other's connections.
        return 0
    return min(len(os.sched_getaffinity(0)), MAX_WORKERS)


@dataclass(frozen=True)
class Infrastructure:
    """A fresh database and a broker of one test's own, with the settings to reach them."""

    database_url: str
    bootstrap_servers: str

    def settings_values(self) -> dict[str, Any]:
        """Return this infrastructure's settings as field names and values."""
        return {key.removeprefix("BATON_").lower(): value
                for key, value in self.environment().items()}

    def settings(self, settings_class: type[SettingsT], **overrides: Any) -> SettingsT:
        """Return ``settings_class`` pointing at this infrastructure, with ``overrides``."""
        return settings_class(**{**self.settings_values(), **overrides})

    def environment(self) -> dict[str, str]:
        """Return the BATON_ variables that point a service at this infrastructure."""
        return {
            **FAST_GROUP_SETTINGS,
            "BATON_DATABASE_URL": self.database_url,
            "BATON_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
        }


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def shared_kafka() -> Iterator[str | None]:
    with shared_kafka_broker() as servers:
        yield servers


@pytest.fixture
async def infrastructure(
    postgres: PostgresServer, shared_kafka: str | None
) -> AsyncIterator[Infrastructure]:
    """Give the test an empty database and a broker with no Baton topics."""
    database_url = await postgres.create_database()
    if shared_kafka is not None:
        await delete_baton_topics(shared_kafka)
        yield Infrastructure(database_url, shared_kafka)
        return
    with embedded_kafka() as bootstrap:
        yield Infrastructure(database_url, bootstrap)
