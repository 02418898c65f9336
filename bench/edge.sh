#!/usr/bin/env bash
# Edge benchmark: one authenticated cheap GET (a product, with a bearer token), side by side:
#   catalog direct · ordermesh gateway · nginx (plain reverse proxy) · HAProxy · bare hyper "hello"
# nginx and HAProxy come from Debian's packages and proxy to the same catalog; wrk is the load
# tool. Everything listens on 127.0.0.1 high ports and is stopped at the end. Results:
# bench/results/edge.json and edge.md.
#
#   bash bench/edge.sh                       # defaults below
#   EDGE_DURATION=10 EDGE_ROUNDS=3 EDGE_CONNECTIONS=32 EDGE_THREADS=1 bash bench/edge.sh
#   EDGE_PREVIOUS_BIN=/path/to/old/ordermesh EDGE_PREVIOUS_LABEL=1f12e5f bash bench/edge.sh
#
# TLS at the edge (EDGE_TLS=0 leaves it out): a gateway process of this build serving HTTPS with a
# certificate made here, and nginx with the same certificate, both proxying to the same catalog
# over plain HTTP, measured over HTTP/1.1 (wrk) and HTTP/2 (h2load, one stream per connection,
# the same connection count), each beside the plain gateway process of this build.
#
# With EDGE_PREVIOUS_BIN (a release build of an earlier commit), two more paths run in the same
# rounds: this build's gateway and the previous build's, each as a process of its own
# (`ordermesh serve gateway`) in front of the same catalog, so a change to the gateway is judged
# against its anchor in one run rather than against figures from another day.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${EDGE_DURATION:-10}
WARMUP=${EDGE_WARMUP:-3}
ROUNDS=${EDGE_ROUNDS:-3}
CONNECTIONS=${EDGE_CONNECTIONS:-32}
THREADS=${EDGE_THREADS:-1}
NGINX_PORT=$((PORT_BASE + 10))
HAPROXY_PORT=$((PORT_BASE + 11))
HELLO_PORT=$((PORT_BASE + 12))
THIS_GATEWAY_PORT=$((PORT_BASE + 13))
PREVIOUS_GATEWAY_PORT=$((PORT_BASE + 14))
TLS_GATEWAY_PORT=$((PORT_BASE + 15))
NGINX_TLS_PORT=$((PORT_BASE + 16))
TLS=${EDGE_TLS:-1}
PREVIOUS_BIN=${EDGE_PREVIOUS_BIN:-}
[[ -z $PREVIOUS_BIN || -x $PREVIOUS_BIN ]] || { log "EDGE_PREVIOUS_BIN=$PREVIOUS_BIN is not an executable"; exit 1; }
CATALOG_PORT=$((PORT_BASE + 3))

need wrk wrk
need nginx nginx
need haproxy haproxy
if [[ $TLS != 0 ]]; then
    need h2load nghttp2-client
    need openssl openssl
fi
build
HELLO_BIN="$CARGO_TARGET_DIR/release/examples/hello"
if [[ ${BENCH_BUILD:-1} != 0 || ! -x $HELLO_BIN ]]; then
    log "building the hyper hello example"
    (cd "$ROOT" && cargo build --release -p loadgen --example hello) >&2
fi

wait_quiet

log "starting ordermesh up (gateway :$PORT_BASE, catalog :$CATALOG_PORT)"
start_ordermesh edge "${RAISED_LIMITS[@]}" JWT_EXPIRATION_MINUTES=240
TOKEN=$(admin_token "$OM_URL")
PRODUCT=1
curl -sf -H "authorization: Bearer $TOKEN" "$OM_URL/api/products/$PRODUCT" >/dev/null

NGINX_TLS_SERVER=""
if [[ $TLS != 0 ]]; then
    # One certificate for both TLS servers (P-256, as a modern edge would present).
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$WORK/edge.key" -out "$WORK/edge.crt" 2>/dev/null
    NGINX_TLS_SERVER="server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl http2;
        ssl_certificate $WORK/edge.crt;
        ssl_certificate_key $WORK/edge.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location /api/ {
            proxy_pass http://catalog/;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
fi
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    # nginx closes a client connection after 1000 requests by default; h2load does not open
    # another, and wrk reconnects: neither the gateway nor HAProxy does it, so neither does nginx.
    keepalive_requests 10000000;
    client_body_temp_path $WORK/nginx/tmp/body;
    proxy_temp_path $WORK/nginx/tmp/proxy;
    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
    scgi_temp_path $WORK/nginx/tmp/scgi;
    upstream catalog {
        server 127.0.0.1:$CATALOG_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /api/ {
            proxy_pass http://catalog/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    $NGINX_TLS_SERVER
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx/logs/stdout.log" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")

cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread $(nproc)
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend edge
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend catalog
backend catalog
    http-request set-path %[path,regsub(^/api/,/)]
    server catalog1 127.0.0.1:$CATALOG_PORT
EOF
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")

"$HELLO_BIN" "127.0.0.1:$HELLO_PORT" >"$WORK/hello.log" 2>&1 &
HELLO_PID=$!
PIDS+=("$HELLO_PID")

# A gateway of its own (binary, port) in front of `up`'s services, verifying tokens with the
# users service's keys.
start_own_gateway() { # binary port [KEY=VALUE…]
    env PORT="$2" "${@:3}" USER_SERVICE_URL="http://127.0.0.1:$((PORT_BASE + 1))" \
        ORDER_SERVICE_URL="http://127.0.0.1:$((PORT_BASE + 2))" CATALOG_SERVICE_URL="http://127.0.0.1:$CATALOG_PORT" \
        LOG_LEVEL=warn LOG_FORMAT=json "${RAISED_LIMITS[@]}" "$1" serve gateway >"$WORK/gateway-$2.log" 2>&1 &
    OWN_GATEWAY_PID=$!
    PIDS+=("$OWN_GATEWAY_PID")
}

# name | url | pids whose CPU is the server side of the path
TARGETS=(
    "catalog direct|http://127.0.0.1:$CATALOG_PORT/products/$PRODUCT|$OM_PID"
    "ordermesh gateway|$OM_URL/api/products/$PRODUCT|$OM_PID"
    "nginx → catalog|http://127.0.0.1:$NGINX_PORT/api/products/$PRODUCT|$OM_PID $NGINX_PID"
    "HAProxy → catalog|http://127.0.0.1:$HAPROXY_PORT/api/products/$PRODUCT|$OM_PID $HAPROXY_PID"
    "bare hyper hello|http://127.0.0.1:$HELLO_PORT/api/products/$PRODUCT|$HELLO_PID"
)
if [[ -n $PREVIOUS_BIN || $TLS != 0 ]]; then
    start_own_gateway "$BIN" "$THIS_GATEWAY_PORT"
    TARGETS+=("gateway process, this build|http://127.0.0.1:$THIS_GATEWAY_PORT/api/products/$PRODUCT|$OM_PID $OWN_GATEWAY_PID")
fi
if [[ $TLS != 0 ]]; then
    start_own_gateway "$BIN" "$TLS_GATEWAY_PORT" TLS_CERT_FILE="$WORK/edge.crt" TLS_KEY_FILE="$WORK/edge.key"
    tls_gateway="https://127.0.0.1:$TLS_GATEWAY_PORT/api/products/$PRODUCT|$OM_PID $OWN_GATEWAY_PID"
    nginx_tls="https://127.0.0.1:$NGINX_TLS_PORT/api/products/$PRODUCT|$OM_PID $NGINX_PID"
    TARGETS+=(
        "gateway process, TLS HTTP/1.1|$tls_gateway"
        "nginx TLS HTTP/1.1 → catalog|$nginx_tls"
        "gateway process, TLS HTTP/2|$tls_gateway"
        "nginx TLS HTTP/2 → catalog|$nginx_tls"
    )
fi
if [[ -n $PREVIOUS_BIN ]]; then
    start_own_gateway "$PREVIOUS_BIN" "$PREVIOUS_GATEWAY_PORT"
    TARGETS+=("gateway process, previous build|http://127.0.0.1:$PREVIOUS_GATEWAY_PORT/api/products/$PRODUCT|$OM_PID $OWN_GATEWAY_PID")
fi
for t in "${TARGETS[@]}"; do
    IFS='|' read -r name url _ <<<"$t"
    if ! wait_http "$url" 20 -k; then
        log "$name does not answer 200 at $url:"
        tail -n 5 "$WORK/haproxy.log" "$WORK/nginx/logs/error.log" "$WORK/hello.log" "$WORK"/gateway-*.log >&2 2>/dev/null || true
        exit 1
    fi
done

ROWS="$WORK/rows.tsv"
: >"$ROWS"
for round in $(seq 1 "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do
        IFS='|' read -r name url pids <<<"$t"
        log "round $round/$ROUNDS: $name ($url)"
        if [[ $name == *HTTP/2* ]]; then
            # h2load: the same connections, one stream in flight on each, as wrk's HTTP/1.1.
            h2load -t"$THREADS" -c"$CONNECTIONS" -m1 -D"$WARMUP" -H "Authorization: Bearer $TOKEN" "$url" >/dev/null
            # shellcheck disable=SC2086
            before=$(cpu_ticks $pids)
            h2load -t"$THREADS" -c"$CONNECTIONS" -m1 -D"$DURATION" -H "Authorization: Bearer $TOKEN" "$url" \
                >"$WORK/wrk.out"
        else
            wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -H "Authorization: Bearer $TOKEN" "$url" >/dev/null
            # shellcheck disable=SC2086
            before=$(cpu_ticks $pids)
            wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" "$url" \
                >"$WORK/wrk.out"
        fi
        # shellcheck disable=SC2086
        after=$(cpu_ticks $pids)
        printf '%s\t%s\t%s\t%s\n' "$round" "$name" "$((after - before))" "$(base64 -w0 "$WORK/wrk.out")" >>"$ROWS"
    done
done

MACHINE=$(machine_json)
VERSIONS=$(printf '%s\n' "$(nginx -v 2>&1)" "$(haproxy -v 2>&1 | head -n1)" "$(wrk -v 2>&1 | head -n1)" \
    "$( [[ $TLS != 0 ]] && h2load --version 2>&1 | head -n1)")
ROWS="$ROWS" MACHINE="$MACHINE" VERSIONS="$VERSIONS" PREVIOUS_BUILD="${EDGE_PREVIOUS_LABEL:-$PREVIOUS_BIN}" CLK_TCK="$CLK_TCK" DURATION="$DURATION" WARMUP="$WARMUP" \
    ROUNDS="$ROUNDS" CONNECTIONS="$CONNECTIONS" THREADS="$THREADS" OUT="$RESULTS" python3 - <<'EOF'
import base64, json, os, re, statistics, datetime

def seconds(value, unit):
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]

def parse_h2load(text):
    r = {}
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    r["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    r["requests"] = int(m.group(2)) if m else 0
    r["socket_errors"] = int(m.group(4)) if m else 0
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    r["non_2xx"] = sum(int(x) for x in m.groups()[1:]) if m else 0
    # h2load reports no percentiles (its mean time per request is kept in the runs).
    m = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", text)
    r["mean_ms"] = seconds(m.group(5), m.group(6)) * 1000 if m else None
    for pct in ("50", "75", "90", "99"):
        r[f"p{pct}_ms"] = None
    return r

def parse(text):
    if text.startswith("starting benchmark..."):
        return parse_h2load(text)
    r = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    r["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    r["requests"] = int(m.group(1)) if m else 0
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        r[f"p{pct}_ms"] = seconds(m.group(1), m.group(2)) * 1000 if m else None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    r["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    r["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return r

clk = int(os.environ["CLK_TCK"])
runs = []
for line in open(os.environ["ROWS"]):
    rnd, name, ticks, out = line.rstrip("\n").split("\t")
    text = base64.b64decode(out).decode()
    r = parse(text)
    r.update(round=int(rnd), target=name, cpu_s=int(ticks) / clk)
    r["cpu_us_per_request"] = r["cpu_s"] / r["requests"] * 1e6 if r["requests"] else None
    runs.append(r)

order = []
for r in runs:
    if r["target"] not in order:
        order.append(r["target"])

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

summary = {}
for name in order:
    rs = [r for r in runs if r["target"] == name]
    summary[name] = {k: med([r[k] for r in rs]) for k in ("rps", "p50_ms", "p90_ms", "p99_ms", "cpu_us_per_request")}
    summary[name]["non_2xx"] = sum(r["non_2xx"] for r in rs)
    summary[name]["socket_errors"] = sum(r["socket_errors"] for r in rs)
nginx = summary.get("nginx → catalog", {})
hello = summary.get("bare hyper hello", {})
direct = summary.get("catalog direct", {})
def anchor(name):
    """The nginx path a row is judged against: the same transport."""
    for transport in ("TLS HTTP/1.1", "TLS HTTP/2"):
        if transport in name:
            return summary.get(f"nginx {transport} → catalog", {})
    return nginx

for name, s in summary.items():
    same = anchor(name)
    s["rps_vs_nginx"] = s["rps"] / same["rps"] if same.get("rps") else None
    s["rps_vs_ceiling"] = s["rps"] / hello["rps"] if hello.get("rps") else None
    s["p99_vs_nginx"] = s["p99_ms"] / same["p99_ms"] if s.get("p99_ms") and same.get("p99_ms") else None
    if name not in ("catalog direct", "bare hyper hello") and s["cpu_us_per_request"] and direct.get("cpu_us_per_request"):
        s["proxy_cpu_us_per_request"] = s["cpu_us_per_request"] - direct["cpu_us_per_request"]
    else:
        s["proxy_cpu_us_per_request"] = None

gw = summary.get("ordermesh gateway", {})
targets = [
    {"target": "gateway authenticated GET ≥ 1.0× nginx requests/s", "measured": gw.get("rps_vs_nginx"),
     "met": (gw.get("rps_vs_nginx") or 0) >= 1.0},
    {"target": "gateway p99 ≤ nginx p99", "measured": gw.get("p99_vs_nginx"),
     "met": gw.get("p99_ms") is not None and nginx.get("p99_ms") is not None and gw["p99_ms"] <= nginx["p99_ms"]},
    {"target": "gateway ≥ 50% of the bare-hyper ceiling", "measured": gw.get("rps_vs_ceiling"),
     "met": (gw.get("rps_vs_ceiling") or 0) >= 0.5},
]
for transport in ("TLS HTTP/1.1", "TLS HTTP/2"):
    gw_tls = summary.get(f"gateway process, {transport}")
    if gw_tls:
        targets.append({"target": f"gateway over {transport} ≥ 1.0× nginx over {transport} requests/s",
                        "measured": gw_tls.get("rps_vs_nginx"), "met": (gw_tls.get("rps_vs_nginx") or 0) >= 1.0})
this, previous = summary.get("gateway process, this build"), summary.get("gateway process, previous build")
if this and previous:
    # The anchor of a change to the gateway: the same hop built from the previous commit. Within
    # 10% counts as no regression: the spread between rounds of one path is about that here.
    cpu = (this["proxy_cpu_us_per_request"] or 0) / (previous["proxy_cpu_us_per_request"] or float("inf"))
    targets += [
        {"target": "this build's gateway requests/s ≥ 0.9× the previous build's", "measured": this["rps"] / previous["rps"],
         "met": this["rps"] >= 0.9 * previous["rps"]},
        {"target": "this build's proxy CPU per request ≤ 1.1× the previous build's", "measured": cpu, "met": cpu <= 1.1},
    ]
result = {
    "benchmark": "edge",
    "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": json.loads(os.environ["MACHINE"]),
    "tools": os.environ["VERSIONS"].splitlines(),
    "method": {
        "request": "GET one product with Authorization: Bearer <admin token> (the hello server ignores it)",
        "http2": "the HTTP/2 rows: h2load with the same threads and connections, one stream in flight per connection; it reports no percentiles",
        "load_tool": f"wrk -t{os.environ['THREADS']} -c{os.environ['CONNECTIONS']} -d{os.environ['DURATION']}s --latency after a {os.environ['WARMUP']}s warm-up, on the same machine",
        "rounds": int(os.environ["ROUNDS"]),
        "figures": "median over the rounds",
        "cpu": "user+system CPU of the server-side processes of the path (ordermesh, plus nginx or HAProxy with their workers) over the measured run, per request; proxy_cpu is that minus the direct catalog's",
        "logging": "no per-request logs anywhere: ordermesh LOG_LEVEL=warn, nginx access_log off, HAProxy without log",
        "gateway": "rate limits raised so nothing is refused; the gateway still verifies the JWT and checks the limits",
        "previous_build": os.environ.get("PREVIOUS_BUILD") or None,
    },
    "summary": summary,
    "targets": targets,
    "runs": runs,
}
out = os.environ["OUT"]
with open(f"{out}/edge.json", "w") as f:
    json.dump(result, f, indent=2, ensure_ascii=False)

def fmt(v, spec):
    return "–" if v is None else format(v, spec)
m = result["machine"]
lines = [
    "# Edge benchmark: authenticated GET of one product",
    "",
    f"{result['finished_at']} · {m['nproc']} cores · {m['cpu_model']} · kernel {m['kernel']} · {m['rustc']}",
    f"load average before: {m['load_before']} (waited {m['waited_for_quiet_s']} s), after: {m['load_after']}",
    "",
    f"{result['method']['load_tool']}; {result['method']['rounds']} rounds, medians. {result['method']['logging']}.",
    "",
    "| path | requests/s | p50 ms | p99 ms | CPU µs/request | proxy CPU µs/request | × nginx req/s | × ceiling req/s | non-2xx |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for name, s in summary.items():
    lines.append(
        f"| {name} | {fmt(s['rps'], ',.0f')} | {fmt(s['p50_ms'], '.2f')} | {fmt(s['p99_ms'], '.2f')} | "
        f"{fmt(s['cpu_us_per_request'], '.1f')} | {fmt(s['proxy_cpu_us_per_request'], '.1f')} | "
        f"{fmt(s['rps_vs_nginx'], '.2f')} | {fmt(s['rps_vs_ceiling'], '.2f')} | {s['non_2xx'] + s['socket_errors']} |"
    )
lines += ["", "| target | measured | met |", "|---|---:|---|"]
for t in targets:
    lines.append(f"| {t['target']} | {fmt(t['measured'], '.2f')} | {'yes' if t['met'] else 'no'} |")
lines.append("")
with open(f"{out}/edge.md", "w") as f:
    f.write("\n".join(lines))
print("\n".join(lines))
EOF
log "results: $RESULTS/edge.json and $RESULTS/edge.md"
