"""The unit of work: state, inbox row and outbox rows committed in one transaction.

The transaction is the driver's own (asyncpg's BEGIN, SAVEPOINT and COMMIT), on a
pooled connection that SQLAlchemy runs in autocommit mode: its statements then run
inside that transaction as they are, and statements sent to asyncpg directly do too.
Through SQLAlchemy's transaction instead, BEGIN waited for the first statement and
that statement had to go through SQLAlchemy's execute; with its commit and the rest,
that cost about 210,000 more instructions for every transaction (callgrind: an ingest
group of one capture took 1.29 million against 1.08 million now, a group of five 3.27
million against 3.06 million).
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Self

from asyncpg.transaction import Transaction
from sqlalchemy import TextClause, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from baton_runtime.db import PlumbingTables, driver_of, json_text
from baton_runtime.kafka import MAX_REQUEST_SIZE, record_size
from schemas.envelope import KafkaRecord, encode
from schemas.events import Event


class EventTooLargeError(ValueError):
    """An event is larger than a Kafka request may be: no relay could ever publish it."""


class UnitOfWork:
    """One database transaction; only ``commit`` makes its work visible.

    Handlers and API routes use ``connection`` for their own tables and ``emit``
    for outgoing events; events are written to the outbox at commit, in the same
    transaction, and published by the relay afterwards. ``connection`` must be in
    SQLAlchemy's autocommit mode (``unit_of_work_factory`` opens it so): the
    transaction is begun on its driver connection.
    """

    def __init__(self, connection: AsyncConnection, tables: PlumbingTables, source: str) -> None:
        self.connection = connection
        self._tables = tables
        self._source = source
        self._pending: list[KafkaRecord] = []
        self._transaction: Transaction | None = None
        self._claim_many, self._insert_outbox = _statements(tables.schema)

    async def __aenter__(self) -> Self:
        await self._begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is None:  # committed, or never begun
            return
        # A failed rollback closed the connection: nothing was committed, and the block's
        # own error (one the caller may have caught, a statement's) says what went wrong.
        with contextlib.suppress(Exception):
            await self._guarded(transaction.rollback)

    async def _guarded(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run a step that begins or ends the transaction; if it fails, close the connection.

        Whether the server still holds a transaction is then unknown, and SQLAlchemy, which
        did not begin it, would pool the connection without ending it. The step is called
        inside: asyncpg refuses a closed connection's step as it is called.
        """
        try:
            await step()
        except BaseException:
            await self._close_connection()
            raise

    async def _close_connection(self) -> None:
        """Close the connection; if it died, let SQLAlchemy see that by a statement.

        A statement that fails on a dead connection makes SQLAlchemy replace every
        connection pooled before it too (after a restart they are likely dead as well);
        the driver's own BEGIN, COMMIT and ROLLBACK never pass through SQLAlchemy.
        """
        if self.connection.invalidated:  # SQLAlchemy saw a statement fail on it already
            return
        if (await driver_of(self.connection)).is_closed():
            with contextlib.suppress(DBAPIError):
                await self.connection.exec_driver_sql("SELECT 1")
        if not self.connection.invalidated:
            await self.connection.invalidate()

    async def _begin(self) -> None:
        """Begin the transaction on the driver connection."""

        async def begin() -> None:
            transaction = (await driver_of(self.connection)).transaction()
            await transaction.start()
            self._transaction = transaction

        await self._guarded(begin)

    def emit(self, event: Event, *, event_id: str | None = None) -> str:
        """Queue ``event`` for the outbox (under ``event_id`` if given); return its id.

        Raises EventTooLargeError if the event is too large to publish: in the outbox, it
        would fail every batch of the relay that took it, for ever.
        """
        event_id = event_id or str(uuid.uuid4())
        record = encode(event, source=self._source, event_id=event_id)
        _refuse_if_too_large(record, "event")
        self._pending.append(record)
        return event_id

    def emit_record(self, record: KafkaRecord) -> None:
        """Queue an already encoded record, e.g. a dead letter, for the outbox.

        Raises EventTooLargeError if the record is too large to publish, as ``emit`` does.
        """
        _refuse_if_too_large(record, "record")
        self._pending.append(record)

    async def discard(self) -> None:
        """Undo everything written and emitted so far, and go on in a fresh transaction."""
        transaction, self._transaction = self._transaction, None
        assert transaction is not None, "the unit of work has ended"
        await self._guarded(transaction.rollback)
        self._pending.clear()
        await self._begin()

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Run a block whose database writes and emitted events are undone if it raises."""
        assert self._transaction is not None, "the unit of work has ended"
        mark = len(self._pending)
        nested = (await driver_of(self.connection)).transaction()  # inside one: a SAVEPOINT
        await nested.start()
        try:
            yield
        except BaseException:
            await nested.rollback()
            del self._pending[mark:]
            raise
        await nested.commit()

    async def claim(self, consumer_group: str, event_id: str, topic: str, partition: int,
                    offset: int) -> bool:
        """Record ``event_id`` as consumed by the group; return False if it already was."""
        inbox = self._tables.inbox
        statement = (
            pg_insert(inbox)
            .values(consumer_group=consumer_group, event_id=event_id, topic=topic,
                    partition=partition, offset=offset)
            .on_conflict_do_nothing(index_elements=["consumer_group", "event_id"])
            .returning(inbox.c.event_id)
        )
        return (await self.connection.execute(statement)).first() is not None

    async def claim_many(self, consumer_group: str,
                         claims: Sequence[tuple[str, str, int, int]]) -> set[str]:
        """Record many (event id, topic, partition, offset) at once; return the ids new to
        the group (one statement for a whole batch)."""
        if not claims:
            return set()
        fresh = await self.connection.scalar(self._claim_many, {
            "group": consumer_group, "claims": json_text([
                {"event_id": event_id, "topic": topic, "partition": partition, "offset": offset}
                for event_id, topic, partition, offset in claims])})
        return set(fresh)

    async def commit(self) -> None:
        """Write pending outbox rows and commit everything at once (the outbox's trigger
        wakes the relay)."""
        transaction = self._transaction
        assert transaction is not None, "the unit of work has ended"
        if self._pending:
            await (await driver_of(self.connection)).executemany(self._insert_outbox, [
                (record.topic, record.key, text_array(tuple(name for name, _ in record.headers)),
                 bytea_array(value for _, value in record.headers), record.value)
                for record in self._pending])
        self._transaction = None
        await self._guarded(transaction.commit)
        self._pending.clear()


def _refuse_if_too_large(record: KafkaRecord, kind: str) -> None:
    """Raise EventTooLargeError, naming ``record`` as a ``kind`` of its topic, if it is
    larger than a Kafka request may be: in the outbox, it would stall the relay for ever."""
    size = record_size(record)
    if size > MAX_REQUEST_SIZE:
        raise EventTooLargeError(
            f"a {record.topic} {kind} is {size} bytes as a Kafka record, over the "
            f"{MAX_REQUEST_SIZE}-byte limit of a Kafka request: it could never be published")


@functools.lru_cache(maxsize=64)
def _statements(schema: str) -> tuple[TextClause, str]:
    """Return a service's inbox claim and outbox insert, built once (text() parses its SQL)."""
    # The claims go as one JSON text, not as four arrays: the driver's array encoder
    # checks every element against abstract base classes, which cost more than the rest
    # of claiming a batch did.
    # The new ids come back as one array in one row: a row each cost more to read than
    # the statement's own work in Python.
    claim_many = text(
        f'WITH claimed AS (INSERT INTO "{schema}".inbox '
        '(consumer_group, event_id, topic, partition, "offset") '
        "SELECT :group, * FROM json_to_recordset(CAST(:claims AS json)) "
        'AS claim(event_id text, topic text, partition int, "offset" bigint) '
        "ON CONFLICT DO NOTHING RETURNING event_id) "
        "SELECT coalesce(array_agg(event_id), '{}') FROM claimed"
    )
    insert_outbox = (
        f'INSERT INTO "{schema}".outbox (topic, key, header_names, header_values, '
        "value) VALUES ($1, $2, $3::text::text[], $4::text::bytea[], $5)"
    )
    return claim_many, insert_outbox


# The outbox's header arrays are sent as array literals, one text parameter each: the
# driver's array encoder checks every element's type against abstract base classes,
# which made writing an outbox row about twice as costly.
@functools.lru_cache(maxsize=256)  # an event type's header names are always the same
def text_array(items: tuple[str, ...]) -> str:
    """Return ``items`` as a PostgreSQL array literal, each element quoted."""
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"


def bytea_array(items: Iterable[bytes]) -> str:
    """Return ``items`` as a PostgreSQL bytea[] literal, each element in hex."""
    return "{" + ",".join(f'"\\\\x{item.hex()}"' for item in items) + "}"


UnitOfWorkFactory = Callable[[], contextlib.AbstractAsyncContextManager[UnitOfWork]]


def unit_of_work_factory(
    engine: AsyncEngine, tables: PlumbingTables, source: str
) -> UnitOfWorkFactory:
    """Return a callable that opens a new unit of work on its own pooled connection."""
    # The same pool; SQLAlchemy sets autocommit at checkout and resets it at checkin.
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.asynccontextmanager
    async def open_unit_of_work() -> AsyncIterator[UnitOfWork]:
        async with (autocommit.connect() as connection,
                    UnitOfWork(connection, tables, source) as uow):
            yield uow

    return open_unit_of_work
