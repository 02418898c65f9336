#!/usr/bin/env bash
# The storefront's end-to-end browser suite: builds ordermesh, starts `ordermesh up` on free
# loopback ports with a throw-away data directory, runs the specs (node's test runner driving
# Debian's Chromium through playwright-core), and always stops the server it started.
#
#   tests/browser/run.sh            # from anywhere
#   TOKEN_TTL_SECONDS=900 tests/browser/run.sh   # with the default 15-minute access tokens
#
# Screenshots, the server's log and measurements.json end up in tests/browser/artifacts/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
artifacts="$here/artifacts"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordermesh-target}"
# Access tokens short enough that the suite sees them expire and be refreshed behind the
# pages' backs (the platform's minimum is 10 s; the storefront refreshes 20 s ahead).
export TOKEN_TTL_SECONDS="${TOKEN_TTL_SECONDS:-35}"

if [ ! -x /usr/bin/chromium ]; then
  echo "== installing Debian's chromium"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi

echo "== npm packages"
cd "$here"
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi

# ORDERMESH_BIN: a binary built already (.ci/run passes the one its test build made); else build it.
bin="${ORDERMESH_BIN:-}"
if [ -z "$bin" ]; then
  echo "== building ordermesh (release)"
  (cd "$root" && cargo build --release -p ordermesh)
  bin="$CARGO_TARGET_DIR/release/ordermesh"
fi

mkdir -p "$artifacts"
rm -f "$artifacts"/*.png "$artifacts"/measurements.json

# Four free loopback ports, held open together so they differ, then released.
read -r port users_port orders_port catalog_port < <(node -e '
  const net = require("net");
  const servers = [0, 1, 2, 3].map(() => net.createServer());
  Promise.all(servers.map((s) => new Promise((ok) => s.listen(0, "127.0.0.1", ok)))).then(() => {
    console.log(servers.map((s) => s.address().port).join(" "));
    servers.forEach((s) => s.close());
  });')
data="$(mktemp -d)"
log="$artifacts/server.log"
base="http://127.0.0.1:$port"

echo "== starting ordermesh up on $base (data in $data)"
PORT="$port" USERS_PORT="$users_port" ORDERS_PORT="$orders_port" CATALOG_PORT="$catalog_port" \
  HOST=127.0.0.1 DATA_DIR="$data" LOG_FORMAT=json LOG_LEVEL=info \
  JWT_EXPIRATION_MINUTES="${TOKEN_TTL_SECONDS}s" DASHBOARD_SAMPLE_INTERVAL=1s \
  AUTH_RATE_LIMIT=600 AUTH_RATE_LIMIT_BURST=100 \
  "$bin" up >"$log" 2>&1 &
pid=$!

stop_server() {
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}
trap stop_server EXIT

for _ in $(seq 1 150); do
  if curl -fsS -o /dev/null "$base/health" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "ordermesh exited before it was ready:" >&2
    tail -n 50 "$log" >&2
    exit 1
  fi
  sleep 0.2
done
curl -fsS -o /dev/null "$base/health"

echo "== running the specs"
status=0
BASE_URL="$base" node --test --test-concurrency=1 specs/ || status=$?

# Server-side time of the pages, from the gateway's access log (latency_us of each request).
node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n");
  const by = {};
  for (const line of lines) {
    let e; try { e = JSON.parse(line); } catch { continue; }
    const f = { ...e, ...(e.fields ?? {}), ...(e.span ?? {}) };
    if (f.message !== "access" || f.service !== "gateway" || f.latency_us === undefined) continue;
    const route = f.route && f.route !== "-" ? f.route : f.path;
    if (!route || route.startsWith("/api") || route.startsWith("/assets") || route === "/health") continue;
    (by[`${f.method} ${route}`] ??= []).push(Number(f.latency_us) / 1000);
  }
  const rows = Object.entries(by).sort().map(([k, v]) => {
    v.sort((a, b) => a - b);
    return `${k.padEnd(34)} n=${String(v.length).padStart(3)}  median ${v[Math.floor((v.length - 1) / 2)].toFixed(1).padStart(6)} ms  max ${v[v.length - 1].toFixed(1).padStart(6)} ms`;
  });
  console.log("== server time per page (gateway access log, latency_us)\n" + rows.join("\n"));
' "$log" || true

echo "== artifacts in $artifacts"
exit "$status"
