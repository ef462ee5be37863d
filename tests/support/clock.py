"""A clock for tests: it stands still until the test moves it."""

from __future__ import annotations

from datetime import datetime, timedelta


class ManualClock:
    """A clock that says ``now`` until the test sets it or moves it on."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta = timedelta(0), **parts: float) -> datetime:
        """Move the clock on by ``delta`` and ``parts`` (timedelta's keywords); return now."""
        self.now += delta + timedelta(**parts)
        return self.now
