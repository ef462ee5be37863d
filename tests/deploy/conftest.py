"""Shared helpers of the deploy tests: paths, tools and kustomize renders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"

Doc = dict[str, Any]


def tool(name: str) -> str:
    """Return the path of a tool from the project's virtual environment (or PATH)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: run `uv sync --frozen` (it is in the dev group)")
    return found


def tool_env() -> dict[str, str]:
    """Return the environment with the virtual environment's tools first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def kustomize(directory: Path) -> list[Doc]:
    """Return the resources ``kubectl kustomize directory`` renders."""
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        env=tool_env(),
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def render(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[Doc]]:
    """Return a cached renderer of ``base``, ``overlays/<name>`` or ``components/<name>``.

    A component is rendered on top of the base, through a throw-away
    kustomization (kustomize cannot build a Component on its own).
    """
    cache: dict[str, list[Doc]] = {}

    def _render(target: str) -> list[Doc]:
        if target not in cache:
            if target.startswith("components/"):
                work = tmp_path_factory.mktemp("component")
                # kustomize accepts only relative paths to other kustomizations.
                base = os.path.relpath(K8S / "base", work)
                component = os.path.relpath(K8S / target, work)
                (work / "kustomization.yaml").write_text(
                    "apiVersion: kustomize.config.k8s.io/v1beta1\n"
                    "kind: Kustomization\n"
                    f"resources:\n  - {base}\n"
                    f"components:\n  - {component}\n"
                )
                cache[target] = kustomize(work)
            else:
                cache[target] = kustomize(K8S / target)
        return cache[target]

    return _render


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    """Return the resources of ``kind`` (and ``name``; a generated name may carry a hash)."""
    generated = kind in ("ConfigMap", "Secret")

    def matches(doc: Doc) -> bool:
        actual = doc["metadata"]["name"]
        return name is None or actual == name or (generated and actual.startswith(name + "-"))

    return [doc for doc in docs if doc["kind"] == kind and matches(doc)]


def overlays() -> list[str]:
    """Return the overlay names under deploy/k8s/overlays."""
    return sorted(path.parent.name for path in (K8S / "overlays").glob("*/kustomization.yaml"))
