"""Alembic, one migration history per service schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.operations import Operations
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from baton_runtime.db import asyncpg_url, service_metadata


def _config(script_location: Path, database_url: str) -> Config:
    """Return Alembic's configuration for the migrations in ``script_location``."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", asyncpg_url(database_url))
    return config


def upgrade(script_location: Path, database_url: str, revision: str = "head") -> None:
    """Apply the pending migrations in ``script_location`` up to ``revision`` (every one by
    default) to the database."""
    command.upgrade(_config(script_location, database_url), revision)


def downgrade(script_location: Path, database_url: str, revision: str) -> None:
    """Undo the migrations in ``script_location`` applied after ``revision``, as an operator
    rolling back would."""
    command.downgrade(_config(script_location, database_url), revision)


def run_env(metadata: MetaData) -> None:
    """Run migrations from a service's env.py, keeping its version table in its schema."""
    schema = metadata.schema
    assert schema is not None, "a service's metadata must name its schema"
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None

    def migrate(connection: Connection) -> None:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=False,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                # Replicas may start together: one migrates, the others wait here.
                await connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"),
                                         {"s": f"baton-migrate-{schema}"})
                await connection.run_sync(migrate)
        finally:
            await engine.dispose()

    asyncio.run(run())


def create_plumbing_tables(op: Operations, schema: str) -> None:
    """Create the inbox and outbox tables, as the runtime defines them, in ``schema``."""
    _, tables = service_metadata(schema)
    bind = op.get_bind()
    tables.inbox.create(bind)
    tables.outbox.create(bind)  # with its (topic, key, id) index
