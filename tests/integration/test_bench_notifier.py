"""The notifier latency benchmark runs (quick version) and prints its table."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(360)]


def test_the_quick_benchmark_prints_alert_latency_beside_raw_kafka() -> None:
    finished = subprocess.run([sys.executable, "-m", "bench.notifier_latency", "--quick"],
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    output = finished.stdout
    assert "== hot-lead alert latency at 5 leads/s" in output
    assert "0 alerts missing" in output, output
    for row in ("raw aiokafka produce->consume p50", "hot lead 202 -> Slack p50",
                "hot lead 202 -> Slack p99"):
        [line] = [line for line in output.splitlines() if line.startswith(row)]
        assert line.split()[-3].replace(".", "").isdigit(), line
