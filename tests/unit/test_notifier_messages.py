"""Alert messages are valid Block Kit in both languages, and say the same in plain text."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, HeaderBlock

from schemas.events import Account, LeadProfile, LeadPromoted, LifecycleStage, ScoreReason, Tier
from services.notifier.domain import AlertKind, ClockKind
from services.notifier.messages import (
    ACCEPT_ACTION,
    DIGEST_MAX_ALERTS,
    LABELS,
    REJECT_ACTION,
    AlertMessage,
    DealNotice,
    LeadCard,
    SlaNotice,
    deal_alert,
    digest,
    hot_lead,
    person,
    sla_alert,
    span,
)

EVENT = LeadPromoted(
    lead_id=uuid.uuid4(), occurred_at=datetime(2026, 11, 20, 1, 0, tzinfo=UTC),
    from_stage=LifecycleStage.LEAD, to_stage=LifecycleStage.MQL, reason="tier A",
    team="sdr", sla_due_at=datetime(2026, 11, 20, 1, 5, tzinfo=UTC),
    profile=LeadProfile(email="taro@sample.co.jp", name="山田 太郎", company="株式会社サンプル",
                        title="部長"),
    account=Account(account_key="domain:sample.co.jp", domain="sample.co.jp"),
    score=85, tier=Tier.A,
    top_reasons=[ScoreReason(code="inquiry.demo_request", label="デモ依頼", points=50)],
)
CARD = LeadCard.of(EVENT)
DUE = datetime(2026, 11, 20, 1, 5, tzinfo=UTC)


def parse(message: AlertMessage) -> list[Block]:
    """Return the message's blocks parsed by slack-sdk, failing on any it does not know."""
    parsed = [Block.parse(block) for block in message.blocks]
    blocks = [b for b in parsed if b is not None]
    assert len(blocks) == len(parsed)
    return blocks


def buttons(blocks: list[Block]) -> list[tuple[str | None, str | None, str | None]]:
    """Return (block_id, action_id, value) of every button."""
    return [(block.block_id, element.action_id, element.value)
            for block in blocks if isinstance(block, ActionsBlock)
            for element in block.elements if isinstance(element, ButtonElement)]


@pytest.mark.parametrize(("locale", "due"), [("ja", "受付期限"), ("en", "Accept by")])
def test_hot_lead_message_is_valid_block_kit(locale: str, due: str) -> None:
    message = hot_lead(EVENT, DUE, locale, "Asia/Tokyo")
    blocks = parse(message)
    assert [b.type for b in blocks] == ["header", "section", "section", "actions", "context"]
    block_id = f"lead:{EVENT.lead_id}"
    assert buttons(blocks) == [(block_id, ACCEPT_ACTION, str(EVENT.lead_id)),
                               (block_id, REJECT_ACTION, str(EVENT.lead_id))]
    assert "山田 太郎" in message.text and "株式会社サンプル" in message.text
    assert f"{due} 2026-11-20 10:05 JST" in message.text  # the due time in Tokyo


@pytest.mark.parametrize(("locale", "unowned", "owned"), [
    ("ja", "担当: (未割当)", "担当: 佐藤 花子 (sato)"),
    ("en", "Owner: (unassigned)", "Owner: 佐藤 花子 (sato)")])
def test_the_hot_lead_line_ends_with_its_owner(locale: str, unowned: str, owned: str) -> None:
    # Queued, then given from the queue: the two alerts' lines must tell them apart.
    given = EVENT.model_copy(update={"owner_id": "sato", "owner_name": "佐藤 花子"})
    assert hot_lead(EVENT, DUE, locale, "Asia/Tokyo").text.endswith(unowned)
    assert hot_lead(given, DUE, locale, "Asia/Tokyo").text.endswith(owned)


def test_hot_lead_e_mail_body_carries_the_same_content() -> None:
    message = hot_lead(EVENT, DUE, "ja", "Asia/Tokyo")
    assert message.title == "🔥 ホットリード: 株式会社サンプル"
    for expected in ("山田 太郎", "部長", "85 (tier A)", "デモ依頼 (+50)", "2026-11-20 10:05 JST",
                     str(EVENT.lead_id)):
        assert expected in message.body


def test_the_due_time_given_wins_over_routing_s() -> None:
    business_due = datetime(2026, 11, 24, 0, 30, tzinfo=UTC)
    assert "2026-11-24 09:30 JST" in hot_lead(EVENT, business_due, "en", "Asia/Tokyo").text


def test_a_very_long_company_name_is_clipped_to_what_slack_accepts() -> None:
    long = EVENT.model_copy(update={"profile": EVENT.profile.model_copy(
        update={"company": "長" * 500})})
    [header, *_] = parse(hot_lead(long, DUE, "ja", "Asia/Tokyo"))
    assert isinstance(header, HeaderBlock) and header.text is not None
    assert len(header.text.text) == 150 and header.text.text.endswith("…")


def mrkdwn_texts(message: AlertMessage) -> list[str]:
    """Return every text Slack parses as mrkdwn: the fallback text, mrkdwn objects."""
    found = [message.text]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.blocks)
    return found


def test_what_a_lead_typed_cannot_mention_a_channel_or_hide_a_link() -> None:
    hostile = "<!channel> 山田 & <https://evil.example|請求書>"
    event = EVENT.model_copy(update={
        "profile": EVENT.profile.model_copy(update={"name": hostile, "company": hostile}),
        "top_reasons": [ScoreReason(code="download.x", label=f"download ({hostile})",
                                    points=5)]})
    card = LeadCard.of(event)
    messages = [hot_lead(event, DUE, "ja", "Asia/Tokyo"),
                sla_alert(SlaNotice(kind=AlertKind.SLA_BREACH, clock=ClockKind.MQL_ACCEPTANCE,
                                    lead=card, started_at=DUE - timedelta(hours=1),
                                    due_at=DUE, at=DUE + timedelta(minutes=1)), "en",
                          "Asia/Tokyo"),
                deal_alert(DealNotice(kind=AlertKind.DEAL_RECYCLED, deal_id=uuid.uuid4(),
                                      lead=card, owner_id=None, reason=hostile), "ja")]
    for message in [*messages, digest(messages, "ja")]:
        for text in mrkdwn_texts(message):
            assert "<" not in text and ">" not in text, text
    hot = messages[0]
    assert hostile in hot.title and hostile in hot.body, "plain text and e-mail read as typed"
    assert any("&lt;!channel&gt; 山田" in text for text in mrkdwn_texts(hot))


def notice(kind: AlertKind, clock: ClockKind, at: datetime, late: bool = False) -> SlaNotice:
    return SlaNotice(kind=kind, clock=clock, lead=CARD, started_at=DUE - timedelta(hours=1),
                     due_at=DUE, at=at, stopped_late=late)


@pytest.mark.parametrize("locale", ["ja", "en"])
@pytest.mark.parametrize("kind", [AlertKind.SLA_REMINDER, AlertKind.SLA_BREACH,
                                  AlertKind.SLA_ESCALATION])
def test_sla_alerts_are_valid_block_kit(locale: str, kind: AlertKind) -> None:
    message = sla_alert(notice(kind, ClockKind.FIRST_TOUCH, DUE + timedelta(minutes=5)), locale,
                        "Asia/Tokyo")
    assert [b.type for b in parse(message)] == ["header", "section", "section", "context"]
    assert "2026-11-20 10:05 JST" in message.text and "株式会社サンプル" in message.text


def test_an_acceptance_reminder_keeps_the_accept_and_reject_buttons() -> None:
    message = sla_alert(notice(AlertKind.SLA_REMINDER, ClockKind.MQL_ACCEPTANCE,
                               DUE - timedelta(minutes=30)), "ja", "Asia/Tokyo")
    assert [action for _, action, _ in buttons(parse(message))] == [ACCEPT_ACTION, REJECT_ACTION]
    assert "残り 30分" in message.text


def test_a_late_stop_says_it_completed_and_by_how_much_it_was_late() -> None:
    message = sla_alert(notice(AlertKind.SLA_BREACH, ClockKind.MQL_ACCEPTANCE,
                               DUE + timedelta(hours=2, minutes=3), late=True), "en",
                        "Asia/Tokyo")
    assert message.title.startswith("🚨 SLA breached (completed late)")
    assert "Completed: 2026-11-20 12:08 JST (Overdue 2h 3m)" in message.body
    assert buttons(parse(message)) == [], "nothing is left to accept"


@pytest.mark.parametrize(("locale", "heading", "completed", "deadline", "earlier"), [
    ("ja", "✅ SLA違反の取り消し(期限内に完了)", "完了: 2026-11-20 10:03 JST (期限内)",
     "期限: 2026-11-20 10:05 JST",
     "先ほどのSLA違反の通知は、期限内に完了していたことが分かる前に送られたもの"),
    ("en", "✅ SLA met after all", "Completed: 2026-11-20 10:03 JST (in time)",
     "Due: 2026-11-20 10:05 JST", "The SLA breach alert sent earlier went out before")])
def test_a_breach_cleared_says_what_was_done_when_by_which_deadline_and_why_it_was_alerted(
        locale: str, heading: str, completed: str, deadline: str, earlier: str) -> None:
    message = sla_alert(notice(AlertKind.SLA_CLEARED, ClockKind.MQL_ACCEPTANCE,
                               DUE - timedelta(minutes=2)), locale, "Asia/Tokyo")
    waiting = LABELS[locale][f"clock.{ClockKind.MQL_ACCEPTANCE}"]
    assert message.title == f"{heading}: 株式会社サンプル"
    for said in (waiting, completed, deadline, earlier):
        assert said in message.body, said
    assert f"{heading}: {waiting}" in message.text and "10:03 JST" in message.text
    blocks = parse(message)
    assert [b.type for b in blocks] == ["header", "section", "section", "section", "context"]
    assert any(earlier in text for text in mrkdwn_texts(message)[1:]), "Slack shows why"
    assert buttons(blocks) == [], "the lead was accepted: nothing is left to accept"


@pytest.mark.parametrize("locale", ["ja", "en"])
def test_every_alert_kind_has_a_heading_in_each_language(locale: str) -> None:
    assert [kind for kind in AlertKind if kind.value not in LABELS[locale]] == []


@pytest.mark.parametrize("locale", ["ja", "en"])
@pytest.mark.parametrize("clock", list(ClockKind))
def test_every_clock_says_what_it_waits_for_in_each_language(locale: str,
                                                             clock: ClockKind) -> None:
    message = sla_alert(notice(AlertKind.SLA_BREACH, clock, DUE), locale, "Asia/Tokyo")
    assert len(parse(message)) == 4 + (clock is ClockKind.MQL_ACCEPTANCE)
    assert f"clock.{clock}" in LABELS[locale]


@pytest.mark.parametrize(("locale", "label", "waiting"), [
    ("ja", "初回商談の記録", "待っていること"),
    ("en", "the first meeting's record", "Waiting for")])
def test_a_first_meeting_alert_names_the_meeting_s_record_in_slack_and_e_mail(
        locale: str, label: str, waiting: str) -> None:
    message = sla_alert(notice(AlertKind.SLA_REMINDER, ClockKind.FIRST_MEETING,
                               DUE - timedelta(hours=4)), locale, "Asia/Tokyo")
    assert label in message.text, "Slack's notification text"
    assert f"{waiting}: {label}" in message.body, "the e-mail"
    assert any(label in text for text in mrkdwn_texts(message)[1:]), "the Block Kit fields"
    assert buttons(parse(message)) == [], "nothing to accept: a record to log"

@pytest.mark.parametrize("locale", ["ja", "en"])
def test_deal_alerts_are_valid_block_kit(locale: str) -> None:
    won = deal_alert(DealNotice(kind=AlertKind.DEAL_WON, deal_id=uuid.uuid4(), lead=CARD,
                                owner_id="rep-7", amount=12_000_000), locale)
    recycled = deal_alert(DealNotice(kind=AlertKind.DEAL_RECYCLED, deal_id=uuid.uuid4(),
                                     lead=CARD, owner_id=None, phase="P2",
                                     reason="90日間フェーズ変更なし"), locale)
    assert [b.type for b in parse(won)] == ["header", "section", "context"]
    assert "¥12,000,000" in won.body and "rep-7" in won.body
    assert "90日間フェーズ変更なし" in recycled.body and "P2" in recycled.body


@pytest.mark.parametrize(("locale", "unassigned"), [("ja", "(未割当)"), ("en", "(unassigned)")])
def test_a_rep_is_shown_by_name_and_id_the_id_alone_until_named(locale: str,
                                                                unassigned: str) -> None:
    label = LABELS[locale]
    assert person("sato", "佐藤 花子", label) == "佐藤 花子 (sato)"
    assert person("sato", None, label) == "sato"
    assert person(None, None, label) == unassigned


def test_a_card_is_stored_with_the_keys_the_previous_version_reads_and_no_owner_name(
        ) -> None:
    named = replace(CARD, owner_id="sato", owner_name="佐藤 花子")
    stored = named.to_json()
    # The previous version builds a card from exactly these keys and refuses any other.
    assert set(stored) == {"lead_id", "email", "name", "company", "title", "score", "tier",
                           "owner_id", "team", "reasons"}
    assert LeadCard.from_json(stored) == replace(named, owner_name=None)


def test_a_digest_folds_alerts_and_keeps_every_lead_s_buttons() -> None:
    leads = [EVENT.model_copy(update={"lead_id": uuid.uuid4()}) for _ in range(3)]
    folded = digest([hot_lead(lead, DUE, "ja", "Asia/Tokyo") for lead in leads], "ja")
    blocks = parse(folded)
    assert folded.title == "📬 通知まとめ: 3件"
    assert {block_id for block_id, _, _ in buttons(blocks)} == {
        f"lead:{lead.lead_id}" for lead in leads}
    assert all(str(lead.lead_id) in folded.body for lead in leads)


def test_a_digest_of_one_is_the_alert_itself() -> None:
    message = hot_lead(EVENT, DUE, "ja", "Asia/Tokyo")
    assert digest([message], "ja") == message


def test_the_largest_digest_stays_within_slack_s_fifty_blocks() -> None:
    messages = [hot_lead(EVENT.model_copy(update={"lead_id": uuid.uuid4()}), DUE, "en",
                         "Asia/Tokyo") for _ in range(DIGEST_MAX_ALERTS)]
    folded = digest(messages, "en")
    assert len(buttons(parse(folded))) == 2 * DIGEST_MAX_ALERTS
    assert len(folded.blocks) <= 50


def test_a_digest_shows_a_lead_s_buttons_once_as_slack_refuses_a_repeated_block_id() -> None:
    other = EVENT.model_copy(update={"lead_id": uuid.uuid4()})
    reminder = sla_alert(notice(AlertKind.SLA_REMINDER, ClockKind.MQL_ACCEPTANCE,
                                DUE - timedelta(minutes=2)), "ja", "Asia/Tokyo")
    folded = digest([hot_lead(EVENT, DUE, "ja", "Asia/Tokyo"), reminder,
                     hot_lead(other, DUE, "ja", "Asia/Tokyo")], "ja")
    block_ids = [block["block_id"] for block in folded.blocks if "block_id" in block]
    assert block_ids == [f"lead:{EVENT.lead_id}", f"lead:{other.lead_id}"]
    assert [block.type for block in parse(folded)] == [
        "header", "section", "actions", "section", "section", "actions"]
    assert folded.text.count(str(CARD.company)) == 3, "every alert is still told"


def test_messages_and_cards_round_trip_through_json_with_japanese_intact() -> None:
    message = hot_lead(EVENT, DUE, "ja", "Asia/Tokyo")
    stored = json.loads(json.dumps(message.to_json(), ensure_ascii=False))
    assert AlertMessage.from_json(stored) == message
    assert LeadCard.from_json(json.loads(json.dumps(CARD.to_json()))) == CARD


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)))
def test_spans_read_as_days_hours_and_minutes(duration: timedelta) -> None:
    total = 0
    for part in span(duration, "en").split():
        total += int(part[:-1]) * {"d": 1440, "h": 60, "m": 1}[part[-1]]
    assert total == int(duration.total_seconds() // 60)


@pytest.mark.parametrize("locale", ["ja", "en"])
def test_sla_lines_of_two_leads_at_one_company_name_each_lead(locale: str) -> None:
    # Two colleagues at the same company breach the same clock at the same moment: the
    # notification text (console, Slack, a digest's lines) tells them apart by name.
    other = LeadCard.of(EVENT.model_copy(update={
        "lead_id": uuid.uuid4(), "profile": EVENT.profile.model_copy(update={
            "name": "佐藤 花子", "email": "hanako@sample.co.jp"})}))
    texts = [sla_alert(SlaNotice(kind=AlertKind.SLA_BREACH, clock=ClockKind.MQL_ACCEPTANCE,
                                 lead=card, started_at=DUE - timedelta(hours=1), due_at=DUE,
                                 at=DUE), locale, "Asia/Tokyo").text for card in (CARD, other)]
    assert texts[0] != texts[1]
    assert "山田 太郎 / 株式会社サンプル" in texts[0]
    assert "佐藤 花子 / 株式会社サンプル" in texts[1]
    folded = digest([sla_alert(SlaNotice(
        kind=AlertKind.SLA_BREACH, clock=ClockKind.MQL_ACCEPTANCE, lead=card,
        started_at=DUE - timedelta(hours=1), due_at=DUE, at=DUE), locale, "Asia/Tokyo")
        for card in (CARD, other)], locale)
    assert "山田 太郎" in folded.text and "佐藤 花子" in folded.text


@pytest.mark.parametrize(("locale", "labelled"), [("ja", "役職: 担当"), ("en", "Title: 担当")])
def test_the_hot_lead_line_labels_the_title_so_it_is_not_read_as_the_owner(
        locale: str, labelled: str) -> None:
    staff = EVENT.model_copy(update={"profile": EVENT.profile.model_copy(
        update={"title": "担当"})})
    message = hot_lead(staff, DUE, locale, "Asia/Tokyo")
    assert labelled in message.text, "Slack's notification text and the console line"
    assert labelled in message.body, "the e-mail"
    assert any(text == f"*{labelled.split(':')[0]}*\n担当" for text in mrkdwn_texts(message)), \
        "the Block Kit field"
