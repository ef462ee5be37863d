"""A service leaves what start-up built out of later garbage collections."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from baton_runtime.service import freeze_startup_heap


class Cycle:
    """An object that can refer to itself."""

    partner: object


@pytest.fixture
def unfrozen_afterwards() -> Iterator[None]:
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen_afterwards")
def test_start_up_garbage_is_collected_and_what_is_left_is_frozen() -> None:
    garbage = Cycle()
    garbage.partner = garbage  # reachable only from itself: only a collection frees it
    collected = weakref.ref(garbage)
    del garbage
    frozen_before = gc.get_freeze_count()
    freeze_startup_heap()
    assert collected() is None, "start-up garbage was frozen instead of collected"
    assert gc.get_freeze_count() > frozen_before
