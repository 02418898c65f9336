# Shared by the bench scripts (sourced): paths, the release build, the machine description, the
# wait for a quiet machine, processes started and stopped by PID, CPU and memory readings.
# Traffic goes to 127.0.0.1 only; every process a script starts is stopped on exit.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ordermesh-target}
# ORDERMESH_BIN: a binary built already (with BENCH_BUILD=0; .ci/run passes its one build).
BIN="${ORDERMESH_BIN:-$CARGO_TARGET_DIR/release/ordermesh}"
RESULTS="$BENCH_DIR/results"
PORT_BASE=${BENCH_PORT_BASE:-28080}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ordermesh-bench.XXXXXX")
CLK_TCK=$(getconf CLK_TCK)
PIDS=()
CLEANUP_HOOKS=()
mkdir -p "$RESULTS"

# The gateway's limits are for real clients; a benchmark from one address and a few users
# needs them out of the way (the gateway still does the work of checking them).
RAISED_LIMITS=(RATE_LIMIT=10000000 RATE_LIMIT_BURST=1000000 USER_RATE_LIMIT=10000000
    USER_RATE_LIMIT_BURST=1000000 AUTH_RATE_LIMIT=100000 AUTH_RATE_LIMIT_BURST=10000)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local pid hook
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    for hook in "${CLEANUP_HOOKS[@]}"; do eval "$hook" || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Forget a PID stopped on purpose.
forget_pid() {
    local keep=() pid
    for pid in "${PIDS[@]}"; do [[ $pid == "$1" ]] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
}

need() { # command package: install the Debian package when the command is missing
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2 (apt)"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # Install without starting any system service (nginx would take port 80).
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        CLEANUP_HOOKS+=("rm -f /usr/sbin/policy-rc.d")
    fi
    if ! apt-get install -y --no-install-recommends "$2" >&2; then
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >&2
    fi
    command -v "$1" >/dev/null 2>&1 || { log "$2 did not provide $1"; exit 1; }
}

build() { # extra cargo arguments…
    if [[ ${BENCH_BUILD:-1} == 0 ]]; then
        log "BENCH_BUILD=0: measuring $BIN as it is"
        return 0
    fi
    log "building the release binary (cargo build --release -p ordermesh $*)"
    (cd "$ROOT" && cargo build --release -p ordermesh "$@") >&2
}

# Waits (up to BENCH_MAX_WAIT seconds, default 300) for the 1-minute load to drop below 1.0.
wait_quiet() {
    local max=${BENCH_MAX_WAIT:-300} waited=0 load
    while :; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        if awk -v l="$load" 'BEGIN { exit !(l < 1.0) }'; then break; fi
        if ((waited >= max)); then
            log "1-minute load still $load after ${waited}s: measuring anyway (recorded in the results)"
            break
        fi
        log "1-minute load $load ≥ 1.0 (other work on the machine): waiting"
        sleep 10
        waited=$((waited + 10))
    done
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    WAITED=$waited
}

# The machine, as JSON (LOAD_BEFORE from wait_quiet; the load now as load_after).
machine_json() {
    LOAD_BEFORE=${LOAD_BEFORE:-} WAITED=${WAITED:-0} ROOT="$ROOT" python3 - <<'EOF'
import json, os, platform, subprocess
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""
cpu = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
print(json.dumps({
    "nproc": int(sh("nproc") or 0),
    "cpu_model": cpu,
    "memory": sh("free -h"),
    "kernel": platform.release(),
    "os": sh(". /etc/os-release && echo \"$PRETTY_NAME\""),
    "rustc": sh("rustc --version"),
    "source": os.environ.get("BENCH_SOURCE") or sh(f"git -C {os.environ['ROOT']} describe --always --dirty 2>/dev/null"),
    "load_before": os.environ.get("LOAD_BEFORE", ""),
    "waited_for_quiet_s": int(os.environ.get("WAITED", "0")),
    "load_after": " ".join(open("/proc/loadavg").read().split()[:3]),
}))
EOF
}

# Starts `ordermesh up` with extra VAR=VALUE settings; sets OM_PID and OM_URL (the gateway).
start_ordermesh() { # name VAR=VALUE… (OM_BIN: another build's binary to start)
    local name=$1
    shift
    mkdir -p "$WORK/$name"
    env DATA_DIR="$WORK/$name/data" PORT="$PORT_BASE" USERS_PORT=$((PORT_BASE + 1)) \
        ORDERS_PORT=$((PORT_BASE + 2)) CATALOG_PORT=$((PORT_BASE + 3)) LOG_LEVEL=warn LOG_FORMAT=json \
        "$@" "${OM_BIN:-$BIN}" up >"$WORK/$name/up.log" 2>&1 &
    OM_PID=$!
    PIDS+=("$OM_PID")
    OM_URL="http://127.0.0.1:$PORT_BASE"
    wait_http "$OM_URL/health" 60 || { log "ordermesh did not come up:"; tail -20 "$WORK/$name/up.log" >&2; exit 1; }
}

# free_port_base: four free ports in a row for `ordermesh up` (shared with the test scripts).
# shellcheck source=../scripts/ports.sh
source "$ROOT/scripts/ports.sh"

stop_ordermesh() {
    stop_pid "$OM_PID"
    forget_pid "$OM_PID"
}

wait_http() { # url seconds [curl options…]: until it answers 200
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        [[ $(curl -s "${@:3}" -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null) == 200 ]] && return 0
        sleep 0.05
    done
    return 1
}

# A process and every descendant.
descendants() {
    local c
    echo "$1"
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do descendants "$c"; done
}

# threads PID: one line per thread of PID: id, name, CPU ticks, voluntary context switches.
threads() {
    local t
    for t in /proc/"$1"/task/*; do
        printf '%s\t%s\t%s\t%s\n' "${t##*/}" "$(cat "$t/comm" 2>/dev/null)" \
            "$(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null || echo 0)" \
            "$(awk '/^voluntary_ctxt_switches/ { print $2 }' "$t/status" 2>/dev/null || echo 0)"
    done
}

# idle_ticks: the whole machine's idle CPU ticks so far (all cores), from /proc/stat.
idle_ticks() { awk '/^cpu / { print $5; exit }' /proc/stat; }

# User + system CPU ticks of these processes and their descendants.
cpu_ticks() {
    local total=0 p t
    for p in $(for r in "$@"; do descendants "$r"; done); do
        t=$(awk '{ print $14 + $15 }' /proc/"$p"/stat 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo "$total"
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' /proc/"$1"/status 2>/dev/null || echo 0; }

# The administrator's access token.
admin_token() { # base_url
    curl -s -X POST "$1/api/users/login" -H 'content-type: application/json' \
        -d '{"username":"alice","password":"alice123"}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

need curl curl
need python3 python3
