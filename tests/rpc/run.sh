#!/usr/bin/env bash
# The seed-000 walkthrough against `ordermesh up` with the real npm capnweb and PyPI
# py-capnweb clients. Installs them into temporary places, starts ordermesh on free loopback
# ports with a throw-away data directory, runs both, stops it. Exits non-zero on any failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordermesh-target}"
work="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=../../scripts/ports.sh
source "$root/scripts/ports.sh"

echo "== clients"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "py-capnweb==0.5.0"

echo "== ordermesh"
# ORDERMESH_BIN: a binary built already (.ci/run passes the one its test build made); else build it.
if [ -z "${ORDERMESH_BIN:-}" ]; then
    (cd "$root" && cargo build --quiet --release -p ordermesh)
    ORDERMESH_BIN="$CARGO_TARGET_DIR/release/ordermesh"
fi
port=$(free_port_base)
# The two walkthroughs sign in 11 times within seconds from one address: more than the default
# sign-in burst (10 per address), which is there against password guessing and is tested in
# crates/gateway/tests/rpc.rs. Interop is what this run checks, so that limit is raised here.
AUTH_RATE_LIMIT=600 AUTH_RATE_LIMIT_BURST=100 RPC_WATCH_INTERVAL=100ms PORT=$port USERS_PORT=$((port + 1)) ORDERS_PORT=$((port + 2)) CATALOG_PORT=$((port + 3)) DATA_DIR="$work/data" \
    LOG_FORMAT=json LOG_LEVEL=warn "$ORDERMESH_BIN" up >"$work/ordermesh.log" 2>&1 &
pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
    curl -fs "$base/health" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fs "$base/health" >/dev/null || { echo "ordermesh did not start:"; cat "$work/ordermesh.log"; exit 1; }

status=0
echo "== npm capnweb $(node -p "require('$here/node_modules/capnweb/package.json').version")"
(cd "$here" && node walkthrough.mjs "$base") || status=1
echo "== PyPI py-capnweb $("$work/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("py-capnweb"))')"
"$work/venv/bin/python" "$here/walkthrough.py" "$base" || status=1
[ "$status" -eq 0 ] && echo "rpc interop: PASS" || { echo "rpc interop: FAIL"; tail -20 "$work/ordermesh.log"; }
exit "$status"
