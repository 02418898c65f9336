#!/usr/bin/env bash
# Interop check, in two parts, with the real clients installed into a temporary directory
# (nothing lands in the repo):
#   1. the npm `capnweb` (0.12.x) and PyPI `py-capnweb` (0.5.0) clients against the Rust demo
#      server (the seed gateway's toy API);
#   2. the interop target: the Rust `interop_target` example beside the npm reference serving
#      the same target (target.mjs), both driven by compare.mjs, which fails on any difference;
#   3. the interop target over WebTransport, with aioquic's client (wt_client.py), answers
#      compared with its WebSocket's (the npm reference has no WebTransport).
# Every server listens on a free 127.0.0.1 port and is stopped at the end. Exits non-zero if
# anything fails.
#
# Needs: node + npm, python3 (with venv), cargo. Set DEMO_SERVER_BIN / INTEROP_TARGET_BIN to
# use prebuilt example binaries instead of building them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
pids=()

cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# start NAME COMMAND...: runs a server that prints `listening on URL`, sets $url to that URL.
# The log exists before the server starts: the background job opens it only when it is
# scheduled, and on a busy machine the first read came first (a CI run failed on that).
start() {
    local name="$1" log="$work/$1.log"
    shift
    : >"$log"
    "$@" >"$log" 2>&1 &
    pids+=("$!")
    url=""
    for _ in $(seq 1 100); do
        url="$(sed -n 's/^listening on //p' "$log")"
        [ -n "$url" ] && break
        sleep 0.1
    done
    if [ -z "$url" ]; then
        echo "$name did not start:"
        cat "$log"
        exit 1
    fi
    echo "== $name at $url"
}

echo "== installing clients into $work"
cp "$here/package.json" "$here/ts_client.mjs" "$here/target.mjs" "$here/compare.mjs" "$work/"
(cd "$work" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
echo "   npm capnweb $(node -p "require('$work/node_modules/capnweb/package.json').version")"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "py-capnweb==0.5.0" "aioquic==1.7.2"
echo "   PyPI py-capnweb $("$work/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("py-capnweb"))')"

if [ -z "${DEMO_SERVER_BIN:-}" ] || [ -z "${INTEROP_TARGET_BIN:-}" ]; then
    echo "== building the examples"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordermesh-target}"
    (cd "$crate" && cargo build --quiet -p capnweb --example demo_server --example interop_target)
    DEMO_SERVER_BIN="${DEMO_SERVER_BIN:-$CARGO_TARGET_DIR/debug/examples/demo_server}"
    INTEROP_TARGET_BIN="${INTEROP_TARGET_BIN:-$CARGO_TARGET_DIR/debug/examples/interop_target}"
fi

status=0
start "demo server" "$DEMO_SERVER_BIN" 0
echo "== npm capnweb client"
(cd "$work" && node ts_client.mjs "$url") || status=1
echo "== PyPI py-capnweb client"
"$work/venv/bin/python" "$here/py_client.py" "$url" || status=1

start "reference target (npm capnweb)" node "$work/target.mjs" 0
reference="$url"
start "Rust interop target" "$INTEROP_TARGET_BIN" 0
echo "== the same scenarios against both"
(cd "$work" && node compare.mjs "$reference" "$url") || status=1

# The target's WebTransport endpoint (its line before `listening on`), with aioquic's client;
# each scenario's answers compared with the same target's over WebSocket.
read -r wt_url wt_hash < <(sed -n 's/^webtransport on \([^ ]*\) sha-256 \([0-9a-f]*\)$/\1 \2/p' "$work/Rust interop target.log")
echo "== WebTransport at $wt_url (aioquic $("$work/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("aioquic"))'))"
"$work/venv/bin/python" "$here/wt_client.py" "${url/http:/ws:}/rpc/ws" "$wt_url" "$wt_hash" || status=1

if [ "$status" -eq 0 ]; then
    echo "interop: PASS"
else
    echo "interop: FAIL"
fi
exit "$status"
