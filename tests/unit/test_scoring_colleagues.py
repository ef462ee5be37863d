"""What scoring reads of a lead's colleagues, and when a lead's change moves theirs.

A large account must not cost a read of every contact per lead, nor a re-score of every
contact each time one more engages: these properties check against the full lists that
the bounded ones change nothing a score says, and that skipped reviews are never late.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import TouchpointType
from services.scoring.domain import (
    Activity,
    Colleague,
    LeadFacts,
    ScoreResult,
    changes_colleagues,
    contacts_to_read,
    counted_contacts,
    score_lead,
)
from tests.unit.test_scoring_rules import MODEL, NOW

RUNS = settings(max_examples=300, deadline=None)

engaged_moments = st.datetimes(min_value=datetime(2026, 6, 1), max_value=datetime(2026, 11, 20),
                               timezones=st.just(UTC))
colleagues = st.builds(Colleague, engaged_at=engaged_moments, decision_maker=st.booleans())
facts = st.builds(LeadFacts, title=st.sampled_from([None, "代表取締役", "部長", "担当"]),
                  free_mail=st.just(False), industry=st.sampled_from([None, "製造業"]),
                  employee_band=st.sampled_from([None, "500-999"]))
activities = st.builds(Activity, type=st.sampled_from(list(TouchpointType)),
                       occurred_at=st.datetimes(min_value=datetime(2026, 8, 1),
                                                max_value=datetime(2026, 11, 20),
                                                timezones=st.just(UTC)),
                       asset_id=st.sampled_from([None, "a", "b"]))


def read(account: list[Colleague]) -> list[int]:
    """Return the positions of what the store reads of an account (as its SQL ranks them):
    the most recently engaged contacts and the latest decision makers."""
    recent, deciders = contacts_to_read(MODEL)
    since = NOW - MODEL.engagement.window
    engaged = sorted((i for i, c in enumerate(account) if c.engaged_at > since),
                     key=lambda i: account[i].engaged_at, reverse=True)
    return sorted({*engaged[:recent],
                   *[i for i in engaged if account[i].decision_maker][:deciders]})


def without_review(result: ScoreResult) -> ScoreResult:
    return ScoreResult(result.score, result.tier, result.surge, result.dormancy, result.reasons,
                       result.high_intent_signals, result.model_version, None)


@RUNS
@given(facts, st.lists(activities, max_size=8), st.lists(colleagues, max_size=12),
       st.integers(min_value=0, max_value=11))
def test_a_score_from_what_the_store_reads_is_the_score_from_every_colleague(
    lead: LeadFacts, ledger: list[Activity], account: list[Colleague], position: int
) -> None:
    # The lead itself may be one of the account's contacts: it is left out after reading.
    others = [c for i, c in enumerate(account) if i != position]
    bounded = [account[i] for i in read(account) if i != position]
    assert (score_lead(lead, ledger, NOW, MODEL, colleagues=bounded)
            == score_lead(lead, ledger, NOW, MODEL, colleagues=others))


@RUNS
@given(st.lists(colleagues, max_size=8), st.one_of(st.none(), colleagues), colleagues,
       st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=60)), facts,
       st.lists(activities, max_size=8))
def test_a_change_said_to_move_no_colleague_moves_none_and_makes_no_review_late(
    others: list[Colleague], before: Colleague | None, later: Colleague,
    advance: timedelta, colleague: LeadFacts, ledger: list[Activity]
) -> None:
    window = MODEL.engagement.window
    if before is not None and NOW - before.engaged_at >= window:
        before = None  # "before" is the lead as its colleagues saw it: engaged, or None
    # A touchpoint only moves the lead's engagement later.
    engaged_at = max(later.engaged_at, before.engaged_at if before else later.engaged_at)
    after = Colleague(min(engaged_at + advance, NOW), later.decision_maker)
    if NOW - after.engaged_at >= window or before == after:
        return
    if changes_colleagues(before, after, [others[i] for i in read(others)], NOW, MODEL):
        return
    for position in range(len(others)):
        rest = others[:position] + others[position + 1:]
        stored = score_lead(colleague, ledger, NOW, MODEL,
                            colleagues=rest + ([before] if before else []))
        fresh = score_lead(colleague, ledger, NOW, MODEL, colleagues=[*rest, after])
        assert without_review(stored) == without_review(fresh)
        assert fresh.next_review_at is None or (
            stored.next_review_at is not None and stored.next_review_at <= fresh.next_review_at
        ), "the colleague's stored review would come after its score changes"


def test_a_lead_starting_to_engage_moves_colleagues_only_below_the_cap() -> None:
    cap = counted_contacts(MODEL)
    newcomer = Colleague(NOW, decision_maker=False)

    def engaged(count: int) -> list[Colleague]:
        return [Colleague(NOW - timedelta(days=1 + i), decision_maker=False)
                for i in range(count)]

    assert changes_colleagues(None, newcomer, engaged(cap), NOW, MODEL)
    assert not changes_colleagues(None, newcomer, engaged(cap + 1), NOW, MODEL)
    lapsed = [*engaged(cap), Colleague(NOW - MODEL.engagement.window, decision_maker=False)]
    assert changes_colleagues(None, newcomer, lapsed, NOW, MODEL), "a lapsed contact counts none"


def test_a_decision_maker_moves_colleagues_until_two_others_decide() -> None:
    crowd = [Colleague(NOW - timedelta(days=1 + i), decision_maker=False) for i in range(9)]
    decider = Colleague(NOW, decision_maker=True)
    deciders = [Colleague(NOW - timedelta(days=2), True), Colleague(NOW - timedelta(days=3), True)]
    assert changes_colleagues(None, decider, crowd, NOW, MODEL)
    assert changes_colleagues(None, decider, [*crowd, deciders[0]], NOW, MODEL)
    assert not changes_colleagues(None, decider, [*crowd, *deciders], NOW, MODEL)
    promoted = Colleague(NOW - timedelta(days=5), decision_maker=False)
    assert changes_colleagues(promoted, promoted._replace(decision_maker=True), crowd, NOW, MODEL)
    assert changes_colleagues(decider, decider._replace(decision_maker=False),
                              [*crowd, *deciders], NOW, MODEL), (
        "a decision maker fewer may bring a colleague's lapse sooner")


def test_past_the_cap_the_label_says_or_more() -> None:
    cap = counted_contacts(MODEL)

    def label(count: int) -> str:
        found = [Colleague(NOW - timedelta(days=1), decision_maker=False)] * count
        result = score_lead(LeadFacts(title=None, free_mail=False), [], NOW, MODEL,
                            colleagues=found)
        return next(r.label for r in result.reasons if r.code == "engagement.contacts")

    assert label(cap - 1) == f"{cap - 1} other engaged contact(s) at the account"
    assert label(cap) == label(cap + 40) == f"{cap} or more other engaged contacts at the account"
