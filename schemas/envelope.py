"""CloudEvents 1.0 Kafka binary-mode binding for Baton events (no I/O)."""

from __future__ import annotations

import functools
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


@functools.cache
def event_type(event_class: type[Event]) -> str:
    """Return the CloudEvents ``type`` of an event class, versioned."""
    return f"{TYPE_PREFIX}{event_class.topic}.v{event_class.model_fields['schema_version'].default}"


@functools.cache
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
    attributes = _attributes(header_map)
    if attributes["type"] != event_type(event_class):
        raise EnvelopeError(
            f"type {attributes['type']!r} is not {event_type(event_class)!r} on {topic!r}"
        )
    try:
        event = event_class.model_validate_json(value)
    except ValueError as error:
        raise EnvelopeError(f"event data does not match {event_class.__name__}: {error}") from error
    return Envelope(event_id=attributes["id"], source=attributes["source"],
                    time=_time(attributes["time"]), event=event)


def _attributes(header_map: dict[str, bytes]) -> dict[str, str]:
    """Return the record's CloudEvents attributes, checked as the v1.0 spec requires.

    Read here rather than by the library's ``from_binary``: that builds and validates a
    whole CloudEvent, which cost more than all the rest of consuming an event did. In
    binary mode each attribute is one ``ce_`` header, so reading them is this loop;
    tests check it reads what the library writes and refuses what the library refuses.
    """
    try:
        attributes = {name[3:]: raw.decode() for name, raw in header_map.items()
                      if name.startswith("ce_")}
    except UnicodeDecodeError as error:
        raise EnvelopeError(f"a CloudEvents header is not UTF-8: {error}") from None
    if attributes["specversion"] != "1.0":
        raise EnvelopeError(f"CloudEvents specversion {attributes['specversion']!r} is not 1.0")
    empty = [name for name in ("id", "source", "type") if not attributes[name]]
    if empty:
        raise EnvelopeError(f"empty CloudEvents attributes: {', '.join(empty)}")
    return attributes


def _time(text: str) -> datetime:
    """Return the RFC 3339 ``ce_time``, refusing one without a UTC offset."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise EnvelopeError(f"ce_time {text!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise EnvelopeError(f"ce_time {text!r} has no UTC offset")
    return moment
