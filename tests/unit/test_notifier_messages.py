"""Alert messages are valid Block Kit in both languages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement

from schemas.events import Account, LeadProfile, LeadPromoted, LifecycleStage, ScoreReason, Tier
from services.notifier.messages import ACCEPT_ACTION, REJECT_ACTION, hot_lead

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


@pytest.mark.parametrize(("locale", "due"), [("ja", "受付期限"), ("en", "Accept by")])
def test_hot_lead_message_is_valid_block_kit(locale: str, due: str) -> None:
    message = hot_lead(EVENT, locale, "Asia/Tokyo")
    parsed = [Block.parse(block) for block in message.blocks]
    blocks = [b for b in parsed if b is not None]
    assert len(blocks) == len(parsed)
    assert [b.type for b in blocks] == ["header", "section", "section", "actions", "context"]
    [actions] = [b for b in blocks if isinstance(b, ActionsBlock)]
    buttons = [e for e in actions.elements if isinstance(e, ButtonElement)]
    assert [b.action_id for b in buttons] == [ACCEPT_ACTION, REJECT_ACTION]
    assert {b.value for b in buttons} == {str(EVENT.lead_id)}
    assert "山田 太郎" in message.text and "株式会社サンプル" in message.text
    assert f"{due} 2026-11-20 10:05 JST" in message.text  # the due time in Tokyo
