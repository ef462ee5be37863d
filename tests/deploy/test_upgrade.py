"""The upgrade procedure in README.md: config and migrations first, then the services.

Step one applies the render with the selector below; it must carry the
migration Job and everything it needs, and none of the services.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import DEPLOY, Doc, overlays

Render = Callable[[str], list[Doc]]
SERVICES = ("ingest", "scoring", "routing", "pipeline", "notifier")
FIRST_STEP = f"app.kubernetes.io/component notin ({','.join(SERVICES)})"


def first_step(docs: list[Doc]) -> list[Doc]:
    """Return what ``kubectl apply -l FIRST_STEP`` selects ("notin" takes unlabelled objects)."""
    return [
        doc
        for doc in docs
        if (doc["metadata"].get("labels") or {}).get("app.kubernetes.io/component") not in SERVICES
    ]


@pytest.mark.parametrize("overlay", overlays())
def test_first_step_runs_migrations_and_no_service(render: Render, overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    selected = {(doc["kind"], doc["metadata"]["name"]) for doc in first_step(docs)}
    kinds = {kind for kind, _ in selected}
    assert ("Job", "baton-migrate") in selected
    assert ("ServiceAccount", "baton-migrate") in selected
    assert {"Namespace", "ConfigMap", "NetworkPolicy"} <= kinds
    assert not kinds & {"Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    if any(doc["kind"] == "KafkaTopic" for doc in docs):
        assert "KafkaTopic" in kinds, "topics exist before the services start"


def test_the_readme_uses_the_same_selector() -> None:
    assert FIRST_STEP in (DEPLOY.parent / "README.md").read_text(encoding="utf-8")
