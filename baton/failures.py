"""One-line messages for the outages and settings a ``baton`` command cannot work around."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.exc import DBAPIError

# What connecting to or using the database raises when it is unreachable, refuses the
# login, or lacks what the command needs (a database or table not created yet).
DATABASE_FAILURES = (OSError, DBAPIError)


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
