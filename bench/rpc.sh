#!/usr/bin/env bash
# Cap'n Web RPC calls per second (issue 6): the seed-000 interface's getUserProfile and
# createOrder over WebSocket and HTTP batch against `ordermesh up` (SQLite, release build), and
# in the same run against the py-capnweb seed-000 example server (`examples/microservices/
# server.py` of the nikileshsa/py-capnweb fork) doing the same calls. The load tool is
# `crates/capnweb/examples/bench.rs` (`cargo run --release -p capnweb --example bench -- --help`
# in its header). Results: bench/results/rpc.json and rpc.md.
#
#   bash bench/rpc.sh
#   PY_CAPNWEB_FORK=/path/to/a/checkout/of/the/fork RPC_SECS=5 bash bench/rpc.sh
#   RPC_PREVIOUS_BIN=/path/to/old/ordermesh RPC_PREVIOUS_LABEL=1f12e5f bash bench/rpc.sh
#   (PY_CAPNWEB_FORK_REV names the fork's revision when the checkout has no .git)
#
# The fork is not on PyPI and its code is never committed here: the script clones it from
# GitHub into its scratch directory, or takes a checkout given in PY_CAPNWEB_FORK (on a machine
# that reaches only package registries), and pip-installs it into a throwaway virtualenv (its
# dependencies come from PyPI). Without either, only ordermesh is measured, and the results say so. The seed's server has
# no HTTP batch endpoint and listens on 127.0.0.1:8080 by its own code; this script starts it
# unmodified through a small launcher that moves its port (RPC_SEED_PORT) so nothing else on
# 8080 is disturbed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECS=${RPC_SECS:-5}
FORK=${PY_CAPNWEB_FORK:-}
PORT_BASE=${BENCH_PORT_BASE:-$(free_port_base)}
SEED_PORT=${RPC_SEED_PORT:-$((PORT_BASE + 10))}
LOADER="$CARGO_TARGET_DIR/release/examples/bench"
# The item both servers are asked to order: a product of its own with enough stock for the run,
# at the price the order names (the seed's server charges the price it is given; ordermesh
# charges the catalog's and refuses a different one).
ITEM="RPC Bench Mouse"
PRICE=29.99

build
log "building the load tool (cargo build --release -p capnweb --example bench)"
(cd "$ROOT" && cargo build --release -p capnweb --example bench) >&2

SEED_STATUS="not measured: PY_CAPNWEB_FORK is not set and github.com could not be reached to clone nikileshsa/py-capnweb"
if [[ -z $FORK ]] && timeout 60 git clone --quiet --depth 1 https://github.com/nikileshsa/py-capnweb "$WORK/fork" 2>/dev/null; then
    FORK="$WORK/fork"
fi
if [[ -n $FORK ]]; then
    [[ -f $FORK/examples/microservices/server.py ]] || { log "$FORK has no examples/microservices/server.py"; exit 1; }
    log "installing the fork into a virtualenv (pip)"
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install --quiet --disable-pip-version-check "$FORK" >&2
    SEED_COMMIT=${PY_CAPNWEB_FORK_REV:-$(git -C "$FORK" rev-parse --short HEAD 2>/dev/null || echo "unknown revision")}
fi

wait_quiet
MACHINE=$(machine_json)
RUNS="$WORK/runs.jsonl"
: >"$RUNS"

measure() { # server-label base-url call transports
    local out
    log "$1: $3 over $4 ($SECS s per run)"
    out=$(BENCH_ITEM="$ITEM" BENCH_PRICE="$PRICE" "$LOADER" "$2" "$SECS" "$3" "$4" | tee /dev/stderr | grep '^RPC_BENCH ')
    python3 -c 'import json,sys; [print(json.dumps(dict(r, server=sys.argv[1]))) for r in json.loads(sys.argv[2])]' \
        "$1" "${out#RPC_BENCH }" >>"$RUNS"
}

start_ordermesh rpc "${RAISED_LIMITS[@]}"
TOKEN=$(admin_token "$OM_URL")
create_bench_product() {
    curl -sf -o /dev/null -X POST "$OM_URL/api/products" -H "authorization: Bearer $TOKEN" \
        -H 'content-type: application/json' \
        -d "{\"sku\":\"RPC-BENCH-1\",\"name\":\"$ITEM\",\"category\":\"Electronics\",\"price\":\"$PRICE\",\"stock\":1000000000}" ||
        { log "could not create the bench product"; exit 1; }
}
create_bench_product
measure ordermesh "$OM_URL" getUserProfile ws,batch
measure ordermesh "$OM_URL" createOrder ws,batch
ORDERS_IN_PLATFORM=$(curl -s "$OM_URL/api/orders?per_page=1" -H "authorization: Bearer $TOKEN" |
    python3 -c 'import json,sys; b=json.load(sys.stdin); print(b.get("total", b.get("pagination", {}).get("total", "unknown")))')
stop_ordermesh

# RPC_PREVIOUS_BIN: an earlier build measured the same way in this run, its anchor.
if [[ -n ${RPC_PREVIOUS_BIN:-} ]]; then
    OM_BIN="$RPC_PREVIOUS_BIN" start_ordermesh rpc-previous "${RAISED_LIMITS[@]}"
    TOKEN=$(admin_token "$OM_URL")
    create_bench_product
    previous="ordermesh previous build (${RPC_PREVIOUS_LABEL:-$RPC_PREVIOUS_BIN})"
    measure "$previous" "$OM_URL" getUserProfile ws,batch
    measure "$previous" "$OM_URL" createOrder ws,batch
    stop_ordermesh
fi

if [[ -n $FORK ]]; then
    # The seed's server, unmodified: only the address aiohttp binds is moved.
    (cd "$FORK/examples/microservices" && exec "$WORK/venv/bin/python" -c '
import runpy, sys
from aiohttp import web
bind = web.TCPSite
web.TCPSite = lambda runner, host, port, **kw: bind(runner, host, int(sys.argv[1]), **kw)
runpy.run_path("server.py", run_name="__main__")
' "$SEED_PORT" >"$WORK/seed.log" 2>&1) &
    SEED_PID=$!
    PIDS+=("$SEED_PID")
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$SEED_PORT") 2>/dev/null && break
        sleep 0.1
    done
    measure py-capnweb-seed-000 "http://127.0.0.1:$SEED_PORT" getUserProfile ws
    measure py-capnweb-seed-000 "http://127.0.0.1:$SEED_PORT" createOrder ws
    SEED_RSS_KB=$(rss_kb "$SEED_PID")
    stop_pid "$SEED_PID"
    forget_pid "$SEED_PID"
    SEED_STATUS="measured: nikileshsa/py-capnweb@$SEED_COMMIT examples/microservices/server.py, Python $(python3 -c 'import platform; print(platform.python_version())'), RSS at the end ${SEED_RSS_KB} kB"
fi

MACHINE="$MACHINE" SEED_STATUS="$SEED_STATUS" SECS="$SECS" ORDERS="$ORDERS_IN_PLATFORM" RUNS="$RUNS" \
    OUT="$RESULTS/rpc" python3 - <<'EOF'
import json, os
runs = [json.loads(l) for l in open(os.environ["RUNS"]) if l.strip()]
doc = {
    "what": "Cap'n Web calls/s, seed-000 interface; load tool crates/capnweb/examples/bench.rs on the same cores",
    "seconds_per_run": int(os.environ["SECS"]),
    "seed_server": os.environ["SEED_STATUS"],
    "orders_in_ordermesh_after_the_run": os.environ["ORDERS"],
    "machine": json.loads(os.environ["MACHINE"]),
    "runs": runs,
}
json.dump(doc, open(os.environ["OUT"] + ".json", "w"), indent=2)
m = doc["machine"]
lines = [
    "# Cap'n Web RPC calls per second",
    "",
    f"{m['cpu_model']}, {m['nproc']} cores, {m['os']}, {m['rustc']}, source {m['source']}; "
    f"load before {m['load_before']}, after {m['load_after']}. {doc['seconds_per_run']} s per run; "
    "the load tool shares the cores with the server.",
    "",
    f"Seed server: {doc['seed_server']}.",
    "",
    "| server | call | transport | connections | in flight / conn | calls / request | calls/s | failed |",
    "|---|---|---|---|---|---|---|---|",
]
for r in runs:
    lines.append(
        f"| {r['server']} | {r['call']} | {r['transport']} | {r['connections']} | {r['in_flight']} | "
        f"{r['calls_per_request']} | {r['calls_per_second']:,.0f} | {r['failed']} |"
    )
lines += ["", f"Orders in ordermesh after the run (GET /api/orders total): {doc['orders_in_ordermesh_after_the_run']}."]
open(os.environ["OUT"] + ".md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
