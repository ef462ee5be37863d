"""deploy/docker/Dockerfile builds what pyproject.toml packages, from the lock, as non-root.

Docker cannot run everywhere the tests do; hadolint (deploy/check.sh) lints
the file and these checks hold it to the contract.
"""

from __future__ import annotations

import re
import tomllib

from .conftest import DEPLOY, K8S, REPO

DOCKERFILE = (DEPLOY / "docker" / "Dockerfile").read_text(encoding="utf-8")
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def packages() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    found: list[str] = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    return found


def test_both_stages_use_one_pinned_base_image() -> None:
    bases = [line.split()[1] for line in INSTRUCTIONS if line.startswith("FROM ")]
    assert len(bases) == 2, "a builder and a runtime stage"
    assert bases[0] == bases[1], "the virtual environment's interpreter path must match"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", bases[0])


def test_dependencies_install_from_the_lock_before_the_source() -> None:
    syncs = [i for i, line in enumerate(INSTRUCTIONS) if "uv sync" in line]
    assert len(syncs) == 2
    assert all("--frozen" in INSTRUCTIONS[i] and "--no-dev" in INSTRUCTIONS[i] for i in syncs)
    assert "--no-install-project" in INSTRUCTIONS[syncs[0]]
    lock_copy = next(i for i, line in enumerate(INSTRUCTIONS) if "uv.lock" in line)
    source_copies = [
        i
        for i, line in enumerate(INSTRUCTIONS)
        if line.startswith("COPY ") and any(f" {p} " in line for p in packages())
    ]
    assert lock_copy < syncs[0] < min(source_copies) < syncs[1]


def test_every_package_reaches_the_image() -> None:
    """A package added to pyproject.toml must be copied and let through .dockerignore."""
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    for package in packages():
        assert any(line.startswith("COPY ") and f" {package} " in line for line in INSTRUCTIONS), (
            package
        )
        assert f"!{package}/" in ignore, package


def test_runs_as_the_non_root_user_kubernetes_expects() -> None:
    users = [line.split()[1] for line in INSTRUCTIONS if line.startswith("USER ")]
    assert users, "no USER instruction"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit()
    for manifest in ("base/ingest.yaml", "base/migrate-job.yaml"):
        text = (K8S / manifest).read_text(encoding="utf-8")
        assert f"runAsUser: {uid}" in text and f"runAsGroup: {gid}" in text


def test_nothing_is_written_at_run_time() -> None:
    assert "PYTHONDONTWRITEBYTECODE=1" in DOCKERFILE
    assert "UV_COMPILE_BYTECODE=1" in DOCKERFILE
    assert 'ENTRYPOINT ["baton"]' in INSTRUCTIONS
