"""Where the tests' PostgreSQL and Kafka come from: variables, testcontainers or embedded."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateSchema

from baton_runtime.db import connect_driver, create_engine, plain_url
from baton_runtime.embedded import embedded_postgres
from baton_runtime.kafka import all_topics

# Short group timeouts: a restarted member otherwise waits for the dead one's session.
FAST_GROUP_SETTINGS = {
    "BATON_KAFKA_SESSION_TIMEOUT_MS": "3000",
    "BATON_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
    "BATON_KAFKA_REBALANCE_TIMEOUT_MS": "2000",
    "BATON_KAFKA_IDEMPOTENT_PRODUCER": "false",
    "BATON_KAFKA_TOPIC_PARTITIONS": "3",
}


@dataclass(frozen=True)
class PostgresServer:
    """An admin URL on a server where tests may create databases."""

    admin_url: str

    async def create_database(self) -> str:
        """Create an empty database and return its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        connection = await connect_driver(self.admin_url, "tests")
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    async def terminate(self, pid: int) -> None:
        """End a server process from a connection of its own, as a restart or failover would."""
        admin = await connect_driver(self.admin_url, "tests")
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()

    async def engine_with(self, metadata: MetaData, *, pool_size: int = 10) -> AsyncEngine:
        """Return an engine on a new database holding ``metadata``'s schema and tables."""
        engine = create_engine(await self.create_database(), pool_size=pool_size)
        async with engine.begin() as connection:
            await connection.execute(CreateSchema(str(metadata.schema)))
            await connection.run_sync(metadata.create_all)
        return engine


def docker_requested() -> bool:
    """Return True when the tests were asked to use testcontainers and Docker answers."""
    if os.environ.get("BATON_TEST_CONTAINERS") != "1" or shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Yield the PostgreSQL server the test session uses."""
    if url := os.environ.get("BATON_DATABASE_URL"):
        yield PostgresServer(plain_url(url))
    elif docker_requested():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:17-alpine", driver=None) as container:
            yield PostgresServer(container.get_connection_url())
    else:
        with embedded_postgres(databases=()) as server:
            yield PostgresServer(server.url("postgres"))


@contextlib.contextmanager
def shared_kafka_broker() -> Iterator[str | None]:
    """Yield a cluster the whole session shares, or None when each test starts its own."""
    if servers := os.environ.get("BATON_KAFKA_BOOTSTRAP_SERVERS"):
        yield servers
    elif docker_requested():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.7.1").with_kraft() as container:
            yield container.get_bootstrap_server()
    else:
        yield None


async def delete_baton_topics(bootstrap_servers: str) -> None:
    """Delete every Baton topic on a shared cluster so a test starts from nothing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [topic for topic in all_topics() if topic in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
