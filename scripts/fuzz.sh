#!/usr/bin/env bash
# Build every cargo-fuzz target in fuzz/ and run each for SECONDS (default
# 600), JOBS at a time (default: number of CPUs). Reports crashes, timeouts
# and out-of-memory per target; exit status non-zero if any target failed.
#
#   scripts/fuzz.sh            # 10 minutes per target
#   scripts/fuzz.sh 20         # CI-sized smoke run
#   TARGETS="frame xcopy" scripts/fuzz.sh 3600
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain
# (`rustup toolchain install nightly`); without nightly it falls back to the
# stable compiler with RUSTC_BOOTSTRAP=1 (the sanitizer flags are unstable).
# Committed seeds live in fuzz/corpus/<target>; what a run discovers goes to
# $FUZZ_WORK (default target/fuzz-work), never into the committed corpus.
# Crash inputs land in $FUZZ_WORK/artifacts/<target>/; reproduce one with
#   cd fuzz && cargo +nightly fuzz run <target> <file>
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-600}
jobs=${JOBS:-$(nproc)}
work=${FUZZ_WORK:-$PWD/target/fuzz-work}
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target/fuzz-build}

command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz missing: cargo install cargo-fuzz" >&2; exit 1; }
if rustup run nightly rustc --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
else
    echo "fuzz: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

cd fuzz
all=$("${fuzz[@]}" list)
targets=${TARGETS:-$all}
echo "== building fuzz targets: $(echo $targets)"
"${fuzz[@]}" build -O

mkdir -p "$work"
run_one() {
    local t=$1
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
    local log="$work/$t.log"
    local rc=0
    # First corpus dir receives new inputs; the committed seeds are read only.
    "${fuzz[@]}" run -O "$t" "$work/corpus/$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || rc=$?
    local execs
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    local found
    found=$(find "$work/artifacts/$t" -type f | wc -l)
    if [[ $rc -eq 0 && $found -eq 0 ]]; then
        echo "fuzz: $t: ok (${secs}s, $execs executions)"
    else
        echo "fuzz: $t: FAILED (exit $rc; artifacts: $(find "$work/artifacts/$t" -type f -printf '%f ')); log: $log"
        grep -E "ERROR: libFuzzer|==ERROR|panicked|SUMMARY" "$log" | head -5 || true
        return 1
    fi
}

failed=0
pids=()
names=()
for t in $targets; do
    while (($(jobs -rp | wc -l) >= jobs)); do
        wait -n || true
    done
    run_one "$t" >"$work/$t.result" &
    pids+=($!)
    names+=("$t")
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed=1
    cat "$work/${names[$i]}.result"
done
if ((failed)); then
    echo "fuzz: failures (see above)" >&2
    exit 1
fi
echo "fuzz: all targets clean"
