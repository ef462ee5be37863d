"""The scoring benchmark's quick run prints its table beside the references."""

from __future__ import annotations

import asyncio
import re
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(300)
async def test_the_quick_scoring_benchmark_prints_its_table() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.scoring", "--quick",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "== scoring 500 lead.captured events" in text
    for line in ("bare asyncpg batch write of the same rows",
                 "raw aiokafka consumption of the topic",
                 "consumer loop + no-op handler (runtime)",
                 "consumer loop + scoring handler + db"):
        assert any(row.startswith(line) and " e/s " in row for row in text.splitlines()), line
    assert "target: >= 5,000 events/s" in text
    written = re.search(r"rows written by the handler: \{'inbox': (\d+), 'activities': (\d+)", text)
    assert written and int(written[1]) == int(written[2]) > 0, "a row of each per event"
