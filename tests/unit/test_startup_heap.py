"""A service leaves what start-up built out of later garbage collections."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from baton_runtime.service import (
    FULL_COLLECTION_EVERY,
    YOUNG_COLLECTION_EVERY,
    settle_garbage_collector,
)


class Cycle:
    """An object that can refer to itself."""

    partner: object


@pytest.fixture
def collector_restored_afterwards() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector_restored_afterwards")
def test_start_up_garbage_is_collected_what_is_left_is_frozen_and_full_collections_rarer(
) -> None:
    garbage = Cycle()
    garbage.partner = garbage  # reachable only from itself: only a collection frees it
    collected = weakref.ref(garbage)
    del garbage
    frozen_before = gc.get_freeze_count()
    _, middle, _ = gc.get_threshold()
    settle_garbage_collector()
    assert collected() is None, "start-up garbage was frozen instead of collected"
    assert gc.get_freeze_count() > frozen_before
    assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, middle, FULL_COLLECTION_EVERY)


@pytest.mark.usefixtures("collector_restored_afterwards")
def test_garbage_in_cycles_is_still_collected_once_enough_new_objects_are_alive() -> None:
    settle_garbage_collector()
    garbage = Cycle()
    garbage.partner = garbage
    collected = weakref.ref(garbage)
    del garbage
    alive: list[list[object]] = [[] for _ in range(YOUNG_COLLECTION_EVERY // 10)]
    assert collected() is not None, "a young collection ran long before its threshold"
    alive += [[] for _ in range(YOUNG_COLLECTION_EVERY)]
    assert collected() is None, "the cycle outlived its generation's threshold"
