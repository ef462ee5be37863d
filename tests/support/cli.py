"""The ``baton`` command run as its users run it: a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping


def run_baton(environment: Mapping[str, str], *arguments: str
              ) -> subprocess.CompletedProcess[str]:
    """Return how ``baton arguments`` ended, run with ``environment`` added to this one's."""
    return subprocess.run([sys.executable, "-m", "baton", *arguments], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **environment})
