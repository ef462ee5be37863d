"""deploy/compose.yaml: KRaft Kafka, PostgreSQL, the jobs, and the five services wired right.

Docker Compose is not installed everywhere (`docker compose config` runs in
deploy/check.sh where it is), so the structure is checked here.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from baton_runtime.settings import RuntimeSettings, env_name
from services.ingest.settings import IngestSettings
from services.notifier.settings import NotifierSettings
from services.pipeline.settings import PipelineSettings
from services.routing.settings import RoutingSettings
from services.scoring.settings import ScoringSettings

from .conftest import DEPLOY

SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "scoring": ScoringSettings,
    "routing": RoutingSettings,
    "pipeline": PipelineSettings,
    "notifier": NotifierSettings,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return loaded


def test_the_stack_has_its_parts(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"kafka", "postgres", "migrate", "topics", *SETTINGS}


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert "healthcheck" in kafka


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name in ("kafka", "postgres"):
        image = compose["services"][name]["image"]
        tag = image.rpartition(":")[2]
        assert tag and tag != "latest" and any(c.isdigit() for c in tag), image


@pytest.mark.parametrize("service", SETTINGS)
def test_service_runs_its_command_after_migrations(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    assert spec["command"] == ["serve", service]
    assert spec["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    for job in ("migrate", "topics"):
        assert spec["depends_on"][job]["condition"] == "service_completed_successfully"
    port = SETTINGS[service].model_fields["http_port"].default
    assert spec["environment"]["BATON_HTTP_PORT"] == str(port)
    assert spec["ports"] == [f"{port}:{port}"]
    assert "healthcheck" in spec


@pytest.mark.parametrize("service", [*SETTINGS, "migrate", "topics"])
def test_containers_are_hardened_like_in_kubernetes(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    assert spec["user"] == "10001:10001"
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert "/tmp" in spec["tmpfs"]
    # Docker's SIGKILL must wait for the consumer drain.
    drain = RuntimeSettings.model_fields["shutdown_grace_seconds"].default
    assert int(spec["stop_grace_period"].removesuffix("s")) > drain


def test_jobs_wait_for_their_backing_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["topics"]["command"] == ["topics"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", [*SETTINGS, "migrate", "topics"])
def test_environment_names_are_settings(compose: dict[str, Any], service: str) -> None:
    """No misspelt variable is silently ignored by pydantic-settings."""
    known = {env_name(field) for cls in SETTINGS.values() for field in cls.model_fields}
    unknown = set(compose["services"][service]["environment"]) - known
    assert not unknown, f"{service}: no service reads {sorted(unknown)}"
