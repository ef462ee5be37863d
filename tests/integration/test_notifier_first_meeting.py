"""The first meeting's clock: set by a partner's appointment, it starts at the meeting's time.

The meeting is often days ahead of the appointment: nothing fires before it, and its
record is due two working days after it. A meeting contact logged after the meeting's
time stops it; the lead leaving sales cancels it, even before the meeting. lead.scored
and lead.promoted are consumed independently, so each rule holds in either handling order.
"""

from __future__ import annotations

import email
import email.policy
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from baton_runtime.http import create_app
from baton_runtime.service import ServiceContext
from schemas.events import (
    ContactKind,
    DealPhase,
    DealPhaseChanged,
    DealRecycled,
    LeadPromoted,
    LeadScored,
    LifecycleStage,
    Tier,
)
from services.notifier import api, handlers
from services.notifier.config import NotifierConfig
from tests.integration.test_notifier_delivery import (
    Inbox,
    NotifierDatabase,
    alert_rows,
    configure,
    delivering,
    handle,
    notifier_database,
    promoted,
    settled,
    smtp_server,
)
from tests.integration.test_notifier_sla import CONFIG, MANAGER, TEAM, clocks, jst, scored, sweep
from tests.support.fake_slack import FakeSlack
from tests.support.infrastructure import PostgresServer
from tests.support.kafka import wait_until

pytestmark = pytest.mark.integration
S = LifecycleStage
SET_AT = jst(16, 10)  # Monday 16th: the partner's appointment is scored
MEETING = jst(20, 15)  # Friday 20th 15:00: the meeting
# Two working days after the meeting (Monday 23rd is a holiday): reminder at one, breach
# at two, escalation at four.
REMIND, DUE, ESCALATE = jst(24, 15), jst(25, 15), jst(27, 15)
MOVED_LATER = jst(26, 15)  # Thursday 26th: its record is due Monday 30th 15:00


@pytest.fixture
async def database(postgres: PostgresServer) -> AsyncIterator[NotifierDatabase]:
    async with notifier_database(postgres) as created:
        yield created


def appointment(lead_id: uuid.UUID, meeting_at: datetime | None = MEETING, *,
                at: datetime = SET_AT) -> LeadScored:
    """Return the lead.scored a partner's appointment made: a hot lead, its meeting's time."""
    return LeadScored.model_validate({
        **scored(lead_id, at, tier=Tier.A, previous=Tier.A).model_dump(),
        "meeting_at": meeting_at, "partner": "アポ代行パートナーズ"})


def logged(lead_id: uuid.UUID, at: datetime, kind: ContactKind = ContactKind.MEETING
           ) -> LeadPromoted:
    """Return the lead.promoted of a contact rep-1 logged on the accepted lead at ``at``."""
    return LeadPromoted.model_validate({
        **promoted(lead_id, at=at, from_stage=S.SAL, to_stage=S.SAL,
                   owner_id="rep-1").model_dump(), "contact": kind})


async def handle_scored(database: NotifierDatabase, *events: LeadScored,
                        config: NotifierConfig = CONFIG) -> None:
    """Run the lead.scored handler on ``events`` as one batch, in one unit of work."""
    async with database.unit_of_work() as uow:
        await handlers.on_leads_scored(events, uow, policy=config.policy)
        await uow.commit()


async def meeting_clocks(database: NotifierDatabase, lead_id: uuid.UUID) -> list[Any]:
    """Return the lead's first-meeting clocks, oldest first."""
    return [clock for clock in await clocks(database, lead_id) if clock.kind == "first_meeting"]


async def meeting_alerts(database: NotifierDatabase, lead_id: uuid.UUID) -> list[tuple[str, str]]:
    """Return (kind, destination) of the alerts of the lead's first-meeting clocks."""
    ids = {clock.id for clock in await meeting_clocks(database, lead_id)}
    return [(row.kind, row.channel) for row in await alert_rows(database) if row.clock_id in ids]


async def listed(database: NotifierDatabase, lead_id: uuid.UUID, now: datetime
                 ) -> list[dict[str, Any]]:
    """Return the lead's clocks as GET /v1/sla/clocks lists them at ``now``."""
    app = create_app(service="notifier", version="test", routers=[api.router], readiness={})
    app.state.context = ServiceContext("notifier", None, database.engine, database.unit_of_work,
                                       lambda: now)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://notifier") as client:
        response = await client.get("/v1/sla/clocks", params={"lead_id": str(lead_id)})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


async def test_an_appointment_starts_the_clock_at_the_meeting_time_and_nothing_fires_before(
        database: NotifierDatabase) -> None:
    lead_id = uuid.uuid4()
    await handle_scored(database, appointment(lead_id))
    [clock] = await clocks(database, lead_id)
    assert (clock.kind, clock.rule, clock.status) == ("first_meeting", "first_meeting", "open")
    assert (clock.set_at, clock.started_at, clock.remind_at, clock.due_at,
            clock.escalate_at) == (SET_AT, MEETING, REMIND, DUE, ESCALATE)
    # A working day after the appointment (a reminder, had the clock started with it), at
    # the meeting, and a second before the reminder: nothing fires.
    for moment in (jst(17, 10), MEETING, REMIND - timedelta(seconds=1)):
        await sweep(database, moment)
    assert await alert_rows(database) == []
    [shown] = await listed(database, lead_id, now=jst(18, 12))
    assert (shown["kind"], shown["state"], shown["rungs_fired"]) == ("first_meeting", "open", 0)
    assert [datetime.fromisoformat(shown[name]) for name in ("set_at", "started_at", "due_at")
            ] == [SET_AT, MEETING, DUE]
    await sweep(database, REMIND)
    assert [(row.kind, row.channel) for row in await alert_rows(database)] == [
        ("sla_reminder", TEAM)]
    assert "初回商談の記録" in (await alert_rows(database))[0].message["text"]


async def test_a_meeting_record_logged_within_two_working_days_meets_it_without_alerts(
        database: NotifierDatabase) -> None:
    lead_id = uuid.uuid4()
    await handle_scored(database, appointment(lead_id))
    # A meeting logged before the meeting's time is not its record; a call is no record.
    await handle(database, CONFIG, logged(lead_id, jst(18, 10)),
                 logged(lead_id, jst(24, 9), ContactKind.CALL))
    [clock] = await meeting_clocks(database, lead_id)
    assert clock.status == "open"
    await handle(database, CONFIG, logged(lead_id, jst(24, 11)))
    await sweep(database, jst(30, 12))
    [clock] = await meeting_clocks(database, lead_id)
    assert (clock.status, clock.stopped_at) == ("met", jst(24, 11))
    assert [row.kind for row in await alert_rows(database) if row.kind.startswith("sla")] == []


@pytest.mark.parametrize("swept", [False, True], ids=["reported-by-the-stop", "by-the-sweep"])
async def test_a_meeting_record_logged_late_is_a_breach_reported_once_in_slack_and_e_mail(
        database: NotifierDatabase, swept: bool) -> None:
    lead_id = uuid.uuid4()
    with smtp_server(Inbox()) as (inbox, smtp_url):
        async with FakeSlack().running() as slack:
            config = configure(slack.webhook_url, smtp=True,
                               manager={"email": ["bucho@example.co.jp"]})
            await handle_scored(database, appointment(lead_id), config=config)
            if swept:  # the breach fired on time: the late record reports nothing more
                await sweep(database, DUE, config)
            late = logged(lead_id, jst(26, 10))
            await handle(database, config, late, late)  # delivered twice
            async with delivering(database, config, smtp_url=smtp_url,
                                  slack_interval=timedelta(0)):
                await wait_until(lambda: settled(database), 20, "the alerts to be delivered")
    [clock] = await meeting_clocks(database, lead_id)
    assert (clock.status, clock.stopped_at) == ("breached", jst(26, 10))
    assert [(row.kind, row.status) for row in await alert_rows(database)] == [
        ("sla_breach", "delivered")] * 2, "to the team's Slack and the manager's mailbox"
    [message] = slack.messages
    heading = "🚨 SLA違反" if swept else "🚨 SLA違反(期限後に完了)"
    # The lead as the notifier knew it then: from the score, or from the logged contact.
    name, company = (("佐藤 花子", "例示商事株式会社") if swept
                     else ("山田 太郎", "株式会社サンプル製作所"))
    assert message.body["text"].startswith(f"{heading}: 初回商談の記録 / {name} / {company} / ")
    [envelope] = inbox.received
    assert envelope.original_content is not None
    mail = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert mail["Subject"] == f"{heading}: {company}"
    body = mail.get_content()
    assert "待っていること: 初回商談の記録" in body and "開始: 2026-11-20 15:00 JST" in body


async def test_an_appointment_without_a_meeting_time_starts_no_clock(
        database: NotifierDatabase) -> None:
    hot, tier_b = uuid.uuid4(), uuid.uuid4()
    await handle_scored(database, appointment(hot, None),
                        LeadScored.model_validate({**scored(tier_b, SET_AT).model_dump(),
                                                   "partner": "アポ代行パートナーズ"}))
    assert await clocks(database, hot) == []
    assert [clock.kind for clock in await clocks(database, tier_b)] == ["first_touch"]


HELD_UNTIL = jst(20, 17)  # Friday's meeting took place: at 17:00 it ended, one way or another
SET_AGAIN_AT = jst(24, 10)  # Tuesday: a partner sets a meeting for the lead


@pytest.mark.parametrize(("ended_by", "ended_at"), [
    ("its-record", HELD_UNTIL), ("leaving-sales", HELD_UNTIL), ("its-record", jst(25, 10))],
    ids=["its-record", "leaving-sales", "its-record-after-a-follow-up-was-set"])
@pytest.mark.parametrize("set_again_first", [False, True],
                         ids=["ended-handled-first", "set-again-handled-first"])
async def test_only_the_lead_s_first_meeting_starts_a_clock(
        database: NotifierDatabase, ended_by: str, ended_at: datetime,
        set_again_first: bool) -> None:
    # Friday's meeting took place: its record was logged, or the lead went to nurture, after
    # it. A meeting set on Tuesday is a later meeting (one set while its clock ran replaces
    # it: test_a_meeting_set_again_for_later_moves_its_clock), in either handling order. Set
    # after Friday's time, it replaces that clock only provisionally: Friday's record logged
    # on Wednesday, before the follow-up on Thursday, still meets Friday's clock.
    lead_id = uuid.uuid4()
    ended = (logged(lead_id, ended_at) if ended_by == "its-record" else promoted(
        lead_id, at=ended_at, from_stage=S.SAL, to_stage=S.NURTURE, owner_id="rep-1"))
    later = appointment(lead_id, MOVED_LATER, at=SET_AGAIN_AT)
    await handle_scored(database, appointment(lead_id))
    if set_again_first:  # lead.promoted was behind, or the record came after the appointment
        await handle_scored(database, later)
        await handle(database, CONFIG, ended)
    else:
        await handle(database, CONFIG, ended)
        await handle_scored(database, later)
    await handle_scored(database, appointment(lead_id, jst(30, 10), at=jst(25, 10)))
    await sweep(database, jst(30, 16))  # past the record's due time of a clock at the 26th
    counted = [(clock.started_at, clock.status, clock.stopped_at)
               for clock in await meeting_clocks(database, lead_id)
               if clock.status != "superseded"]
    assert counted == [(MEETING, "met", ended_at)]
    assert await meeting_alerts(database, lead_id) == []


@pytest.mark.parametrize("to_stage", [S.NURTURE, S.DISQUALIFIED])
@pytest.mark.parametrize("cancel_first", [False, True], ids=["in-order", "cancel-first"])
async def test_a_lead_leaving_sales_before_its_meeting_ends_the_clock_without_alerts(
        database: NotifierDatabase, to_stage: LifecycleStage, cancel_first: bool) -> None:
    lead_id = uuid.uuid4()
    left = promoted(lead_id, at=jst(18, 10), from_stage=S.SAL, to_stage=to_stage,
                    owner_id="rep-1")
    if cancel_first:  # lead.scored was behind: the cancel was handled first
        await handle(database, CONFIG, left)
        await handle_scored(database, appointment(lead_id))
    else:
        await handle_scored(database, appointment(lead_id))
        await handle(database, CONFIG, left)
    await sweep(database, jst(30, 12))
    [clock] = await meeting_clocks(database, lead_id)
    assert (clock.status, clock.started_at, clock.stopped_at) == ("met", MEETING, jst(18, 10))
    assert [row.kind for row in await alert_rows(database) if row.kind.startswith("sla")] == []


@pytest.mark.parametrize("nurtured_first", [False, True], ids=["in-order", "nurture-first"])
async def test_a_meeting_set_after_the_lead_went_to_nurture_is_still_clocked(
        database: NotifierDatabase, nurtured_first: bool) -> None:
    # A partner brings a nurtured lead back: the meeting set after the move still counts.
    lead_id = uuid.uuid4()
    nurtured = promoted(lead_id, at=jst(16, 9), from_stage=S.SAL, to_stage=S.NURTURE,
                        owner_id="rep-1")
    if nurtured_first:
        await handle(database, CONFIG, nurtured)
    await handle_scored(database, appointment(lead_id))
    if not nurtured_first:  # lead.promoted was behind: the older move comes after
        await handle(database, CONFIG, nurtured)
    [clock] = await meeting_clocks(database, lead_id)
    assert (clock.status, clock.started_at) == ("open", MEETING)


async def test_a_meeting_set_for_a_disqualified_lead_starts_nothing(
        database: NotifierDatabase) -> None:
    lead_id = uuid.uuid4()
    await handle(database, CONFIG, promoted(lead_id, at=jst(16, 9), from_stage=S.MQL,
                                            to_stage=S.DISQUALIFIED))
    await handle_scored(database, appointment(lead_id))
    assert await meeting_clocks(database, lead_id) == []


@pytest.mark.parametrize(("logged_at", "status", "alerts"), [
    (jst(24, 11), "met", []), (jst(26, 10), "breached", [("sla_breach", TEAM),
                                                         ("sla_breach", MANAGER)])],
    ids=["in-time", "late"])
async def test_a_meeting_record_handled_before_its_appointment_is_recorded_against_it(
        database: NotifierDatabase, logged_at: datetime, status: str,
        alerts: list[tuple[str, str]]) -> None:
    lead_id = uuid.uuid4()
    await handle(database, CONFIG, logged(lead_id, logged_at))
    await handle_scored(database, appointment(lead_id))
    await handle_scored(database, appointment(lead_id))  # delivered twice
    await sweep(database, jst(30, 12))
    [clock] = await meeting_clocks(database, lead_id)
    assert (clock.status, clock.started_at, clock.stopped_at) == (status, MEETING, logged_at)
    assert [(row.kind, row.channel) for row in await alert_rows(database)
            if row.kind.startswith("sla")] == alerts


def contact_on_nurtured(lead_id: uuid.UUID, at: datetime, kind: ContactKind) -> LeadPromoted:
    """Return the lead.promoted of a contact a rep logged on the nurtured lead: it stays there."""
    return LeadPromoted.model_validate({
        **promoted(lead_id, at=at, from_stage=S.NURTURE, to_stage=S.NURTURE,
                   team=None).model_dump(), "contact": kind})


@pytest.mark.parametrize("kind", [ContactKind.CALL, ContactKind.MEETING])
@pytest.mark.parametrize("contact_first", [False, True], ids=["in-order", "contact-first"])
async def test_a_contact_logged_on_a_nurtured_lead_before_its_meeting_leaves_the_clock_running(
        database: NotifierDatabase, kind: ContactKind, contact_first: bool) -> None:
    # The partner brought the nurtured lead back; on Wednesday a rep calls it to confirm the
    # meeting (or logs a meeting before the meeting's time). The lead stays in nurture: it
    # does not leave sales, so the meeting's record is still owed.
    lead_id = uuid.uuid4()
    await handle(database, CONFIG, promoted(lead_id, at=jst(16, 9), from_stage=S.SAL,
                                            to_stage=S.NURTURE, owner_id="rep-1"))
    contact = contact_on_nurtured(lead_id, jst(18, 10), kind)
    if contact_first:  # lead.scored was behind
        await handle(database, CONFIG, contact)
        await handle_scored(database, appointment(lead_id))
    else:
        await handle_scored(database, appointment(lead_id))
        await handle(database, CONFIG, contact)
    [clock] = await meeting_clocks(database, lead_id)
    assert (clock.status, clock.stopped_at) == ("open", None)
    await sweep(database, DUE)
    assert [(row.kind, row.channel) for row in await alert_rows(database)
            if row.kind.startswith("sla")] == [("sla_breach", TEAM), ("sla_breach", MANAGER)]


async def test_the_meeting_s_record_logged_on_a_nurtured_lead_after_the_meeting_meets_it(
        database: NotifierDatabase) -> None:
    lead_id = uuid.uuid4()
    await handle(database, CONFIG, promoted(lead_id, at=jst(16, 9), from_stage=S.SAL,
                                            to_stage=S.NURTURE, owner_id="rep-1"))
    await handle_scored(database, appointment(lead_id))
    await handle(database, CONFIG, contact_on_nurtured(lead_id, jst(24, 11), ContactKind.MEETING))
    [clock] = await meeting_clocks(database, lead_id)
    assert (clock.status, clock.stopped_at) == ("met", jst(24, 11))


@pytest.mark.parametrize("set_again_at", [jst(18, 10), SET_AGAIN_AT],
                         ids=["before-the-meeting", "after-a-no-show"])
@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "one-batch"])
async def test_a_meeting_set_again_for_later_moves_its_clock(
        database: NotifierDatabase, batched: bool, set_again_at: datetime) -> None:
    # On Wednesday the partner moves Friday's meeting to next Thursday; or Friday's meeting
    # did not take place, and on Tuesday the partner sets it again for Thursday. Nothing is
    # due on the 25th, and the record of the meeting held on the 26th is due on the 30th.
    lead_id = uuid.uuid4()
    moved = appointment(lead_id, MOVED_LATER, at=set_again_at)
    if batched:
        await handle_scored(database, appointment(lead_id), moved)
    else:
        await handle_scored(database, appointment(lead_id))
        await handle_scored(database, moved)
        await handle_scored(database, moved)  # delivered twice
    old, new = await meeting_clocks(database, lead_id)
    assert (old.started_at, old.status, old.stopped_at) == (MEETING, "superseded", set_again_at)
    assert (new.set_at, new.started_at, new.status, new.due_at) == (
        set_again_at, MOVED_LATER, "open", jst(30, 15))
    for moment in (REMIND, DUE, jst(27, 14, 59)):  # the old meeting's rungs, and before
        await sweep(database, moment)  # the new one's reminder
    assert await alert_rows(database) == [], "nothing falls due before the moved meeting"
    await handle(database, CONFIG, logged(lead_id, jst(27, 10)))
    await sweep(database, jst(30, 16))
    old, new = await meeting_clocks(database, lead_id)
    assert (old.status, new.status, new.stopped_at) == ("superseded", "met", jst(27, 10))
    assert await meeting_alerts(database, lead_id) == []


@pytest.mark.parametrize(("set_again_at", "held_at", "logged_at"), [
    (jst(17, 10), jst(18, 15), jst(19, 10)), (SET_AGAIN_AT, jst(24, 15), jst(25, 10))],
    ids=["moved-earlier", "after-a-no-show"])
@pytest.mark.parametrize("record_first", [False, True], ids=["in-order", "record-first"])
async def test_a_meeting_set_again_is_met_by_the_record_of_the_meeting_held(
        database: NotifierDatabase, record_first: bool, set_again_at: datetime,
        held_at: datetime, logged_at: datetime) -> None:
    # On Tuesday the partner brings Friday's meeting forward to Wednesday 15:00; the rep
    # logs it on Thursday morning. Or Friday's meeting did not take place, and the partner
    # sets it again for Tuesday 15:00; the rep logs it on Wednesday morning, before the
    # first meeting's record was due. Handled in either order, that record meets the clock.
    lead_id = uuid.uuid4()
    await handle_scored(database, appointment(lead_id))
    moved, record = appointment(lead_id, held_at, at=set_again_at), logged(lead_id, logged_at)
    if record_first:  # lead.scored was behind: the record was handled first
        await handle(database, CONFIG, record)
        await handle_scored(database, moved)
    else:
        await handle_scored(database, moved)
        await handle(database, CONFIG, record)
    await sweep(database, jst(30, 12))
    assert [(clock.started_at, clock.status, clock.stopped_at)
            for clock in await meeting_clocks(database, lead_id)] == [
        (MEETING, "superseded", set_again_at), (held_at, "met", logged_at)]
    assert await meeting_alerts(database, lead_id) == []


NEXT_WEEK = jst(30, 15)  # Monday 30th 15:00: the meeting set again


@pytest.mark.parametrize(("set_again_at", "swept_first"), [
    (jst(26, 10), False), (jst(26, 10), True), (SET_AGAIN_AT, True), (jst(18, 10), True)],
    ids=["after-its-due-time", "after-its-breach-alert", "in-time-handled-after-the-alert",
         "moved-before-the-meeting-handled-after-the-alert"])
async def test_a_meeting_set_again_after_its_breach_keeps_it_breached_once(
        database: NotifierDatabase, set_again_at: datetime, swept_first: bool) -> None:
    # Friday's meeting did not take place and its record was not logged. Set again after
    # the record fell due (Wednesday 15:00), its breach stands; set again before, but handled
    # after the sweep reported that breach (lead.scored was behind), the alert is not taken
    # back. Either way the breach counts once, and the new meeting has a clock of its own.
    lead_id = uuid.uuid4()
    await handle_scored(database, appointment(lead_id))
    if swept_first:
        await sweep(database, DUE)
    set_again = appointment(lead_id, NEXT_WEEK, at=set_again_at)
    await handle_scored(database, set_again)
    await handle_scored(database, set_again)  # delivered twice
    old, new = await meeting_clocks(database, lead_id)
    assert (old.started_at, old.status, old.stopped_at) == (MEETING, "breached", set_again_at)
    assert (new.set_at, new.started_at, new.status) == (set_again_at, NEXT_WEEK, "open")
    await sweep(database, jst(30, 14))  # past the old clock's escalation: it fires no more
    await handle(database, CONFIG, logged(lead_id, jst(30, 17)))
    assert [(datetime.fromisoformat(shown["started_at"]), shown["state"])
            for shown in await listed(database, lead_id, now=jst(30, 18))
            if shown["kind"] == "first_meeting"] == [(NEXT_WEEK, "met"), (MEETING, "breached")]
    assert await meeting_alerts(database, lead_id) == [("sla_breach", TEAM),
                                                       ("sla_breach", MANAGER)]
    assert all("期限後に完了" not in row.message["text"] for row in await alert_rows(database)), \
        "the meeting set again completed nothing"


async def test_a_record_in_time_handled_after_the_breach_alert_and_a_new_time_clears_it(
        database: NotifierDatabase) -> None:
    # Friday's meeting took place and the rep logged it on Tuesday 10:00, in time; at 12:00
    # the partner set a follow-up for next week. lead.promoted was behind: the sweep alerted
    # the breach, then the follow-up ended the clock breached (the breach stood), and only
    # then came the record. Handled in time, it would have met the clock: the breach's
    # audiences hear so, once.
    lead_id = uuid.uuid4()
    await handle_scored(database, appointment(lead_id))
    await sweep(database, DUE)
    await handle_scored(database, appointment(lead_id, NEXT_WEEK, at=jst(24, 12)))
    record = logged(lead_id, jst(24, 10))
    await handle(database, CONFIG, record, record)
    old, new = await meeting_clocks(database, lead_id)
    assert (old.status, old.stopped_at) == ("met", jst(24, 10))
    assert (new.started_at, new.status) == (NEXT_WEEK, "superseded"), "no first meeting"
    assert await meeting_alerts(database, lead_id) == [
        ("sla_breach", TEAM), ("sla_breach", MANAGER),
        ("sla_cleared", TEAM), ("sla_cleared", MANAGER)]
    cleared = [row for row in await alert_rows(database) if row.kind == "sla_cleared"]
    assert {row.clock_id for row in cleared} == {old.id}
    assert "待っていること: 初回商談の記録" in cleared[0].message["body"]
    assert "完了: 2026-11-24 10:00 JST (期限内)" in cleared[0].message["body"]


async def test_the_same_meeting_set_again_changes_nothing(database: NotifierDatabase) -> None:
    lead_id = uuid.uuid4()
    await handle_scored(database, appointment(lead_id))
    await handle_scored(database, appointment(lead_id, MEETING, at=jst(17, 10)))
    [clock] = await meeting_clocks(database, lead_id)
    assert (clock.set_at, clock.started_at, clock.status) == (SET_AT, MEETING, "open")


async def test_a_meeting_called_off_by_the_lead_leaving_sales_leaves_the_next_one_first(
        database: NotifierDatabase) -> None:
    # The lead was rejected to nurture before Friday's meeting, which never took place.
    # Back with sales, a partner sets a meeting again: that one is the lead's first.
    lead_id = uuid.uuid4()
    await handle_scored(database, appointment(lead_id))
    await handle(database, CONFIG, promoted(lead_id, at=jst(18, 10), from_stage=S.SAL,
                                            to_stage=S.NURTURE, owner_id="rep-1"))
    await handle_scored(database, appointment(lead_id, MOVED_LATER, at=jst(24, 10)))
    called_off, first = await meeting_clocks(database, lead_id)
    assert (called_off.started_at, called_off.stopped_at) == (MEETING, jst(18, 10))
    assert (first.set_at, first.started_at, first.status) == (jst(24, 10), MOVED_LATER, "open")


async def test_a_meeting_time_beyond_the_calendar_starts_no_clock_and_drops_nothing_else(
        database: NotifierDatabase) -> None:
    # A partner typed the year 9999: its record's due time cannot be told. The score still
    # starts the tier-B lead's first-touch clock, and the batch is not dead-lettered.
    lead_id = uuid.uuid4()
    rise = LeadScored.model_validate({
        **scored(lead_id, SET_AT).model_dump(), "partner": "アポ代行パートナーズ",
        "meeting_at": datetime(9999, 12, 30, 15, tzinfo=MEETING.tzinfo)})
    await handle_scored(database, rise)
    assert [clock.kind for clock in await clocks(database, lead_id)] == ["first_touch"]


@pytest.mark.parametrize("closed", ["recycled", "lost"])
async def test_an_older_deal_closed_while_the_lead_is_worked_afresh_leaves_its_meeting_due(
        database: NotifierDatabase, closed: str) -> None:
    # Field sales rejected an earlier SQL of the lead and left its deal open; the lead is an
    # SAL again when a partner sets its meeting. That old deal is then recycled as a zombie
    # (or closed as lost): routing leaves the lead where it is (only its own deal sends it
    # back to nurture, with a lifecycle event), so the meeting's record is still owed.
    lead_id, old_deal = uuid.uuid4(), uuid.uuid4()
    await handle_scored(database, appointment(lead_id))
    async with database.unit_of_work() as uow:
        if closed == "recycled":
            await handlers.on_deal_recycled(DealRecycled(
                deal_id=old_deal, lead_id=lead_id, recycled_at=jst(18, 9),
                last_phase=DealPhase.P1, reason="90日間フェーズ変更なし"), uow,
                policy=CONFIG.policy)
        else:
            await handlers.on_deal_phase_changed(DealPhaseChanged(
                deal_id=old_deal, lead_id=lead_id, occurred_at=jst(18, 9),
                from_phase=DealPhase.P1, to_phase=DealPhase.LOST, probability=0,
                owner_id="fs-1", reason="予算なし"), uow, policy=CONFIG.policy)
        await uow.commit()
    [clock] = await meeting_clocks(database, lead_id)
    assert (clock.status, clock.stopped_at) == ("open", None)
    await handle(database, CONFIG, logged(lead_id, jst(24, 11)))
    [clock] = await meeting_clocks(database, lead_id)
    assert (clock.status, clock.stopped_at) == ("met", jst(24, 11))


async def test_the_lead_s_own_deal_recycled_ends_its_meeting_clock_by_the_move_to_nurture(
        database: NotifierDatabase) -> None:
    # Its own deal recycled, routing sends the lead back to nurture: that event ends it.
    lead_id, deal_id = uuid.uuid4(), uuid.uuid4()
    await handle_scored(database, appointment(lead_id))
    async with database.unit_of_work() as uow:
        await handlers.on_deal_recycled(DealRecycled(
            deal_id=deal_id, lead_id=lead_id, recycled_at=jst(26, 9),
            last_phase=DealPhase.P2, reason="90日間フェーズ変更なし"), uow, policy=CONFIG.policy)
        await uow.commit()
    await handle(database, CONFIG, promoted(lead_id, at=jst(26, 9, 1), from_stage=S.OPPORTUNITY,
                                            to_stage=S.NURTURE, team=None))
    [clock] = await meeting_clocks(database, lead_id)
    assert (clock.status, clock.stopped_at) == ("breached", jst(26, 9, 1))
    assert [(row.kind, row.channel) for row in await alert_rows(database)
            if row.kind.startswith("sla")] == [("sla_breach", TEAM), ("sla_breach", MANAGER)]


async def test_a_meeting_moved_back_to_a_time_it_had_keeps_a_clock_running(
        database: NotifierDatabase) -> None:
    # Friday's meeting is moved to Thursday 26th, then back to Friday. A clock was started
    # at Friday 15:00 once (now superseded), and a lead's clocks of a kind start at distinct
    # moments: the one for the 26th keeps running rather than leaving none.
    lead_id = uuid.uuid4()
    await handle_scored(database, appointment(lead_id))
    await handle_scored(database, appointment(lead_id, MOVED_LATER, at=jst(17, 10)))
    await handle_scored(database, appointment(lead_id, MEETING, at=jst(18, 10)))
    assert [(clock.started_at, clock.status) for clock in await meeting_clocks(database, lead_id)
            ] == [(MEETING, "superseded"), (MOVED_LATER, "open")]
