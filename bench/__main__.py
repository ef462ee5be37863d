"""``python -m bench [--quick]``: every benchmark in turn, each beside its own baseline."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ("ingest", "scoring", "pipeline_sweep", "notifier_latency")


def main(argv: list[str]) -> int:
    """Run each benchmark in its own process and return 1 if any of them failed."""
    failed = []
    for name in BENCHMARKS:
        print(f"\n### bench.{name}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}", *argv], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
