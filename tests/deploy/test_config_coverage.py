"""Every setting a service reads is deployed: in the base ConfigMap or Secret, and wired in.

The settings classes are introspected (``model_fields``), so a field added
later fails here until deploy/k8s/base/config.env or credentials-template.yaml has it.
"""

from __future__ import annotations

import base64
import os
import types
import typing
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from baton_runtime.settings import ENV_PREFIX, env_name, load_settings
from services.ingest.settings import IngestSettings
from services.notifier.settings import NotifierSettings
from services.pipeline.settings import PipelineSettings
from services.routing.settings import RoutingSettings
from services.scoring.settings import ScoringSettings

from .conftest import Doc, find, overlays

SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "scoring": ScoringSettings,
    "routing": RoutingSettings,
    "pipeline": PipelineSettings,
    "notifier": NotifierSettings,
}
SECRET_WORDS = ("url", "token", "secret", "key", "password")
CONFIG_FILES = ("deploy/k8s/base/config.env (non-secret) or "
                "deploy/k8s/base/credentials-template.yaml (secret)")

Render = Callable[[str], list[Doc]]


def mentions_secret_str(annotation: Any) -> bool:
    """Return whether ``annotation`` is or contains SecretStr (dict[str, SecretStr], ... | None)."""
    if annotation is SecretStr:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        return any(mentions_secret_str(arg) for arg in typing.get_args(annotation))
    return False


def is_secret(name: str, field: FieldInfo) -> bool:
    """Return whether a setting belongs in the Secret rather than the ConfigMap."""
    return mentions_secret_str(field.annotation) or any(word in name for word in SECRET_WORDS)


def settings_env(settings: type[BaseSettings]) -> dict[str, tuple[bool, bool]]:
    """Return {environment variable: (secret?, required?)} of a settings class."""
    return {
        env_name(name): (is_secret(name, field), field.is_required())
        for name, field in settings.model_fields.items()
    }


def config_map(docs: list[Doc]) -> dict[str, str]:
    """Return the data of the rendered baton-config ConfigMap."""
    (found,) = find(docs, "ConfigMap", "baton-config")
    data: dict[str, str] = found.get("data") or {}
    return dict(data)


def secret_data(docs: list[Doc]) -> dict[str, str] | None:
    """Return the decoded data of the rendered baton-secrets Secret, or None if absent."""
    found = find(docs, "Secret", "baton-secrets")
    if not found:
        return None
    (secret,) = found
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def container(docs: list[Doc], service: str) -> Doc:
    """Return the service's container in its rendered Deployment."""
    (deployment,) = find(docs, "Deployment", f"baton-{service}")
    only: Doc
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def secret_refs(entry: Doc) -> dict[str, Doc]:
    """Return the container's env entries that come from a Secret, by variable name."""
    return {
        env["name"]: env["valueFrom"]["secretKeyRef"]
        for env in entry.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }


@pytest.mark.parametrize("service", SETTINGS)
def test_every_setting_is_in_the_base_configmap_or_secret(render: Render, service: str) -> None:
    docs = render("base")
    data = config_map(docs)
    secrets = secret_data(docs)
    assert secrets is not None, "the base must carry the Secret template"
    for variable, (secret, _required) in settings_env(SETTINGS[service]).items():
        if secret:
            assert variable in secrets, (
                f"{service} reads secret {variable}: add it to {CONFIG_FILES}"
            )
            assert variable not in data, f"{variable} is a secret: move it out of the ConfigMap"
        else:
            assert variable in data, f"{service} reads {variable}: add it to {CONFIG_FILES}"


@pytest.mark.parametrize("service", SETTINGS)
def test_every_setting_reaches_the_deployment(render: Render, service: str) -> None:
    """The ConfigMap comes in whole; each secret the service reads is mapped by key."""
    docs = render("base")
    entry = container(docs, service)
    (config,) = find(docs, "ConfigMap", "baton-config")
    config_refs = [
        source["configMapRef"]["name"]
        for source in entry.get("envFrom", [])
        if "configMapRef" in source
    ]
    assert config_refs == [config["metadata"]["name"]]
    assert not [source for source in entry.get("envFrom", []) if "secretRef" in source], (
        "map secrets key by key (optional: true) so that each service gets only its own"
    )
    refs = secret_refs(entry)
    wanted = {
        v: required for v, (secret, required) in settings_env(SETTINGS[service]).items() if secret
    }
    assert set(refs) == set(wanted), f"baton-{service} must map exactly the secrets it reads"
    for variable, required in wanted.items():
        assert refs[variable]["name"] == "baton-secrets"
        assert refs[variable]["key"] == variable
        # A missing optional key leaves the variable unset (the default applies);
        # an empty value would not, and fails validation.
        assert refs[variable].get("optional", False) is not required, variable


def test_the_migration_job_gets_the_database(render: Render) -> None:
    docs = render("base")
    (job,) = find(docs, "Job", "baton-migrate")
    (entry,) = job["spec"]["template"]["spec"]["containers"]
    assert entry["args"] == ["migrate"]
    assert "BATON_DATABASE_URL" in secret_refs(entry)
    assert any("configMapRef" in source for source in entry.get("envFrom", []))


def test_no_stale_keys_in_configmap_or_secret(render: Render) -> None:
    """Every key is a setting some service reads: a typo cannot hide as dead config."""
    known = {variable for settings in SETTINGS.values() for variable in settings_env(settings)}
    docs = render("base")
    secrets = secret_data(docs) or {}
    stale = sorted((set(config_map(docs)) | set(secrets)) - known)
    assert not stale, f"no service reads {stale}"
    assert all(key.startswith(ENV_PREFIX) for key in known)


@pytest.mark.parametrize("overlay", overlays())
@pytest.mark.parametrize("service", SETTINGS)
def test_overlay_settings_pass_validation(
    render: Render, monkeypatch: pytest.MonkeyPatch, overlay: str, service: str
) -> None:
    """What each overlay hands a service is valid for its settings class.

    Secrets come from the overlay's Secret, or from the base template where the
    overlay leaves the Secret to a secret manager (prod).
    """
    docs = render(f"overlays/{overlay}")
    secrets = secret_data(docs)
    if secrets is None:
        secrets = secret_data(render("base")) or {}
    env = dict(config_map(docs))
    for variable, ref in secret_refs(container(docs, service)).items():
        if ref["key"] in secrets:
            env[variable] = secrets[ref["key"]]
    for variable in list(os.environ):
        if variable.startswith(ENV_PREFIX):
            monkeypatch.delenv(variable)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings(SETTINGS[service])
    assert settings.http_port == int(env["BATON_HTTP_PORT"])  # type: ignore[attr-defined]


@pytest.mark.parametrize("overlay", overlays())
def test_termination_grace_covers_the_drain(render: Render, overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    drain = float(config_map(docs)["BATON_SHUTDOWN_GRACE_SECONDS"])
    for deployment in find(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        (entry,) = pod["containers"]
        pre_stop = entry["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["terminationGracePeriodSeconds"] > pre_stop + drain, deployment["metadata"]
