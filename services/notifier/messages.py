"""Alert messages: Block Kit built with slack-sdk's models, and the same content as plain text.

Every template exists in Japanese and English; the locale is a setting (default ja).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from baton_runtime.text import clip
from schemas.events import LeadPromoted, LeadScored
from services.notifier.domain import AlertKind, ClockKind

ACCEPT_ACTION = "lead.accept"
REJECT_ACTION = "lead.reject"
HEADER_MAX, FIELD_MAX, SECTION_MAX, TEXT_MAX = 150, 2000, 3000, 3000
TOP_REASONS = 3
DIGEST_MAX_ALERTS = 20  # header + two blocks per alert stays under Slack's 50 blocks

LABELS: dict[str, dict[str, str]] = {
    "ja": {
        "hot_lead": "🔥 ホットリード", "name": "氏名", "company": "会社", "title": "役職",
        "score": "スコア", "due": "受付期限", "reasons": "主な理由", "accept": "受け入れる",
        "reject": "見送る", "team": "チーム", "owner": "担当", "unknown": "(未入力)",
        "unassigned": "(未割当)",
        "sla_reminder": "⏰ SLAリマインド", "sla_breach": "🚨 SLA違反",
        "sla_escalation": "📣 SLAエスカレーション", "sla_late": "🚨 SLA違反(期限後に完了)",
        "sla_cleared": "✅ SLA違反の取り消し(期限内に完了)", "in_time": "期限内",
        "cleared_because": "先ほどのSLA違反の通知は、期限内に完了していたことが分かる前に"
                           "送られたものです。SLAは守られています。",
        "deadline": "期限", "started": "開始", "remaining": "残り", "overdue": "超過",
        "completed": "完了", "waiting_for": "待っていること",
        "deal_won": "🎉 受注", "deal_recycled": "♻️ 商談リサイクル", "amount": "金額",
        "phase": "最終フェーズ", "reason": "理由", "deal": "商談",
        "digest": "📬 通知まとめ", "count": "件", "lead": "リード",
        f"clock.{ClockKind.MQL_ACCEPTANCE}": "MQLの受け入れ(SAL)",
        f"clock.{ClockKind.FIRST_TOUCH}": "初回対応",
        f"clock.{ClockKind.FIRST_CONTACT}": "SQLへの初回コンタクト",
        f"clock.{ClockKind.OWNER_ACTIVITY}": "担当リードの活動",
        f"clock.{ClockKind.FIRST_MEETING}": "初回商談の記録",
        "day": "日", "hour": "時間", "minute": "分",
    },
    "en": {
        "hot_lead": "🔥 Hot lead", "name": "Name", "company": "Company", "title": "Title",
        "score": "Score", "due": "Accept by", "reasons": "Top reasons", "accept": "Accept",
        "reject": "Reject", "team": "Team", "owner": "Owner", "unknown": "(not given)",
        "unassigned": "(unassigned)",
        "sla_reminder": "⏰ SLA reminder", "sla_breach": "🚨 SLA breached",
        "sla_escalation": "📣 SLA escalation", "sla_late": "🚨 SLA breached (completed late)",
        "sla_cleared": "✅ SLA met after all", "in_time": "in time",
        "cleared_because": "The SLA breach alert sent earlier went out before it was known "
                           "that this was completed in time: the SLA was met.",
        "deadline": "Due", "started": "Started", "remaining": "Remaining", "overdue": "Overdue",
        "completed": "Completed", "waiting_for": "Waiting for",
        "deal_won": "🎉 Deal won", "deal_recycled": "♻️ Deal recycled", "amount": "Amount",
        "phase": "Last phase", "reason": "Reason", "deal": "Deal",
        "digest": "📬 Alert digest", "count": " alerts", "lead": "Lead",
        f"clock.{ClockKind.MQL_ACCEPTANCE}": "MQL acceptance (SAL)",
        f"clock.{ClockKind.FIRST_TOUCH}": "first touch",
        f"clock.{ClockKind.FIRST_CONTACT}": "first contact with the SQL",
        f"clock.{ClockKind.OWNER_ACTIVITY}": "activity on an owned lead",
        f"clock.{ClockKind.FIRST_MEETING}": "the first meeting's record",
        "day": "d", "hour": "h", "minute": "m",
    },
}


@dataclass(frozen=True)
class AlertMessage:
    """A message for any channel: a title (e-mail subject), text, plain body and Block Kit."""

    title: str
    text: str
    body: str
    blocks: list[dict[str, Any]]

    def slack_payload(self) -> dict[str, Any]:
        """Return the JSON body of a Slack message."""
        return {"text": self.text, "blocks": self.blocks}

    def to_json(self) -> dict[str, Any]:
        """Return the message as stored in a delivery record."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertMessage:
        """Return a message stored with ``to_json``."""
        return cls(title=data["title"], text=data["text"], body=data["body"],
                   blocks=list(data["blocks"]))


@dataclass(frozen=True)
class LeadCard:
    """What an alert says about a lead."""

    lead_id: uuid.UUID
    email: str
    name: str | None = None
    company: str | None = None
    title: str | None = None
    score: int | None = None
    tier: str | None = None
    owner_id: str | None = None
    team: str | None = None
    reasons: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    # Not stored with the card (see to_json): read with the lead, from the names routing sent.
    owner_name: str | None = None

    @classmethod
    def of(cls, event: LeadPromoted) -> LeadCard:
        """Return the card of a promoted lead."""
        return cls(lead_id=event.lead_id, email=event.profile.email, name=event.profile.name,
                   company=event.profile.company or event.account.company_name,
                   title=event.profile.title, score=event.score, tier=event.tier.value,
                   owner_id=event.owner_id, team=event.team,
                   reasons=tuple((r.label, r.points) for r in event.top_reasons),
                   owner_name=event.owner_name)

    @classmethod
    def scored(cls, event: LeadScored) -> LeadCard:
        """Return the card of a scored lead, with its strongest reasons."""
        top = sorted(event.reasons, key=lambda reason: reason.points, reverse=True)
        return cls(lead_id=event.lead_id, email=event.profile.email, name=event.profile.name,
                   company=event.profile.company or event.account.company_name,
                   title=event.profile.title, score=event.score, tier=event.tier.value,
                   reasons=tuple((r.label, r.points) for r in top[:TOP_REASONS]))

    def to_json(self) -> dict[str, Any]:
        """Return the card as the notifier stores it, without the owner's name.

        A name stored here would go stale when the lead changes hands, and replicas of the
        previous version, reading cards during an upgrade, refuse keys they do not know.
        """
        stored = asdict(self)
        del stored["owner_name"]
        return {**stored, "lead_id": str(self.lead_id),
                "reasons": [list(reason) for reason in self.reasons]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LeadCard:
        """Return a card stored with ``to_json``."""
        return cls(**{**data, "lead_id": uuid.UUID(data["lead_id"]),
                      "reasons": tuple((label, points) for label, points in data["reasons"])})


@dataclass(frozen=True)
class SlaNotice:
    """An SLA rung that fired, a clock that stopped after its due time, or one that stopped
    in time after its breach was alerted (``AlertKind.SLA_CLEARED``)."""

    kind: AlertKind
    clock: ClockKind
    lead: LeadCard
    started_at: datetime
    due_at: datetime
    at: datetime  # when the rung fired or the clock stopped
    stopped_late: bool = False


@dataclass(frozen=True)
class DealNotice:
    """A deal won or recycled."""

    kind: AlertKind
    deal_id: uuid.UUID
    lead: LeadCard
    owner_id: str | None
    owner_name: str | None = None
    amount: int | None = None
    phase: str | None = None
    reason: str | None = None


def when(moment: datetime, timezone: ZoneInfo) -> str:
    """Return ``moment`` as local date, time and zone, e.g. ``2026-11-20 10:05 JST``."""
    return moment.astimezone(timezone).strftime("%Y-%m-%d %H:%M %Z")


def span(duration: timedelta, locale: str) -> str:
    """Return a duration in days, hours and minutes, e.g. ``1時間5分`` or ``1h 5m``."""
    label = LABELS[locale]
    minutes = max(0, int(duration.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{value}{label[unit]}" for value, unit in
             ((days, "day"), (hours, "hour"), (minutes, "minute")) if value]
    parts = parts or [f"0{label['minute']}"]
    return ("" if locale == "ja" else " ").join(parts)


def mrkdwn_safe(text: str) -> str:
    """Return ``text`` with Slack's control characters as entities, for mrkdwn.

    Names, companies and reasons come from web forms: unescaped, a lead named
    ``<!channel>`` would notify a whole sales channel, and ``<https://…|…>`` hide a link.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fields(pairs: Sequence[tuple[str, str]]) -> SectionBlock:
    """Return a section of (label, value) fields, the values escaped for mrkdwn."""
    return SectionBlock(fields=[
        MarkdownTextObject(text=clip(f"*{key}*\n{mrkdwn_safe(value)}", FIELD_MAX))
        for key, value in pairs])


def person(rep_id: str | None, name: str | None, label: dict[str, str]) -> str:
    """Return a rep as alerts show them: ``佐藤 花子 (sato)``, the id alone while their name
    is unknown, or the label of an unassigned lead."""
    if rep_id is None:
        return label["unassigned"]
    return f"{name} ({rep_id})" if name else rep_id


def _lead_pairs(lead: LeadCard, label: dict[str, str]) -> list[tuple[str, str]]:
    return [
        (label["name"], f"{lead.name or lead.email} <{lead.email}>"),
        (label["company"], lead.company or label["unknown"]),
        (label["title"], lead.title or label["unknown"]),
        (label["score"], f"{lead.score} (tier {lead.tier})" if lead.score is not None else "-"),
        (label["owner"], person(lead.owner_id, lead.owner_name, label)),
        (label["team"], lead.team or "-"),
    ]


def _buttons(lead: LeadCard, label: dict[str, str]) -> ActionsBlock:
    """Return the Accept / Reject buttons routing's Slack actions rely on."""
    return ActionsBlock(block_id=f"lead:{lead.lead_id}", elements=[
        ButtonElement(text=label["accept"], action_id=ACCEPT_ACTION,
                      value=str(lead.lead_id), style="primary"),
        ButtonElement(text=label["reject"], action_id=REJECT_ACTION,
                      value=str(lead.lead_id), style="danger"),
    ])


def _render(title: str, pairs: Sequence[tuple[str, str]], blocks: Sequence[Block],
            text: str, extra: str = "") -> AlertMessage:
    """Return a message whose e-mail body lists the same fields as its blocks."""
    body = "\n".join([title, "", *(f"{key}: {value}" for key, value in pairs)])
    return AlertMessage(title=title, text=clip(text, TEXT_MAX),
                        body=body + (f"\n\n{extra}" if extra else "") + "\n",
                        blocks=[block.to_dict() for block in blocks])


def hot_lead(event: LeadPromoted, due_at: datetime | None, locale: str,
             timezone: str) -> AlertMessage:
    """Return the hot-lead alert: who, company, title, score, reasons, due time, buttons."""
    label = LABELS[locale]
    lead = LeadCard.of(event)
    due = when(due_at, ZoneInfo(timezone)) if due_at else "-"
    reasons = "\n".join(f"• {text} ({points:+g})" for text, points in lead.reasons) or "-"
    company = lead.company or label["unknown"]
    name = lead.name or lead.email
    pairs = [*_lead_pairs(lead, label), (label["due"], due)]
    title = f"{label['hot_lead']}: {company}"
    blocks = [
        HeaderBlock(text=clip(title, HEADER_MAX)),
        _fields(pairs),
        SectionBlock(text=MarkdownTextObject(
            text=clip(f"*{label['reasons']}*\n{mrkdwn_safe(reasons)}", SECTION_MAX))),
        _buttons(lead, label),
        ContextBlock(elements=[MarkdownTextObject(text=f"lead `{lead.lead_id}`")]),
    ]
    # The title is labelled: a bare job title (担当, staff) reads like the lead's owner.
    # The owner ends the line: a lead given from the queue is alerted again, now owned.
    text = mrkdwn_safe(f"{label['hot_lead']}: {name} / {company} / "
                       f"{label['title']}: {lead.title or '-'} / "
                       f"{label['score']} {lead.score} / {label['due']} {due} / "
                       f"{label['owner']}: {person(lead.owner_id, lead.owner_name, label)}")
    return _render(title, pairs, blocks, text, extra=f"{label['reasons']}:\n{reasons}\n\n"
                                                     f"lead {lead.lead_id}")


def sla_alert(notice: SlaNotice, locale: str, timezone: str) -> AlertMessage:
    """Return an SLA reminder, breach, escalation, the report of a late stop, or word that a
    breach alerted was met after all."""
    label = LABELS[locale]
    zone = ZoneInfo(timezone)
    lead = notice.lead
    heading = label["sla_late"] if notice.stopped_late else label[notice.kind.value]
    company = lead.company or lead.name or lead.email
    cleared = notice.kind is AlertKind.SLA_CLEARED
    if notice.stopped_late:
        late = span(notice.at - notice.due_at, locale)
        timing = (label["completed"], f"{when(notice.at, zone)} ({label['overdue']} {late})")
    elif cleared:
        timing = (label["completed"], f"{when(notice.at, zone)} ({label['in_time']})")
    elif notice.at < notice.due_at:
        timing = (label["remaining"], span(notice.due_at - notice.at, locale))
    else:
        timing = (label["overdue"], span(notice.at - notice.due_at, locale))
    pairs = [(label["waiting_for"], label[f"clock.{notice.clock}"]),
             (label["deadline"], when(notice.due_at, zone)), timing,
             (label["started"], when(notice.started_at, zone)), *_lead_pairs(lead, label)]
    title = f"{heading}: {company}"
    # Said first: the reader was told of a breach, and must not take this for another.
    because = [SectionBlock(text=MarkdownTextObject(text=label["cleared_because"]))
               ] if cleared else []
    blocks: list[Block] = [HeaderBlock(text=clip(title, HEADER_MAX)), *because,
                           _fields(pairs[:4]), _fields(pairs[4:])]
    if notice.clock is ClockKind.MQL_ACCEPTANCE and not (notice.stopped_late or cleared):
        blocks.append(_buttons(lead, label))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"lead `{lead.lead_id}`")]))
    # The lead's name, as the hot-lead line has it: two leads of one company stay apart.
    text = mrkdwn_safe(f"{heading}: {label[f'clock.{notice.clock}']} / "
                       f"{lead.name or lead.email} / {lead.company or label['unknown']} / "
                       f"{label['deadline']} {when(notice.due_at, zone)} / "
                       f"{timing[0]} {timing[1]}")
    extra = f"lead {lead.lead_id}"
    return _render(title, pairs, blocks, text,
                   extra=f"{label['cleared_because']}\n\n{extra}" if cleared else extra)


def deal_alert(notice: DealNotice, locale: str) -> AlertMessage:
    """Return the alert of a won or recycled deal."""
    label = LABELS[locale]
    lead = notice.lead
    company = lead.company or lead.name or lead.email
    pairs = [(label["company"], company), (label["name"], f"{lead.name or lead.email}"),
             (label["owner"], person(notice.owner_id, notice.owner_name, label)),
             (label["team"], lead.team or "-")]
    if notice.kind is AlertKind.DEAL_WON:
        pairs.append((label["amount"], f"¥{notice.amount:,}" if notice.amount is not None
                      else "-"))
    else:
        pairs += [(label["phase"], notice.phase or "-"), (label["reason"], notice.reason or "-")]
    title = f"{label[notice.kind.value]}: {company}"
    blocks = [HeaderBlock(text=clip(title, HEADER_MAX)), _fields(pairs),
              ContextBlock(elements=[MarkdownTextObject(
                  text=f"{label['deal']} `{notice.deal_id}` · lead `{lead.lead_id}`")])]
    text = mrkdwn_safe(f"{title} / " + " / ".join(f"{key} {value}" for key, value in pairs[1:]))
    return _render(title, pairs, blocks, text,
                   extra=f"deal {notice.deal_id}\nlead {lead.lead_id}")


def digest(messages: Sequence[AlertMessage], locale: str) -> AlertMessage:
    """Return one message folding a burst of alerts for the same destination.

    Each alert keeps its title and text, and each lead its buttons (once), so that a hot
    lead in a digest can still be accepted from Slack.
    """
    if len(messages) == 1:
        return messages[0]
    label = LABELS[locale]
    title = f"{label['digest']}: {len(messages)}{label['count']}"
    blocks: list[dict[str, Any]] = [HeaderBlock(text=title).to_dict()]
    block_ids: set[str] = set()
    for message in messages[:DIGEST_MAX_ALERTS]:
        blocks.append(SectionBlock(text=MarkdownTextObject(  # the text is mrkdwn already
            text=clip(f"*{mrkdwn_safe(message.title)}*\n{message.text}", SECTION_MAX))).to_dict())
        for block in message.blocks:
            block_id = block.get("block_id")
            # Slack refuses a whole message whose block_ids repeat (invalid_blocks), and one
            # lead's alerts (hot lead, then its reminder) carry the same buttons.
            if block.get("type") != "actions" or block_id in block_ids:
                continue
            if block_id is not None:
                block_ids.add(block_id)
            blocks.append(block)
    return AlertMessage(
        title=title,
        text=clip(f"{title}\n" + "\n".join(m.text for m in messages), TEXT_MAX),
        body="\n\n".join([title, *(m.body for m in messages)]),
        blocks=blocks,
    )
