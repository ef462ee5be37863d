"""Pipeline's phase rules (exit criteria, moves, closing, holds) and zombie rules, with a
controlled clock."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import DealPhase
from services.pipeline.domain import (
    OPEN_PHASES,
    PROBABILITY,
    Action,
    Changed,
    Deal,
    DealConflict,
    ExitCriteria,
    ExitCriteriaNotMet,
    Hold,
    InvalidChange,
    Issue,
    NextAction,
    Outcome,
    PipelineRules,
    advance,
    follow_lead,
    issues,
    lose,
    move_back,
    open_deal,
    place_hold,
    probability,
    recycle,
    release_hold,
    update,
    win,
    zombie_reason,
)
from tests.support.clock import ManualClock

P = DealPhase
TOKYO = ZoneInfo("Asia/Tokyo")
OPENED = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo
RULES = PipelineRules(timezone=TOKYO, lost_reasons=("price", "competitor", "timing"))
EVERYTHING = ExitCriteria(
    problem_agreed=True, business_issue="在庫管理の属人化", problem="月次棚卸に3日",
    solution="クラウド在庫管理", benefit="棚卸を半日に短縮", demo_done=True,
    quote_presented=True, approval_route="部長→役員会", legal_checked=True,
    final_terms_agreed=True, approval_requested=True)


def new_deal(now: datetime = OPENED) -> Deal:
    """Return a fresh P1 deal opened at ``now``."""
    return open_deal(deal_id=uuid.uuid4(), lead_id=uuid.uuid4(), owner_id="sato",
                     team="field-east", company="株式会社サンプル", now=now,
                     reason="opened from SQL").deal


def deal_in(phase: DealPhase, criteria: ExitCriteria = EVERYTHING) -> Deal:
    """Return an open deal in ``phase`` with ``criteria`` recorded."""
    return replace(new_deal(), phase=phase, criteria=criteria)


# --- a deal follows its lead -------------------------------------------------------------


def test_a_deal_goes_to_the_rep_who_takes_its_lead_and_stays_when_nobody_is_named() -> None:
    deal, later = deal_in(P.P2), OPENED + timedelta(days=1)
    taken = follow_lead(deal, owner_id="suzuki", team="field-west", qualified_at=None,
                        last_change_at=OPENED)
    assert taken is not None
    assert (taken.deal.owner_id, taken.deal.team, taken.deal.phase) == (
        "suzuki", "field-west", P.P2)
    assert (taken.change.action, taken.change.from_phase, taken.change.to_phase,
            taken.change.reason) == (Action.UPDATED, P.P2, P.P2,
                                     "owner sato -> suzuki; team field-east -> field-west")
    for owner in ("sato", None):  # the same rep, or a hand-off to a queue
        assert follow_lead(deal, owner_id=owner, team="field-east", qualified_at=None,
                           last_change_at=OPENED) is None
    moved = follow_lead(deal, owner_id="sato", team="field-west", qualified_at=None,
                        last_change_at=OPENED)
    assert moved is not None and (moved.deal.team, moved.change.reason) == (
        "field-west", "team field-east -> field-west")
    assert follow_lead(recycle(deal, later, "zombie").deal, owner_id="suzuki", team=None,
                       qualified_at=None, last_change_at=OPENED) is None, "closed"


def test_a_deal_older_than_its_leads_new_sql_hand_off_is_announced_again_once() -> None:
    deal, qualified = deal_in(P.P3), OPENED + timedelta(days=30)
    kept = follow_lead(deal, owner_id=None, team=None, qualified_at=qualified,
                       last_change_at=OPENED)
    # Only the hand-off is recorded: no phase change or next-action entry is made up.
    assert kept is not None and kept.deal == replace(deal, handed_off_at=qualified)
    assert (kept.change.from_phase, kept.change.to_phase, kept.change.reason) == (
        None, P.P3, "kept for the lead qualified again")
    # Changed (announced) since the hand-off: a repeated hand-off event changes nothing.
    assert follow_lead(deal, owner_id=None, team=None, qualified_at=qualified,
                       last_change_at=qualified + timedelta(seconds=1)) is None


def test_a_deal_kept_for_a_new_sql_counts_its_idle_days_from_the_hand_off() -> None:
    # Left idle for 59 days, then the SQL's deal: recycling it (and nurturing the lead)
    # the day after field sales got it would take the lead from the rep at once.
    deal, qualified = deal_in(P.P1), OPENED + timedelta(days=59)
    assert zombie_reason(deal, qualified + timedelta(days=1), RULES) is not None
    kept = follow_lead(deal, owner_id="suzuki", team="field-west", qualified_at=qualified,
                       last_change_at=OPENED)
    assert kept is not None
    assert (kept.deal.phase_changed_at, kept.deal.next_action_entered_at) == (OPENED, None)
    assert (kept.deal.phase_clock, kept.deal.next_action_clock) == (qualified, qualified)
    assert zombie_reason(kept.deal, qualified + timedelta(days=59), RULES) is None
    assert zombie_reason(kept.deal, qualified + timedelta(days=60), RULES) == (
        "no next action entered for 60 days")
    assert zombie_reason(kept.deal, qualified + timedelta(days=90), RULES) == (
        "no phase change for 90 days; no next action entered for 60 days")


def test_each_idle_clock_counts_from_its_own_event_or_a_later_hand_off() -> None:
    handed_off = OPENED + timedelta(days=20)
    entered = handed_off + timedelta(days=10)
    deal = replace(deal_in(P.P2), phase_changed_at=OPENED + timedelta(days=5),
                   next_action=NextAction(date(2026, 6, 1), "訪問"),
                   next_action_entered_at=entered, handed_off_at=handed_off)
    assert (deal.phase_clock, deal.next_action_clock) == (handed_off, entered)
    moved = advance(deal, handed_off + timedelta(days=40)).deal
    assert moved.phase_clock == handed_off + timedelta(days=40), "a later move counts"
    assert moved.handed_off_at == handed_off, "other changes keep the hand-off"


def test_a_kept_deal_is_stuck_30_days_after_its_hand_off_and_says_how_long_in_phase() -> None:
    deal, qualified = deal_in(P.P3), OPENED + timedelta(days=80)
    kept = follow_lead(deal, owner_id=None, team=None, qualified_at=qualified,
                       last_change_at=OPENED)
    assert kept is not None
    assert Issue.STUCK not in issues(kept.deal, qualified + timedelta(days=29), RULES)
    assert issues(kept.deal, qualified + timedelta(days=30), RULES)[Issue.STUCK] == (
        "in P3 for 110 days, 30 since the hand-off")


# --- exit criteria and moves --------------------------------------------------------------


def test_a_new_deal_is_open_in_p1_at_ten_percent() -> None:
    opened = open_deal(deal_id=uuid.uuid4(), lead_id=uuid.uuid4(), owner_id="sato", team=None,
                       company=None, now=OPENED, reason="opened from SQL")
    assert (opened.deal.phase, probability(opened.deal, PROBABILITY), opened.deal.is_open) == (
        P.P1, 10, True)
    assert (opened.change.action, opened.change.from_phase, opened.change.to_phase) == (
        Action.OPENED, None, P.P1)


def test_p1_cannot_advance_until_the_problem_is_agreed() -> None:
    with pytest.raises(ExitCriteriaNotMet) as refused:
        advance(deal_in(P.P1, ExitCriteria()), OPENED)
    assert [(m.phase, m.field) for m in refused.value.missing] == [(P.P1, "problem_agreed")]
    moved = advance(deal_in(P.P1, ExitCriteria(problem_agreed=True)), OPENED)
    assert moved.deal.phase is P.P2


P2_NEEDS = ["business_issue", "problem", "solution", "benefit"]


@pytest.mark.parametrize("left_out", P2_NEEDS)
def test_p2_needs_issue_problem_solution_and_benefit_recorded(left_out: str) -> None:
    criteria = ExitCriteria.from_dict({**EVERYTHING.as_dict(), left_out: None})
    with pytest.raises(ExitCriteriaNotMet) as refused:
        advance(deal_in(P.P2, criteria), OPENED)
    assert [m.field for m in refused.value.missing] == [left_out]


@pytest.mark.parametrize("blank", ["\u3000 ", "\u200b", "\ufeff"])
def test_blank_text_even_full_width_or_invisible_does_not_count_as_recorded(blank: str) -> None:
    with pytest.raises(ExitCriteriaNotMet, match="benefit"):
        advance(deal_in(P.P2, replace(EVERYTHING, benefit=blank)), OPENED)


@pytest.mark.parametrize(("demo", "proposal", "passes"),
                         [(True, False, True), (False, True, True), (True, True, True),
                          (False, False, False)])
def test_p2_needs_a_demo_done_or_a_proposal_sent(demo: bool, proposal: bool,
                                                  passes: bool) -> None:
    deal = deal_in(P.P2, replace(EVERYTHING, demo_done=demo, proposal_sent=proposal))
    if passes:
        assert advance(deal, OPENED).deal.phase is P.P3
    else:
        with pytest.raises(ExitCriteriaNotMet, match="demo done or proposal sent"):
            advance(deal, OPENED)


@pytest.mark.parametrize(("phase", "needs"), [
    (P.P3, {"quote_presented", "approval_route"}),
    (P.P4, {"legal_checked", "final_terms_agreed"}),
    (P.P5, {"approval_requested"}),
])
def test_later_phases_need_their_own_criteria(phase: DealPhase, needs: set[str]) -> None:
    bare = ExitCriteria.from_dict({**EVERYTHING.as_dict(),
                                   **{name: ExitCriteria().as_dict()[name] for name in needs}})
    move = win if phase is P.P5 else advance
    with pytest.raises(ExitCriteriaNotMet) as refused:
        move(deal_in(phase, bare), OPENED)
    assert {m.field for m in refused.value.missing} == needs


def test_skipping_phases_needs_every_skipped_phases_criteria() -> None:
    criteria = ExitCriteria(problem_agreed=True, quote_presented=True)
    with pytest.raises(ExitCriteriaNotMet) as refused:
        advance(deal_in(P.P1, criteria), OPENED, P.P4)
    assert [m.field for m in refused.value.missing] == [
        "business_issue", "problem", "solution", "benefit", "demo_done", "approval_route"]
    moved = advance(deal_in(P.P1), OPENED, P.P4)
    assert (moved.deal.phase, probability(moved.deal, PROBABILITY)) == (P.P4, 80)
    assert (moved.change.from_phase, moved.change.to_phase) == (P.P1, P.P4)


@pytest.mark.parametrize(("current", "target"), [(P.P3, P.P3), (P.P3, P.P2), (P.P2, P.WON)])
def test_advance_only_goes_to_a_later_open_phase(current: DealPhase, target: DealPhase) -> None:
    with pytest.raises(DealConflict, match="advance goes to a later open phase"):
        advance(deal_in(current), OPENED, target)


def test_an_advance_from_a_phase_the_deal_has_left_is_refused() -> None:
    # The answer to the first advance was lost, and the client sends it again.
    once = advance(deal_in(P.P2), OPENED, from_phase=P.P2).deal
    assert once.phase is P.P3
    with pytest.raises(DealConflict, match="the deal is in P3, not P2"):
        advance(once, OPENED, from_phase=P.P2)


def test_p5_advances_only_by_closing() -> None:
    with pytest.raises(DealConflict, match="close the deal"):
        advance(deal_in(P.P5), OPENED)


def test_advancing_restarts_the_phase_clock() -> None:
    later = OPENED + timedelta(days=10)
    assert advance(deal_in(P.P1), later).deal.phase_changed_at == later


@pytest.mark.parametrize(("current", "target"),
                         [(c, t) for c in OPEN_PHASES for t in OPEN_PHASES
                          if OPEN_PHASES.index(t) < OPEN_PHASES.index(c)])
def test_moving_back_to_any_earlier_phase_needs_only_a_reason(current: DealPhase,
                                                              target: DealPhase) -> None:
    later = OPENED + timedelta(days=3)
    moved = move_back(deal_in(current, ExitCriteria()), later, target, "予算の再検討")
    assert (moved.deal.phase, moved.deal.phase_changed_at) == (target, later)
    assert (moved.change.action, moved.change.reason) == (Action.MOVED_BACK, "予算の再検討")


def test_moving_back_needs_an_earlier_phase_and_a_reason() -> None:
    with pytest.raises(DealConflict):
        move_back(deal_in(P.P2), OPENED, P.P3, "why")
    with pytest.raises(InvalidChange) as blank:
        move_back(deal_in(P.P2), OPENED, P.P1, "   ")
    assert blank.value.field == "reason"


# --- closing ------------------------------------------------------------------------------


def test_winning_from_p5_closes_at_a_hundred_percent() -> None:
    won = win(deal_in(P.P5), OPENED + timedelta(days=1), "稟議承認")
    assert (won.deal.phase, won.deal.outcome, probability(won.deal, PROBABILITY)) == (
        P.WON, Outcome.WON, 100)
    assert not won.deal.is_open and won.deal.closed_at == OPENED + timedelta(days=1)
    assert (won.change.from_phase, won.change.to_phase, won.change.reason) == (
        P.P5, P.WON, "稟議承認")


def test_winning_early_needs_every_criterion_through_p5() -> None:
    with pytest.raises(ExitCriteriaNotMet) as refused:
        win(deal_in(P.P3, replace(EVERYTHING, approval_requested=False)), OPENED)
    assert [m.field for m in refused.value.missing] == ["approval_requested"]
    assert win(deal_in(P.P3), OPENED).deal.phase is P.WON


@pytest.mark.parametrize("phase", OPEN_PHASES)
def test_a_deal_is_lost_from_any_phase_with_a_listed_reason(phase: DealPhase) -> None:
    lost = lose(deal_in(phase, ExitCriteria()), OPENED, "competitor", RULES.lost_reasons,
                "他社が値下げ")
    assert (lost.deal.phase, lost.deal.outcome, probability(lost.deal, PROBABILITY)) == (P.LOST,
                                                                           Outcome.LOST, 0)
    assert lost.deal.close_reason == "competitor"
    assert lost.change.reason == "competitor: 他社が値下げ"


def test_a_lost_reason_off_the_list_is_refused_naming_the_list() -> None:
    with pytest.raises(InvalidChange, match="price, competitor, timing") as refused:
        lose(deal_in(P.P2), OPENED, "bad vibes", RULES.lost_reasons)
    assert refused.value.field == "reason"


CHANGES: dict[str, Callable[[Deal], Changed | None]] = {
    "update": lambda d: update(d, OPENED, amount=1, expected_close_date=None, next_action=None,
                               criteria=d.criteria),
    "advance": lambda d: advance(d, OPENED),
    "move_back": lambda d: move_back(d, OPENED, P.P1, "x"),
    "win": lambda d: win(d, OPENED),
    "lose": lambda d: lose(d, OPENED, "price", RULES.lost_reasons),
    "hold": lambda d: place_hold(d, OPENED, date(2026, 5, 1), "x", today=date(2026, 4, 1),
                                 max_hold=RULES.max_hold),
    "release_hold": lambda d: release_hold(d, today=date(2026, 4, 1)),
    "recycle": lambda d: recycle(d, OPENED, "x"),
}


@pytest.mark.parametrize("closing", ["win", "lose", "recycle"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_closed_deal_refuses_every_change(closing: str, change: str) -> None:
    closed = CHANGES[closing](deal_in(P.P5))
    assert closed is not None
    with pytest.raises(DealConflict, match="is closed"):
        CHANGES[change](closed.deal)


# --- updates ------------------------------------------------------------------------------


def test_an_update_that_changes_nothing_is_no_change() -> None:
    deal = deal_in(P.P2)
    assert update(deal, OPENED, amount=deal.amount, expected_close_date=None, next_action=None,
                  criteria=deal.criteria) is None


def test_an_update_says_what_changed_and_keeps_the_phase() -> None:
    deal = deal_in(P.P2)
    later = OPENED + timedelta(days=5)
    changed = update(deal, later, amount=12_000_000, expected_close_date=date(2026, 9, 30),
                     next_action=NextAction(date(2026, 4, 10), "役員プレゼン"),
                     criteria=replace(deal.criteria, proposal_sent=True))
    assert changed is not None
    assert (changed.change.action, changed.change.from_phase, changed.change.to_phase) == (
        Action.UPDATED, P.P2, P.P2)
    assert changed.change.reason == ("amount none -> 12,000,000; expected close 2026-09-30; "
                                     "next action 2026-04-10 役員プレゼン; criteria proposal_sent")
    assert changed.deal.phase_changed_at == deal.phase_changed_at, "no phase change"
    assert changed.deal.next_action_entered_at == later


def test_keeping_the_same_next_action_does_not_count_as_entering_one() -> None:
    action = NextAction(date(2026, 4, 10), "訪問")
    deal = replace(deal_in(P.P2), next_action=action, next_action_entered_at=OPENED)
    changed = update(deal, OPENED + timedelta(days=9), amount=5, expected_close_date=None,
                     next_action=action, criteria=deal.criteria)
    assert changed is not None and changed.deal.next_action_entered_at == OPENED


# --- holds --------------------------------------------------------------------------------


def test_a_hold_needs_a_reason_and_an_end_date_not_past_nor_too_far() -> None:
    today = date(2026, 4, 1)
    deal = deal_in(P.P2)
    with pytest.raises(InvalidChange) as past:
        place_hold(deal, OPENED, today - timedelta(days=1), "予算凍結", today=today,
                   max_hold=RULES.max_hold)
    assert past.value.field == "until"
    with pytest.raises(InvalidChange, match="at most 180 days"):
        place_hold(deal, OPENED, today + timedelta(days=181), "予算凍結", today=today,
                   max_hold=RULES.max_hold)
    with pytest.raises(InvalidChange) as blank:
        place_hold(deal, OPENED, today, " ", today=today, max_hold=RULES.max_hold)
    assert blank.value.field == "reason"
    held = place_hold(deal, OPENED, today + timedelta(days=180), "予算凍結", today=today,
                      max_hold=RULES.max_hold)
    assert held.change.reason == "on hold until 2026-09-28: 予算凍結"
    assert held.deal.held_on(today + timedelta(days=180))
    assert not held.deal.held_on(today + timedelta(days=181))


def test_releasing_needs_an_active_hold() -> None:
    deal = deal_in(P.P2)
    with pytest.raises(DealConflict, match="not on hold"):
        release_hold(deal, today=date(2026, 4, 1))
    held = place_hold(deal, OPENED, date(2026, 4, 30), "x", today=date(2026, 4, 1),
                      max_hold=RULES.max_hold).deal
    assert release_hold(held, today=date(2026, 4, 2)).deal.hold is None
    with pytest.raises(DealConflict, match="not on hold"):
        release_hold(held, today=date(2026, 5, 1))  # expired


# --- zombies ------------------------------------------------------------------------------


def test_no_phase_change_for_90_days_makes_a_zombie_to_the_second() -> None:
    deal = replace(new_deal(), next_action=NextAction(date(2026, 9, 1), "x"))
    clock = ManualClock(OPENED)
    clock.advance(days=89)  # keep the next-action rule out of the way
    deal = replace(deal, next_action_entered_at=clock())
    clock.advance(days=1, seconds=-1)
    assert zombie_reason(deal, clock(), RULES) is None
    clock.advance(seconds=1)
    assert zombie_reason(deal, clock(), RULES) == "no phase change for 90 days"


def test_no_next_action_entered_for_60_days_makes_a_zombie() -> None:
    clock = ManualClock(OPENED)
    deal = new_deal(clock())
    clock.advance(days=59, hours=23)
    assert zombie_reason(deal, clock(), RULES) is None
    clock.advance(hours=1)
    assert zombie_reason(deal, clock(), RULES) == "no next action entered for 60 days"


def test_entering_a_next_action_restarts_only_its_own_clock() -> None:
    clock = ManualClock(OPENED)
    deal = new_deal(clock())
    clock.advance(days=50)
    changed = update(deal, clock(), amount=None, expected_close_date=None,
                     next_action=NextAction(date(2026, 6, 1), "見積提示"), criteria=deal.criteria)
    assert changed is not None
    clock.advance(days=59)  # 109 days since the phase changed, 59 since the entry
    assert zombie_reason(changed.deal, clock(), RULES) == "no phase change for 90 days"


def test_a_phase_change_restarts_only_the_phase_clock() -> None:
    clock = ManualClock(OPENED)
    deal = deal_in(P.P1)
    clock.advance(days=59)
    moved = advance(deal, clock()).deal
    clock.advance(days=1)
    assert zombie_reason(moved, clock(), RULES) == "no next action entered for 60 days"


def test_both_rules_broken_give_both_reasons() -> None:
    assert zombie_reason(new_deal(), OPENED + timedelta(days=90), RULES) == (
        "no phase change for 90 days; no next action entered for 60 days")


def test_thresholds_are_configurable() -> None:
    rules = replace(RULES, zombie_no_phase_change=timedelta(days=30),
                    zombie_no_next_action=timedelta(days=10))
    assert zombie_reason(new_deal(), OPENED + timedelta(days=9), rules) is None
    assert zombie_reason(new_deal(), OPENED + timedelta(days=10), rules) == (
        "no next action entered for 10 days")


def test_a_hold_keeps_a_zombie_until_the_end_of_its_last_day_in_tokyo() -> None:
    clock = ManualClock(OPENED)
    deal = new_deal(clock())
    clock.advance(days=80)
    held = place_hold(deal, clock(), date(2026, 7, 31), "決算期で稟議停止",
                      today=RULES.today(clock()), max_hold=RULES.max_hold).deal
    clock.now = datetime(2026, 7, 31, 23, 59, tzinfo=TOKYO)
    assert zombie_reason(held, clock(), RULES) is None, "held through its end date"
    clock.now = datetime(2026, 8, 1, 0, 0, tzinfo=TOKYO)  # 2026-07-31 15:00 UTC
    assert zombie_reason(held, clock(), RULES) == (
        "no phase change for 90 days; no next action entered for 60 days"), "hold expired"


def test_closed_deals_are_never_zombies() -> None:
    later = OPENED + timedelta(days=400)
    for closed in (win(deal_in(P.P5), OPENED), lose(deal_in(P.P1), OPENED, "price",
                                                    RULES.lost_reasons),
                   recycle(deal_in(P.P1), OPENED, "x")):
        assert zombie_reason(closed.deal, later, RULES) is None


def test_recycling_keeps_the_last_phase_and_drops_the_probability() -> None:
    recycled = recycle(deal_in(P.P3), OPENED, "no phase change for 90 days")
    deal = recycled.deal
    assert (deal.phase, deal.outcome, probability(deal, PROBABILITY)) == (
        P.P3, Outcome.RECYCLED, 0)
    assert (recycled.change.from_phase, recycled.change.to_phase) == (P.P3, P.P3)
    assert recycled.deal.close_reason == "no phase change for 90 days"


ages = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400))


@given(phase_age=ages, entry_age=ages, later=ages,
       hold_days=st.one_of(st.none(), st.integers(min_value=-30, max_value=200)),
       hand_off_age=st.one_of(st.none(), ages))
def test_zombie_rules_hold_for_any_ages(phase_age: timedelta, entry_age: timedelta,
                                        later: timedelta, hold_days: int | None,
                                        hand_off_age: timedelta | None) -> None:
    now = datetime(2027, 1, 15, 3, 0, tzinfo=UTC)
    today = RULES.today(now)
    hold = (None if hold_days is None else
            Hold(until=today + timedelta(days=hold_days), reason="x", placed_at=now))
    opened_age = max(phase_age, entry_age, hand_off_age or timedelta(0))
    deal = replace(new_deal(now - opened_age), phase_changed_at=now - phase_age,
                   next_action_entered_at=now - entry_age, hold=hold,
                   handed_off_at=None if hand_off_age is None else now - hand_off_age)
    reason = zombie_reason(deal, now, RULES)
    # Each clock is idle for the shorter of its own age and the hand-off's.
    idle_phase, idle_entry = ((phase_age, entry_age) if hand_off_age is None else
                              (min(phase_age, hand_off_age), min(entry_age, hand_off_age)))
    stale = idle_phase >= timedelta(days=90) or idle_entry >= timedelta(days=60)
    assert (reason is not None) == (stale and not deal.held_on(today))
    if reason is not None and deal.hold is None:
        assert zombie_reason(deal, now + later, RULES) is not None, "time never revives one"


# --- health -------------------------------------------------------------------------------


def test_health_flags_past_due_close_missing_or_overdue_next_action_and_stuck_phase() -> None:
    now = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)  # 12:00 in Tokyo
    fresh = replace(new_deal(now - timedelta(days=1)), expected_close_date=date(2026, 6, 1),
                    next_action=NextAction(date(2026, 6, 1), "電話"),
                    next_action_entered_at=now)
    assert issues(fresh, now, RULES) == {}
    stale = replace(fresh, expected_close_date=date(2026, 5, 31),
                    next_action=NextAction(date(2026, 5, 31), "電話"),
                    phase_changed_at=now - timedelta(days=30))
    assert issues(stale, now, RULES) == {
        Issue.PAST_DUE_CLOSE: "expected to close on 2026-05-31",
        Issue.NO_NEXT_ACTION: "next action overdue since 2026-05-31",
        Issue.STUCK: "in P1 for 30 days",
    }
    assert issues(replace(fresh, next_action=None), now, RULES) == {
        Issue.NO_NEXT_ACTION: "no next action"}
    zombie = replace(fresh, phase_changed_at=now - timedelta(days=90))
    assert issues(zombie, now, RULES)[Issue.ZOMBIE] == "no phase change for 90 days"


def test_health_flags_an_open_deal_without_an_expected_close_date() -> None:
    now = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
    fresh = replace(new_deal(now - timedelta(days=1)),
                    next_action=NextAction(date(2026, 6, 1), "電話"),
                    next_action_entered_at=now)
    assert issues(fresh, now, RULES) == {
        Issue.NO_EXPECTED_CLOSE: "no expected close date: set one, or the forecast counts "
                                 "it in no period (only as unscheduled)"}
    assert issues(replace(fresh, expected_close_date=date(2026, 9, 30)), now, RULES) == {}
    won = win(replace(fresh, criteria=EVERYTHING), now).deal
    assert issues(won, now, RULES) == {}, "a closed deal has no health issue"
