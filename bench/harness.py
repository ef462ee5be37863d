"""Printing benchmark results side by side with a baseline from the same run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import statistics
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from baton import registry
from baton_runtime import migrations
from baton_runtime.db import connect_driver, plain_url
from baton_runtime.embedded import embedded_kafka, embedded_postgres
from baton_runtime.settings import DatabaseSettings, KafkaSettings

T = TypeVar("T")


@dataclass(frozen=True)
class Measurement:
    """One measured number."""

    name: str
    value: float
    unit: str
    higher_is_better: bool = True


def machine() -> str:
    """Return what a run measured on: cores, the last minute's load average, interpreter.

    Every number shares the machine's cores with PostgreSQL, the broker and anything
    else running; the interpreter's build changes the services' CPU per request (see
    VENV_PYTHON in the Makefile).
    """
    return (f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, Python "
            f"{platform.python_version()} ({os.path.realpath(sys.executable)})")


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Return the ``fraction`` (0..1) percentile of ``samples``."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def middle(rounds: Sequence[T], key: Callable[[T], float]) -> T:
    """Return the round whose ``key`` is the median (the upper one of an even count)."""
    return sorted(rounds, key=key)[len(rounds) // 2]


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Return p50, p95, p99 and mean of ``samples``."""
    return {"p50": percentile(samples, 0.5), "p95": percentile(samples, 0.95),
            "p99": percentile(samples, 0.99), "mean": statistics.fmean(samples)}


def report(title: str, baseline: Measurement, measured: Sequence[Measurement],
           targets: Sequence[str] = ()) -> str:
    """Return (and print) a table of ``measured`` beside ``baseline`` with their ratios."""
    width = max(len(m.name) for m in (baseline, *measured))
    lines = [f"== {title}", f"{'':{width}}  {'value':>14}  ratio to baseline"]
    for item in (baseline, *measured):
        ratio = item.value / baseline.value if baseline.value else float("nan")
        lines.append(f"{item.name:{width}}  {item.value:>10.1f} {item.unit:<3}  {ratio:.2f}")
    lines += [f"target: {target}" for target in targets]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


@contextlib.contextmanager
def servers() -> Iterator[tuple[str, str]]:
    """Yield (admin database URL, bootstrap servers): from the variables, or embedded."""
    with contextlib.ExitStack() as stack:
        try:
            database_url = DatabaseSettings().database_url
        except ValueError:
            database_url = stack.enter_context(embedded_postgres(databases=())).url("postgres")
        try:
            bootstrap = KafkaSettings().kafka_bootstrap_servers
        except ValueError:
            bootstrap = stack.enter_context(embedded_kafka())
        yield database_url, bootstrap


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str, label: str, *, service: str | None = None
                           ) -> AsyncIterator[str]:
    """Yield the URL of a new database (with ``service``'s schema migrated); drop it after."""
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = await connect_driver(admin_url, "bench")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = plain_url(admin_url).rsplit("/", 1)[0] + f"/{name}"
        if service is not None:
            await asyncio.to_thread(migrations.upgrade, registry.migrations_dir(service), url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
