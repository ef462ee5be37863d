"""Export the event contracts as JSON Schema files and one AsyncAPI 3.0 document.

Run ``python -m schemas.export`` to regenerate ``schemas/jsonschema/*.json`` and
``schemas/asyncapi.yaml`` and to write missing compatibility baselines in
``schemas/baseline/``; ``--check`` writes nothing and fails when a file is stale or a
contract breaks its baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from schemas.compat import breaking_changes
from schemas.envelope import data_schema, event_type
from schemas.events import EVENT_TYPES, SCHEMA_VERSION, Event, dead_letter_topic

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
SCHEMA_DIR = Path(__file__).resolve().parent
JSON_SCHEMA_FOLDER = "jsonschema"
BASELINE_FOLDER = "baseline"
ASYNCAPI_FILE = "asyncapi.yaml"
LOCAL_BROKER = "127.0.0.1:19092"


@dataclass(frozen=True)
class Service:
    """One Baton service and the topics it consumes and emits (DESIGN.md section 1)."""

    name: str
    summary: str
    consumes: tuple[str, ...]
    emits: tuple[str, ...]


SERVICES: tuple[Service, ...] = (
    Service(
        "ingest",
        "Captures touchpoints from web forms, MA tools and partners.",
        consumes=(),
        emits=("lead.captured",),
    ),
    Service(
        "scoring",
        "Scores leads from fit, decayed behaviour and engagement.",
        consumes=("lead.captured", "deal.phase_changed", "deal.recycled"),
        emits=("lead.scored",),
    ),
    Service(
        "routing",
        "Moves leads through the lifecycle and assigns owners.",
        consumes=("lead.scored", "deal.recycled", "deal.phase_changed"),
        emits=("lead.promoted",),
    ),
    Service(
        "pipeline",
        "Tracks deals through their phases and recycles zombies.",
        consumes=("lead.promoted",),
        emits=("deal.phase_changed", "deal.recycled"),
    ),
    Service(
        "notifier",
        "Runs SLA clocks and pushes alerts to Slack or email.",
        consumes=("lead.scored", "lead.promoted", "deal.phase_changed", "deal.recycled"),
        emits=(),
    ),
)

_CLOUDEVENT_HEADERS: dict[str, dict[str, Any]] = {
    "ce_id": {
        "type": "string",
        "minLength": 1,
        "description": "Event id, unique per source; consumers' inbox key for idempotency.",
    },
    "ce_type": {"type": "string", "description": "com.baton.<topic>.v<schema version>."},
    "ce_source": {
        "type": "string",
        "format": "uri-reference",
        "description": "The producing service.",
    },
    "ce_time": {"type": "string", "format": "date-time", "description": "When it happened."},
    "ce_specversion": {"type": "string", "const": "1.0"},
    "ce_dataschema": {
        "type": "string",
        "format": "uri",
        "description": "URN naming the JSON Schema of the value (its $id).",
    },
    "ce_subject": {"type": "string", "description": "The entity id, same as the message key."},
    "content-type": {"type": "string", "const": "application/json"},
}
_REQUIRED_HEADERS = ("ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion", "content-type")


def schema_version(event_class: type[Event]) -> int:
    """Return the schema version an event class carries."""
    version = event_class.model_fields["schema_version"].default
    if not isinstance(version, int):
        raise TypeError(f"{event_class.__name__}.schema_version has no integer default")
    return version


def schema_file_name(event_class: type[Event]) -> str:
    """Return the file name of an event's JSON Schema: ``<topic>.v<version>.json``."""
    return f"{event_class.topic}.v{schema_version(event_class)}.json"


def _sorted(value: Any) -> Any:
    """Return a JSON value with every object's keys sorted, recursively."""
    if isinstance(value, Mapping):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def json_schema(event_class: type[Event]) -> dict[str, Any]:
    """Return the draft 2020-12 JSON Schema of an event, keys sorted, ``$id`` its URN."""
    schema = event_class.model_json_schema(mode="validation")
    schema.update(
        {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": data_schema(event_class),
            "title": event_class.__name__,
        }
    )
    result: dict[str, Any] = _sorted(schema)
    return result


def render_json(schema: Mapping[str, Any]) -> str:
    """Return a JSON Schema as the text of its checked-in file."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _channel_id(topic: str) -> str:
    """Return the AsyncAPI channel id of a topic: ``lead.captured`` -> ``lead_captured``."""
    return topic.replace(".", "_")


def _rewrite_refs(value: Any, prefix: str) -> Any:
    """Return a JSON value with ``#/$defs/`` references pointed at ``prefix``."""
    if isinstance(value, Mapping):
        return {
            key: (
                prefix + item.removeprefix("#/$defs/")
                if key == "$ref" and isinstance(item, str) and item.startswith("#/$defs/")
                else _rewrite_refs(item, prefix)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_rewrite_refs(item, prefix) for item in value]
    return value


def _component_schemas() -> dict[str, Any]:
    """Return every event's JSON Schema with its ``$defs`` hoisted into one flat map."""
    prefix = "#/components/schemas/"
    components: dict[str, Any] = {}

    def add(name: str, schema: Any) -> None:
        if name in components and components[name] != schema:
            raise ValueError(f"two different schemas are both named {name!r}")
        components[name] = schema

    for event_class in EVENT_TYPES:
        schema = json_schema(event_class)
        for name, definition in schema.pop("$defs", {}).items():
            add(name, _rewrite_refs(definition, prefix))
        # $id would rebase the rewritten refs away from this document, so it stays in the
        # JSON Schema files and reaches AsyncAPI readers as the ce_dataschema header.
        del schema["$id"], schema["$schema"]
        add(event_class.__name__, _rewrite_refs(schema, prefix))
    add(
        "CloudEventHeaders",
        {
            "type": "object",
            "description": "CloudEvents 1.0 Kafka binary-mode headers every Baton event carries.",
            "required": list(_REQUIRED_HEADERS),
            "properties": _CLOUDEVENT_HEADERS,
        },
    )
    add(
        "DeadLetterHeaders",
        {
            "type": "object",
            "description": (
                "The failed record's original headers, plus headers describing the error "
                "added by the consumer that gave up on it."
            ),
            "properties": _CLOUDEVENT_HEADERS,
            "additionalProperties": {"type": "string"},
        },
    )
    return {name: components[name] for name in sorted(components)}


def _message(event_class: type[Event], key_schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return the AsyncAPI message of an event on its own topic."""
    entity = event_class.key_field
    return {
        "name": event_class.__name__,
        "title": event_class.__name__,
        "summary": (event_class.__doc__ or "").strip(),
        "contentType": "application/json",
        "headers": {
            "allOf": [
                {"$ref": "#/components/schemas/CloudEventHeaders"},
                {
                    "type": "object",
                    "properties": {
                        "ce_type": {"const": event_type(event_class)},
                        "ce_dataschema": {"const": data_schema(event_class)},
                        "ce_subject": {"description": f"The event's {entity}."},
                    },
                },
            ]
        },
        "payload": {"$ref": f"#/components/schemas/{event_class.__name__}"},
        "bindings": {"kafka": {"key": key_schema, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _dead_letter_message(event_class: type[Event], key_schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return the AsyncAPI message of an event's dead letter."""
    return {
        "name": f"{event_class.__name__}DeadLetter",
        "title": f"{event_class.__name__} dead letter",
        "summary": f"A {event_class.topic} record that kept failing, copied unchanged.",
        "description": (
            f"Normally a valid {event_class.__name__}; a record that could not be decoded "
            "keeps its original bytes, so readers must not assume the payload validates."
        ),
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
        "payload": {"$ref": f"#/components/schemas/{event_class.__name__}"},
        "bindings": {"kafka": {"key": key_schema, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _key_schema(event_class: type[Event]) -> dict[str, Any]:
    """Return the schema of an event's Kafka message key: its ``key_field``."""
    field_schema = event_class.model_json_schema()["properties"][event_class.key_field]
    description = f"The event's {event_class.key_field}, so one entity's events keep order."
    result: dict[str, Any] = _sorted({**field_schema, "description": description})
    return result


def _channel(topic: str, message_id: str, description: str) -> dict[str, Any]:
    """Return the AsyncAPI channel of one Kafka topic carrying one message."""
    return {
        "address": topic,
        "title": topic,
        "description": description,
        "messages": {message_id: {"$ref": f"#/components/messages/{message_id}"}},
        "bindings": {"kafka": {"topic": topic, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _operation(service: Service, action: str, topic: str, message_id: str) -> dict[str, Any]:
    """Return the AsyncAPI operation of one service sending or receiving one topic."""
    channel_id = _channel_id(topic)
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "summary": f"{service.name} {action}s {topic}.",
        "tags": [{"name": service.name}],
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_id}"}],
    }


def asyncapi_document() -> dict[str, Any]:
    """Return the AsyncAPI 3.0 document of every topic, its dead letters and services."""
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    by_topic: dict[str, type[Event]] = {event.topic: event for event in EVENT_TYPES}
    for event_class in EVENT_TYPES:
        key_schema = _key_schema(event_class)
        topic, dlq = event_class.topic, dead_letter_topic(event_class.topic)
        name, dead_name = event_class.__name__, f"{event_class.__name__}DeadLetter"
        messages[name] = _message(event_class, key_schema)
        messages[dead_name] = _dead_letter_message(event_class, key_schema)
        channels[_channel_id(topic)] = _channel(
            topic, name, f"{(event_class.__doc__ or '').strip()} Key: {event_class.key_field}."
        )
        channels[_channel_id(dlq)] = _channel(
            dlq, dead_name, f"Dead letters of {topic}: records its consumers gave up on."
        )
    operations: dict[str, Any] = {}
    for service in SERVICES:
        for topic in service.emits:
            operations[f"{service.name}_send_{_channel_id(topic)}"] = _operation(
                service, "send", topic, by_topic[topic].__name__
            )
        for topic in service.consumes:
            operations[f"{service.name}_receive_{_channel_id(topic)}"] = _operation(
                service, "receive", topic, by_topic[topic].__name__
            )
        for topic in service.consumes:
            dlq = dead_letter_topic(topic)
            operations[f"{service.name}_send_{_channel_id(dlq)}"] = _operation(
                service, "send", dlq, f"{by_topic[topic].__name__}DeadLetter"
            )
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Baton events",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": (
                "Kafka topics of Baton, the event-driven lead-to-revenue pipeline. "
                "Every record is a CloudEvents 1.0 event in Kafka binary mode: attributes "
                "in ce_* headers, the JSON data as the value, the entity id as the key. "
                "Generated by `python -m schemas.export`; do not edit by hand."
            ),
            "license": {"name": "Apache-2.0"},
            "tags": [
                {"name": service.name, "description": service.summary} for service in SERVICES
            ],
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": LOCAL_BROKER,
                "protocol": "kafka",
                "description": "The broker of the local stack.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": _component_schemas(), "messages": messages},
    }


class _Dumper(yaml.SafeDumper):
    """A YAML dumper that writes repeated values out instead of anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        """Return True: the document must read the same in every AsyncAPI tool."""
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        """Indent list items under their key, as yamllint expects."""
        super().increase_indent(flow, False)


def render_yaml(document: Mapping[str, Any]) -> str:
    """Return the AsyncAPI document as the text of its checked-in file."""
    return yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        explicit_start=True,
        default_flow_style=False,
    )


def generated_files() -> dict[str, str]:
    """Return every generated file's text by its path under ``schemas/``."""
    files = {
        f"{JSON_SCHEMA_FOLDER}/{schema_file_name(event_class)}": render_json(
            json_schema(event_class)
        )
        for event_class in EVENT_TYPES
    }
    files[ASYNCAPI_FILE] = render_yaml(asyncapi_document())
    return files


def baseline_files() -> dict[str, str]:
    """Return the baseline each current event would get if it had none, by path."""
    return {
        f"{BASELINE_FOLDER}/{schema_file_name(event_class)}": render_json(json_schema(event_class))
        for event_class in EVENT_TYPES
    }


def contract_breaks(directory: Path) -> list[str]:
    """Return every breaking change of the current events against their baselines."""
    problems: list[str] = []
    for event_class in EVENT_TYPES:
        baseline = directory / BASELINE_FOLDER / schema_file_name(event_class)
        if baseline.exists():
            old = json.loads(baseline.read_text(encoding="utf-8"))
            for change in breaking_changes(old, json_schema(event_class)):
                problems.append(f"{event_class.topic} v{schema_version(event_class)} {change}")
    return problems


def stale_files(directory: Path) -> list[Path]:
    """Return the files under ``directory`` that generating would write or delete."""
    stale = [
        directory / name
        for name, text in generated_files().items()
        if not (directory / name).is_file()
        or (directory / name).read_bytes() != text.encode("utf-8")
    ]
    stale += [directory / name for name in baseline_files() if not (directory / name).exists()]
    return stale + _orphans(directory)


def _orphans(directory: Path) -> list[Path]:
    """Return JSON Schema files no current event generates (e.g. after a version bump)."""
    expected = {directory / name for name in generated_files()}
    return sorted(set((directory / JSON_SCHEMA_FOLDER).glob("*.json")) - expected)


def write_files(directory: Path) -> list[Path]:
    """Write the changed generated files and missing baselines; return what changed."""
    changed: list[Path] = []
    for name, text in generated_files().items():
        path = directory / name
        if not path.is_file() or path.read_bytes() != text.encode("utf-8"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
            changed.append(path)
    for name, text in baseline_files().items():
        path = directory / name
        if not path.exists():  # a baseline is the published contract: never overwritten
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
            changed.append(path)
    for orphan in _orphans(directory):
        orphan.unlink()
        changed.append(orphan)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate (or with ``--check`` verify) the exported contracts; return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m schemas.export", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 naming each stale file and each breaking change",
    )
    parser.add_argument(
        "--dir", type=Path, default=SCHEMA_DIR, help="the schemas directory (default: this one)"
    )
    args = parser.parse_args(argv)
    directory: Path = args.dir.resolve()
    shown = directory.parent
    failed = False
    if args.check:
        for path in stale_files(directory):
            print(f"stale: {path.relative_to(shown)} (run `make schemas`)", file=sys.stderr)
            failed = True
    else:
        for path in write_files(directory):
            print(f"updated: {path.relative_to(shown)}")
    for problem in contract_breaks(directory):
        print(f"breaking change: {problem}", file=sys.stderr)
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
