"""The CloudEvents Kafka binary-mode binding round-trips every event and refuses bad records."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from schemas.envelope import EnvelopeError, KafkaRecord, data_schema, decode, encode, event_type
from schemas.events import (
    EVENT_TYPES,
    TOPICS,
    Account,
    DealPhase,
    DealPhaseChanged,
    DealRecycled,
    Event,
    LeadCaptured,
    LeadProfile,
    LeadPromoted,
    LeadScored,
    LifecycleStage,
    PartnerNotes,
    ScoreReason,
    Tier,
    Touchpoint,
    TouchpointType,
    dead_letter_topic,
)

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2025, 4, 1, 9, 30, tzinfo=TOKYO)
LEAD_ID = uuid.UUID("0b6f7c3e-2f4a-4d7e-9a51-3c0d8e5f1a22")
DEAL_ID = uuid.UUID("7e1d2c4b-8a9f-4b3e-b6c5-d4e3f2a1b0c9")
EVENT_ID = "3f2e1d0c-b9a8-4765-8432-10fedcba9876"
SOURCE = "baton.test"


def sample_events() -> list[Event]:
    """Return one realistic instance of each of the five events, Japanese text included."""
    profile = LeadProfile(
        email="taro.yamada@test.co.jp",
        name="山田 太郎",
        company="株式会社テスト",
        title="営業部長",
        department="営業本部",
        phone="03-1234-5678",
        industry="製造業",
        employee_band="100-299",
        region="関東",
    )
    account = Account(account_key="test.co.jp", domain="test.co.jp", company_name="株式会社テスト")
    reasons = [
        ScoreReason(code="inquiry.demo_request", label="デモ依頼", points=50),
        ScoreReason(code="fit.title.manager", label="役職: 部長", points=10),
        ScoreReason(code="decay", label="行動スコアの減衰", points=-2.5),
    ]
    return [
        LeadCaptured(
            lead_id=LEAD_ID,
            source="web_form",
            profile=profile,
            account=account,
            touchpoint=Touchpoint(
                type=TouchpointType.INQUIRY_DEMO_REQUEST,
                occurred_at=NOW,
                asset_id="demo-request-form",
            ),
            campaign="2025年春 展示会フォロー",
            partner_notes=PartnerNotes(
                partner="株式会社アポ代行",
                challenges="営業リストの精度が低く、追客が属人化している",
                budget="年間300万円",
                authority="部長決裁",
                need="リード管理の自動化",
                timeframe="今期中",
                temperature="高",
            ),
        ),
        LeadScored(
            lead_id=LEAD_ID,
            scored_at=NOW,
            score=85,
            previous_score=40,
            tier=Tier.A,
            previous_tier=Tier.C,
            surge=True,
            high_intent_signals=["デモ依頼"],
            reasons=reasons,
            model_version="2025.04-1",
            profile=profile,
            account=account,
            source="web_form",
            last_touchpoint=TouchpointType.INQUIRY_DEMO_REQUEST,
        ),
        LeadPromoted(
            lead_id=LEAD_ID,
            occurred_at=NOW,
            from_stage=LifecycleStage.MQL,
            to_stage=LifecycleStage.SAL,
            reason="インサイドセールスが受付",
            owner_id="rep-001",
            team="SDR",
            sla_due_at=NOW + timedelta(hours=1),
            profile=profile,
            account=account,
            score=85,
            tier=Tier.A,
            top_reasons=reasons[:2],
            trigger=TouchpointType.INQUIRY_DEMO_REQUEST,
        ),
        DealPhaseChanged(
            deal_id=DEAL_ID,
            lead_id=LEAD_ID,
            occurred_at=NOW,
            from_phase=DealPhase.P2,
            to_phase=DealPhase.P3,
            probability=60,
            owner_id="rep-101",
            amount=3_000_000,
            reason="見積提示、稟議ルート確認済み",
        ),
        DealRecycled(
            deal_id=DEAL_ID,
            lead_id=LEAD_ID,
            recycled_at=NOW,
            last_phase=DealPhase.P2,
            reason="90日間フェーズ変更なし",
        ),
    ]


def _record(event: Event) -> KafkaRecord:
    """Return ``event`` encoded with a fixed id, source and time."""
    return encode(event, source=SOURCE, event_id=EVENT_ID, time=NOW)


def _without(record: KafkaRecord, *names: str) -> list[tuple[str, bytes]]:
    """Return the record's headers less the named ones."""
    return [(name, value) for name, value in record.headers if name not in names]


def _replaced(record: KafkaRecord, name: str, value: bytes | None
              ) -> list[tuple[str, bytes | None]]:
    """Return the record's headers with one header's value replaced."""
    return [*_without(record, name), (name, value)]


EVENTS = sample_events()
EVENT_IDS = [event.topic for event in EVENTS]


def _entity_id(event: Event) -> uuid.UUID:
    """Return the id the design says keys ``event``: deal_id for deals, lead_id for leads."""
    if isinstance(event, DealPhaseChanged | DealRecycled):
        return event.deal_id
    assert isinstance(event, LeadCaptured | LeadScored | LeadPromoted)
    return event.lead_id


def test_samples_cover_every_event() -> None:
    assert [type(event) for event in EVENTS] == list(EVENT_TYPES)
    assert [event.topic for event in EVENTS] == list(TOPICS)


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_round_trip(event: Event) -> None:
    record = _record(event)

    envelope = decode(record.topic, record.key, list(record.headers), record.value)

    assert envelope.event == event
    assert type(envelope.event) is type(event)
    assert envelope.event_id == EVENT_ID
    assert envelope.source == SOURCE
    assert envelope.time == NOW


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_headers_are_cloudevents_binary_mode(event: Event) -> None:
    record = _record(event)
    headers = dict(record.headers)

    assert record.topic == event.topic
    assert headers["ce_id"] == EVENT_ID.encode()
    assert headers["ce_type"] == event_type(type(event)).encode()
    assert headers["ce_source"] == SOURCE.encode()
    assert datetime.fromisoformat(headers["ce_time"].decode()) == NOW
    assert headers["ce_specversion"] == b"1.0"
    assert headers["content-type"] == b"application/json"
    assert headers["ce_dataschema"] == data_schema(type(event)).encode()
    assert headers["ce_subject"] == record.key
    assert all(isinstance(value, bytes) for value in headers.values())


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_key_is_the_entity_id(event: Event) -> None:
    assert _record(event).key == str(_entity_id(event)).encode()


@pytest.mark.parametrize("event", EVENTS[:3], ids=EVENT_IDS[:3])
def test_japanese_text_survives_the_wire(event: Event) -> None:
    record = _record(event)

    data = json.loads(record.value)
    envelope = decode(record.topic, record.key, record.headers, record.value)

    assert data["profile"]["name"] == "山田 太郎"
    assert data["account"]["company_name"] == "株式会社テスト"
    assert isinstance(envelope.event, LeadCaptured | LeadScored | LeadPromoted)
    assert envelope.event.profile.company == "株式会社テスト"


def test_encode_defaults_id_and_time() -> None:
    first = encode(EVENTS[0], source=SOURCE)
    second = encode(EVENTS[0], source=SOURCE)

    first_id = dict(first.headers)["ce_id"]
    assert first_id and first_id != dict(second.headers)["ce_id"]
    assert datetime.fromisoformat(dict(first.headers)["ce_time"].decode()).tzinfo is not None


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_dead_letter_topic_decodes_as_its_event(event: Event) -> None:
    record = _record(event)

    envelope = decode(dead_letter_topic(record.topic), record.key, record.headers, record.value)

    assert envelope.event == event


def test_refuses_unknown_topic() -> None:
    record = _record(EVENTS[0])

    with pytest.raises(EnvelopeError, match="no Baton event"):
        decode("lead.unknown", record.key, record.headers, record.value)


def test_refuses_event_on_another_events_topic() -> None:
    record = _record(EVENTS[1])

    with pytest.raises(EnvelopeError, match="is not"):
        decode("lead.captured", record.key, record.headers, record.value)


@pytest.mark.parametrize(
    "ce_type",
    [b"com.baton.lead.captured.v2", b"com.example.lead.captured.v1", b"lead.captured"],
)
def test_refuses_wrong_ce_type(ce_type: bytes) -> None:
    record = _record(EVENTS[0])

    with pytest.raises(EnvelopeError):
        decode(record.topic, record.key, _replaced(record, "ce_type", ce_type), record.value)


@pytest.mark.parametrize("header", ["ce_id", "ce_type", "ce_source", "ce_specversion"])
def test_refuses_missing_ce_header(header: str) -> None:
    record = _record(EVENTS[0])

    with pytest.raises(EnvelopeError):
        decode(record.topic, record.key, _without(record, header), record.value)


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
@pytest.mark.parametrize("moment", [NOW, datetime(2026, 11, 21, 3, 4, 5, 6789, tzinfo=UTC),
                                    datetime(2026, 11, 21, tzinfo=UTC)],
                         ids=["tokyo", "utc-microseconds", "utc-midnight"])
def test_writes_the_record_the_cloudevents_library_writes(event: Event, moment: datetime
                                                          ) -> None:
    key = event.partition_key()
    cloud_event = CloudEvent(attributes={
        "id": EVENT_ID, "type": event_type(type(event)), "source": SOURCE, "time": moment,
        "datacontenttype": "application/json", "dataschema": data_schema(type(event)),
        "subject": key}, data=event.model_dump_json().encode())
    message = ce_kafka.to_binary(cloud_event, JSONFormat(), key_mapper=lambda _: key)

    record = encode(event, source=SOURCE, event_id=EVENT_ID, time=moment)

    assert record == KafkaRecord(topic=event.topic, key=key.encode(),
                                 headers=tuple(message.headers.items()), value=message.value)


def test_refuses_to_write_a_time_without_a_zone() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        encode(EVENTS[0], source=SOURCE, time=datetime(2026, 11, 21, 9))


def test_reads_a_record_the_cloudevents_library_wrote() -> None:
    event = EVENTS[0]
    cloud_event = CloudEvent(attributes={
        "id": EVENT_ID, "type": event_type(type(event)), "source": SOURCE,
        "time": NOW, "datacontenttype": "application/json", "subject": "lead",
        "partitionkey": "lead"}, data=event.model_dump_json().encode())
    message = ce_kafka.to_binary(cloud_event, JSONFormat())

    key = message.key.encode() if isinstance(message.key, str) else message.key
    envelope = decode(event.topic, key, list(message.headers.items()), message.value)

    assert (envelope.event_id, envelope.source, envelope.time) == (EVENT_ID, SOURCE, NOW)
    assert envelope.event == event


@pytest.mark.parametrize(("header", "value"), [
    ("ce_specversion", b"0.3"), ("ce_id", b""), ("ce_source", b""),
    ("ce_time", b"yesterday"), ("ce_time", b"2025-04-01T09:30:00"), ("ce_id", b"\xff\xfe"),
    ("ce_id", None), ("ce_time", None), ("ce_id", b"evt-\x00-1"), ("ce_id", b"e" * 1025),
], ids=["other-specversion", "empty-id", "empty-source", "time-text", "time-without-offset",
        "id-not-utf8", "id-without-value", "time-without-value", "id-with-nul",
        "id-too-long-for-the-inbox"])
def test_refuses_malformed_attributes(header: str, value: bytes | None) -> None:
    record = _record(EVENTS[0])

    with pytest.raises(EnvelopeError):
        decode(record.topic, record.key, _replaced(record, header, value), record.value)


@pytest.mark.parametrize("headers", [[], None], ids=["empty", "none"])
def test_refuses_record_without_headers(headers: list[tuple[str, bytes]] | None) -> None:
    record = _record(EVENTS[0])

    with pytest.raises(EnvelopeError):
        decode(record.topic, record.key, headers, record.value)


@pytest.mark.parametrize(
    "value",
    [b'{"lead_id": ', b"not json", b"", "\u5c71\u7530".encode("shift_jis"), b"[]", b'"text"'],
    ids=["truncated", "text", "empty", "shift-jis", "array", "string"],
)
def test_refuses_invalid_json(value: bytes) -> None:
    record = _record(EVENTS[0])

    with pytest.raises(EnvelopeError):
        decode(record.topic, record.key, record.headers, value)


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_refuses_unknown_field_in_data(event: Event) -> None:
    record = _record(event)
    data = json.loads(record.value)
    data["unexpected"] = "x"

    with pytest.raises(EnvelopeError, match="does not match"):
        decode(record.topic, record.key, record.headers, json.dumps(data).encode())


def test_refuses_unknown_field_in_nested_data() -> None:
    record = _record(EVENTS[0])
    data = json.loads(record.value)
    data["profile"]["password"] = "hunter2"

    with pytest.raises(EnvelopeError, match="does not match"):
        decode(record.topic, record.key, record.headers, json.dumps(data).encode())


@pytest.mark.parametrize(
    ("field", "value"),
    [("score", 101), ("schema_version", 2), ("tier", "S"), ("lead_id", "not-a-uuid")],
)
def test_refuses_invalid_values(field: str, value: object) -> None:
    record = _record(EVENTS[1])
    data = json.loads(record.value)
    data[field] = value

    with pytest.raises(EnvelopeError, match="does not match"):
        decode(record.topic, record.key, record.headers, json.dumps(data).encode())


def test_refuses_missing_required_field() -> None:
    record = _record(EVENTS[4])
    data = json.loads(record.value)
    del data["reason"]

    with pytest.raises(EnvelopeError, match="does not match"):
        decode(record.topic, record.key, record.headers, json.dumps(data).encode())
