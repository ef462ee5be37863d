"""Text cut to a limit."""

from __future__ import annotations

from baton_runtime.text import clip


def test_text_within_the_limit_is_kept_as_it_is() -> None:
    assert clip("株式会社サンプル", 8) == "株式会社サンプル"


def test_text_over_the_limit_is_cut_to_it_and_ends_in_an_ellipsis() -> None:
    assert clip("株式会社サンプル", 5) == "株式会社…"
