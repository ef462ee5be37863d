"""Cutting a batch into runs of distinct keys, and lending partitions to lanes."""

from __future__ import annotations

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from baton_runtime.consumer import PartitionCheckout, distinct_runs


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
def test_lanes_taking_in_turn_hold_every_partition_once_none_more_than_its_share(
        assigned: set[tuple[str, int]], lanes: int) -> None:
    assignment = {TopicPartition(topic, partition) for topic, partition in assigned}
    checkout = PartitionCheckout(lanes)
    taken = [checkout.take(assignment) for _ in range(lanes)]
    assert sorted(tp for share in taken for tp in share) == sorted(assignment)
    for topic in {tp.topic for tp in assignment}:
        of_topic = sum(1 for tp in assignment if tp.topic == topic)
        assert max(sum(1 for tp in share if tp.topic == topic) for share in taken) <= -(
            -of_topic // lanes), "no lane takes more than its share of a topic"
    assert checkout.take(assignment) == [], "a held partition is not lent twice"


def test_a_partition_given_back_is_taken_again_and_wakes_the_waiting_lanes() -> None:
    first, second, third = (TopicPartition("a.b", n) for n in range(3))
    checkout = PartitionCheckout(lanes=1)
    assert checkout.take({first, second, third}) == [first, second, third]
    returned = checkout.returned
    checkout.give_back([second])
    assert returned.is_set()
    assert checkout.take({first, second, third}) == [second]
    checkout.give_back([first, second, third])
    assert checkout.take({first, third}) == [first, third], "only what is assigned is lent"


def test_a_partition_just_given_back_waits_behind_those_given_back_before_it() -> None:
    first, second, third = (TopicPartition("a.b", n) for n in range(3))
    checkout = PartitionCheckout(lanes=3)  # a share of one partition
    assert checkout.take({first, second, third}) == [first]
    assert checkout.take({first, second, third}) == [second]
    checkout.give_back([first])
    checkout.give_back([second])
    assert checkout.take({first, second, third}) == [third], "never given back: first"
    checkout.give_back([third])
    assert [checkout.take({first, second, third}) for _ in range(3)] == [
        [first], [second], [third]]


def test_giving_back_what_no_lane_holds_wakes_nobody() -> None:
    checkout = PartitionCheckout(lanes=1)
    returned = checkout.returned
    checkout.give_back([TopicPartition("a.b", 0)])
    assert not returned.is_set()
