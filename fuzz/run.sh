#!/usr/bin/env bash
# Runs every libFuzzer target of the project (fuzz/fuzz_targets, one line each around its check
# in crates/fuzz-checks) for a fixed time budget, and fails on any crash, leak or timeout.
# cargo-fuzz (crates.io) drives libFuzzer, which needs the nightly toolchain's sanitizer flags;
# the script installs cargo-fuzz when it is missing. Without a nightly toolchain it says so in
# one line and exits 0: the committed corpora are still replayed through the same checks on
# stable by `cargo test` (crates/fuzz-checks/tests/corpus.rs).
# The corpus in fuzz/corpus/<target> is read as seeds; what a run discovers goes to a
# scratch directory, so the tree stays clean.
#   FUZZ_SECONDS=n       budget per target (default 30)
#   FUZZ_TARGETS="a b"   only these targets
#   FUZZ_TOOLCHAIN=name  the nightly toolchain to use (default nightly)
#   FUZZ_BUILD_ONLY=1    build the targets and stop (CI builds them ahead, in the background)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
CARGO_FUZZ_VERSION=0.13.1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/ordermesh-fuzz-target}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "fuzz: skipped (no nightly toolchain: rustup has no '$toolchain'); the corpus replay ran in cargo test"
    exit 0
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

status=0
cd "$root/fuzz"
cargo "+$toolchain" fuzz build --release 2>&1 | tail -n 3
if [ "${FUZZ_BUILD_ONLY:-0}" = 1 ]; then
    echo "fuzz: targets built"
    exit 0
fi
for target in $(cargo fuzz list); do
    if [ -n "${FUZZ_TARGETS:-}" ] && ! grep -qw "$target" <<<"$FUZZ_TARGETS"; then continue; fi
    mkdir -p "$scratch/$target" "corpus/$target"
    log="$scratch/$target.log"
    if cargo "+$toolchain" fuzz run --release "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$scratch/$target-" >"$log" 2>&1; then
        runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo "?")
        cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -n 1 | grep -Eo '[0-9]+' || echo "?")
        echo "FUZZ $target: ${FUZZ_SECONDS}s, $runs inputs, coverage $cov edges, 0 crashes"
    else
        status=1
        echo "FUZZ $target: FAILED"
        grep -E -A4 "panicked at|ERROR: libFuzzer|SUMMARY" "$log" | head -n 30
        for crash in "$scratch/$target"-*; do
            [ -e "$crash" ] && echo "failing input (base64): $(base64 -w0 "$crash")"
        done
    fi
done
[ "$status" -eq 0 ] && echo "fuzzing: PASS" || echo "fuzzing: FAIL"
exit "$status"
