"""A release's packaged scoring model at start-up: installed over the packaged model it
follows, never over a model someone chose through the API or a model file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from baton import registry
from baton_runtime.db import create_engine
from baton_runtime.migrations import upgrade
from baton_runtime.uow import UnitOfWorkFactory, unit_of_work_factory
from services.scoring import handlers, store
from services.scoring.model import (
    DEFAULT_MODEL_FILE,
    ActiveModel,
    ModelOrigin,
    ScoringModel,
    load_model,
)
from tests.support.databases import migrated_database
from tests.support.infrastructure import PostgresServer
from tests.support.kafka import wait_until
from tests.support.locks import waiting_for_a_lock

pytestmark = pytest.mark.integration
PACKAGED = load_model(DEFAULT_MODEL_FILE)


def earlier(version: str) -> ScoringModel:
    """Return a model of other rules than the packaged one's, as stored under ``version``."""
    return PACKAGED.model_copy(update={"version": version,
                                       "description": f"rules stored as {version}"})


@dataclass(frozen=True)
class Models:
    """Scoring's model versions in a freshly migrated database."""

    engine: AsyncEngine
    unit_of_work: UnitOfWorkFactory

    async def store(self, *stored: tuple[str, ModelOrigin]) -> None:
        """Store these versions (other rules than the packaged model's), in this order."""
        async with self.unit_of_work() as uow:
            for version, origin in stored:
                await store.add_model(uow.connection, version,
                                      earlier(version).model_dump(mode="json"), origin)
            await uow.commit()

    async def latest(self) -> str | None:
        """Return the version replicas follow: the one stored last."""
        async with self.unit_of_work() as uow:
            latest = await store.latest_model(uow.connection)
        return latest.version if latest is not None else None


@pytest.fixture
async def models(postgres: PostgresServer) -> AsyncIterator[Models]:
    async with migrated_database(postgres, "scoring", store.plumbing, "/scoring") as database:
        yield Models(database.engine, database.unit_of_work)


@pytest.mark.parametrize(("stored", "active_after"), [
    # The packaged model of the release before: the new release's replaces it.
    ([("2026.1", ModelOrigin.PACKAGED)], PACKAGED.version),
    # Chosen through PUT /v1/model or a model file, after the packaged one: it stays.
    ([("2026.1", ModelOrigin.PACKAGED), ("acme-3", ModelOrigin.API)], "acme-3"),
    ([("acme-file-1", ModelOrigin.FILE)], "acme-file-1"),
    # Chosen under the packaged version's own name: still chosen, and start-up goes on.
    ([("2026.1", ModelOrigin.PACKAGED), (PACKAGED.version, ModelOrigin.API)],
     PACKAGED.version),
    # A packaged model installed over a chosen one (as releases before this did): releases
    # follow it again.
    ([("acme-3", ModelOrigin.API), ("2026.1", ModelOrigin.PACKAGED)], PACKAGED.version),
    ([], PACKAGED.version),
])
async def test_a_new_packaged_model_is_installed_only_over_a_packaged_one(
        models: Models, stored: list[tuple[str, ModelOrigin]], active_after: str) -> None:
    await models.store(*stored)
    active = ActiveModel(PACKAGED, "ja")
    await handlers.install_model(models.unit_of_work, active, ModelOrigin.PACKAGED)
    assert active.model.version == active_after
    assert await models.latest() == active_after, "replicas follow it"


async def test_the_migration_marks_the_released_packaged_model_and_keeps_a_chosen_one_active(
        postgres: PostgresServer) -> None:
    # Before the migration, models did not say where they came from: 2026.1 is the only
    # packaged version released before it, so any other was chosen.
    database_url = await postgres.create_database()
    migrations = registry.migrations_dir("scoring")
    await asyncio.to_thread(upgrade, migrations, database_url, "0002")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            for version in ("2026.1", "acme-3"):
                await connection.execute(store.models.insert().values(
                    version=version, definition=earlier(version).model_dump(mode="json")))
        await engine.dispose()
        await asyncio.to_thread(upgrade, migrations, database_url)
        async with engine.connect() as connection:
            origins = dict((await connection.execute(
                store.models.select().with_only_columns(
                    store.models.c.version, store.models.c.origin))).all())
        assert origins == {"2026.1": "packaged", "acme-3": "api"}
        active = ActiveModel(PACKAGED, "ja")
        await handlers.install_model(unit_of_work_factory(engine, store.plumbing, "/scoring"),
                                     active, ModelOrigin.PACKAGED)
        assert active.model.version == "acme-3"
    finally:
        await engine.dispose()


async def test_a_model_chosen_while_a_replica_starts_stays_active(models: Models) -> None:
    # A PUT /v1/model (or a replica starting with a model file) commits its model while a
    # replica of the new release starts: the start-up must see it before deciding, or it
    # would store the packaged model after it and make that the active one.
    await models.store(("2026.1", ModelOrigin.PACKAGED))
    active = ActiveModel(PACKAGED, "ja")
    async with models.unit_of_work() as chosen:
        await store.lock_models(chosen.connection)
        await store.add_model(chosen.connection, "acme-3",
                              earlier("acme-3").model_dump(mode="json"), ModelOrigin.API)
        starting = asyncio.create_task(
            handlers.install_model(models.unit_of_work, active, ModelOrigin.PACKAGED))

        async def waiting_or_done() -> bool:
            return starting.done() or await waiting_for_a_lock(models.engine)

        await wait_until(waiting_or_done, 10,
                         "the start-up to wait for the model being chosen, or finish")
        await chosen.commit()
    await starting
    assert active.model.version == "acme-3"
    assert await models.latest() == "acme-3", "replicas follow it"
