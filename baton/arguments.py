"""Argument types the ``baton`` subcommands share."""

from __future__ import annotations

import argparse


def whole_number(text: str, *, low: int, high: int | None, refusal: str) -> int:
    """Return ``text`` as a whole number from ``low`` to ``high`` (None: no bound); raise
    argparse's error, ``refusal``, for anything else."""
    # int() alone takes "-3" or "+7"; a value out of range failed later with a traceback.
    if not text.isdecimal() or int(text) < low or (high is not None and int(text) > high):
        raise argparse.ArgumentTypeError(refusal)
    return int(text)
