"""The whole stack, notifier configured from YAML: a demo request reaches Slack and e-mail."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.integration.test_notifier_delivery import Inbox, lead_ids_in, smtp_server
from tests.support.fake_slack import FakeSlack
from tests.support.kafka import wait_until
from tests.support.stack import running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
API_KEY = "e2e-notifier-key-0123456789"
DEMO_REQUEST = {
    "email": "hanako.sato@example.co.jp",
    "name": "佐藤 花子",
    "company": "株式会社例示ロジスティクス",
    "title": "物流部 部長",
    "industry": "製造業",
    "employee_band": "500-999",
    "touchpoint": {"type": "inquiry.demo_request"},
}


async def test_a_demo_request_reaches_the_team_s_slack_channel_and_mailbox(
        tmp_path: Path) -> None:
    async with FakeSlack().running() as slack:
        team_hook, default_hook = f"{slack.webhook_url}/sdr", f"{slack.webhook_url}/default"
        with smtp_server(Inbox()) as (inbox, smtp_url):
            config = tmp_path / "notifier.yaml"
            config.write_text(
                f"channels:\n  teams:\n    sdr:\n      slack_webhook_url: {team_hook}\n"
                f"      email: [sdr-team@example.co.jp]\n", encoding="utf-8")
            async with running_stack({
                "BATON_INGEST_API_KEYS": f"website={API_KEY}",
                "BATON_SLACK_WEBHOOK_URL": default_hook,
                "BATON_NOTIFIER_CONFIG_FILE": str(config),
                "BATON_SMTP_URL": smtp_url,
                "BATON_ALERT_EMAIL_FROM": "baton@example.co.jp",
            }) as stack, httpx.AsyncClient() as client:
                response = await client.post(f"{stack.url('ingest')}/v1/leads",
                                             json=DEMO_REQUEST, headers={"X-API-Key": API_KEY})
                assert response.status_code == 202, response.text
                lead_id = response.json()["lead_id"]
                [message] = await slack.wait_for(1, timeout=15)
                assert message.path.endswith("/sdr"), "the team's own webhook, not the default"
                assert lead_ids_in(message) == [lead_id]
                assert "佐藤 花子" in message.body["text"]

                async def mailed() -> bool:
                    return len(inbox.received) == 1

                await wait_until(mailed, 15, "the e-mail to the team")
                notifier = stack.url("notifier")
                alerts = (await client.get(f"{notifier}/v1/alerts",
                                           params={"lead_id": lead_id})).json()
                sla = (await client.get(f"{notifier}/v1/leads/{lead_id}/sla")).json()
                unknown = await client.get(f"{notifier}/v1/leads/{lead_id[:-4]}0000/sla")

    assert sorted((a["kind"], a["status"], a["channel"].split(":")[0]) for a in alerts) == [
        ("hot_lead", "delivered", "email"), ("hot_lead", "delivered", "slack_webhook")]
    mail = email.message_from_bytes(inbox.received[0].original_content or b"",
                                    policy=email.policy.default)
    assert mail["Subject"] == "🔥 ホットリード: 株式会社例示ロジスティクス"
    assert "物流部 部長" in mail.get_content()
    assert "問い合わせ: デモ依頼" in mail.get_content(), "a Japanese alert's reasons in Japanese"
    [clock] = [c for c in sla["clocks"] if c["kind"] == "mql_acceptance"]
    assert (clock["rule"], clock["state"]) == ("mql_fast_lane", "open")
    started, due = (datetime.fromisoformat(clock[key]) for key in ("started_at", "due_at"))
    assert due - started == timedelta(minutes=5), "a demo request gets five wall-clock minutes"
    assert unknown.status_code == 404
