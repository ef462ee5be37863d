"""Wake-ups by NOTIFY keep coming after the listening connection is lost (a database
restart, a failover, an idle connection cut by a firewall)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from baton_runtime.db import connect_driver
from baton_runtime.wakeup import Wakeup
from tests.support.infrastructure import PostgresServer
from tests.support.kafka import wait_until

pytestmark = pytest.mark.integration

CHANNEL = "wakeup_test"
LISTENER = f"{CHANNEL} listener"  # the application name of the Wakeup's connection
NEVER = 600.0  # a poll interval no test waits out: only a notification ends a wait


async def listening_pids(connection: asyncpg.Connection) -> list[int]:
    """Return the server processes of Wakeup connections that have sent their LISTEN."""
    rows = await connection.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
        "AND state = 'idle' AND query LIKE 'LISTEN%'", LISTENER)
    return [row["pid"] for row in rows]


async def test_a_wakeup_whose_connection_was_lost_wakes_its_waiter_and_listens_again(
    postgres: PostgresServer,
) -> None:
    database_url = await postgres.create_database()
    admin = await connect_driver(database_url, "tests")
    stop = asyncio.Event()
    try:
        async with Wakeup(database_url, CHANNEL) as wakeup:
            await wait_until(lambda: _one_listening(admin), 30, "the Wakeup to LISTEN")
            [lost] = await listening_pids(admin)
            waiting = asyncio.create_task(wakeup.wait(stop, poll_seconds=NEVER))
            await postgres.terminate(lost)
            # Notifications sent while nobody listened are lost: the waiter must look now.
            await asyncio.wait_for(waiting, 30)

            # The next wait listens again, and returns: what was notified before is unknown.
            await asyncio.wait_for(wakeup.wait(stop, poll_seconds=NEVER), 30)
            await wait_until(lambda: _one_listening(admin), 30, "the Wakeup to LISTEN again")
            assert lost not in await listening_pids(admin)

            waiting = asyncio.create_task(wakeup.wait(stop, poll_seconds=NEVER))
            await admin.execute(f"NOTIFY {CHANNEL}")
            await asyncio.wait_for(waiting, 30)
    finally:
        await admin.close()


async def _one_listening(admin: asyncpg.Connection) -> bool:
    """Return True once exactly one Wakeup connection listens."""
    return len(await listening_pids(admin)) == 1


async def test_a_wakeup_that_could_not_listen_at_first_listens_once_the_database_answers(
    postgres: PostgresServer,
) -> None:
    name = f"wakeup_{uuid.uuid4().hex[:12]}"
    database_url = postgres.admin_url.rsplit("/", 1)[0] + f"/{name}"
    stop = asyncio.Event()
    async with Wakeup(database_url, CHANNEL) as wakeup:  # the database is not there yet
        creator = await connect_driver(postgres.admin_url, "tests")
        try:
            await creator.execute(f'CREATE DATABASE "{name}"')
        finally:
            await creator.close()
        admin = await connect_driver(database_url, "tests")
        try:
            await asyncio.wait_for(wakeup.wait(stop, poll_seconds=NEVER), 30)
            assert len(await listening_pids(admin)) == 1
            waiting = asyncio.create_task(wakeup.wait(stop, poll_seconds=NEVER))
            await admin.execute(f"NOTIFY {CHANNEL}")
            await asyncio.wait_for(waiting, 30)
        finally:
            await admin.close()
