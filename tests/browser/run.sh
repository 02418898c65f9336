#!/usr/bin/env bash
# The storefront's end-to-end browser suite: builds ordermesh, starts `ordermesh up` on free
# loopback ports with a throw-away data directory, runs the specs (node's test runner driving
# Debian's Chromium through playwright-core), and always stops the server it started. A second
# platform serves HTTPS with a certificate made here: curl checks HTTP/2, HSTS, the API and the
# redirect port against it, and the TLS spec drives Chromium through it.
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

if [ ! -x /usr/bin/chromium ] || ! command -v openssl >/dev/null; then
  echo "== installing Debian's chromium and openssl (the TLS specs' certificate)"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium openssl
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

# N free loopback ports, held open together so they differ, then released.
free_ports() {
  node -e '
    const net = require("net");
    const servers = Array.from({ length: Number(process.argv[1]) }, () => net.createServer());
    Promise.all(servers.map((s) => new Promise((ok) => s.listen(0, "127.0.0.1", ok)))).then(() => {
      console.log(servers.map((s) => s.address().port).join(" "));
      servers.forEach((s) => s.close());
    });' "$1"
}
read -r port users_port orders_port catalog_port < <(free_ports 4)
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

tls_pid=""
tls_dir=""
stop_one() {
  local p="$1"
  [ -n "$p" ] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$p" 2>/dev/null || true
  fi
  wait "$p" 2>/dev/null || true
}
stop_server() {
  stop_one "$pid"
  stop_one "$tls_pid"
  rm -rf "$data" ${tls_dir:+"$tls_dir"}
}
trap stop_server EXIT

wait_up() { # pid log url [curl options…]: until the platform answers, or its log if it exits
  for _ in $(seq 1 150); do
    curl -fsS "${@:4}" -o /dev/null "$3/health" 2>/dev/null && return 0
    if ! kill -0 "$1" 2>/dev/null; then
      echo "ordermesh exited before it was ready:" >&2
      tail -n 50 "$2" >&2
      exit 1
    fi
    sleep 0.2
  done
  curl -fsS "${@:4}" -o /dev/null "$3/health"
}
wait_up "$pid" "$log" "$base"

# A second platform serving HTTPS with a certificate made here; curl checks it first, then the
# specs' Chromium (tls.test.mjs) trusts exactly this key.
echo "== a second platform over TLS"
tls_dir="$(mktemp -d)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$tls_dir/edge.key" -out "$tls_dir/edge.crt" 2>/dev/null
spki="$(openssl x509 -in "$tls_dir/edge.crt" -pubkey -noout | openssl pkey -pubin -outform der |
  openssl dgst -sha256 -binary | base64)"
read -r tls_port tls_users tls_orders tls_catalog redirect_port < <(free_ports 5)
tls_base="https://localhost:$tls_port"
mkdir -p "$tls_dir/data"
PORT="$tls_port" USERS_PORT="$tls_users" ORDERS_PORT="$tls_orders" CATALOG_PORT="$tls_catalog" \
  HOST=127.0.0.1 DATA_DIR="$tls_dir/data" LOG_FORMAT=json LOG_LEVEL=info \
  TLS_CERT_FILE="$tls_dir/edge.crt" TLS_KEY_FILE="$tls_dir/edge.key" HTTP_REDIRECT_PORT="$redirect_port" \
  AUTH_RATE_LIMIT=600 AUTH_RATE_LIMIT_BURST=100 \
  "$bin" up >"$artifacts/server-tls.log" 2>&1 &
tls_pid=$!
tls_curl() { curl --cacert "$tls_dir/edge.crt" -sS "$@"; }
wait_up "$tls_pid" "$artifacts/server-tls.log" "$tls_base" --cacert "$tls_dir/edge.crt"
check() { # what, expected, actual
  if [ "$2" != "$3" ]; then
    echo "curl over TLS: $1: expected '$2', got '$3'" >&2
    exit 1
  fi
  echo "   ok: $1 ($3)"
}
check "HTTP/2 by ALPN" "2 200" "$(tls_curl -o /dev/null -w '%{http_version} %{http_code}' "$tls_base/health")"
check "HTTP/1.1 when asked" "1.1 200" "$(tls_curl --http1.1 -o /dev/null -w '%{http_version} %{http_code}' "$tls_base/health")"
check "HSTS" "1" "$(tls_curl -D - -o /dev/null "$tls_base/" | grep -ci '^strict-transport-security: max-age=')"
token="$(tls_curl -f -H 'content-type: application/json' -d '{"username":"bob","password":"bob123"}' \
  "$tls_base/api/users/login" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).access_token))')"
check "the API with a token" "2 200" \
  "$(tls_curl -o /dev/null -w '%{http_version} %{http_code}' -H "authorization: Bearer $token" "$tls_base/api/products")"
check "the storefront" "2 200" "$(tls_curl -o /dev/null -w '%{http_version} %{http_code}' -H 'accept: text/html' "$tls_base/")"
check "plain HTTP redirected" "308 $tls_base/products?page=2" \
  "$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' "http://localhost:$redirect_port/products?page=2")"
check "an untrusted certificate refused by curl" "60" "$(curl -sS -o /dev/null "$tls_base/health" 2>/dev/null; echo $?)"

echo "== running the specs"
status=0
BASE_URL="$base" TLS_BASE_URL="$tls_base" TLS_SPKI_SHA256="$spki" TLS_API_TOKEN="$token" node --test --test-concurrency=1 specs/ || status=$?

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
