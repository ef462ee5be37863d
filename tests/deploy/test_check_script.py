"""deploy/check.sh (make deploy-check) passes on the repository and fails on broken copies."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .conftest import DEPLOY, REPO, tool_env

CHECK = DEPLOY / "check.sh"


def run_check(
    deploy_dir: Path | None = None, versions: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run check.sh (on ``deploy_dir`` if given) and return the finished process."""
    env = tool_env()
    if versions:
        env["BATON_K8S_VERSIONS"] = versions
    command = ["bash", str(CHECK)] + ([str(deploy_dir)] if deploy_dir else [])
    return subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, check=False, env=env, timeout=300
    )


def broken_copy(tmp_path: Path, edits: dict[str, tuple[str, str]]) -> Path:
    """Return a copy of deploy/ with each ``{file: (old, new)}`` edit applied once."""
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for relative, (old, new) in edits.items():
        path = copy / relative
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {relative}: update the test"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return copy


def test_check_passes_on_the_repository() -> None:
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deploy-check passed" in result.stdout
    for render in (
        "base",
        "overlay-dev",
        "overlay-prod",
        "component-kafka-topics",
        "component-service-monitors",
    ):
        assert f"==> kustomize {render}" in result.stdout


def test_check_passes_on_an_unmodified_copy(tmp_path: Path) -> None:
    """The deploy directory argument works, so the failures below are the edits' doing."""
    result = run_check(broken_copy(tmp_path, {}), versions="1.37.0")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_fails_on_an_unknown_deployment_field(tmp_path: Path) -> None:
    copy = broken_copy(
        tmp_path,
        {
            "k8s/base/ingest.yaml": (
                "imagePullPolicy: IfNotPresent",
                "imagePullPolcy: IfNotPresent",
            ),
        },
    )
    result = run_check(copy, versions="1.37.0")
    assert result.returncode == 1
    assert "Deployment/baton-ingest" in result.stdout
    assert "'imagePullPolcy' was unexpected" in result.stdout
    assert "deploy-check FAILED: validate" in result.stderr


def test_check_fails_on_a_wrong_type(tmp_path: Path) -> None:
    copy = broken_copy(
        tmp_path,
        {
            "k8s/base/scoring.yaml": ("revisionHistoryLimit: 5", 'revisionHistoryLimit: "five"'),
        },
    )
    result = run_check(copy, versions="1.37.0")
    assert result.returncode == 1
    assert "Deployment/baton-scoring" in result.stdout
    assert "spec.revisionHistoryLimit: 'five' is not of type 'integer'" in result.stdout


def test_every_check_reports_its_own_breakage(tmp_path: Path) -> None:
    """One copy, one breakage per check: each shows up in the report."""
    copy = broken_copy(
        tmp_path,
        {
            # custom resources: local schemas
            "k8s/components/kafka-topics/kafkatopics.yaml": ("  partitions: 12", "  partition: 12"),
            "k8s/components/service-monitors/servicemonitors.yaml": (
                "interval: 30s",
                "intervall: 30s",
            ),
            # Baton's rules: the drain must fit in the grace period
            "k8s/base/routing.yaml": (
                "terminationGracePeriodSeconds: 40",
                "terminationGracePeriodSeconds: 20",
            ),
            # kustomize: a patch that no longer applies
            "k8s/overlays/prod/kustomization.yaml": (
                "path: patches/hpa.yaml",
                "path: patches/missing.yaml",
            ),
            # hadolint: unpinned pip install
            "docker/Dockerfile": ("pip install --no-cache-dir uv==0.13.9", "pip install uv"),
            # yamllint: trailing spaces
            "compose.yaml": ("name: baton\n", "name: baton   \n"),
        },
    )
    result = run_check(copy, versions="1.37.0")
    out = result.stdout
    assert result.returncode == 1
    assert "KafkaTopic/lead-captured [1.37.0, local CRD schema] spec: Additional properties" in out
    assert "ServiceMonitor/baton [1.37.0, local CRD schema] spec.endpoints.0" in out
    assert "Deployment/baton-routing [policy] terminationGracePeriodSeconds 20" in out
    assert "!!! kustomize overlay-prod FAILED" in out
    assert "DL3013" in out
    assert "trailing-spaces" in out
    failed = result.stderr.strip().splitlines()[-1]
    for step in ("yamllint", "hadolint", "kustomize overlay-prod", "validate"):
        assert step in failed


def test_check_refuses_a_kind_without_a_schema(tmp_path: Path) -> None:
    """kubernetes-validate only warns about kinds it does not know; check.sh fails."""
    copy = broken_copy(
        tmp_path,
        {
            "k8s/base/kustomization.yaml": (
                "  - ingress.yaml\n",
                "  - ingress.yaml\n  - widget.yaml\n",
            ),
        },
    )
    (copy / "k8s/base/widget.yaml").write_text(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n", encoding="utf-8"
    )
    result = run_check(copy, versions="1.37.0")
    assert result.returncode == 1
    assert "no schema for Widget example.com/v1" in result.stdout
