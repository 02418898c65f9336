#!/usr/bin/env bash
# Soak (issue 12): the order flow held at 70% of the measured maximum order rate; passes with
# zero errors other than 429s, memory flat and the load generator's reconciliation clean.
# 1. `ordermesh up` (SQLite, fresh data dir, free ports, raised limits); the maximum orders/s in
#    closed loop (`ordermesh load --mix order=1`, SOAK_CONCURRENCY users).
# 2. Open loop at SOAK_FRACTION of it (journeys of the mix order=1 are orders) for the soak,
#    the RSS of the process and its descendants sampled every SOAK_SAMPLE_S into a CSV.
# Results: bench/results/soak-<profile>.{json,md,html} and soak-<profile>-rss.csv; one line
# "SOAK {…}" on stdout; exit 1 on failure.
#
#   bash bench/soak.sh                        # full: max 30 s, soak 10 min
#   SOAK_PROFILE=ci bash bench/soak.sh        # ci: max 15 s, soak 90 s
#   SOAK_MAX_SECS=20 SOAK_SECS=300 BENCH_BUILD=0 bash bench/soak.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROFILE=${SOAK_PROFILE:-full}
case $PROFILE in
full) d_max=30 d_soak=600 d_warm=10 d_wait=300 ;;
ci) d_max=15 d_soak=90 d_warm=5 d_wait=0 ;;
*) log "SOAK_PROFILE is full or ci, not $PROFILE"; exit 2 ;;
esac
MAX_SECS=${SOAK_MAX_SECS:-$d_max}
SOAK_SECS=${SOAK_SECS:-$d_soak}
WARMUP=${SOAK_WARMUP_SECS:-$d_warm}
FRACTION=${SOAK_FRACTION:-0.7}
CONCURRENCY=${SOAK_CONCURRENCY:-32}
SHOPPERS=${SOAK_SHOPPERS:-50}
SAMPLE_S=${SOAK_SAMPLE_S:-5}
export BENCH_MAX_WAIT=${BENCH_MAX_WAIT:-$d_wait}
[[ -n ${BENCH_PORT_BASE:-} ]] || PORT_BASE=$(free_port_base)

[[ ${BENCH_BUILD:-1} == 0 ]] || build
[[ -x $BIN ]] || { log "no ordermesh binary at $BIN"; exit 1; }
wait_quiet

log "starting ordermesh up on 127.0.0.1:$PORT_BASE-$((PORT_BASE + 3))"
start_ordermesh soak "${RAISED_LIMITS[@]}"
load() { # name extra args…: the report in $WORK/<name>.json, exit code in <name>.rc
    local name=$1 rc=0
    shift
    "$BIN" load --url "$OM_URL" --mix order=1 --shoppers "$SHOPPERS" --quiet \
        --json "$WORK/$name.json" --html "$WORK/$name.html" "$@" >"$WORK/$name.txt" 2>&1 || rc=$?
    echo "$rc" >"$WORK/$name.rc"
    ((rc == 0)) || { log "$name: ordermesh load exited $rc"; tail -n 25 "$WORK/$name.txt" >&2; }
}

log "max: closed loop, $CONCURRENCY users, ${MAX_SECS}s"
load max --concurrency "$CONCURRENCY" --duration "${MAX_SECS}s" --warmup 3s --shopper-prefix soak-max-
MAX=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["orders_per_s"])' "$WORK/max.json")
RATE=$(python3 -c "print(round($MAX * $FRACTION, 1))")
python3 -c "import sys; sys.exit(0 if $RATE > 0 else 1)" || { log "no orders/s measured"; exit 1; }

log "soak: open loop at $RATE orders/s (${FRACTION} × $MAX), ${WARMUP}s warm-up + ${SOAK_SECS}s"
CSV="$WORK/rss.csv"
echo "t_s,rss_kib,processes" >"$CSV"
(
    t0=$(date +%s%N)
    while :; do
        total=0 n=0
        for p in $(descendants "$OM_PID"); do k=$(rss_kb "$p"); total=$((total + ${k:-0})) n=$((n + 1)); done
        ms=$((($(date +%s%N) - t0) / 1000000))
        printf '%d.%03d,%d,%d\n' $((ms / 1000)) $((ms % 1000)) "$total" "$n" >>"$CSV"
        sleep "$SAMPLE_S"
    done
) &
SAMPLER=$!
PIDS+=("$SAMPLER")
load soak --rate "$RATE" --max-in-flight 2048 --duration "${SOAK_SECS}s" --warmup "${WARMUP}s" \
    --shopper-prefix soak-run-
stop_pid "$SAMPLER"
forget_pid "$SAMPLER"

cp "$WORK/soak.html" "$RESULTS/soak-$PROFILE.html"
cp "$CSV" "$RESULTS/soak-$PROFILE-rss.csv"
MACHINE=$(machine_json) WORK="$WORK" OUT="$RESULTS" PROFILE="$PROFILE" FRACTION="$FRACTION" \
    SAMPLE_S="$SAMPLE_S" python3 - <<'EOF'
import csv, datetime, json, os, sys
w, out, prof = os.environ["WORK"], os.environ["OUT"], os.environ["PROFILE"]
mx, sk = (json.load(open(f"{w}/{n}.json")) for n in ("max", "soak"))
rc = {n: int(open(f"{w}/{n}.rc").read()) for n in ("max", "soak")}
t = sk["totals"]
ep = next((e for e in sk["endpoints"] if e["name"] == "POST /api/orders"), t["requests"])
rows = [(float(r["t_s"]), int(r["rss_kib"]) / 1024) for r in csv.DictReader(open(f"{w}/rss.csv"))]
# Memory flat: the measured window (after the load generator's setup and warm-up) in thirds;
# the highest RSS of the last third at most 10% and at most 32 MiB above that of the middle
# third. The first third is left out on purpose: RSS rises there for reasons that are not leaks
# (the allocator's arenas and the runtime's buffers reaching their working size, SQLite's page
# cache, connection pools, the setup's Argon2 hashes kept by glibc). A leak keeps growing with
# the orders, so it shows as the last third above the middle one; a steady state does not.
a = sk["setup"]["seconds"] + sk["config"]["warmup_s"]
d = sk["measured_seconds"]
third = lambda i: [r for s, r in rows if a + i * d / 3 <= s < a + (i + 1) * d / 3]
mid, last = third(1), third(2)
rss_start = next((r for s, r in rows if s >= a), rows[-1][1])
rss_mid, rss_end = max(mid, default=0), max(last, default=0)
growth = rss_end - rss_mid
flat = bool(mid and last) and rss_end <= rss_mid * 1.10 and growth <= 32
errors = t["requests"]["errors"]
rec_ok = rc["soak"] == 0 and sk["reconciliation"]["ok"]
fails = [m for c, m in [(rc["max"] != 0, f"max run: ordermesh load exited {rc['max']}"),
                        (not rec_ok, f"reconciliation: exit {rc['soak']}, "
                         f"{sum(c['difference_count'] for c in sk['reconciliation']['checks'])} differences"),
                        (errors != 0, f"{errors} errors: {t['requests']['errors_by_status']}"),
                        (not flat, f"memory not flat: {rss_mid:.1f} → {rss_end:.1f} MiB")] if c]
r1 = lambda x: round(x, 1)
summary = {"profile": prof, "max_orders_per_s": mx["totals"]["orders_per_s"], "target_rate": sk["config"]["rate"],
           "orders_per_s": t["orders_per_s"], "sent": t["requests"]["count"], "orders": t["orders_created"],
           "errors": errors, "rate_limited_429": t["requests"]["rate_limited"], "dropped": t["dropped_arrivals"],
           "p50_ms": ep["latency"]["p50_ms"], "p99_ms": ep["latency"]["p99_ms"], "max_ms": ep["latency"]["max_ms"],
           "rss_start_mib": r1(rss_start), "rss_mid_mib": r1(rss_mid), "rss_end_mib": r1(rss_end),
           "rss_peak_mib": r1(max(r for _, r in rows)), "memory_flat": flat,
           "reconciliation_ok": rec_ok, "soak_s": d, "pass": not fails, "failures": fails}
result = {"benchmark": "soak", "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "machine": json.loads(os.environ["MACHINE"]), "summary": summary,
          "method": {"max": f"closed loop, {mx['config']['concurrency']} users, --mix order=1, {mx['measured_seconds']} s after 3 s",
                     "soak": f"open loop at {os.environ['FRACTION']} of max, {sk['config']['warmup_s']} s warm-up, {d} s measured",
                     "memory": f"VmRSS of ordermesh up and descendants every {os.environ['SAMPLE_S']} s; flat = max of last third "
                               "of the measured window <= 1.10 x and <= +32 MiB of the max of the middle third",
                     "latency": "POST /api/orders",
                     "measured_window_s": [r1(a), r1(a + d)]},
          "max_run": mx["totals"], "soak_run": t, "reconciliation": sk["reconciliation"],
          "rss_mib": [[s, r1(r)] for s, r in rows]}
json.dump(result, open(f"{out}/soak-{prof}.json", "w"), indent=2, ensure_ascii=False)
m = result["machine"]
md = [f"# Soak ({prof})", "", f"{result['finished_at']} · {m['nproc']} cores · {m['cpu_model']} · "
      f"load before {m['load_before']}, after {m['load_after']}", "", "| figure | value |", "|---|---:|"]
md += [f"| {k} | {v} |" for k, v in summary.items() if k != "failures"]
md += [""] + [f"- FAILED: {f}" for f in fails] + [""]
open(f"{out}/soak-{prof}.md", "w").write("\n".join(md))
print("SOAK " + json.dumps(summary))
sys.exit(1 if fails else 0)
EOF
