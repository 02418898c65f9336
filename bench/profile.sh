#!/usr/bin/env bash
# Where the time of a hot path goes, for the "what limits it" part of the benchmark notes.
#
#   bash bench/profile.sh orders sqlite|postgres [ORDERS]   callgrind instructions per order
#   bash bench/profile.sh rpc [SECONDS]                     callgrind instructions per Cap'n Web call
#                                                           (getUserProfile, WebSocket, 64 in flight)
#   bash bench/profile.sh cpu sqlite|postgres [SECONDS]     CPU per order: ordermesh, PostgreSQL, load tool;
#                                                           ordermesh's threads by kind, their sleeps
#                                                           (context switches) per order, idle CPU
#
# callgrind counts instructions, not seconds, so its figures do not move with the machine's
# load; start-up is excluded (counters zeroed after a warm-up). `cpu` runs the release binary
# without valgrind under `ordermesh load` and splits the CPU it used between processes.
# Results: bench/results/profile-<what>.txt (the annotated top of each profile), and the raw
# profiles in bench/results/tmp/ (not committed).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WHAT=${1:?orders|rpc|cpu}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
PORT_BASE=${BENCH_PORT_BASE:-$(free_port_base)}
STAMP=$(date -u +%Y%m%d%H%M%S)

build
need valgrind valgrind

backend_env() { # sqlite|postgres: the extra environment of `ordermesh up`
    case $1 in
    sqlite) ;;
    postgres)
        local schema="profile_${STAMP}"
        echo DATABASE_URL="$PG_URL" USERS_DATABASE_SCHEMA="${schema}_users" \
            CATALOG_DATABASE_SCHEMA="${schema}_catalog" ORDERS_DATABASE_SCHEMA="${schema}_orders"
        CLEANUP_HOOKS+=("for s in users catalog orders; do psql -q '$PG_URL' -c \"DROP SCHEMA IF EXISTS ${schema}_\$s CASCADE\"; done")
        ;;
    *) log "unknown backend $1"; exit 2 ;;
    esac
}

under_callgrind() { # name VAR=VALUE…: `ordermesh up` under callgrind, counters off until zeroed
    local name=$1
    shift
    OUT="$WORK/callgrind.$name.out"
    mkdir -p "$WORK/$name"
    env DATA_DIR="$WORK/$name/data" PORT="$PORT_BASE" USERS_PORT=$((PORT_BASE + 1)) \
        ORDERS_PORT=$((PORT_BASE + 2)) CATALOG_PORT=$((PORT_BASE + 3)) LOG_LEVEL=warn LOG_FORMAT=json \
        "${RAISED_LIMITS[@]}" UPSTREAM_TIMEOUT=60s REQUEST_TIMEOUT=200s "$@" \
        valgrind --tool=callgrind --callgrind-out-file="$OUT" "$BIN" up >"$WORK/$name/up.log" 2>&1 &
    OM_PID=$!
    PIDS+=("$OM_PID")
    OM_URL="http://127.0.0.1:$PORT_BASE"
    wait_http "$OM_URL/health" 300 || { log "ordermesh did not come up under valgrind:"; tail -20 "$WORK/$name/up.log" >&2; exit 1; }
}

report() { # name units: annotate the dump, per unit
    local name=$1 units=$2 file="$RESULTS/profile-$1.txt"
    callgrind_control -d "$OM_PID" >/dev/null
    local dump
    dump=$(ls -t "$WORK"/callgrind.$name.out* | head -n1) # before the exit writes its own
    stop_ordermesh
    mkdir -p "$RESULTS/tmp"
    cp "$dump" "$RESULTS/tmp/callgrind.$name.out" # kept for callgrind_annotate or kcachegrind (not committed)
    {
        echo "# $name: $units measured units; $(date -u +%FT%TZ); $(nproc) cores; release build"
        callgrind_annotate --inclusive=yes "$dump" | sed -n 1,70p
        echo
        echo "# by self cost"
        callgrind_annotate "$dump" | sed -n 1,50p
    } >"$file"
    local total
    total=$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
    log "$name: $total instructions, $((total / units)) per unit; annotated in $file"
}

orders_sequential() { # count: one customer's orders, one at a time, on one keep-alive connection
    python3 - "$PORT_BASE" "$1" <<'EOF'
import http.client, json, sys, uuid
port, count = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
def call(method, path, body=None, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    if method == "POST" and path == "/api/orders":
        headers["idempotency-key"] = str(uuid.uuid4())
    c.request(method, path, json.dumps(body) if body is not None else None, headers)
    r = c.getresponse()
    return r.status, r.read()
status, body = call("POST", "/api/users/login", {"username": "bob", "password": "bob123"})
assert status == 200, body
token = json.loads(body)["access_token"]
created = 0
for _ in range(count):
    status, body = call("POST", "/api/orders", {"items": [{"product_id": 2, "quantity": 1}]}, token)
    created += status == 201
print(created)
EOF
}

case $WHAT in
orders)
    backend=${2:?sqlite|postgres}
    count=${3:-300}
    # shellcheck disable=SC2046
    under_callgrind "orders-$backend" $(backend_env "$backend")
    orders_sequential 20 >/dev/null
    callgrind_control -z "$OM_PID" >/dev/null
    created=$(orders_sequential "$count")
    [[ $created == "$count" ]] || { log "only $created of $count orders were created"; exit 1; }
    report "orders-$backend" "$count"
    ;;
rpc)
    secs=${2:-5}
    (cd "$ROOT" && cargo build --release -p capnweb --example bench) >&2
    under_callgrind rpc
    "$CARGO_TARGET_DIR/release/examples/bench" "$OM_URL" 1 getUserProfile ws:1x64 >/dev/null
    callgrind_control -z "$OM_PID" >/dev/null
    out=$("$CARGO_TARGET_DIR/release/examples/bench" "$OM_URL" "$secs" getUserProfile ws:1x64 | tee /dev/stderr | grep '^RPC_BENCH ')
    python3 -c 'import json,sys; sys.exit(any(r["failed"] for r in json.loads(sys.argv[1])))' "${out#RPC_BENCH }" ||
        { log "calls failed under callgrind; the profile would mix in failures"; exit 1; }
    calls=$(python3 -c 'import json,sys; print(int(sum(r["calls_per_second"] for r in json.loads(sys.argv[1])) * float(sys.argv[2])))' \
        "${out#RPC_BENCH }" "$secs")
    report rpc "$calls"
    ;;
cpu)
    backend=${2:?sqlite|postgres}
    secs=${3:-15}
    pg_pids=()
    if [[ $backend == postgres ]]; then
        pg_pids=($(pgrep -x postgres -o || true))
        [[ ${#pg_pids[@]} -gt 0 ]] || { log "no PostgreSQL server process found"; exit 1; }
    fi
    # shellcheck disable=SC2046
    start_ordermesh "cpu-$backend" "${RAISED_LIMITS[@]}" $(backend_env "$backend")
    "$BIN" load --url "$OM_URL" --mix order=1 --replay-ratio 0 --shoppers 50 --quiet -c 16 -d 3s >/dev/null 2>&1
    # CPU is read twice inside the steady part of the run (after the shoppers' sign-in, before
    # the end-of-run reconciliation), and divided by the run's measured orders/s.
    "$BIN" load --url "$OM_URL" --mix order=1 --replay-ratio 0 --shoppers 50 --quiet -c 16 \
        -d "$((secs + 10))s" --warmup 3s --json "$WORK/cpu.json" >/dev/null 2>&1 &
    load_pid=$!
    sleep 5
    pg_counts() { # commits, rows read, inserted, updated in the benchmark's database
        [[ ${#pg_pids[@]} -gt 0 ]] || { echo 0 0 0 0; return; }
        psql -q "$PG_URL" -Atc "SELECT xact_commit, tup_fetched, tup_inserted, tup_updated FROM pg_stat_database
                                WHERE datname = current_database()" | tr '|' ' '
    }
    ticks() { cpu_ticks "$OM_PID"; [[ ${#pg_pids[@]} -gt 0 ]] && cpu_ticks "${pg_pids[@]}" || echo 0; cpu_ticks "$load_pid"; }
    before=($(ticks) $(pg_counts))
    threads "$OM_PID" >"$WORK/threads.before"
    idle_before=$(idle_ticks)
    sleep "$secs"
    idle_after=$(idle_ticks)
    threads "$OM_PID" >"$WORK/threads.after"
    after=($(ticks) $(pg_counts))
    wait "$load_pid" || true
    python3 - "$WORK/cpu.json" "$CLK_TCK" "$secs" $((after[0] - before[0])) $((after[1] - before[1])) \
        $((after[2] - before[2])) "$backend" $((after[3] - before[3])) $((after[4] - before[4])) \
        $((after[5] - before[5])) $((after[6] - before[6])) "$WORK/threads.before" "$WORK/threads.after" \
        $((idle_after - idle_before)) >"$RESULTS/profile-cpu-$backend.txt" <<'EOF2'
import collections, json, re, sys
report, hz, secs = json.load(open(sys.argv[1])), int(sys.argv[2]), float(sys.argv[3])
om, pg, load = (int(sys.argv[i]) / hz / secs for i in (4, 5, 6))
backend = sys.argv[7]
rate = report["totals"]["orders_per_s"]
per = lambda cores: f"{cores / rate * 1e3:.2f} ms" if rate else "-"
print(f"# CPU per order, {backend}: {rate:.1f} orders/s (closed loop, 16 users); CPU read over {secs:.0f} s of it")
print(f"ordermesh (all four services): {om:.2f} cores, {per(om)} per order")
print(f"PostgreSQL server processes:   {pg:.2f} cores, {per(pg)} per order")
print(f"load tool (ordermesh load):    {load:.2f} cores, {per(load)} per order")
print(f"of 2 cores: {om + pg + load:.2f} used by these")
commits, fetched, inserted, updated = (int(a) for a in sys.argv[8:12])
if commits and rate:
    orders = rate * secs
    print(f"PostgreSQL per order: {commits / orders:.1f} commits, {fetched / orders:.1f} rows fetched, "
          f"{inserted / orders:.1f} inserted, {updated / orders:.1f} updated")
# ordermesh's threads grouped by kind (a trailing number dropped from the name): how much CPU
# each kind used, and how often its threads went to sleep waiting (voluntary context
# switches), per order. Each sleep is a hand-off to another thread and a wake-up back.
def threads(path):
    out = {}
    for line in open(path):
        tid, name, ticks, sleeps = line.rstrip("\n").split("\t")
        out[tid] = (re.sub(r"[-_ ]?\d+$", "", name), int(ticks), int(sleeps))
    return out
before, after = threads(sys.argv[12]), threads(sys.argv[13])
kinds = collections.defaultdict(lambda: [0, 0, 0])
for tid, (name, ticks, sleeps) in after.items():
    _, ticks0, sleeps0 = before.get(tid, (name, 0, 0))
    kind = kinds[name]
    kind[0] += 1
    kind[1] += ticks - ticks0
    kind[2] += sleeps - sleeps0
if rate:
    orders = rate * secs
    print("ordermesh's threads by kind (CPU, and sleeps per order):")
    for name, (count, ticks, sleeps) in sorted(kinds.items(), key=lambda k: -k[1][1]):
        if ticks or sleeps:
            print(f"  {name:<20} {count:>3} threads {ticks / hz / secs:.2f} cores {sleeps / orders:6.1f} sleeps")
    cores = len([l for l in open("/proc/cpuinfo") if l.startswith("processor")])
    print(f"machine idle: {int(sys.argv[14]) / hz / secs / cores * 100:.0f}% of {cores} cores")
EOF2
    cat "$RESULTS/profile-cpu-$backend.txt" >&2
    ;;
*)
    log "unknown profile $WHAT (orders, rpc, cpu)"
    exit 2
    ;;
esac
