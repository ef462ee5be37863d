"""Async SQLAlchemy engines and the inbox/outbox tables every service schema has."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from pydantic_core import to_json
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

# A connection used this recently is trusted without a ping; a busy pool pings nothing.
PING_AFTER_IDLE_SECONDS = 5.0
_IDLE_SINCE = "baton_idle_since"


# PostgreSQL aborted the transaction to break a deadlock or keep it serializable: nothing
# was written, and the same work will most likely pass if done again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def sqlstate_of(error: BaseException) -> str | None:
    """Return the SQLSTATE of a database error, raised through SQLAlchemy or by the driver
    itself; None for any other error."""
    return getattr(error.orig if isinstance(error, DBAPIError) else error, "sqlstate", None)


def asyncpg_url(url: str) -> str:
    """Return ``url`` with the asyncpg driver SQLAlchemy needs."""
    if url.startswith("postgresql+asyncpg://"):
        return url
    return "postgresql+asyncpg://" + url.removeprefix("postgresql://")


async def driver_of(connection: AsyncConnection) -> asyncpg.Connection:
    """Return the asyncpg connection under ``connection``."""
    sync = connection.sync_connection
    if sync is not None and not sync.closed and not sync.invalidated:
        pooled = sync.connection  # a live connection's: no I/O, so no greenlet needed
    else:
        pooled = await connection.get_raw_connection()
    driver = pooled.driver_connection
    assert isinstance(driver, asyncpg.Connection)
    return driver


async def _driver_in_transaction(connection: AsyncConnection) -> asyncpg.Connection | None:
    """Return ``connection``'s asyncpg connection if a transaction has begun on it, else None.

    A unit of work begins its transaction on the driver. Outside one, SQLAlchemy's asyncpg
    adapter sends BEGIN just before a transaction's first statement, so that statement
    must go through SQLAlchemy; later ones may go to asyncpg itself.
    """
    driver = await driver_of(connection)
    return driver if driver.is_in_transaction() else None


# The statements run for every request or event go to asyncpg directly where they can,
# prepared once per connection by asyncpg's statement cache: through SQLAlchemy's execute
# each cost about three times the CPU of the statement itself (about 300 against 100 us).
async def fetchrow(connection: AsyncConnection, statement: str, *arguments: Any
                   ) -> Mapping[Any, Any] | None:
    """Return the first row of ``statement`` ($1-style parameters) by column name, or None,
    run in ``connection``'s transaction."""
    driver = await _driver_in_transaction(connection)
    if driver is not None:
        return cast(Mapping[Any, Any] | None, await driver.fetchrow(statement, *arguments))
    return (await connection.exec_driver_sql(statement, arguments)).mappings().first()


def json_text(value: Any) -> bytes:
    """Return ``value`` as the UTF-8 JSON text of a ``json`` or ``jsonb`` parameter sent to
    the driver.

    pydantic's serialiser, a third of json.dumps's CPU: the texts differ (escapes,
    spacing, ``1e-05`` against ``1e-5``) but spell the same strings and the same
    decimal numbers, digit for digit, so JSONB stores the same value. Give it enum
    members as their values: it took 1.7 us for a member against 0.04 for a string.
    The bytes go to the server as they are on connections of ``create_engine``'s pools
    (see ``_accept_json_bytes``), not on ``connect_driver``'s: decoded to a str, the
    driver encoded them again, two passes over every batch's text.
    """
    return to_json(value)


def _json_parameter(value: str | bytes) -> bytes:
    """Return a ``json`` parameter as the bytes the driver sends: JSON text as UTF-8."""
    return value if isinstance(value, bytes) else value.encode()


JSONB_VERSION = b"\x01"  # what jsonb's binary format puts before the JSON text


def _jsonb_parameter(value: str | bytes) -> bytes:
    """Return a ``jsonb`` parameter as the bytes the driver sends: version, then UTF-8 text."""
    return JSONB_VERSION + _json_parameter(value)


def _jsonb_result(value: bytes) -> Any:
    """Return the value of a ``jsonb`` result in binary format (after its version byte)."""
    return json.loads(value[len(JSONB_VERSION):])


async def _accept_json_bytes(driver: asyncpg.Connection) -> None:
    """Make ``json`` and ``jsonb`` parameters take UTF-8 bytes as well as str, decoding
    results as before.

    SQLAlchemy's own codecs (binary format) take only a str; they are replaced here,
    after SQLAlchemy set them up on connecting.
    """
    await driver.set_type_codec("json", schema="pg_catalog", format="binary",
                                encoder=_json_parameter, decoder=json.loads)
    await driver.set_type_codec("jsonb", schema="pg_catalog", format="binary",
                                encoder=_jsonb_parameter, decoder=_jsonb_result)


def plain_url(url: str) -> str:
    """Return ``url`` without a SQLAlchemy driver suffix, as asyncpg itself expects."""
    return "postgresql://" + url.split("://", 1)[1]


async def connect_driver(url: str, application_name: str,
                         settings: Mapping[str, str] | None = None) -> asyncpg.Connection:
    """Return a new asyncpg connection outside the pool, named in pg_stat_activity, with
    ``settings`` (server parameters) of its own."""
    return await asyncpg.connect(plain_url(url), server_settings={
        **(settings or {}), "application_name": application_name})


def create_engine(url: str, *, pool_size: int | None = 10, application_name: str = "baton",
                  ping_after_idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> AsyncEngine:
    """Return an async engine for ``url`` with a bounded, health-checked pool (none when
    ``pool_size`` is None).

    A connection that sat idle in the pool for ``ping_after_idle_seconds`` is pinged
    before use and replaced if dead (the database restarted, a firewall dropped it).
    Not ``pool_pre_ping``: that pings every checkout, three round trips (BEGIN, a
    query, ROLLBACK) before each transaction. A connection that dies while in use
    fails its statement; SQLAlchemy then replaces every connection pooled before it.

    ``pool_size=None`` pools nothing: each checkout connects anew and checking in
    closes. An asyncpg connection belongs to the event loop that opened it, so that
    is the engine for callers that use it from more than one loop.
    """
    sizes: dict[str, Any] = ({"poolclass": NullPool} if pool_size is None
                             else {"pool_size": pool_size, "max_overflow": pool_size})
    engine = create_async_engine(
        asyncpg_url(url),
        connect_args={"server_settings": {"application_name": application_name}},
        **sizes,
    )
    pool, dialect = engine.sync_engine.pool, engine.sync_engine.dialect

    def note_idle(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def ping_if_idle(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)  # None: connected just now
        if idle_since is None or time.monotonic() - idle_since < ping_after_idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool connects anew; its other idle connections are likely dead too.
            raise InvalidatePoolError(f"ping after idle failed: {error!r}") from error

    def on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        dbapi_connection.run_async(_accept_json_bytes)

    event.listen(pool, "connect", on_connect)
    event.listen(pool, "checkin", note_idle)
    event.listen(pool, "checkout", ping_if_idle)
    return engine


@dataclass(frozen=True)
class PlumbingTables:
    """A service schema's inbox (consumed event ids) and outbox (events to publish)."""

    inbox: Table
    outbox: Table

    @property
    def schema(self) -> str:
        """Return the Postgres schema these tables live in."""
        assert self.outbox.schema is not None
        return self.outbox.schema

    @property
    def notify_channel(self) -> str:
        """Return the LISTEN/NOTIFY channel that wakes this schema's outbox relay."""
        return outbox_channel(self.schema)


def outbox_channel(schema: str) -> str:
    """Return the LISTEN/NOTIFY channel that wakes ``schema``'s outbox relay."""
    return f"{schema}_outbox"


def _wake_relay_on_insert(outbox: Table, connection: Connection, **_: Any) -> None:
    """Create the trigger that wakes the schema's outbox relay whenever rows are inserted.

    A commit then needs no round trip of its own to wake the relay; PostgreSQL delivers
    the notification only if the transaction commits, and once however many rows.
    """
    schema = outbox.schema
    assert schema is not None  # service_metadata gives every table its schema
    connection.exec_driver_sql(
        f'CREATE FUNCTION "{schema}".wake_outbox_relay() RETURNS trigger LANGUAGE plpgsql '
        f"AS $$ BEGIN PERFORM pg_notify('{outbox_channel(schema)}', ''); RETURN NULL; END $$")
    connection.exec_driver_sql(
        f'CREATE TRIGGER wake_outbox_relay AFTER INSERT ON "{schema}".outbox '
        f'FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".wake_outbox_relay()')


def service_metadata(schema: str) -> tuple[MetaData, PlumbingTables]:
    """Return a service's MetaData bound to its schema, with its inbox and outbox tables."""
    metadata = MetaData(schema=schema)
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer_group", Text, primary_key=True),
        Column("event_id", Text, primary_key=True),
        Column("topic", Text, nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    outbox = Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("topic", Text, nullable=False),
        Column("key", LargeBinary, nullable=False),
        Column("header_names", ARRAY(Text), nullable=False),
        Column("header_values", ARRAY(BYTEA), nullable=False),
        Column("value", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Index(f"ix_{schema}_outbox_topic_key_id", "topic", "key", "id"),
    )
    event.listen(outbox, "after_create", _wake_relay_on_insert)
    return metadata, PlumbingTables(inbox=inbox, outbox=outbox)


async def ping(engine: AsyncEngine) -> None:
    """Return once the database answers a trivial query; raise if it does not."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
