"""Routing over real PostgreSQL: territories share their leads in a rotation of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import count

import pytest

from tests.integration.test_routing_api import state
from tests.integration.test_routing_harness import Routing, lead_scored, running_routing
from tests.support.infrastructure import PostgresServer

pytestmark = pytest.mark.integration
KANTO = {"regions": ["関東"]}
KANSAI = {"regions": ["関西"]}


@pytest.fixture
async def routing(postgres: PostgresServer) -> AsyncIterator[Routing]:
    async with running_routing(await postgres.create_database()) as service:
        yield service


DOMAINS = count()


async def owners(routing: Routing, region: str, leads: int) -> list[tuple[str, str]]:
    """Score ``leads`` hot leads from ``region``, each of a new account, and return who got
    each and by which rule."""
    decisions = []
    for _ in range(leads):
        event = lead_scored(domain=f"company-{next(DOMAINS)}.co.jp")
        event = event.model_copy(update={
            "profile": event.profile.model_copy(update={"region": region})})
        await routing.handle(event)
        decision = (await state(routing, event.lead_id))["assignments"][-1]
        decisions.append((decision["rep_id"], decision["rule"]))
    return decisions


async def test_territory_leads_rotate_among_its_reps_and_are_no_round_robin_turns(
        routing: Routing) -> None:
    for rep_id in ("kanto1", "kanto2"):
        await routing.put_rep(rep_id, territory=KANTO)
    await routing.put_rep("anyone")
    assert await owners(routing, "関東", 4) == [
        ("kanto1", "territory"), ("kanto2", "territory")] * 2
    # Their territory's leads took none of kanto1's and kanto2's turns in the team's round
    # robin (DESIGN's third rule): each is next in it as anyone is.
    assert await owners(routing, "九州", 3) == [
        ("anyone", "round_robin"), ("kanto1", "round_robin"), ("kanto2", "round_robin")]


async def test_a_rep_new_to_a_territory_joins_its_rotation_level_with_its_reps(
        routing: Routing) -> None:
    for rep_id in ("kanto1", "kanto2"):
        await routing.put_rep(rep_id, territory=KANTO)
    await routing.put_rep("kansai", territory=KANSAI)
    assert await owners(routing, "関東", 4) == [
        ("kanto1", "territory"), ("kanto2", "territory")] * 2
    assert await owners(routing, "関西", 1) == [("kansai", "territory")]
    # kansai moves to 関東, where the others have had two turns each, not one as kansai had
    # in 関西: kansai starts level with them rather than taking two leads in a row.
    await routing.put_rep("kansai", territory=KANTO)
    assert [rep_id for rep_id, _ in await owners(routing, "関東", 3)] == [
        "kansai", "kanto1", "kanto2"]
    await routing.put_rep("kanto3", territory=KANTO)
    assert [rep_id for rep_id, _ in await owners(routing, "関東", 4)] == [
        "kansai", "kanto1", "kanto2", "kanto3"]
