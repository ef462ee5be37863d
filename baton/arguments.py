"""Argument types the ``baton`` subcommands share."""

from __future__ import annotations

import argparse
import math


def whole_number(text: str, *, low: int, high: int | None, refusal: str) -> int:
    """Return ``text`` as a whole number from ``low`` to ``high`` (None: no bound); raise
    argparse's error, ``refusal``, for anything else."""
    # int() alone takes "-3" or "+7"; a value out of range failed later with a traceback.
    if not text.isdecimal() or int(text) < low or (high is not None and int(text) > high):
        raise argparse.ArgumentTypeError(refusal)
    return int(text)


def positive_number(text: str, *, refusal: str) -> float:
    """Return ``text`` as a finite number above 0; raise argparse's error, ``refusal``, for
    anything else."""
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    # float() also takes "inf" and "nan", which would silently mean no limit at all.
    if not 0 < number < math.inf:
        raise argparse.ArgumentTypeError(refusal)
    return number
