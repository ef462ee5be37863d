"""Every Kafka topic Baton uses has a Strimzi KafkaTopic, sized to match the deployment."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from schemas.events import TOPICS, dead_letter_topic

from .conftest import K8S, Doc, find, overlays

Render = Callable[[str], list[Doc]]

# Who consumes what (DESIGN.md section 1). A consumer group uses at most one
# consumer per partition, so a service never needs more pods than the
# smallest partition count of its input topics.
CONSUMES: dict[str, tuple[str, ...]] = {
    "scoring": ("lead.captured", "deal.phase_changed", "deal.recycled"),
    "routing": ("lead.scored", "deal.recycled", "deal.phase_changed"),
    "pipeline": ("lead.promoted",),
    "notifier": ("lead.scored", "lead.promoted", "deal.phase_changed", "deal.recycled"),
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def topics_of(docs: list[Doc]) -> dict[str, Doc]:
    """Return the KafkaTopic resources by Kafka topic name (spec.topicName)."""
    found: dict[str, Doc] = {}
    for topic in find(docs, "KafkaTopic"):
        name = topic["spec"].get("topicName", topic["metadata"]["name"])
        assert name not in found, f"two KafkaTopics for {name}"
        found[name] = topic
    return found


def overlays_with_topics(render: Render) -> list[str]:
    return [o for o in overlays() if find(render(f"overlays/{o}"), "KafkaTopic")]


def test_every_topic_and_dead_letter_topic_has_a_kafkatopic(render: Render) -> None:
    topics = topics_of(render("components/kafka-topics"))
    expected = set(TOPICS) | {dead_letter_topic(topic) for topic in TOPICS}
    assert set(topics) == expected


def test_kafkatopic_names_are_valid_resource_names(render: Render) -> None:
    for topic_name, topic in topics_of(render("components/kafka-topics")).items():
        name = topic["metadata"]["name"]
        assert DNS_LABEL.match(name), f"{name} is not a DNS-1123 label"
        assert topic["spec"]["topicName"] == topic_name
        assert topic["metadata"]["labels"].get("strimzi.io/cluster")


def test_the_component_is_used_by_an_overlay(render: Render) -> None:
    assert (K8S / "components/kafka-topics/kustomization.yaml").exists()
    assert "prod" in overlays_with_topics(render)


@pytest.mark.parametrize("overlay", overlays())
def test_topics_match_the_configmap(render: Render, overlay: str) -> None:
    """KafkaTopics and `baton topics` (BATON_KAFKA_*) would create the same topics."""
    docs = render(f"overlays/{overlay}")
    topics = topics_of(docs)
    if not topics:
        pytest.skip(f"{overlay} does not use the kafka-topics component")
    (config,) = find(docs, "ConfigMap", "baton-config")
    partitions = int(config["data"]["BATON_KAFKA_TOPIC_PARTITIONS"])
    replicas = int(config["data"]["BATON_KAFKA_REPLICATION_FACTOR"])
    for name, topic in topics.items():
        spec = topic["spec"]
        assert spec["partitions"] == partitions, name
        assert spec["replicas"] == replicas, name
        # With acks=all, producing must survive the loss of one replica.
        min_isr = int(spec.get("config", {}).get("min.insync.replicas", 1))
        assert min_isr <= max(1, replicas - 1), name


@pytest.mark.parametrize("overlay", overlays())
def test_replicas_never_exceed_partitions(render: Render, overlay: str) -> None:
    """Consumers beyond the partition count would sit idle: replicas and HPAs stay below it."""
    docs = render(f"overlays/{overlay}")
    topics = topics_of(docs)
    (config,) = find(docs, "ConfigMap", "baton-config")
    default = int(config["data"]["BATON_KAFKA_TOPIC_PARTITIONS"])
    autoscalers = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa for hpa in find(docs, "HorizontalPodAutoscaler")
    }
    for service, inputs in CONSUMES.items():
        name = f"baton-{service}"
        limit = min(
            topics[topic]["spec"]["partitions"] if topic in topics else default for topic in inputs
        )
        (deployment,) = find(docs, "Deployment", name)
        most = (
            autoscalers[name]["spec"]["maxReplicas"]
            if name in autoscalers
            else (deployment["spec"].get("replicas", 1))
        )
        assert most <= limit, f"{name}: up to {most} pods for {limit} partitions"


def test_consumers_match_the_event_contracts() -> None:
    assert {topic for inputs in CONSUMES.values() for topic in inputs} <= set(TOPICS)
