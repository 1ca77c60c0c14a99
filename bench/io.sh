#!/usr/bin/env bash
# Plain I/O benchmark: the same clients against tgt (the peer target) and,
# when given, oxcopyd, on loopback, with identical 1 GiB file-backed LUNs.
#
#   bench/io.sh [--oxcopyd PATH] [--duration SECS] [--reps N] [--results DIR]
#               [--tgt-port PORT] [--ox-port PORT] [--sparse] [--keep]
#
# Tests (each for --duration seconds, default 10, bounded by `timeout`):
#   rand-read-4k-qd32   iscsi-perf -r, 4 KiB READ(16)s, 32 in flight   (IOPS)
#   seq-read-1m-qd8     iscsi-perf,    1 MiB READ(16)s,  8 in flight   (MiB/s)
#   seq-write-1m-qd8    write client,  1 MiB WRITE(16)s, 8 in flight   (MiB/s)
# With --reps N each test runs N times per target (alternating targets) and
# the median is reported.
#
# Write client (iscsi-perf only reads): WRITE_CLIENT=/path/to/writer overrides;
# it is called as `$WRITE_CLIENT -i IQN -m QD -b BLOCKS -t SECS URL` and must
# print a line `RESULT iops=<n> mib_s=<x> ...`. HOOK: the lead's initiator-based
# writer (crates/initiator) goes here. By default bench/iscsi-write-perf.c is
# built against libiscsi (apt-get install -y libiscsi-dev); without a compiler
# or libiscsi-dev the write test is reported as n/a.
#
# The LUN images are filled with random data first (reading holes measures
# nothing useful); --sparse skips that. Both targets serve from the page cache.
# Output: a table on stdout with the ratio oxcopyd/tgt, DIR/io.csv
# (test,metric,tgt,oxcopyd,ratio) and every client log in DIR
# (default ./bench-results/YYYYmmdd-HHMMSS). tgtd and oxcopyd are stopped by
# PID on exit, whatever happens.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
tgt_sh=$root/scripts/tgt.sh

oxcopyd=
duration=10
reps=1
results=
tgt_port=3261
ox_port=3262
sparse=0
keep=0
initiator=iqn.2026-11.dev.oxcopy:bench-client
ox_iqn=iqn.2026-11.dev.oxcopy:bench
tgt_iqn=iqn.2026-11.dev.oxcopy:tgt-bench

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}
while [[ $# -gt 0 ]]; do
    case $1 in
        --oxcopyd) oxcopyd=${2:?}; shift 2 ;;
        --duration) duration=${2:?}; shift 2 ;;
        --reps) reps=${2:?}; shift 2 ;;
        --results) results=${2:?}; shift 2 ;;
        --tgt-port) tgt_port=${2:?}; shift 2 ;;
        --ox-port) ox_port=${2:?}; shift 2 ;;
        --sparse) sparse=1; shift ;;
        --keep) keep=1; shift ;;
        -h | --help) usage ;;
        *) echo "io.sh: unexpected argument: $1" >&2; usage ;;
    esac
done
[[ $duration =~ ^[0-9]+$ && $duration -ge 1 ]] || { echo "--duration must be whole seconds" >&2; exit 2; }
[[ $reps =~ ^[0-9]+$ && $reps -ge 1 ]] || { echo "--reps must be >= 1" >&2; exit 2; }
[[ -z $oxcopyd || -x $oxcopyd ]] || { echo "oxcopyd binary not executable: $oxcopyd" >&2; exit 2; }
for tool in iscsi-perf iscsi-readcapacity16 tgtd ss; do
    command -v "$tool" >/dev/null || { echo "io.sh: $tool not found (apt-get install -y libiscsi-bin tgt)" >&2; exit 2; }
done
[[ -n $results ]] || results=./bench-results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$results"
results=$(cd "$results" && pwd)

work=$(mktemp -d /tmp/oxcopy-bench.XXXXXX)
ox_pid=
tgt_started=0

stop_oxcopyd() {
    [[ -n $ox_pid ]] || return 0
    if kill -0 "$ox_pid" 2>/dev/null; then
        kill -TERM "$ox_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$ox_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$ox_pid" 2>/dev/null && kill -KILL "$ox_pid" 2>/dev/null
    fi
    wait "$ox_pid" 2>/dev/null || true
    ox_pid=
}

cleanup() {
    set +e
    stop_oxcopyd
    ((tgt_started)) && "$tgt_sh" stop "$tgt_port" "$work/tgt"
    if ((keep)); then
        echo "io.sh: kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- LUN images -------------------------------------------------------------
mkdir -p "$work/tgt" "$work/ox"
lun_bytes=$((1 << 30))
if ((sparse)); then
    truncate -s "$lun_bytes" "$work/tgt/tgt-lun.img"
else
    echo "io.sh: filling 1 GiB LUN images with random data" >&2
    timeout 300 head -c "$lun_bytes" /dev/urandom >"$work/tgt/tgt-lun.img"
fi
timeout 300 cp --sparse=always "$work/tgt/tgt-lun.img" "$work/ox/lun0.img"

# --- targets ----------------------------------------------------------------
tgt_started=1
tgt_url=$("$tgt_sh" start "$tgt_port" "$work/tgt" --iqn "$tgt_iqn" --size "$lun_bytes")
targets=(tgt)
declare -A url=([tgt]=$tgt_url)

if [[ -n $oxcopyd ]]; then
    cfg=$work/oxcopyd.toml
    cat >"$cfg" <<EOF
[server]
listen = ["127.0.0.1:$ox_port"]
data_dir = "$work/ox/data"

[[target]]
iqn = "$ox_iqn"

[[target.lun]]
id = 0
path = "$work/ox/lun0.img"
size = "1GiB"
block_size = 512
EOF
    cp "$cfg" "$results/oxcopyd.toml"
    mkdir -p "$work/ox/data"
    # setsid: ^C reaches this script's trap, which stops oxcopyd by PID.
    setsid "$oxcopyd" --config "$cfg" >"$results/oxcopyd.log" 2>&1 </dev/null &
    ox_pid=$!
    up=0
    for _ in $(seq 300); do
        kill -0 "$ox_pid" 2>/dev/null || break
        if ss -Hltn "sport = :$ox_port" | grep -q .; then
            up=1
            break
        fi
        sleep 0.1
    done
    if ((!up)); then
        echo "io.sh: oxcopyd did not start listening on 127.0.0.1:$ox_port; log:" >&2
        cat "$results/oxcopyd.log" >&2
        exit 1
    fi
    targets+=(oxcopyd)
    url[oxcopyd]=iscsi://127.0.0.1:$ox_port/$ox_iqn/0
fi

declare -A block_size=()
for t in "${targets[@]}"; do
    cap=$(timeout 15 iscsi-readcapacity16 -i "$initiator" "${url[$t]}") || {
        echo "io.sh: READ CAPACITY on $t (${url[$t]}) failed" >&2
        exit 1
    }
    block_size[$t]=$(awk -F: '/LOGICAL BLOCK LENGTH IN BYTES/ {print $2}' <<<"$cap" | tr -d ' ')
    echo "io.sh: $t at ${url[$t]}, block size ${block_size[$t]}" >&2
done

# --- write client -----------------------------------------------------------
write_client=${WRITE_CLIENT:-}
if [[ -z $write_client ]]; then
    if command -v cc >/dev/null && [[ -r /usr/include/iscsi/iscsi.h ]] &&
        cc -O2 -o "$work/iscsi-write-perf" "$here/iscsi-write-perf.c" -liscsi 2>"$results/write-client-build.log"; then
        write_client=$work/iscsi-write-perf
    else
        echo "io.sh: no write client (set WRITE_CLIENT=, or apt-get install -y libiscsi-dev); writes are n/a" >&2
    fi
fi

# --- runs -------------------------------------------------------------------
# run TARGET TEST REP: prints the figure (IOPS or MiB/s) or "n/a".
run() {
    local t=$1 test=$2 rep=$3 bs=${block_size[$1]} log out
    log=$results/$t-$test-$rep.log
    local limit=$((duration + 30))
    case $test in
        rand-read-4k-qd32)
            timeout --kill-after=5 "$limit" iscsi-perf -i "$initiator" -m 32 -b $((4096 / bs)) -t "$duration" -r "${url[$t]}" \
                >"$log" 2>&1 </dev/null || true
            out=$(tr '\r' '\n' <"$log" | sed -n 's/^iops average \([0-9]*\) .*/\1/p' | tail -n1)
            ;;
        seq-read-1m-qd8)
            # 1 MiB per READ: the IOPS figure is MiB/s.
            timeout --kill-after=5 "$limit" iscsi-perf -i "$initiator" -m 8 -b $((1048576 / bs)) -t "$duration" "${url[$t]}" \
                >"$log" 2>&1 </dev/null || true
            out=$(tr '\r' '\n' <"$log" | sed -n 's/^iops average \([0-9]*\) .*/\1/p' | tail -n1)
            ;;
        seq-write-1m-qd8)
            if [[ -z $write_client ]]; then
                echo n/a
                return
            fi
            timeout --kill-after=5 "$limit" "$write_client" -i "$initiator" -m 8 -b $((1048576 / bs)) -t "$duration" "${url[$t]}" \
                >"$log" 2>&1 </dev/null || true
            out=$(sed -n 's/^RESULT .*mib_s=\([0-9.]*\).*/\1/p' "$log" | tail -n1)
            ;;
    esac
    if [[ -z $out ]]; then
        echo "io.sh: $test on $t produced no figure; see $log" >&2
        out=error
    fi
    echo "$out"
}

median() {
    local vals
    vals=$(printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g) || true
    [[ -n $vals ]] || { echo "${1:-error}"; return; }
    local n
    n=$(wc -l <<<"$vals")
    sed -n "$(((n + 1) / 2))p" <<<"$vals"
}

tests=(rand-read-4k-qd32 seq-read-1m-qd8 seq-write-1m-qd8)
declare -A metric=([rand-read-4k-qd32]=IOPS [seq-read-1m-qd8]=MiB/s [seq-write-1m-qd8]=MiB/s)
declare -A figure=()
for test in "${tests[@]}"; do
    declare -A samples=()
    for rep in $(seq "$reps"); do
        for t in "${targets[@]}"; do
            echo "io.sh: $test on $t (rep $rep/$reps, ${duration}s)" >&2
            samples[$t]+="$(run "$t" "$test" "$rep") "
        done
    done
    for t in "${targets[@]}"; do
        # shellcheck disable=SC2086 # word splitting of the sample list is intended
        figure[$t,$test]=$(median ${samples[$t]})
    done
    unset samples
done

csv=$results/io.csv
echo "test,metric,tgt,oxcopyd,ratio_oxcopyd_over_tgt" >"$csv"
printf '%-20s %-6s %12s %12s %8s\n' test metric tgt oxcopyd ratio
for test in "${tests[@]}"; do
    a=${figure[tgt,$test]}
    b=${figure[oxcopyd,$test]:-n/a}
    ratio=n/a
    if [[ $a =~ ^[0-9.]+$ && $b =~ ^[0-9.]+$ ]] && awk -v a="$a" 'BEGIN{exit !(a > 0)}'; then
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", b / a}')
    fi
    printf '%-20s %-6s %12s %12s %8s\n' "$test" "${metric[$test]}" "$a" "$b" "$ratio"
    echo "$test,${metric[$test]},$a,$b,$ratio" >>"$csv"
done
echo "io.sh: results in $results" >&2
