"""The ``baton`` command: run a service or the whole stack, migrate, create topics, manage
ingest's API keys, list and replay dead letters, or post demo traffic."""

# ruff: noqa: E402 (Ctrl-C is handled before the imports that take a while)

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType


def _quit_quietly(signum: int, frame: FrameType | None) -> None:
    """Exit with 130, as a shell reports Ctrl-C, without a traceback."""
    raise SystemExit(130)


# Importing what the commands need takes a second or two, and Ctrl-C meanwhile printed a
# KeyboardInterrupt traceback; nothing has started yet, so it ends the command quietly.
# Python's own handler is put back once the imports are done.
_IMPORTING_IN_MAIN_THREAD = threading.current_thread() is threading.main_thread()
_SIGINT_HANDLER = (signal.signal(signal.SIGINT, _quit_quietly)
                   if _IMPORTING_IN_MAIN_THREAD else None)

import argparse
import asyncio

from aiokafka.errors import KafkaConnectionError

from baton import demo, dlq, keys, registry
from baton.arguments import whole_number
from baton.failures import (
    DATABASE_FAILURES,
    broker_unreachable,
    database_unusable,
    service_unusable,
)
from baton_runtime import migrations
from baton_runtime.kafka import ensure_topics
from baton_runtime.service import StartupFailure, serve
from baton_runtime.settings import DatabaseSettings, KafkaSettings, SettingsError, load_settings

if _IMPORTING_IN_MAIN_THREAD:
    signal.signal(signal.SIGINT, _SIGINT_HANDLER if _SIGINT_HANDLER is not None
                  else signal.default_int_handler)

MAX_PORT = 65535


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="baton", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve", help="run one service")
    serve_command.add_argument("service", choices=registry.SERVICES)
    migrate_command = commands.add_parser("migrate", help="apply the services' migrations")
    migrate_command.add_argument("services", nargs="*", metavar="SERVICE",
                                 help="only these services (default: all)")
    commands.add_parser("topics", help="create the topics and their dead-letter topics")
    run_command = commands.add_parser(
        "run", help="run the whole stack, starting embedded servers for what is not configured")
    run_command.add_argument("--base-port", type=_base_port, default=registry.DEFAULT_BASE_PORT,
                             help="ingest's port; the others follow (default: 8001)")
    run_command.add_argument("--broker-port", type=_port, default=19092,
                             help="port of the embedded broker (default: 19092)")
    keys.add_parser(commands)
    dlq.add_parser(commands)
    demo.add_parser(commands)
    return parser


def _port(text: str, *, following: int = 0) -> int:
    """Return ``text`` as a TCP port that leaves ``following`` more ports above it."""
    highest = MAX_PORT - following
    return whole_number(text, low=1, high=highest, refusal=f"must be a port from 1 to {highest}")


def _base_port(text: str) -> int:
    """Return ``text`` as ingest's port, with room above it for every other service's."""
    return _port(text, following=len(registry.SERVICES) - 1)


def migrate(names: list[str]) -> None:
    """Apply every pending migration of the named services (all when none is named)."""
    unknown = sorted(set(names) - set(registry.SERVICES))
    if unknown:
        raise SystemExit(f"baton migrate: unknown services {', '.join(unknown)}; "
                         f"choose from {', '.join(registry.SERVICES)}")
    settings = load_settings(DatabaseSettings)
    for name in names or registry.SERVICES:
        try:
            migrations.upgrade(registry.migrations_dir(name), settings.database_url)
        except DATABASE_FAILURES as error:
            raise SystemExit(database_unusable("migrate", settings.database_url, error)
                             ) from None
        print(f"migrated {name}")


def create_topics() -> None:
    """Create the missing topics and say which."""
    settings = load_settings(KafkaSettings)
    try:
        created = asyncio.run(ensure_topics(settings))
    except KafkaConnectionError as error:
        raise SystemExit(broker_unreachable("topics", settings.kafka_bootstrap_servers, error)
                         ) from None
    print(f"created topics: {', '.join(created)}" if created else "all topics exist")


def main(argv: list[str] | None = None) -> None:
    """Run the command line."""
    arguments = _parser().parse_args(argv)
    try:
        if arguments.command == "serve":
            try:
                serve(*registry.load(arguments.service))
            except StartupFailure as failure:
                raise SystemExit(service_unusable("serve", failure)) from None
        elif arguments.command == "migrate":
            migrate(arguments.services)
        elif arguments.command == "topics":
            create_topics()
        elif arguments.command == "run":
            from baton.stack import run_stack

            raise SystemExit(run_stack(base_port=arguments.base_port,
                                       broker_port=arguments.broker_port))
        elif arguments.command == "keys":
            raise SystemExit(keys.run(arguments))
        elif arguments.command == "dlq":
            raise SystemExit(dlq.run(arguments))
        elif arguments.command == "demo":
            raise SystemExit(demo.run(arguments))
    except SettingsError as error:
        print(f"baton {arguments.command}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        # Ctrl-C before a command handles it itself (while it imports or starts): what it
        # opened was closed as the interrupt passed, so only the traceback is left to spare.
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
