"""Printing benchmark results side by side with a baseline from the same run."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    """One measured number."""

    name: str
    value: float
    unit: str
    higher_is_better: bool = True


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Return the ``fraction`` (0..1) percentile of ``samples``."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


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
