"""CloudEvents 1.0 Kafka binary-mode binding for Baton events (no I/O)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from schemas.events import EVENTS_BY_TOPIC, Event

TYPE_PREFIX = "com.baton."
REQUIRED_HEADERS = ("ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time", "content-type")
_JSON = JSONFormat()


class EnvelopeError(ValueError):
    """A Kafka message is not a valid Baton CloudEvent; retrying cannot help."""


@dataclass(frozen=True)
class KafkaRecord:
    """What goes on the wire: topic, key, headers and value."""

    topic: str
    key: bytes
    headers: tuple[tuple[str, bytes], ...]
    value: bytes


@dataclass(frozen=True)
class Envelope:
    """A decoded event with the CloudEvents attributes the consumers need."""

    event_id: str
    source: str
    time: datetime
    event: Event


def event_type(event_class: type[Event]) -> str:
    """Return the CloudEvents ``type`` of an event class, versioned."""
    return f"{TYPE_PREFIX}{event_class.topic}.v{event_class.model_fields['schema_version'].default}"


def data_schema(event_class: type[Event]) -> str:
    """Return the CloudEvents ``dataschema`` URI naming the checked-in JSON Schema."""
    version = event_class.model_fields["schema_version"].default
    return f"urn:baton:schema:{event_class.topic}:v{version}"


def encode(
    event: Event, *, source: str, event_id: str | None = None, time: datetime | None = None
) -> KafkaRecord:
    """Return ``event`` as a binary-mode Kafka record keyed by its entity id."""
    key = event.partition_key()
    cloud_event = CloudEvent(
        attributes={
            "id": event_id or str(uuid.uuid4()),
            "type": event_type(type(event)),
            "source": source,
            "time": time or datetime.now(UTC),
            "datacontenttype": "application/json",
            "dataschema": data_schema(type(event)),
            "subject": key,
        },
        # Serialised by pydantic's Rust core; the library passes JSON bytes through as-is.
        data=event.model_dump_json().encode(),
    )
    message = ce_kafka.to_binary(cloud_event, _JSON, key_mapper=lambda _: key)
    return KafkaRecord(
        topic=event.topic, key=key.encode(), headers=tuple(message.headers.items()),
        value=message.value,
    )


def decode(topic: str, key: bytes | None, headers: Any, value: bytes) -> Envelope:
    """Return the event in a Kafka record, or raise EnvelopeError saying what is wrong."""
    event_class = EVENTS_BY_TOPIC.get(topic.removesuffix(".dlq"))
    if event_class is None:
        raise EnvelopeError(f"no Baton event is published on topic {topic!r}")
    header_map = {name: bytes(raw) for name, raw in headers or ()}
    # The library would invent a fresh id or time for a missing header: a redelivery
    # would then look new to the inbox, so these are required here.
    missing = [name for name in REQUIRED_HEADERS if name not in header_map]
    if missing:
        raise EnvelopeError(f"missing CloudEvents headers: {', '.join(missing)}")
    content_type = header_map["content-type"].decode(errors="replace")
    if content_type.split(";")[0].strip() != "application/json":
        raise EnvelopeError(f"content-type {content_type!r} is not application/json")
    try:
        # The library reads the attributes; pydantic parses the data itself, in one pass.
        cloud_event = ce_kafka.from_binary(
            ce_kafka.KafkaMessage(headers=header_map, key=key, value=b""), _JSON
        )
    except Exception as error:  # the library raises many types for one cause: a bad envelope
        raise EnvelopeError(f"not a CloudEvents binary-mode message: {error}") from error
    if cloud_event.get_type() != event_type(event_class):
        raise EnvelopeError(
            f"type {cloud_event.get_type()!r} is not {event_type(event_class)!r} on {topic!r}"
        )
    try:
        event = event_class.model_validate_json(value)
    except ValueError as error:
        raise EnvelopeError(f"event data does not match {event_class.__name__}: {error}") from error
    time = cloud_event.get_time()
    assert time is not None  # ce_time is a required header above
    return Envelope(
        event_id=cloud_event.get_id(), source=cloud_event.get_source(), time=time, event=event
    )
