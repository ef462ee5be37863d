"""One-line messages for the outages and settings a ``baton`` command cannot work around."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.exc import DBAPIError

# What the commands catch as the database being unusable: what a service's start-up does.
from baton_runtime.service import DATABASE_FAILURES as DATABASE_FAILURES
from baton_runtime.service import StartupFailure


def without_password(url: str) -> str:
    """Return ``url`` with the password it holds, if any, masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user_info, _, hosts = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user_info.partition(':')[0]}:***@{hosts}"))


def database_unusable(command: str, url: str, error: Exception) -> str:
    """Return the line saying ``command`` could not use the database at ``url``, and why."""
    cause: BaseException = error
    if isinstance(error, DBAPIError) and error.orig is not None:
        # SQLAlchemy's asyncpg adapter wraps the driver's own error, which names the cause.
        cause = error.orig.__cause__ or error.orig
    return (f"baton {command}: cannot use the database at {without_password(url)} "
            f"(BATON_DATABASE_URL): {type(cause).__name__}: {cause}")


def broker_unreachable(command: str, bootstrap_servers: str, error: Exception) -> str:
    """Return the line saying ``command`` could not reach the broker, and why."""
    return (f"baton {command}: cannot reach the broker at {bootstrap_servers} "
            f"(BATON_KAFKA_BOOTSTRAP_SERVERS): {error}")


def service_unusable(command: str, failure: StartupFailure) -> str:
    """Return the line saying a service could not use its database or broker at start-up,
    and why."""
    if failure.dependency == "database":
        return database_unusable(command, failure.address, failure.error)
    if failure.idempotent_producer:
        return (f"baton {command}: the broker at {failure.address} "
                "(BATON_KAFKA_BOOTSTRAP_SERVERS) would not start an idempotent producer: "
                f"{type(failure.error).__name__}: {failure.error}; a broker without "
                "idempotent producing (such as the embedded tansu) needs "
                "BATON_KAFKA_IDEMPOTENT_PRODUCER=false")
    return broker_unreachable(command, failure.address, failure.error)
