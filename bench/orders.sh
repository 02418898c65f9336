#!/usr/bin/env bash
# Order-flow benchmark: orders per second and p99 end to end through the gateway, with
# `ordermesh load --mix order=1`, on SQLite and on PostgreSQL. First the highest rate found in
# closed loop (a few concurrencies), then an open-loop run at 80% of it for the p99. Every run
# is reconciled (each order exists once, stock, events). Results: bench/results/orders.json,
# orders.md, and the HTML reports of the 80% runs.
#
#   bash bench/orders.sh
#   ORDERS_BACKENDS="sqlite" ORDERS_CONCURRENCY="16 64" ORDERS_FIND_SECS=15 ORDERS_HOLD_SECS=20 bash bench/orders.sh
#   BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/test   (a fresh schema per service and run, dropped after)
#   ORDERS_PREVIOUS_BIN=/path/to/old/ordermesh ORDERS_PREVIOUS_LABEL=01805d5 bash bench/orders.sh
#   ORDERS_TRACE_EXPORT=1 bash bench/orders.sh
#
# With ORDERS_PREVIOUS_BIN (a release build of an earlier commit), each backend is measured on
# that build too, right after this one, with the same load tool and settings: the anchor for
# "no regression", as figures from different runs cannot be compared on a shared machine.
# With ORDERS_TRACE_EXPORT=1, this build is measured again exporting every span over OTLP/HTTP
# to a receiver on this machine (bench/otlp_receiver.py, which decodes each export with the
# official protobuf definitions): the cost of tracing to a live collector, in the same run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BACKENDS=${ORDERS_BACKENDS:-sqlite postgres}
CONCURRENCY=${ORDERS_CONCURRENCY:-16 64}
FIND_SECS=${ORDERS_FIND_SECS:-15}
HOLD_SECS=${ORDERS_HOLD_SECS:-20}
SHOPPERS=${ORDERS_SHOPPERS:-50}
PREVIOUS_BIN=${ORDERS_PREVIOUS_BIN:-}
[[ -z $PREVIOUS_BIN || -x $PREVIOUS_BIN ]] || { log "ORDERS_PREVIOUS_BIN=$PREVIOUS_BIN is not an executable"; exit 1; }
BUILDS="this"
[[ -n $PREVIOUS_BIN ]] && BUILDS="this previous"
TRACE_EXPORT=${ORDERS_TRACE_EXPORT:-0}
[[ $TRACE_EXPORT == 1 ]] && BUILDS="$BUILDS exporting"
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
STAMP=$(date -u +%Y%m%d%H%M%S)

build

pg_up() {
    pg_isready -d "$PG_URL" >/dev/null 2>&1 && return 0
    if command -v pg_ctlcluster >/dev/null 2>&1 && [[ -d /etc/postgresql ]]; then
        log "PostgreSQL is down: starting the machine's cluster"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start >&2 || true
        for _ in $(seq 1 50); do pg_isready -d "$PG_URL" >/dev/null 2>&1 && return 0; sleep 0.2; done
    fi
    return 1
}

run_load() { # json-file extra args…
    local json=$1
    shift
    local rc=0
    "$BIN" load --url "$OM_URL" --mix order=1 --replay-ratio 0 --shoppers "$SHOPPERS" --quiet \
        --json "$json" --html "${json%.json}.html" "$@" >"${json%.json}.txt" 2>&1 || rc=$?
    tail -n 12 "${json%.json}.txt" >&2
    echo "$rc" >"${json%.json}.rc"
}

# The OTLP receiver, from PyPI's opentelemetry-proto in a virtual environment of its own.
RECEIVER_PID=""
receiver_python() {
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/ordermesh-otlp-venv"
    if ! "$venv/bin/python" -c 'import opentelemetry.proto' 2>/dev/null; then
        log "installing opentelemetry-proto for the OTLP receiver"
        python3 -m venv "$venv" >&2 && "$venv/bin/pip" install --quiet opentelemetry-proto >&2 ||
            { log "could not install opentelemetry-proto: the export-on runs cannot be measured"; exit 1; }
    fi
    echo "$venv/bin/python"
}
start_receiver() { # name: sets OTLP_URL
    local python
    python=$(receiver_python)
    rm -f "$RUNS/$1.port"
    "$python" "$ROOT/bench/otlp_receiver.py" --port-file "$RUNS/$1.port" --counts-file "$RUNS/$1.spans" &
    RECEIVER_PID=$!
    PIDS+=("$RECEIVER_PID")
    for _ in $(seq 1 100); do [[ -s $RUNS/$1.port ]] && break; sleep 0.05; done
    [[ -s $RUNS/$1.port ]] || { log "the OTLP receiver did not start"; exit 1; }
    OTLP_URL="http://127.0.0.1:$(cat "$RUNS/$1.port")"
}
stop_receiver() {
    kill -TERM "$RECEIVER_PID" 2>/dev/null
    wait "$RECEIVER_PID" 2>/dev/null
    forget_pid "$RECEIVER_PID"
}

orders_per_s() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["orders_per_s"])' "$1"; }

wait_quiet
RUNS="$WORK/runs"
mkdir -p "$RUNS"
SKIPPED=""
for backend in $BACKENDS; do
    extra=()
    case $backend in
    sqlite) ;;
    postgres)
        if ! command -v pg_isready >/dev/null 2>&1 || ! pg_up; then
            log "PostgreSQL does not answer at $PG_URL: skipping it"
            SKIPPED="$SKIPPED postgres"
            continue
        fi
        schema="bench_${STAMP}"
        extra=(DATABASE_URL="$PG_URL" USERS_DATABASE_SCHEMA="${schema}_users"
            CATALOG_DATABASE_SCHEMA="${schema}_catalog" ORDERS_DATABASE_SCHEMA="${schema}_orders")
        for part in users catalog orders prev_users prev_catalog prev_orders exp_users exp_catalog exp_orders; do
            CLEANUP_HOOKS+=("psql -q '$PG_URL' -c 'DROP SCHEMA IF EXISTS ${schema}_$part CASCADE;' >/dev/null 2>&1")
        done
        ;;
    *)
        log "unknown backend $backend"
        exit 1
        ;;
    esac
    for build in $BUILDS; do
        # The previous build's runs are named previous-<backend>-…; its schemas are its own.
        name=$backend
        OM_BIN=$BIN
        build_extra=("${extra[@]}")
        if [[ $build == previous ]]; then
            name="previous-$backend"
            OM_BIN=$PREVIOUS_BIN
            [[ $backend == postgres ]] && build_extra=(DATABASE_URL="$PG_URL" USERS_DATABASE_SCHEMA="${schema}_prev_users"
                CATALOG_DATABASE_SCHEMA="${schema}_prev_catalog" ORDERS_DATABASE_SCHEMA="${schema}_prev_orders")
        fi
        if [[ $build == exporting ]]; then
            name="exporting-$backend"
            [[ $backend == postgres ]] && build_extra=(DATABASE_URL="$PG_URL" USERS_DATABASE_SCHEMA="${schema}_exp_users"
                CATALOG_DATABASE_SCHEMA="${schema}_exp_catalog" ORDERS_DATABASE_SCHEMA="${schema}_exp_orders")
            start_receiver "$name"
            build_extra+=(OTEL_EXPORTER_OTLP_ENDPOINT="$OTLP_URL" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)
        fi
        log "$name: starting ordermesh up"
        start_ordermesh "orders-$name" "${RAISED_LIMITS[@]}" "${build_extra[@]}"
        best=0
        for c in $CONCURRENCY; do
            log "$name: closed loop, $c users, ${FIND_SECS}s"
            run_load "$RUNS/$name-find-c$c.json" --concurrency "$c" --duration "${FIND_SECS}s" --warmup 3s
            ops=$(orders_per_s "$RUNS/$name-find-c$c.json" 2>/dev/null || echo 0)
            log "$name: $c users → $ops orders/s"
            best=$(python3 -c "print(max($best, $ops))")
        done
        rate=$(python3 -c "print(round($best * 0.8, 1))")
        if python3 -c "import sys; sys.exit(0 if $rate > 0 else 1)"; then
            log "$name: open loop at 80% of $best = $rate orders/s, ${HOLD_SECS}s"
            run_load "$RUNS/$name-hold.json" --rate "$rate" --max-in-flight 2048 --duration "${HOLD_SECS}s" --warmup 3s
            [[ $build == this ]] && cp "$RUNS/$name-hold.html" "$RESULTS/orders-$backend-80pct.html"
        fi
        echo "$best" >"$RUNS/$name.best"
        stop_ordermesh
        [[ $build == exporting ]] && stop_receiver
    done
    unset OM_BIN
done

MACHINE=$(machine_json)
RUNS="$RUNS" MACHINE="$MACHINE" OUT="$RESULTS" SKIPPED="$SKIPPED" BACKENDS="$BACKENDS" FIND_SECS="$FIND_SECS" \
    HOLD_SECS="$HOLD_SECS" SHOPPERS="$SHOPPERS" PREVIOUS_BUILD="${ORDERS_PREVIOUS_LABEL:-$PREVIOUS_BIN}" python3 - <<'EOF'
import datetime, glob, json, os
runs_dir = os.environ["RUNS"]
TARGETS = {"sqlite": 2000, "postgres": 1500}

def load(path):
    r = json.load(open(path))
    ep = next((e for e in r["endpoints"] if e["name"] == "POST /api/orders"), None)
    rc = int(open(path[:-5] + ".rc").read().strip() or "1")
    return {
        "mode": r["config"]["mode"],
        "concurrency": r["config"]["concurrency"],
        "rate": r["config"]["rate"],
        "measured_s": r["measured_seconds"],
        "orders": r["totals"]["orders_created"],
        "orders_per_s": r["totals"]["orders_per_s"],
        "errors": r["totals"]["requests"]["errors"],
        "rate_limited": r["totals"]["requests"]["rate_limited"],
        "dropped_arrivals": r["totals"]["dropped_arrivals"],
        "create_latency_ms": ep["latency"] if ep else None,
        "create_errors_by_status": ep["errors_by_status"] if ep else {},
        "reconciled": r["reconciliation"]["ok"],
        "reconciliation_differences": sum(c["difference_count"] for c in r["reconciliation"]["checks"]),
        "exit_code": rc,
    }

def collect(prefix):
    found = {}
    for backend in os.environ["BACKENDS"].split():
        name = prefix + backend
        find = sorted(glob.glob(f"{runs_dir}/{name}-find-c*.json"), key=lambda p: int(p.rsplit("-c", 1)[1][:-5]))
        if not find:
            continue
        b = {"find": [load(p) for p in find]}
        hold = f"{runs_dir}/{name}-hold.json"
        b["at_80pct"] = load(hold) if os.path.exists(hold) else None
        b["max_orders_per_s"] = max(f["orders_per_s"] for f in b["find"])
        found[backend] = b
    return found

backends = collect("")
previous = collect("previous-")
exporting = collect("exporting-")
for backend, b in exporting.items():
    counts = f"{runs_dir}/exporting-{backend}.spans"
    b["receiver"] = json.load(open(counts)) if os.path.exists(counts) else None
previous_label = os.environ.get("PREVIOUS_BUILD", "")

targets = []
for backend, b in backends.items():
    goal = TARGETS[backend]
    targets.append({"target": f"{backend}: ≥ {goal:,} orders/s end to end", "measured": b["max_orders_per_s"],
                    "met": b["max_orders_per_s"] >= goal})
    h = b["at_80pct"]
    p99 = h["create_latency_ms"]["p99_ms"] if h and h["create_latency_ms"] else None
    targets.append({"target": f"{backend}: p99 < 50 ms at 80% of that rate ({int(0.8 * goal):,}/s)", "measured": p99,
                    "met": p99 is not None and p99 < 50 and h["orders_per_s"] >= 0.8 * goal,
                    "note": f"p99 at {h['rate']} orders/s, 80% of the measured maximum" if h else "not run"})
result = {
    "benchmark": "orders",
    "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": json.loads(os.environ["MACHINE"]),
    "method": {
        "tool": f"ordermesh load --mix order=1 --replay-ratio 0 --shoppers {os.environ['SHOPPERS']} through the gateway, on the same machine",
        "max": f"closed loop at each concurrency for {os.environ['FIND_SECS']} s after a 3 s warm-up; the best orders/s",
        "p99": f"open loop at 80% of that maximum for {os.environ['HOLD_SECS']} s after a 3 s warm-up; p99 of POST /api/orders",
        "platform": "ordermesh up, release build, LOG_LEVEL=warn, gateway rate limits raised; a fresh data dir (SQLite) or fresh schemas (PostgreSQL) per backend",
        "orders": "1-3 lines of dedicated products, 1-3 units each, with Idempotency-Key and expected price",
    },
    "skipped": os.environ["SKIPPED"].split(),
    "backends": backends,
    "targets": targets,
}
if previous:
    result["previous_build"] = {
        "build": previous_label,
        "backends": previous,
        "ratio_max_orders_per_s": {
            b: round(backends[b]["max_orders_per_s"] / previous[b]["max_orders_per_s"], 3)
            for b in previous if b in backends and previous[b]["max_orders_per_s"]
        },
    }
if exporting:
    result["exporting"] = {
        "how": "this build again, every span exported over OTLP/HTTP (protobuf) to bench/otlp_receiver.py on this machine",
        "backends": exporting,
        "ratio_max_orders_per_s": {
            b: round(exporting[b]["max_orders_per_s"] / backends[b]["max_orders_per_s"], 3)
            for b in exporting if b in backends and backends[b]["max_orders_per_s"]
        },
    }
out = os.environ["OUT"]
json.dump(result, open(f"{out}/orders.json", "w"), indent=2, ensure_ascii=False)

def fmt(v, spec):
    return "–" if v is None else format(v, spec)
def errors(r):
    by = r["create_errors_by_status"]
    return str(r["errors"]) + (" (" + ", ".join(f"{k}×{v}" for k, v in by.items()) + ")" if by else "")
m = result["machine"]
lines = [
    "# Order-flow benchmark",
    "",
    f"{result['finished_at']} · {m['nproc']} cores · {m['cpu_model']} · kernel {m['kernel']} · {m['rustc']}",
    f"load average before: {m['load_before']} (waited {m['waited_for_quiet_s']} s), after: {m['load_after']}",
    "",
    f"{result['method']['tool']}. Max: {result['method']['max']}. p99: {result['method']['p99']}.",
    "",
    "| backend | run | orders/s | p50 ms | p99 ms | max ms | errors | 429 | dropped | reconciled |",
    "|---|---|---:|---:|---:|---:|---|---:|---:|---|",
]
measured = [(backend, b) for backend, b in backends.items()]
measured += [(f"{backend} (previous build {previous_label})", b) for backend, b in previous.items()]
measured += [(f"{backend} (this build, exporting traces)", b) for backend, b in exporting.items()]
for backend, b in measured:
    rows = [(f"closed, {f['concurrency']} users", f) for f in b["find"]]
    if b["at_80pct"]:
        rows.append((f"open, {b['at_80pct']['rate']}/s (80%)", b["at_80pct"]))
    for label, r in rows:
        l = r["create_latency_ms"] or {}
        lines.append(
            f"| {backend} | {label} | {fmt(r['orders_per_s'], ',.1f')} | {fmt(l.get('p50_ms'), '.2f')} | "
            f"{fmt(l.get('p99_ms'), '.2f')} | {fmt(l.get('max_ms'), '.2f')} | {errors(r)} | {r['rate_limited']} | "
            f"{r['dropped_arrivals']} | {'yes' if r['reconciled'] else 'NO (' + str(r['reconciliation_differences']) + ')'} |"
        )
for s in result["skipped"]:
    lines.append(f"| {s} | skipped: not reachable | | | | | | | | |")
lines += ["", "| target | measured | met |", "|---|---:|---|"]
for t in targets:
    unit = " ms" if "p99" in t["target"] else " orders/s"
    note = f" ({t['note']})" if t.get("note") else ""
    lines.append(f"| {t['target']} | {fmt(t['measured'], ',.1f')}{unit}{note} | {'yes' if t['met'] else 'no'} |")
if previous:
    lines += ["", f"This build against the previous build ({previous_label}), best orders/s in the same run:", ""]
    for b, ratio in result["previous_build"]["ratio_max_orders_per_s"].items():
        lines.append(f"- {b}: {backends[b]['max_orders_per_s']:,.1f} vs {previous[b]['max_orders_per_s']:,.1f} ({ratio:.2f}×)")
if exporting:
    lines += ["", "This build exporting every span over OTLP/HTTP to a receiver on this machine, against the same build not exporting (its traces kept in memory only), best orders/s in the same run:", ""]
    for b, ratio in result["exporting"]["ratio_max_orders_per_s"].items():
        r = exporting[b]["receiver"] or {}
        lines.append(f"- {b}: {exporting[b]['max_orders_per_s']:,.1f} vs {backends[b]['max_orders_per_s']:,.1f} ({ratio:.2f}×); "
                     f"the receiver decoded {r.get('spans', 0):,} spans in {r.get('requests', 0):,} exports, refused {r.get('refused', 0)}")
lines.append("")
open(f"{out}/orders.md", "w").write("\n".join(lines))
print("\n".join(lines))
EOF
log "results: $RESULTS/orders.json, $RESULTS/orders.md"
