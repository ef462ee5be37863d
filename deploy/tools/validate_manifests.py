"""Validate rendered Kubernetes manifests for deploy/check.sh.

usage: validate_manifests.py --schemas DIR [-k VERSION ...] RENDERED.yaml ...

Three checks, every problem reported before the exit status is set:

1. Core kinds: kubernetes-validate in strict mode (unknown fields and wrong
   types fail) against each Kubernetes version given with -k.
2. Custom resources (Strimzi KafkaTopic, Prometheus ServiceMonitor): the JSON
   Schemas in --schemas, whose metadata refers to Kubernetes' own ObjectMeta
   of the same version. kubernetes-validate only warns about kinds it does
   not know; here a kind with neither a core nor a local schema is an error.
3. Baton's deployment rules: non-root, read-only root filesystem, all
   capabilities dropped, requests and limits, pinned images, health probes,
   a termination grace longer than the consumer drain, a PodDisruptionBudget
   per Deployment, and references (ConfigMaps, HPA targets, Ingress backends)
   that resolve inside the rendered output.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import yaml
from kubernetes_validate.utils import SchemaNotFoundError  # type: ignore[import-untyped]
from referencing import Registry, Resource

K8S_DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"
DEFAULT_SHUTDOWN_GRACE_SECONDS = 25.0
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}

Doc = dict[str, Any]

# kubernetes-validate re-reads its 1.8 MB definitions file for every resource;
# the files never change during a run, so read each one once.
kubernetes_validate.utils.schema_contents = cache(kubernetes_validate.utils.schema_contents)


def load_documents(path: Path) -> list[Doc]:
    """Return the non-empty YAML documents of ``path``."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def ident(doc: Doc) -> str:
    """Return ``Kind/name`` of a resource."""
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"


@cache
def k8s_definitions(version: str) -> Resource[Any]:
    """Return kubernetes-validate's strict definitions for ``version`` (major.minor.patch)."""
    minor = ".".join(version.split(".")[:2])
    shipped = [v for v in kubernetes_validate.utils.all_versions() if v.startswith(minor + ".")]
    if not shipped:
        raise SystemExit(f"kubernetes-validate ships no schemas for Kubernetes {version}")
    root = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    path = root / f"v{shipped[-1]}-local-strict" / "_definitions.json"
    return Resource.from_contents(json.loads(path.read_text(encoding="utf-8")))


def load_crd_schemas(directory: Path) -> dict[tuple[str, str], Doc]:
    """Return the local custom-resource schemas keyed by (apiVersion, kind)."""
    schemas: dict[tuple[str, str], Doc] = {}
    for path in sorted(directory.glob("*.schema.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        props = schema["properties"]
        api_versions = props["apiVersion"].get("enum") or [props["apiVersion"]["const"]]
        for api_version in api_versions:
            schemas[(api_version, props["kind"]["const"])] = schema
    return schemas


def schema_errors(doc: Doc, versions: list[str], crds: dict[tuple[str, str], Doc]) -> Iterator[str]:
    """Yield every schema violation of ``doc`` for every Kubernetes version."""
    key = (str(doc.get("apiVersion")), str(doc.get("kind")))
    for version in versions:
        if key in crds:
            registry = Registry().with_resource(K8S_DEFINITIONS_URI, k8s_definitions(version))
            validator = jsonschema.Draft202012Validator(crds[key], registry=registry)
            for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
                path = ".".join(str(part) for part in error.path)
                yield f"[{version}, local CRD schema] {path}: {error.message}"
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            yield f"[{version}, kubernetes-validate --strict] {path}: {error.message}"
        except SchemaNotFoundError:
            yield (
                f"[{version}] no schema for {key[1]} {key[0]}: neither a core Kubernetes kind "
                "nor a custom resource with a schema in deploy/schemas/"
            )


def pod_spec(doc: Doc) -> Doc:
    """Return the pod spec of a workload."""
    return doc.get("spec", {}).get("template", {}).get("spec", {}) or {}


def pod_labels(doc: Doc) -> dict[str, str]:
    """Return the pod template labels of a workload."""
    return doc.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {}) or {}


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Return whether a LabelSelector's matchLabels and In-expressions match ``labels``."""
    if not selector:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        if expression.get("operator") == "In" and labels.get(expression["key"]) not in (
            expression.get("values") or []
        ):
            return False
    return True


def image_pinned(image: str) -> bool:
    """Return whether an image names a tag other than latest, or a digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def shutdown_grace(docs: list[Doc]) -> float:
    """Return BATON_SHUTDOWN_GRACE_SECONDS of the rendered ConfigMaps, or the default."""
    for doc in docs:
        if doc.get("kind") == "ConfigMap":
            value = (doc.get("data") or {}).get("BATON_SHUTDOWN_GRACE_SECONDS")
            if value is not None:
                return float(value)
    return DEFAULT_SHUTDOWN_GRACE_SECONDS


def workload_errors(doc: Doc, docs: list[Doc]) -> Iterator[str]:
    """Yield violations of Baton's rules for pods: security, resources, images, config."""
    spec = pod_spec(doc)
    pod_security = spec.get("securityContext") or {}
    if spec.get("automountServiceAccountToken") is not False:
        yield "automountServiceAccountToken must be false (no service needs the API)"
    if (pod_security.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        yield "pod securityContext.seccompProfile.type must be RuntimeDefault"
    account = spec.get("serviceAccountName")
    if not account:
        yield "serviceAccountName is missing (one ServiceAccount per service)"
    elif ("ServiceAccount", account) not in {(d.get("kind"), d["metadata"]["name"]) for d in docs}:
        yield f"ServiceAccount {account} is not in the rendered output"
    config_maps = {d["metadata"]["name"] for d in docs if d.get("kind") == "ConfigMap"}
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        name = container.get("name", "?")
        security = container.get("securityContext") or {}
        if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
            yield f"container {name}: runAsNonRoot must be true"
        if security.get("readOnlyRootFilesystem") is not True:
            yield f"container {name}: readOnlyRootFilesystem must be true"
        if security.get("allowPrivilegeEscalation") is not False:
            yield f"container {name}: allowPrivilegeEscalation must be false"
        if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
            yield f"container {name}: capabilities.drop must contain ALL"
        for kind in ("requests", "limits"):
            have = (container.get("resources") or {}).get(kind) or {}
            for resource in ("cpu", "memory"):
                if resource not in have:
                    yield f"container {name}: resources.{kind}.{resource} is missing"
        if not image_pinned(str(container.get("image", ""))):
            yield f"container {name}: image {container.get('image')!r} has no version tag or digest"
        for source in container.get("envFrom") or []:
            ref = (source.get("configMapRef") or {}).get("name")
            if ref and ref not in config_maps:
                yield f"container {name}: envFrom ConfigMap {ref!r} is not in the rendered output"


def deployment_errors(doc: Doc, docs: list[Doc]) -> Iterator[str]:
    """Yield violations of Baton's rules for Deployments: probes, drain, spread, PDB."""
    spec = pod_spec(doc)
    for container in spec.get("containers", []):
        name = container.get("name", "?")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            actual = ((container.get(probe) or {}).get("httpGet") or {}).get("path")
            if actual != path:
                yield f"container {name}: {probe} must GET {path}, not {actual!r}"
        pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}
        needed = shutdown_grace(docs) + float(pre_stop.get("seconds", 0))
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if grace <= needed:
            yield (
                f"terminationGracePeriodSeconds {grace} must exceed preStop sleep + "
                f"BATON_SHUTDOWN_GRACE_SECONDS = {needed:g}: the consumer drain would be killed"
            )
    if not spec.get("topologySpreadConstraints"):
        yield "topologySpreadConstraints are missing"
    labels = pod_labels(doc)
    if not any(
        d.get("kind") == "PodDisruptionBudget" and selects(d["spec"].get("selector", {}), labels)
        for d in docs
    ):
        yield "no PodDisruptionBudget selects its pods"


def reference_errors(doc: Doc, docs: list[Doc]) -> Iterator[str]:
    """Yield references from HPAs and Ingresses to objects missing from the output."""
    names = {(d.get("kind"), d["metadata"]["name"]) for d in docs}
    if doc.get("kind") == "HorizontalPodAutoscaler":
        target = doc["spec"]["scaleTargetRef"]
        if (target["kind"], target["name"]) not in names:
            yield f"scaleTargetRef {target['kind']}/{target['name']} is not in the rendered output"
    if doc.get("kind") == "Ingress":
        services = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Service"}
        for rule in doc["spec"].get("rules", []):
            for path in (rule.get("http") or {}).get("paths", []):
                backend = path["backend"]["service"]
                service = services.get(backend["name"])
                if service is None:
                    yield f"backend Service {backend['name']} is not in the rendered output"
                    continue
                port = backend.get("port", {})
                ports = service["spec"].get("ports", [])
                if not any(
                    p.get("name") == port.get("name") or p.get("port") == port.get("number")
                    for p in ports
                ):
                    yield f"backend Service {backend['name']} has no port {port}"


def policy_errors(doc: Doc, docs: list[Doc]) -> Iterator[str]:
    """Yield every violation of Baton's deployment rules by ``doc``."""
    if doc.get("kind") in WORKLOAD_KINDS:
        yield from workload_errors(doc, docs)
    if doc.get("kind") == "Deployment":
        yield from deployment_errors(doc, docs)
    yield from reference_errors(doc, docs)


def main(argv: list[str] | None = None) -> int:
    """Validate the files given on the command line; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="rendered multi-document YAML")
    parser.add_argument("--schemas", type=Path, required=True, help="custom-resource schemas")
    parser.add_argument(
        "-k",
        "--kubernetes-version",
        dest="versions",
        action="append",
        help="Kubernetes version to validate against (repeatable)",
    )
    args = parser.parse_args(argv)
    versions = args.versions or [kubernetes_validate.latest_version()]
    crds = load_crd_schemas(args.schemas)
    failures = 0
    for path in args.files:
        try:
            docs = load_documents(path)
        except (OSError, yaml.YAMLError) as error:
            print(f"ERROR {path}: cannot read: {error}")
            failures += 1
            continue
        problems = 0
        for doc in docs:
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                print(f"ERROR {path}: a document without apiVersion/kind")
                problems += 1
                continue
            found = list(schema_errors(doc, versions, crds))
            if not found:
                found = [f"[policy] {problem}" for problem in policy_errors(doc, docs)]
            for problem in found:
                print(f"ERROR {path}: {ident(doc)} {problem}")
            problems += len(found)
        status = "FAILED" if problems else "ok"
        print(
            f"{status} {path}: {len(docs)} resources, Kubernetes {', '.join(versions)} "
            f"(strict), {problems} problem(s)"
        )
        failures += problems
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
