"""Alert messages: Block Kit built with slack-sdk's models, in Japanese or English."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from schemas.events import LeadPromoted

ACCEPT_ACTION = "lead.accept"
REJECT_ACTION = "lead.reject"

LABELS = {
    "ja": {
        "hot_lead": "🔥 ホットリード", "name": "氏名", "company": "会社", "title": "役職",
        "score": "スコア", "due": "受付期限", "reasons": "主な理由", "accept": "受け入れる",
        "reject": "見送る", "team": "チーム", "unknown": "(未入力)",
    },
    "en": {
        "hot_lead": "🔥 Hot lead", "name": "Name", "company": "Company", "title": "Title",
        "score": "Score", "due": "Accept by", "reasons": "Top reasons", "accept": "Accept",
        "reject": "Reject", "team": "Team", "unknown": "(not given)",
    },
}


@dataclass(frozen=True)
class AlertMessage:
    """A message for any channel: plain text and, for Slack, Block Kit blocks."""

    text: str
    blocks: list[dict[str, Any]]

    def slack_payload(self) -> dict[str, Any]:
        """Return the JSON body of a Slack message."""
        return {"text": self.text, "blocks": self.blocks}


def hot_lead(event: LeadPromoted, locale: str, timezone: str) -> AlertMessage:
    """Return the hot-lead alert: who, company, title, score, reasons, due time, buttons."""
    label = LABELS[locale]
    profile = event.profile
    due = (event.sla_due_at.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")
           if event.sla_due_at else "-")
    reasons = "\n".join(f"• {r.label} ({r.points:+g})" for r in event.top_reasons) or "-"
    company = profile.company or event.account.company_name or label["unknown"]
    name = profile.name or profile.email
    fields = [
        (label["name"], f"{name} <{profile.email}>"),
        (label["company"], company),
        (label["title"], profile.title or label["unknown"]),
        (label["score"], f"{event.score} (tier {event.tier.value})"),
        (label["due"], due),
        (label["team"], event.team or "-"),
    ]
    blocks = [
        HeaderBlock(text=f"{label['hot_lead']}: {company}"),
        SectionBlock(fields=[MarkdownTextObject(text=f"*{key}*\n{value}")
                             for key, value in fields]),
        SectionBlock(text=MarkdownTextObject(text=f"*{label['reasons']}*\n{reasons}")),
        ActionsBlock(block_id=f"lead:{event.lead_id}", elements=[
            ButtonElement(text=label["accept"], action_id=ACCEPT_ACTION,
                          value=str(event.lead_id), style="primary"),
            ButtonElement(text=label["reject"], action_id=REJECT_ACTION,
                          value=str(event.lead_id), style="danger"),
        ]),
        ContextBlock(elements=[MarkdownTextObject(text=f"lead `{event.lead_id}`")]),
    ]
    text = (f"{label['hot_lead']}: {name} / {company} / {profile.title or '-'} / "
            f"{label['score']} {event.score} / {label['due']} {due}")
    return AlertMessage(text=text, blocks=[block.to_dict() for block in blocks])
