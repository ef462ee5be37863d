"""Routing's assignment rules, with properties over 10,000 generated leads."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from baton_runtime.business_time import BusinessCalendar
from services.routing.domain import (
    Decision,
    Period,
    Rep,
    RoutableLead,
    Rule,
    TeamKind,
    Territory,
    assign,
    round_robin_place,
    starting_position,
    unavailable_because,
)

SDR = TeamKind.SDR
WEDNESDAY_10_JST = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)
LEAD = RoutableLead(account_key="example.co.jp", region="関東", industry="製造業",
                    employee_band="500-999")
ALWAYS = BusinessCalendar(timezone="UTC", opens=time(0), closes=time(23, 59, 59, 999999),
                          holidays=None, workdays=frozenset(range(1, 8)))
LEADS = 10_000


def rep(rep_id: str, **changes: Any) -> Rep:
    return dataclasses.replace(Rep(rep_id, SDR, daily_capacity=LEADS), **changes)


class Team:
    """A team that takes leads one after another, keeping positions and daily counts."""

    def __init__(self, reps: Sequence[Rep]) -> None:
        self.reps = {r.rep_id: r for r in reps}
        self.given: dict[tuple[str, datetime], int] = defaultdict(int)
        self.decisions: list[tuple[datetime, Decision]] = []

    def take(self, now: datetime, lead: RoutableLead = LEAD,
             account_owner: str | None = None) -> Decision:
        today = {r.rep_id: self.given[(r.rep_id, r.hours.day_start(now))]
                 for r in self.reps.values()}
        decision = assign(lead, SDR, list(self.reps.values()), account_owner=account_owner,
                          assigned_today=today, now=now)
        for rep_id, position in decision.positions.items():
            self.reps[rep_id] = dataclasses.replace(self.reps[rep_id], position=position)
        for rep_id, position in decision.territory_positions.items():
            self.reps[rep_id] = dataclasses.replace(self.reps[rep_id],
                                                    territory_position=position)
        if decision.rep_id is not None:
            chosen = self.reps[decision.rep_id]
            self.given[(chosen.rep_id, chosen.hours.day_start(now))] += 1
        self.decisions.append((now, decision))
        return decision

    def counts(self) -> Counter[str | None]:
        return Counter(decision.rep_id for _, decision in self.decisions)


def assert_round_robin_by_weight(team: Team, weights: Sequence[int], rounds: int) -> None:
    """Check that the team's round-robin leads went to rep-<i> ``rounds`` x weight times."""
    shared = Counter(decision.rep_id for _, decision in team.decisions
                     if decision.rule is Rule.ROUND_ROBIN)
    for i, weight in enumerate(weights):
        # One off at most: strides of 1/3 add up with rounding, which may tip a last tie.
        assert abs(shared[f"rep-{i}"] - rounds * weight) <= 1, (shared, weights)


@settings(max_examples=6, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=5), min_size=2, max_size=6))
def test_over_10000_leads_the_split_is_within_5_percent_of_the_weights(
        weights: list[int]) -> None:
    team = Team([rep(f"rep-{i}", weight=float(w), hours=ALWAYS) for i, w in enumerate(weights)])
    for _ in range(LEADS):
        team.take(WEDNESDAY_10_JST)
    counts = team.counts()
    for i, weight in enumerate(weights):
        expected = LEADS * weight / sum(weights)
        assert abs(counts[f"rep-{i}"] - expected) <= 0.05 * expected, (counts, weights)


REP_SCHEDULES = st.builds(
    lambda zone, start, length, capacity, leave_day, leave_days, weight: (
        zone, time(start), time(start + length), capacity,
        Period(WEDNESDAY_10_JST + timedelta(days=leave_day),
               WEDNESDAY_10_JST + timedelta(days=leave_day + leave_days)), weight),
    zone=st.sampled_from(["Asia/Tokyo", "America/New_York", "Europe/London", "Asia/Kolkata"]),
    start=st.integers(min_value=0, max_value=12),
    length=st.integers(min_value=1, max_value=11),
    capacity=st.integers(min_value=1, max_value=40),
    leave_day=st.integers(min_value=0, max_value=40),
    leave_days=st.integers(min_value=0, max_value=10),
    weight=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
)


@settings(max_examples=6, deadline=None)
@given(st.lists(REP_SCHEDULES, min_size=1, max_size=5))
def test_capacity_working_hours_and_leave_are_respected_over_10000_leads(
        schedules: list[tuple[str, time, time, int, Period, float]]) -> None:
    team = Team([
        rep(f"rep-{i}", weight=weight, daily_capacity=capacity, out_of_office=(leave,),
            hours=BusinessCalendar(timezone=zone, opens=opens, closes=closes))
        for i, (zone, opens, closes, capacity, leave, weight) in enumerate(schedules)])
    for i in range(LEADS):
        team.take(WEDNESDAY_10_JST + timedelta(minutes=7 * i))  # ~49 days of leads
    given_per_day: Counter[tuple[str, datetime]] = Counter()
    for now, decision in team.decisions:
        if decision.rep_id is None:
            assert decision.rule is Rule.QUEUED
            assert all(c.blocked_because for c in decision.considered), "queued only if nobody"
            continue
        chosen = team.reps[decision.rep_id]
        assert chosen.hours.is_open(now), "assigned outside working hours"
        assert not any(p.covers(now) for p in chosen.out_of_office), "assigned on leave"
        given_per_day[(chosen.rep_id, chosen.hours.day_start(now))] += 1
    for (rep_id, _day), count in given_per_day.items():
        assert count <= team.reps[rep_id].daily_capacity, "over daily capacity"


def test_a_rep_back_from_leave_takes_their_turn_and_no_flood() -> None:
    leave = Period(WEDNESDAY_10_JST, WEDNESDAY_10_JST + timedelta(days=1))
    team = Team([rep("a", hours=ALWAYS), rep("b", hours=ALWAYS),
                 rep("c", hours=ALWAYS, out_of_office=(leave,))])
    for _ in range(3000):
        team.take(WEDNESDAY_10_JST)
    assert team.counts()["c"] == 0
    before = team.counts()
    back = WEDNESDAY_10_JST + timedelta(days=2)
    for _ in range(3000):
        team.take(back)
    after = team.counts() - before
    assert abs(after["c"] - 1000) <= 1, after
    assert team.decisions[3000][1].rep_id == "c", "the returning rep takes the next turn"
    assert [d.rep_id for _, d in team.decisions[3001:3004]] == ["a", "b", "c"]


def test_a_new_rep_joins_level_with_the_team_rather_than_taking_every_lead() -> None:
    team = Team([rep("a", hours=ALWAYS), rep("b", hours=ALWAYS)])
    for _ in range(500):
        team.take(WEDNESDAY_10_JST)
    newcomer = rep("c", hours=ALWAYS,
                   position=starting_position(r.position for r in team.reps.values()))
    team.reps["c"] = newcomer
    before = team.counts()
    for _ in range(300):
        team.take(WEDNESDAY_10_JST)
    assert (team.counts() - before)["c"] == 100


def test_a_rep_whose_weight_changes_takes_turns_at_the_new_weight_from_where_they_were() -> None:
    # A new hire ramping at weight 0.1 took a lead: 10 turns back. At weight 1 they are one
    # turn back, and take one lead in three of a team of three.
    team = Team([rep("a", hours=ALWAYS), rep("b", hours=ALWAYS),
                 rep("new", hours=ALWAYS, weight=0.1)])
    while team.counts()["new"] == 0:
        team.take(WEDNESDAY_10_JST)
    stored = team.reps["new"]
    positions = [r.position for r in team.reps.values()]
    team.reps["new"] = dataclasses.replace(
        stored, weight=1.0, position=round_robin_place(positions, SDR, 1.0, stored))
    before = team.counts()
    for _ in range(30):
        team.take(WEDNESDAY_10_JST)
    assert (team.counts() - before)["new"] == 10


def test_a_rep_put_again_keeps_their_place_unless_their_weight_or_team_changes() -> None:
    stored = rep("x", position=7.0, weight=2.0)
    assert round_robin_place([5.0, 7.0], SDR, 2.0, stored) == 7.0, "nothing changed"
    assert round_robin_place([5.0, 7.0], SDR, 1.0, stored) == 5.0 + 2.0 * 2.0
    assert round_robin_place([5.0, 7.0], TeamKind.BDR, 2.0, stored) == 5.0, "a new team's front"
    assert round_robin_place([5.0, 7.0], SDR, 2.0, None) == 5.0, "a new rep"
    # A team with no active rep (all brought back one by one): no front to measure from.
    assert round_robin_place([], SDR, 4.0, stored) == 7.0
    assert round_robin_place([9.0], SDR, 4.0, stored) == 7.0, "ahead of the front: stays"


@settings(max_examples=200, deadline=None)
@given(owner_blocker=st.sampled_from(["none", "hours", "capacity"]),
       others=st.integers(min_value=0, max_value=4))
def test_the_account_owner_wins_even_outside_hours_or_at_capacity(
        owner_blocker: str, others: int) -> None:
    evening = WEDNESDAY_10_JST + timedelta(hours=10)  # 20:00 in Tokyo
    now = evening if owner_blocker == "hours" else WEDNESDAY_10_JST
    owner = rep("owner", daily_capacity=1 if owner_blocker == "capacity" else 10,
                position=1_000.0)  # far behind in the round robin
    team = [owner, *(rep(f"rep-{i}", hours=ALWAYS) for i in range(others))]
    decision = assign(LEAD, SDR, team, account_owner="owner", now=now,
                      assigned_today={"owner": 1 if owner_blocker == "capacity" else 0})
    assert (decision.rep_id, decision.rule) == ("owner", Rule.ACCOUNT_OWNER)
    assert "owner owns account example.co.jp" in decision.reason


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=3), min_size=2, max_size=4),
       st.integers(min_value=0, max_value=3))
def test_an_account_owners_leads_are_no_round_robin_turns(weights: list[int],
                                                          owner: int) -> None:
    # The round robin shares out the leads no account owner takes, by weight; a rep who
    # also gets their own accounts' leads has not had a turn for them.
    team = Team([rep(f"rep-{i}", weight=float(w), hours=ALWAYS) for i, w in enumerate(weights)])
    owner_id = f"rep-{owner % len(weights)}"
    no_account = dataclasses.replace(LEAD, account_key=None)
    rounds = 60 * sum(weights)
    for _ in range(rounds):
        assert team.take(WEDNESDAY_10_JST, account_owner=owner_id).rule is Rule.ACCOUNT_OWNER
        team.take(WEDNESDAY_10_JST, no_account)
    assert_round_robin_by_weight(team, weights, rounds=60)


def test_an_account_owner_on_leave_or_inactive_gives_way_to_the_round_robin() -> None:
    # Only a rep who has left gives the account up: one on leave gets it back on return.
    leave = Period(WEDNESDAY_10_JST - timedelta(days=1), WEDNESDAY_10_JST + timedelta(days=1))
    for owner, moves_account in ((rep("owner", out_of_office=(leave,)), False),
                                 (rep("owner", active=False), True)):
        decision = assign(LEAD, SDR, [owner, rep("other")], account_owner="owner",
                          assigned_today={}, now=WEDNESDAY_10_JST)
        assert (decision.rep_id, decision.rule) == ("other", Rule.ROUND_ROBIN)
        assert decision.moves_account is moves_account, owner
    kanto = rep("kanto", territory=Territory(regions=frozenset({"関東"})))
    by_territory = assign(LEAD, SDR, [rep("owner", out_of_office=(leave,)), kanto],
                          account_owner="owner", assigned_today={}, now=WEDNESDAY_10_JST)
    assert (by_territory.rep_id, by_territory.moves_account) == ("kanto", False)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=3), min_size=2, max_size=4),
       st.integers(min_value=0, max_value=3))
def test_territory_leads_are_no_round_robin_turns(weights: list[int], territorial: int) -> None:
    # As an account owner's leads: the round robin (DESIGN's third rule) shares out the
    # leads no territory takes, by weight, whatever the territory rep's own leads.
    kanto = f"rep-{territorial % len(weights)}"
    team = Team([rep(f"rep-{i}", weight=float(w), hours=ALWAYS,
                     territory=Territory(regions=frozenset({"関東"})) if f"rep-{i}" == kanto
                     else None) for i, w in enumerate(weights)])
    kanto_lead = dataclasses.replace(LEAD, account_key=None)
    elsewhere = dataclasses.replace(kanto_lead, region="九州")
    rounds = 60 * sum(weights)
    for _ in range(rounds):
        assert team.take(WEDNESDAY_10_JST, kanto_lead).rule is Rule.TERRITORY
        team.take(WEDNESDAY_10_JST, elsewhere)
    assert_round_robin_by_weight(team, weights, rounds=60)


def test_territory_leads_count_against_the_daily_capacity() -> None:
    team = Team([rep("kanto", daily_capacity=2, territory=Territory(regions=frozenset({"関東"}))),
                 rep("anyone")])
    kanto_lead = dataclasses.replace(LEAD, account_key=None)
    assert [team.take(WEDNESDAY_10_JST, kanto_lead).rep_id for _ in range(3)] == [
        "kanto", "kanto", "anyone"]
    assert "territory region=関東 reps unavailable" in team.decisions[-1][1].reason


def test_a_territorys_reps_take_its_leads_in_turn_by_weight_and_newcomers_join_level(
        ) -> None:
    kanto = Territory(regions=frozenset({"関東"}))
    team = Team([rep("k1", territory=kanto), rep("k2", weight=2.0, territory=kanto),
                 rep("anyone")])
    kanto_lead = dataclasses.replace(LEAD, account_key=None)
    for _ in range(300):
        team.take(WEDNESDAY_10_JST, kanto_lead)
    assert team.counts() == {"k1": 100, "k2": 200}
    # A rep new to the territory has no place in its rotation yet: they start level with
    # its front runner, as one joining a team does, rather than taking every lead.
    team.reps["k3"] = rep("k3", territory=kanto)
    before = team.counts()
    for _ in range(400):
        team.take(WEDNESDAY_10_JST, kanto_lead)
    assert team.counts() - before == {"k1": 100, "k2": 200, "k3": 100}


def test_the_most_specific_matching_territory_takes_the_lead() -> None:
    kanto = rep("kanto", territory=Territory(regions=frozenset({"関東"})))
    kanto_makers = rep("kanto-makers", territory=Territory(
        regions=frozenset({"関東"}), industries=frozenset({"製造業"})))
    kansai = rep("kansai", territory=Territory(regions=frozenset({"関西"})))
    team = [kanto, kanto_makers, kansai, rep("anyone")]
    decision = assign(LEAD, SDR, team, account_owner=None, assigned_today={},
                      now=WEDNESDAY_10_JST)
    assert (decision.rep_id, decision.rule) == ("kanto-makers", Rule.TERRITORY)
    assert "region=関東, industry=製造業" in decision.reason
    osaka = RoutableLead(account_key=None, region="関西")
    assert assign(osaka, SDR, team, account_owner=None, assigned_today={},
                  now=WEDNESDAY_10_JST).rep_id == "kansai"


def test_busy_specific_territory_reps_give_way_to_broader_matching_ones_first() -> None:
    leave = Period(WEDNESDAY_10_JST - timedelta(days=1), WEDNESDAY_10_JST + timedelta(days=2))
    kanto_makers = rep("kanto-makers", out_of_office=(leave,), territory=Territory(
        regions=frozenset({"関東"}), industries=frozenset({"製造業"})))
    kanto = rep("kanto", territory_position=5.0, territory=Territory(regions=frozenset({"関東"})))
    makers = rep("makers", daily_capacity=1, territory=Territory(
        industries=frozenset({"製造業"})))
    team = [kanto_makers, kanto, makers, rep("anyone")]
    decision = assign(LEAD, SDR, team, account_owner=None, assigned_today={"makers": 1},
                      now=WEDNESDAY_10_JST)
    assert (decision.rep_id, decision.rule) == ("kanto", Rule.TERRITORY)
    assert decision.reason == (
        "weighted rotation (territory industry=製造業 or region=関東; "
        "territory region=関東, industry=製造業 reps unavailable) among kanto")
    assert decision.territory_positions["kanto-makers"] == 5.0, "time on leave banks no credit"
    assert decision.positions == {}, "no round-robin turn"
    nobody_in_territory = assign(LEAD, SDR, [kanto_makers, rep("anyone")], account_owner=None,
                                 assigned_today={}, now=WEDNESDAY_10_JST)
    assert (nobody_in_territory.rep_id, nobody_in_territory.rule) == (
        "anyone", Rule.ROUND_ROBIN)


def test_territory_values_match_across_full_and_half_width_and_case() -> None:
    territory = Territory(employee_bands=frozenset({"５００-９９９"}),
                          industries=frozenset({"Manufacturing"}))
    assert territory.matches(RoutableLead(None, industry=" manufacturing ",
                                          employee_band="500-999"))
    assert not territory.matches(RoutableLead(None, industry="manufacturing"))


def test_unavailable_territory_reps_fall_back_to_the_team_and_say_so() -> None:
    kanto = rep("kanto", territory=Territory(regions=frozenset({"関東"})), active=False)
    decision = assign(LEAD, SDR, [kanto, rep("anyone")], account_owner=None,
                      assigned_today={}, now=WEDNESDAY_10_JST)
    assert (decision.rep_id, decision.rule) == ("anyone", Rule.ROUND_ROBIN)
    assert "territory region=関東 reps unavailable" in decision.reason


def test_a_lead_nobody_can_take_is_queued_with_every_reason() -> None:
    leave = Period(WEDNESDAY_10_JST, WEDNESDAY_10_JST + timedelta(days=3))
    team = [rep("away", out_of_office=(leave,)), rep("full", daily_capacity=2),
            rep("gone", active=False)]
    saturday = WEDNESDAY_10_JST + timedelta(days=3)
    decision = assign(LEAD, SDR, team, account_owner=None, assigned_today={"full": 2},
                      now=WEDNESDAY_10_JST)
    assert (decision.rep_id, decision.rule) == (None, Rule.QUEUED)
    assert decision.summary == "queued for team sdr: no rep can take it now"
    assert "away: out of office until 2026-11-21 10:00 JST" in decision.reason
    assert "full: at daily capacity (2 of 2)" in decision.reason
    assert "gone: inactive" in decision.reason
    assert [c.rep_id for c in decision.considered] == ["away", "full", "gone"]
    assert unavailable_because(rep("x"), saturday, 0) == (
        "2026-11-21 is not a workday (Asia/Tokyo)")
    culture_day = datetime(2026, 11, 3, 11, tzinfo=WEDNESDAY_10_JST.tzinfo)
    assert unavailable_because(rep("x"), culture_day, 0) == (
        "2026-11-03 is a public holiday (Asia/Tokyo)")
    year_end = rep("x", hours=BusinessCalendar(closed_days=frozenset({(12, 30)})))
    assert unavailable_because(year_end, datetime(2026, 12, 30, 11, tzinfo=WEDNESDAY_10_JST.tzinfo),
                               0) == (
        "2026-12-30 is a closed day (Asia/Tokyo)")
    assert unavailable_because(rep("x"), WEDNESDAY_10_JST + timedelta(hours=10), 0) == (
        "outside working hours (09:00-18:00 Asia/Tokyo)")
    empty = assign(LEAD, SDR, [], account_owner=None, assigned_today={}, now=WEDNESDAY_10_JST)
    assert "the team has no reps" in empty.reason


def test_an_open_ended_leave_reads_until_further_notice_and_assignment_goes_on() -> None:
    forever = Period(WEDNESDAY_10_JST, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
    for zone in ("Asia/Tokyo", "America/New_York", "UTC"):
        away = rep("away", out_of_office=(forever,), hours=BusinessCalendar(timezone=zone))
        assert unavailable_because(away, WEDNESDAY_10_JST, 0) == (
            "out of office until further notice")
    decision = assign(LEAD, SDR, [rep("away", out_of_office=(forever,)), rep("present")],
                      account_owner="away", assigned_today={}, now=WEDNESDAY_10_JST)
    assert (decision.rep_id, decision.rule) == ("present", Rule.ROUND_ROBIN)
    assert decision.considered[0].blocked_because == "out of office until further notice"


def test_working_hours_follow_the_reps_time_zone_and_public_holidays() -> None:
    new_york = rep("ny", hours=BusinessCalendar(timezone="America/New_York", holidays="US"))
    tokyo = rep("tokyo")
    # 2026-11-23 is Labour Thanksgiving Day in Japan; 10:00 in New York is 00:00 in Tokyo.
    monday_in_new_york = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    assert unavailable_because(new_york, monday_in_new_york, 0) is None
    assert unavailable_because(tokyo, datetime(2026, 11, 23, 1, 0, tzinfo=UTC), 0) is not None
    assert unavailable_because(tokyo, datetime(2026, 11, 24, 1, 0, tzinfo=UTC), 0) is None
