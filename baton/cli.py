"""The ``baton`` command: run a service or the whole stack, migrate, create topics, manage
ingest's API keys, list and replay dead letters, or post demo traffic."""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiokafka.errors import KafkaConnectionError

from baton import demo, dlq, keys, registry
from baton.arguments import whole_number
from baton.failures import DATABASE_FAILURES, broker_unreachable, database_unusable
from baton_runtime import migrations
from baton_runtime.kafka import ensure_topics
from baton_runtime.service import serve
from baton_runtime.settings import DatabaseSettings, KafkaSettings, SettingsError, load_settings

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
            serve(*registry.load(arguments.service))
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


if __name__ == "__main__":
    main()
