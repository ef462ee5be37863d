#!/usr/bin/env bash
# deploy-check: lint and validate everything under deploy/.
#
#   bash deploy/check.sh [DEPLOY_DIR]
#
# DEPLOY_DIR defaults to the directory of this script; the tests pass a
# modified copy. Steps (all run; the exit status is 1 if any failed):
#   1. yamllint --strict on every YAML file (config: DEPLOY_DIR/.yamllint.yaml)
#   2. hadolint on docker/Dockerfile (every rule, style included)
#   3. kustomize (kubectl kustomize) renders k8s/base, every k8s/overlays/*,
#      and base + each k8s/components/* on its own
#   4. tools/validate_manifests.py checks every rendered file: core kinds
#      with kubernetes-validate --strict for each version in
#      BATON_K8S_VERSIONS, custom resources against schemas/*.schema.json,
#      then Baton's deployment rules
#   5. compose.yaml with `docker compose config` where Docker Compose exists
#
# The tools come from the repository's .venv (the uv lock file's dev group);
# if it is missing, `uv sync --frozen` creates it.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)
deploy_dir=$(cd "${1:-$script_dir}" && pwd)
k8s_versions=${BATON_K8S_VERSIONS:-"1.30.0 1.37.0"}
bin="$repo_root/.venv/bin"
tools=(kubectl kubernetes-validate yamllint hadolint python)

missing_tools() {
    local tool
    for tool in "${tools[@]}"; do
        [[ -x "$bin/$tool" ]] || return 0
    done
    return 1
}

if missing_tools && command -v uv >/dev/null 2>&1; then
    echo "==> tools missing from $bin: uv sync --frozen"
    (cd "$repo_root" && uv sync --frozen --quiet)
fi
for tool in "${tools[@]}"; do
    if [[ ! -x "$bin/$tool" ]]; then
        echo "deploy-check: $bin/$tool not found; run 'uv sync --frozen' in $repo_root" >&2
        exit 2
    fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()

step() {
    local name=$1
    shift
    echo "==> $name"
    if ! "$@"; then
        echo "!!! $name FAILED"
        failed+=("$name")
        return 1
    fi
}

# 1. YAML style.
step "yamllint" "$bin/yamllint" --strict -c "$deploy_dir/.yamllint.yaml" "$deploy_dir" || true

# 2. Dockerfile.
step "hadolint" "$bin/hadolint" --failure-threshold style "$deploy_dir/docker/Dockerfile" || true

# 3. Render base, every overlay, and base + each component on its own
#    (kustomize cannot build a Component alone), in parallel.
# kustomize accepts only relative paths to other kustomizations.
relative() {
    "$bin/python" -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$2"
}
names=(base)
dirs=("$deploy_dir/k8s/base")
for overlay in "$deploy_dir"/k8s/overlays/*/; do
    [[ -f "$overlay/kustomization.yaml" ]] || continue
    names+=("overlay-$(basename "$overlay")")
    dirs+=("$overlay")
done
if ((${#names[@]} == 1)); then
    echo "!!! no overlay found under $deploy_dir/k8s/overlays"
    failed+=("overlays")
fi
for component in "$deploy_dir"/k8s/components/*/; do
    [[ -f "$component/kustomization.yaml" ]] || continue
    name="component-$(basename "$component")"
    mkdir -p "$work/$name"
    cat >"$work/$name/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(relative "$deploy_dir/k8s/base" "$work/$name")
components:
  - $(relative "$component" "$work/$name")
EOF
    names+=("$name")
    dirs+=("$work/$name")
done
pids=()
for i in "${!names[@]}"; do
    "$bin/kubectl" kustomize "${dirs[$i]}" >"$work/${names[$i]}.yaml" 2>"$work/${names[$i]}.err" &
    pids+=($!)
done
rendered=()
for i in "${!names[@]}"; do
    echo "==> kustomize ${names[$i]}"
    if wait "${pids[$i]}"; then
        rendered+=("$work/${names[$i]}.yaml")
    else
        cat "$work/${names[$i]}.err"
        echo "!!! kustomize ${names[$i]} FAILED"
        failed+=("kustomize ${names[$i]}")
    fi
done

# 4. Validate what rendered.
version_args=()
for version in $k8s_versions; do
    version_args+=(-k "$version")
done
if ((${#rendered[@]})); then
    step "validate (kubernetes-validate --strict, CRD schemas, Baton rules)" \
        "$bin/python" "$deploy_dir/tools/validate_manifests.py" \
        --schemas "$deploy_dir/schemas" "${version_args[@]}" "${rendered[@]}" || true
fi

# 5. Compose file, where Docker Compose is installed (the CLI alone cannot).
if docker compose version >/dev/null 2>&1; then
    step "docker compose config" docker compose -f "$deploy_dir/compose.yaml" config --quiet || true
else
    echo "==> docker compose config: skipped (Docker Compose is not installed;" \
        "tests/deploy/test_compose.py checks compose.yaml's structure)"
fi

if ((${#failed[@]})); then
    echo "deploy-check FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "deploy-check passed: ${#rendered[@]} renders valid against Kubernetes $k8s_versions"
