#!/usr/bin/env bash
# Interop check: the real npm `capnweb` (0.12.x) and PyPI `py-capnweb` (0.5.0) clients against
# the Rust demo server. Installs both into a temporary directory (nothing lands in the repo),
# starts the demo server on a free 127.0.0.1 port, runs both scripts, stops the server.
# Exits non-zero if anything fails.
#
# Needs: node + npm, python3 (with venv), cargo. Set DEMO_SERVER_BIN to use a prebuilt
# demo_server binary instead of building it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
server_pid=""

cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "== installing clients into $work"
cp "$here/package.json" "$here/ts_client.mjs" "$work/"
(cd "$work" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
echo "   npm capnweb $(node -p "require('$work/node_modules/capnweb/package.json').version")"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "py-capnweb==0.5.0"
echo "   PyPI py-capnweb $("$work/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("py-capnweb"))')"

if [ -z "${DEMO_SERVER_BIN:-}" ]; then
    echo "== building the demo server"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordermesh-target}"
    (cd "$crate" && cargo build --quiet -p capnweb --example demo_server)
    DEMO_SERVER_BIN="$CARGO_TARGET_DIR/debug/examples/demo_server"
fi

# Port 0: the server picks a free port and prints it. The log exists before the server starts:
# the background job opens it only when it is scheduled, and on a busy machine the first read
# below came first (a CI run failed on "can't read server.log").
: >"$work/server.log"
"$DEMO_SERVER_BIN" 0 >"$work/server.log" 2>&1 &
server_pid=$!
base=""
for _ in $(seq 1 100); do
    base="$(sed -n 's/^listening on //p' "$work/server.log")"
    [ -n "$base" ] && break
    sleep 0.1
done
if [ -z "$base" ]; then
    echo "demo server did not start:"
    cat "$work/server.log"
    exit 1
fi
echo "== demo server (pid $server_pid) at $base"

status=0
echo "== npm capnweb client"
(cd "$work" && node ts_client.mjs "$base") || status=1
echo "== PyPI py-capnweb client"
"$work/venv/bin/python" "$here/py_client.py" "$base" || status=1

if [ "$status" -eq 0 ]; then
    echo "interop: PASS"
else
    echo "interop: FAIL"
fi
exit "$status"
