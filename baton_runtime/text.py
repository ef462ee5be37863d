"""Text cut to a limit: an event's field, a Slack block, an explanation's label."""

from __future__ import annotations

ELLIPSIS = "…"
# A pattern for text that must say something: blanks alone (full-width spaces too) do not.
NOT_BLANK = r"\S"


def clip(text: str, limit: int) -> str:
    """Return ``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS
