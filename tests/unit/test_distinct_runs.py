"""Cutting a batch into runs of distinct keys, and sharing partitions among lanes."""

from __future__ import annotations

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from baton_runtime.consumer import distinct_runs, share_of


def test_a_run_ends_just_before_its_first_repeated_key() -> None:
    events = [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2), ("b", 3)]
    assert list(distinct_runs(events, key=lambda event: event[0])) == [
        [("a", 1), ("b", 1)], [("a", 2), ("c", 1), ("b", 2)], [("b", 3)]]
    assert list(distinct_runs([], key=lambda event: event)) == []


@given(st.lists(st.integers(min_value=0, max_value=5)))
def test_runs_keep_every_event_in_order_and_no_run_repeats_a_key(keys: list[int]) -> None:
    events = list(enumerate(keys))
    runs = list(distinct_runs(events, key=lambda event: event[1]))
    assert [event for run in runs for event in run] == events
    assert all(run and len({key for _, key in run}) == len(run) for run in runs)


@given(st.sets(st.tuples(st.sampled_from(["a.b", "c.d"]), st.integers(0, 11))),
       st.integers(min_value=1, max_value=8))
def test_every_assigned_partition_belongs_to_exactly_one_lane(
        assigned: set[tuple[str, int]], lanes: int) -> None:
    assignment = {TopicPartition(topic, partition) for topic, partition in assigned}
    shares = [share_of(assignment, lane, lanes) for lane in range(lanes)]
    assert sorted(tp for share in shares for tp in share) == sorted(assignment)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1, "evenly shared"
