"""``baton keys``: create, list and revoke ingest's API keys, straight in the database."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from baton.arguments import whole_number
from baton.failures import DATABASE_FAILURES, database_unusable
from baton.table import table
from baton_runtime.db import create_engine
from baton_runtime.settings import DatabaseSettings, load_settings
from services.ingest import access, store
from services.ingest.settings import MOST_REQUESTS_PER_MINUTE


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``keys`` command and its subcommands to the ``baton`` parser."""
    keys = commands.add_parser("keys", help="manage ingest's API keys (BATON_DATABASE_URL)")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key for a source; printed only once")
    create.add_argument("source", type=_source,
                        help="who posts with it, e.g. web, marketo, partner-acme")
    signing = create.add_mutually_exclusive_group()
    signing.add_argument("--signed", action="store_true",
                         help="require HMAC-signed requests; prints a new signing secret")
    signing.add_argument("--signing-secret", metavar="SECRET",
                         help="require requests signed with SECRET (for source hubspot: the "
                              "HubSpot app's client secret)")
    create.add_argument("--rate-limit", type=_rate_limit, metavar="PER_MINUTE",
                        help=f"requests a minute, 1 to {MOST_REQUESTS_PER_MINUTE:,} "
                             "(default: BATON_INGEST_RATE_LIMIT_PER_MINUTE)")
    listing = actions.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    revoke = actions.add_parser("revoke", help="revoke a key; running services stop "
                                "accepting it within a second")
    revoke.add_argument("key_id")


def _source(text: str) -> str:
    """Return ``text`` as a key's source, or refuse it with the reason."""
    try:
        return access.valid_source(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _rate_limit(text: str) -> int:
    """Return ``text`` as a key's requests a minute, within the bounds of ingest's default
    (an out-of-range value failed the insert, printing the key's hash)."""
    return whole_number(text, low=1, high=MOST_REQUESTS_PER_MINUTE,
                        refusal=f"must be a whole number from 1 to {MOST_REQUESTS_PER_MINUTE}")


def run(arguments: argparse.Namespace) -> int:
    """Run a ``baton keys`` subcommand; return the exit code."""
    database_url = load_settings(DatabaseSettings).database_url
    try:
        return asyncio.run(_run(arguments, database_url))
    except DATABASE_FAILURES as error:
        print(database_unusable("keys", database_url, error), file=sys.stderr)
        return 1


async def _run(arguments: argparse.Namespace, database_url: str) -> int:
    """Do the subcommand's work in one transaction."""
    engine = create_engine(database_url, pool_size=1, application_name="baton-keys")
    try:
        async with engine.begin() as connection:
            if arguments.action == "create":
                print(await _create(connection, arguments.source, signed=arguments.signed,
                                    signing_secret=arguments.signing_secret,
                                    rate_limit=arguments.rate_limit))
                await store.announce_keys_changed(connection)
            elif arguments.action == "list":
                print(_listing(await store.all_keys(connection), as_json=arguments.json))
            elif not await store.revoke_key(connection, arguments.key_id, datetime.now(UTC)):
                print(f"baton keys revoke: no active key {arguments.key_id}", file=sys.stderr)
                return 1
            else:
                await store.announce_keys_changed(connection)
                print(f"revoked {arguments.key_id}")
    finally:
        await engine.dispose()
    return 0


async def _create(connection: AsyncConnection, source: str, *, signed: bool,
                  signing_secret: str | None, rate_limit: int | None) -> str:
    """Store a new key and return what to tell its owner (the key is not kept in clear)."""
    key = access.new_api_key()
    secret = access.new_signing_secret() if signed else signing_secret
    record = access.ApiKey(access.new_key_id(), source, access.hash_api_key(key), secret,
                           rate_limit)
    await store.add_key(connection, record, access.key_hint(key))
    lines = [f"key id:  {record.key_id}", f"source:  {source}", f"api key: {key}"]
    if signed:
        lines.append(f"signing secret: {secret}")
    lines.append("Store them now: they cannot be shown again.")
    return "\n".join(lines)


def _listing(rows: Sequence[dict[str, object]], *, as_json: bool) -> str:
    """Return the keys as a table, or as JSON lines."""
    if as_json:
        return "\n".join(json.dumps(row, default=str, ensure_ascii=False) for row in rows)
    return table(("KEY ID", "SOURCE", "KEY", "SIGNED", "LIMIT/MIN", "CREATED", "REVOKED"), [
        (str(row["key_id"]), str(row["source"]), str(row["key_hint"]),
         "yes" if row["signed"] else "no", str(row["rate_limit_per_minute"] or "default"),
         _when(row["created_at"]), _when(row["revoked_at"]))
        for row in rows])


def _when(value: object) -> str:
    """Return a timestamp to the minute, or '-' when there is none."""
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else "-"
