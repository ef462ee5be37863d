"""The ingest benchmark runs (quick version) and prints its tables."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_quick_benchmark_prints_ingest_beside_the_bare_endpoint() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.ingest", "--quick"],
                          capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "== POST /v1/leads throughput" in out
    rows = {name: float(value) for name, value in re.findall(
        r"^(bare FastAPI.*?|ingest \(commit.*?|ingest p99)\s+([\d.]+) ", out, re.MULTILINE)}
    assert len(rows) == 3 and all(value > 0 for value in rows.values()), out
    assert re.search(r"^target: ingest / bare >= 0.5: \d+\.\d\d (met|NOT MET)$", out, re.M)
    assert re.search(r"^target: ingest p99 <= 25 ms: [\d.]+ ms (met|NOT MET)$", out, re.M)
    assert re.search(r"^every 202 committed: \d+ touchpoints .* ok$", out, re.M), out
