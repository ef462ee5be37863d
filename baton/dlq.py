"""``baton dlq``: list the messages consumers gave up on, and replay them once fixed."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from baton import registry
from baton.arguments import positive_number
from baton.failures import broker_unreachable, without_password
from baton.table import table
from baton_runtime.db import connect_driver
from baton_runtime.dead_letters import DeadLetter, read_dead_letters, read_originals, replay
from baton_runtime.kafka import KafkaPublisher
from baton_runtime.settings import KafkaSettings, RuntimeSettings, load_settings
from baton_runtime.text import clip
from schemas.events import TOPICS, dead_letter_topic

# Characters of a letter's error in the table, on one line; --json gives it whole.
ERROR_SHOWN = 80
READ_TIMEOUT_SECONDS = 30.0


class Unserved(Exception):
    """The broker or the database did not do what the command needs: an outage or a
    setting to fix, said in one line rather than reported as a bug."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``dlq`` command and its subcommands to the ``baton`` parser."""
    dlq = commands.add_parser("dlq", help="list and replay dead-lettered messages")
    actions = dlq.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list every dead letter "
                                 "(BATON_KAFKA_BOOTSTRAP_SERVERS)")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    again = actions.add_parser(
        "replay", help="hand dead letters back to the consumer group that gave up on them, "
        "and only to it (BATON_DATABASE_URL and BATON_KAFKA_BOOTSTRAP_SERVERS)")
    chosen = again.add_mutually_exclusive_group(required=True)
    chosen.add_argument("event_ids", nargs="*", default=[], metavar="EVENT_ID",
                        help="the event ids of the letters to replay")
    chosen.add_argument("--all", action="store_true", help="replay every dead letter")
    for parser in (listing, again):
        parser.add_argument("--topic", action="append", choices=TOPICS, dest="topics",
                            help="only the dead letters of this topic (repeatable)")
        parser.add_argument("--group", action="append", dest="groups", metavar="GROUP",
                            help="only the dead letters of this consumer group, e.g. "
                                 "baton-scoring (repeatable)")
        parser.add_argument("--timeout", type=_seconds, default=READ_TIMEOUT_SECONDS,
                            metavar="SECONDS", help="how long the broker may take to hand "
                            f"over the dead letters ({READ_TIMEOUT_SECONDS:g})")


def _seconds(text: str) -> float:
    """Return ``text`` as a number of seconds above 0."""
    return positive_number(text, refusal="must be a number of seconds above 0")


def run(arguments: argparse.Namespace) -> int:
    """Run a ``baton dlq`` subcommand; return the exit code."""
    topics = [dead_letter_topic(topic) for topic in arguments.topics or TOPICS]
    if arguments.action == "list":
        servers = load_settings(KafkaSettings).kafka_bootstrap_servers
        work = _list(servers, topics, arguments.groups, arguments.timeout,
                     as_json=arguments.json)
    else:
        settings = load_settings(RuntimeSettings)
        servers = settings.kafka_bootstrap_servers
        work = _replay(settings, topics, arguments.groups, arguments.timeout,
                       arguments.event_ids, every=arguments.all)
    try:
        return asyncio.run(work)
    except KafkaConnectionError as error:
        # An unreachable broker is a setting or an outage to fix, not a bug to report.
        print(broker_unreachable(f"dlq {arguments.action}", servers, error), file=sys.stderr)
        return 1
    except Unserved as error:
        print(f"baton dlq {arguments.action}: {error}", file=sys.stderr)
        return 1


async def _list(bootstrap_servers: str, topics: Sequence[str], groups: Sequence[str] | None,
                timeout: float, *, as_json: bool) -> int:
    """Print the letters of ``groups`` (all if None); return the exit code."""
    print(_listing(await _read(bootstrap_servers, topics, groups, timeout), as_json=as_json))
    return 0


async def _read(bootstrap_servers: str, topics: Sequence[str], groups: Sequence[str] | None,
                timeout: float) -> list[DeadLetter]:
    """Return the letters of ``groups`` (all if None) read within ``timeout`` seconds; say on
    stderr what is not a letter."""
    try:
        found = await read_dead_letters(bootstrap_servers, topics, timeout=timeout)
    except (TimeoutError, KafkaTimeoutError) as error:
        raise _timed_out(bootstrap_servers, error) from None
    for problem in found.unreadable:
        print(f"baton dlq: skipped a record that is not a dead letter: {problem}",
              file=sys.stderr)
    return [letter for letter in found.letters
            if groups is None or letter.consumer_group in groups]


def _timed_out(bootstrap_servers: str, error: Exception) -> Unserved:
    """Return the one-line refusal for a broker that did not answer within --timeout."""
    return Unserved(f"timed out reading the broker at {bootstrap_servers} "
                    f"(BATON_KAFKA_BOOTSTRAP_SERVERS): {error} (see --timeout)")


async def _replay(settings: RuntimeSettings, topics: Sequence[str],
                  groups: Sequence[str] | None, timeout: float, event_ids: Sequence[str], *,
                  every: bool) -> int:
    """Replay the chosen letters, saying what became of each; return the exit code."""
    letters = await _read(settings.kafka_bootstrap_servers, topics, groups, timeout)
    wanted = set(event_ids)
    chosen = letters if every else [letter for letter in letters if letter.event_id in wanted]
    unknown = sorted(wanted - {letter.event_id for letter in letters})
    for event_id in unknown:
        print(f"baton dlq replay: no dead letter of event {event_id}", file=sys.stderr)
    schemas = registry.inbox_schemas()
    if foreign := sorted({letter.consumer_group for letter in chosen} - schemas.keys()):
        print(f"baton dlq replay: consumer groups {', '.join(foreign)} are not Baton's "
              "services'; nothing replayed", file=sys.stderr)
        return 1
    # A letter that left out its message's value is replayed from the message on its
    # topic, read before any claim is released: one whose topic lost it keeps its claim.
    try:
        chosen = await read_originals(settings.kafka_bootstrap_servers, chosen,
                                      timeout=timeout)
    except (TimeoutError, KafkaTimeoutError) as error:
        raise _timed_out(settings.kafka_bootstrap_servers, error) from None
    lost = [letter for letter in chosen if letter.value_omitted is not None]
    for letter in lost:
        print(f"baton dlq replay: cannot replay {letter.event_id} ({letter.original.topic} "
              f"for {letter.consumer_group}): its letter omits the message's "
              f"{letter.value_omitted}-byte value, and {_place(*letter.message)} no longer "
              "holds the message", file=sys.stderr)
    chosen = [letter for letter in chosen if letter.value_omitted is None]
    try:
        connection = await connect_driver(settings.database_url, "baton dlq replay")
    except (OSError, asyncpg.PostgresError) as error:  # unreachable, or refused by the server
        address = without_password(settings.database_url)
        raise Unserved(f"cannot connect to the database at {address} (BATON_DATABASE_URL): "
                       f"{type(error).__name__}: {error}") from None
    publisher = KafkaPublisher(settings, "baton-dlq")
    await publisher.start()
    try:
        replayed = await replay(chosen, connection=connection, schema_of=schemas.__getitem__,
                                publish=publisher.send_batch)
    finally:
        await publisher.stop()
        await connection.close()
    for letter, done in zip(chosen, replayed, strict=True):
        where = f"{letter.original.topic} for {letter.consumer_group}"
        print(f"replayed {letter.event_id} to {where}" if done else
              f"skipped {letter.event_id} ({where}): handled or dead-lettered again since")
    return 1 if unknown or lost else 0


def _listing(letters: Sequence[DeadLetter], *, as_json: bool) -> str:
    """Return the letters as a table, or as JSON lines."""
    if as_json:
        return "\n".join(json.dumps({
            "dead_letter": _place(letter.dead_letter_topic, letter.dead_letter_partition,
                                  letter.dead_letter_offset),
            "consumer_group": letter.consumer_group, "event_id": letter.event_id,
            "original": _place(*letter.message), "value_omitted": letter.value_omitted,
            "attempts": letter.attempts, "error_type": letter.error_type,
            "error": letter.error}, ensure_ascii=False) for letter in letters)
    return table(("GROUP", "EVENT ID", "MESSAGE", "ATTEMPTS", "ERROR"), [
        (letter.consumer_group, letter.event_id, _message(letter), str(letter.attempts),
         clip(" ".join(letter.error.split()), ERROR_SHOWN)) for letter in letters])


def _message(letter: DeadLetter) -> str:
    """Return where a letter's message is, and whether the letter left out its value (then
    only the message on its topic has it)."""
    place = _place(*letter.message)
    if letter.value_omitted is None:
        return place
    return f"{place} ({letter.value_omitted}-byte value omitted)"


def _place(topic: str, partition: int, offset: int) -> str:
    """Return where a message is, as ``topic[partition]@offset``."""
    return f"{topic}[{partition}]@{offset}"
