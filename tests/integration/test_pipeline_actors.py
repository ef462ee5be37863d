"""Who changed a deal, over real PostgreSQL: every change through the API names its rep
(`rep_id`), the history shows it as `actor`, and changes the service makes itself (a lead
handed over by routing, the zombie sweep) show none."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from baton import registry
from baton_runtime.db import create_engine
from baton_runtime.migrations import downgrade, upgrade
from services.pipeline import handlers
from services.pipeline.sweep import sweep_zombies
from tests.integration.test_pipeline_deal_list import EVERY_CRITERION, START, DealApi, deal_api
from tests.integration.test_pipeline_service import promoted
from tests.support.infrastructure import PostgresServer

pytestmark = pytest.mark.integration
MIGRATIONS = registry.migrations_dir("pipeline")
OWNER, MANAGER = "field-sato", "mgr-ito"


async def history_of(api: DealApi, deal_id: str) -> list[tuple[str, str | None]]:
    """Return the deal's history as (action, actor) pairs, oldest first."""
    response = await api.client.get(f"/v1/deals/{deal_id}/history")
    assert response.status_code == 200, response.text
    return [(entry["action"], entry["actor"]) for entry in response.json()]


async def open_by_hand(api: DealApi, rep_id: str) -> str:
    """Return the id of a deal ``rep_id`` opened for OWNER through the API."""
    deal = await api.send("POST", "/v1/deals", {
        "lead_id": str(uuid.uuid4()), "owner_id": OWNER, "team": "field-east",
        "rep_id": rep_id})
    deal_id: str = deal["deal_id"]
    return deal_id


async def test_the_history_names_the_rep_behind_every_kind_of_change(
        postgres: PostgresServer) -> None:
    async with deal_api(postgres) as api:
        won = await open_by_hand(api, MANAGER)
        url = f"/v1/deals/{won}"
        await api.send("PATCH", url, {"rep_id": OWNER, "criteria": EVERY_CRITERION})
        await api.send("POST", f"{url}/advance", {"rep_id": OWNER, "to_phase": "P3"})
        await api.send("POST", f"{url}/move-back",
                       {"rep_id": MANAGER, "to_phase": "P2", "reason": "決裁者が交代"})
        await api.send("PUT", f"{url}/hold",
                       {"rep_id": OWNER, "until": "2027-01-31", "reason": "予算確定待ち"})
        await api.send("DELETE", f"{url}/hold?rep_id={MANAGER}")
        await api.send("POST", f"{url}/win", {"rep_id": MANAGER})
        lost = await open_by_hand(api, OWNER)
        await api.send("POST", f"/v1/deals/{lost}/lose",
                       {"rep_id": MANAGER, "reason": api.context.settings.lost_reasons[0]})

        assert await history_of(api, won) == [
            ("opened", MANAGER), ("updated", OWNER), ("advanced", OWNER),
            ("moved_back", MANAGER), ("held", OWNER), ("hold_released", MANAGER),
            ("won", MANAGER)]
        assert await history_of(api, lost) == [("opened", OWNER), ("lost", MANAGER)]


async def test_changes_the_service_makes_itself_have_no_actor(postgres: PostgresServer) -> None:
    lead_id = uuid.uuid4()
    async with deal_api(postgres) as api:
        probabilities = api.context.settings.rules().probabilities
        async with api.context.unit_of_work() as uow:
            await handlers.on_lead_promoted(promoted(lead_id, owner_id=OWNER), uow,
                                            clock=api.clock, probabilities=probabilities)
            await uow.commit()
        api.clock.advance(days=1)
        async with api.context.unit_of_work() as uow:
            await handlers.on_lead_promoted(promoted(lead_id, owner_id="field-suzuki")
                                            .model_copy(update={"occurred_at": api.clock()}),
                                            uow, clock=api.clock, probabilities=probabilities)
            await uow.commit()
        [deal] = (await api.client.get(f"/v1/leads/{lead_id}/deals")).json()
        await api.send("PATCH", f"/v1/deals/{deal['deal_id']}",
                       {"rep_id": "field-suzuki", "amount": 3_600_000})
        api.clock.now = START + timedelta(days=91)
        recycled = await sweep_zombies(api.context.unit_of_work, api.context.settings.rules(),
                                       api.clock, batch_size=10)

        assert recycled == 1
        assert await history_of(api, deal["deal_id"]) == [
            ("opened", None), ("updated", None), ("updated", "field-suzuki"),
            ("recycled", None)]


CHANGES: list[tuple[str, str, dict[str, Any]]] = [
    ("PATCH", "", {"amount": 1}),
    ("POST", "/advance", {}),
    ("POST", "/move-back", {"to_phase": "P1", "reason": "やり直し"}),
    ("POST", "/win", {}),
    ("POST", "/lose", {"reason": "no_budget"}),
    ("PUT", "/hold", {"until": "2027-01-31", "reason": "予算確定待ち"}),
]


async def test_a_change_without_a_rep_is_a_422_naming_rep_id_and_changes_nothing(
        postgres: PostgresServer) -> None:
    async with deal_api(postgres) as api:
        deal_id = await open_by_hand(api, OWNER)
        answers = []
        for rep in ({}, {"rep_id": ""}, {"rep_id": "  "}, {"rep_id": "\u3000"}):
            opening = await api.client.post("/v1/deals", json={
                "lead_id": str(uuid.uuid4()), "owner_id": OWNER, **rep})
            answers.append((f"POST /v1/deals {rep}", rep, opening))
            for method, path, body in CHANGES:
                response = await api.client.request(method, f"/v1/deals/{deal_id}{path}",
                                                     json={**body, **rep})
                answers.append((f"{method} {path} {rep}", rep, response))
            released = await api.client.delete(f"/v1/deals/{deal_id}/hold", params=rep)
            answers.append((f"DELETE /hold {rep}", rep, released))
        listed = (await api.page())["deals"]
        history = await history_of(api, deal_id)

    for call, rep, response in answers:
        assert response.status_code == 422, (call, response.text)
        [error] = response.json()["detail"]
        assert error["loc"] == ["query" if call.startswith("DELETE") else "body", "rep_id"], (
            call, response.text)
        if rep:  # given, but blank: said in those words, not as a pattern mismatch
            assert "must not be blank" in error["msg"], (call, response.text)
    assert [deal["deal_id"] for deal in listed] == [deal_id], "no deal opened"
    assert history == [("opened", OWNER)], "nothing changed"


async def test_the_actor_migration_leaves_earlier_entries_unattributed_and_downgrades(
        postgres: PostgresServer) -> None:
    database_url = await postgres.create_database()
    await asyncio.to_thread(upgrade, MIGRATIONS, database_url, "0003")
    earlier, later = uuid.uuid4(), uuid.uuid4()
    add_entry = ("INSERT INTO pipeline.phase_history (deal_id, action, to_phase, occurred_at) "
                 "VALUES (:d, 'opened', 'P1', :at)")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(add_entry), {"d": earlier, "at": START})
        await asyncio.to_thread(upgrade, MIGRATIONS, database_url)
        async with engine.begin() as connection:
            await connection.execute(text(
                "INSERT INTO pipeline.phase_history (deal_id, action, to_phase, occurred_at, "
                "actor) VALUES (:d, 'opened', 'P1', :at, :actor)"),
                {"d": later, "at": START, "actor": OWNER})
            upgraded: dict[uuid.UUID, str | None] = dict((await connection.execute(text(
                "SELECT deal_id, actor FROM pipeline.phase_history"))).all())
        await engine.dispose()
        await asyncio.to_thread(downgrade, MIGRATIONS, database_url, "0003")
        async with engine.begin() as connection:
            columns = set((await connection.execute(text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'pipeline' AND table_name = 'phase_history'"))).scalars())
            kept = set((await connection.execute(text(
                "SELECT deal_id FROM pipeline.phase_history"))).scalars())
            # The release before reads and writes the table as it was.
            await connection.execute(text(add_entry), {"d": uuid.uuid4(), "at": START})
        await engine.dispose()
        await asyncio.to_thread(upgrade, MIGRATIONS, database_url)
    finally:
        await engine.dispose()

    assert upgraded == {earlier: None, later: OWNER}
    assert "actor" not in columns and {"deal_id", "action", "reason"} <= columns
    assert kept == {earlier, later}, "the downgrade keeps every entry"

