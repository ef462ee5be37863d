"""The zombie-sweep benchmark's quick run prints its table beside SELECT count(*)."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from tests.conftest import Infrastructure

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(300)
async def test_the_quick_sweep_benchmark_prints_its_table(infrastructure: Infrastructure) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.pipeline_sweep", "--quick",
        env={**os.environ, **infrastructure.environment()},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "loaded 20,000 deals with COPY" in text
    assert ("== zombie sweep over 20,000 open deals, 200 recycled "
            "(200 deal.recycled read back from the broker)") in text
    rows = {line.split("  ")[0]: line for line in text.splitlines()}
    for name in ("SELECT count(*) FROM pipeline.deals", "sweep: find, recycle, write outbox",
                 "sweep + publish every event (acks)"):
        assert " ms " in rows[name], text
    assert "target: sweep + publish over 1,000,000 deals <= 5,000 ms" in text
