#!/usr/bin/env bash
# Plain I/O benchmark: the same clients against tgt (the peer target) and,
# when given, oxcopyd, on loopback, with identical 1 GiB file-backed LUNs.
#
#   bench/io.sh [--oxcopyd PATH] [--io-bench PATH] [--fio PATH] [--duration SECS] [--reps N]
#               [--tests A,B,...] [--results DIR] [--tgt-port PORT] [--ox-port PORT] [--sparse] [--keep]
#
# Tests (each for --duration seconds, default 10, bounded by `timeout`):
#   rand-read-4k-qd32   iscsi-perf -r, 4 KiB READ(16)s, 32 in flight   (IOPS)
#   seq-read-1m-qd8     iscsi-perf,    1 MiB READ(16)s,  8 in flight   (MiB/s)
#   seq-write-1m-qd8    write client,  1 MiB WRITE(16)s, 8 in flight   (MiB/s)
#   fio-rand-read-4k-qd1   fio's libiscsi engine, 4 KiB random reads, iodepth 1 (IOPS)
#   fio-rand-write-4k-qd1  fio's libiscsi engine, 4 KiB random writes, iodepth 1 (IOPS)
#                       (--fio PATH, or a `fio` on PATH with the libiscsi engine;
#                       Debian's fio has none: build fio with libiscsi-dev,
#                       ./configure --enable-libiscsi; else these are n/a)
#   rand-read-4k-qd1    iscsi-perf -r, 4 KiB READ(16)s, 1 in flight    (IOPS)
#   rand-write-4k-qd1   write client -r, 4 KiB WRITE(16)s, 1 in flight (IOPS)
#   tcp-loopback        iperf3, one stream over 127.0.0.1 (MiB/s): the
#                       transport limit; run once per rep, not per target,
#                       and reported with the ratio seq-read-1m-qd8 / it
# --tests A,B,... runs only those (default: all).
# With --reps N each test runs N times per target (alternating targets) and
# the median is reported, with the spread (min-max) of the samples.
#
# Write client (iscsi-perf only reads): oxcopy-io-bench --write (crates/bench,
# over our initiator), the same client against both targets. --io-bench PATH
# names a built binary; by default `cargo build --release -p oxcopy-bench` is
# run first and ${CARGO_TARGET_DIR:-target}/release/oxcopy-io-bench used.
# WRITE_CLIENT=/path/to/writer overrides it; it is called as
# `$WRITE_CLIENT -i IQN -m QD -b BLOCKS -t SECS URL` and must print a line
# `RESULT iops=<n> mib_s=<x> ...`.
#
# The LUN images are filled with random data first (reading holes measures
# nothing useful); --sparse skips that. Both targets serve from the page cache.
# Ports: free loopback ports picked at random unless --tgt-port/--ox-port.
# Output: a table on stdout with the ratio oxcopyd/tgt, DIR/io.csv
# (test,metric,tgt,oxcopyd,ratio,tgt_min_max,oxcopyd_min_max,tgt_samples,
# oxcopyd_samples) and every client log in DIR (default
# ./bench-results/YYYYmmdd-HHMMSS). tgtd and oxcopyd are stopped by PID on
# exit, whatever happens. See bench/README.md for the latest figures.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
tgt_sh=$root/scripts/tgt.sh

oxcopyd=
io_bench=
duration=10
reps=1
results=
tgt_port=
ox_port=
only=
fio=
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
        --io-bench) io_bench=${2:?}; shift 2 ;;
        --duration) duration=${2:?}; shift 2 ;;
        --reps) reps=${2:?}; shift 2 ;;
        --results) results=${2:?}; shift 2 ;;
        --tgt-port) tgt_port=${2:?}; shift 2 ;;
        --ox-port) ox_port=${2:?}; shift 2 ;;
        --tests) only=${2:?}; shift 2 ;;
        --fio) fio=${2:?}; shift 2 ;;
        --sparse) sparse=1; shift ;;
        --keep) keep=1; shift ;;
        -h | --help) usage ;;
        *) echo "io.sh: unexpected argument: $1" >&2; usage ;;
    esac
done
[[ $duration =~ ^[0-9]+$ && $duration -ge 1 ]] || { echo "--duration must be whole seconds" >&2; exit 2; }
[[ $reps =~ ^[0-9]+$ && $reps -ge 1 ]] || { echo "--reps must be >= 1" >&2; exit 2; }
[[ -z $oxcopyd || -x $oxcopyd ]] || { echo "oxcopyd binary not executable: $oxcopyd" >&2; exit 2; }
[[ -z $io_bench || -x $io_bench ]] || { echo "oxcopy-io-bench binary not executable: $io_bench" >&2; exit 2; }
for tool in iscsi-perf iscsi-readcapacity16 tgtd ss iperf3; do
    command -v "$tool" >/dev/null || { echo "io.sh: $tool not found (apt-get install -y libiscsi-bin tgt iperf3)" >&2; exit 2; }
done
# A free loopback port (not listening, not in use), away from well-known ones
# and below 32768: tgtd derives its control port from the iSCSI port and
# refuses one at or above 32768.
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 12000))
        if ! ss -Htan "sport = :$p" | grep -q .; then
            echo "$p"
            return 0
        fi
    done
    echo "io.sh: no free port found" >&2
    return 1
}
[[ -n $tgt_port ]] || tgt_port=$(free_port)
[[ -n $ox_port ]] || { ox_port=$(free_port); while [[ $ox_port == "$tgt_port" ]]; do ox_port=$(free_port); done; }
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
# An array: the default client needs --write, an override is called bare.
if [[ -n ${WRITE_CLIENT:-} ]]; then
    write_client=("$WRITE_CLIENT")
else
    if [[ -z $io_bench ]]; then
        if command -v cargo >/dev/null &&
            (cd "$root" && timeout 900 cargo build --release -q -p oxcopy-bench) >"$results/write-client-build.log" 2>&1; then
            target_dir=${CARGO_TARGET_DIR:-$root/target}
            [[ $target_dir == /* ]] || target_dir=$root/$target_dir
            io_bench=$target_dir/release/oxcopy-io-bench
        else
            echo "io.sh: building oxcopy-io-bench failed (see $results/write-client-build.log); writes are n/a" >&2
        fi
    fi
    write_client=()
    if [[ -n $io_bench && -x $io_bench ]]; then write_client=("$io_bench" --write); fi
fi

# --- fio (libiscsi engine) ---------------------------------------------------
if [[ -z $fio ]] && command -v fio >/dev/null; then fio=$(command -v fio); fi
if [[ -n $fio ]] && ! "$fio" --enghelp 2>/dev/null | grep -qw libiscsi; then
    echo "io.sh: $fio has no libiscsi engine; the fio tests are n/a" >&2
    fio=
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
        rand-read-4k-qd1)
            timeout --kill-after=5 "$limit" iscsi-perf -i "$initiator" -m 1 -b $((4096 / bs)) -t "$duration" -r "${url[$t]}" \
                >"$log" 2>&1 </dev/null || true
            out=$(tr '\r' '\n' <"$log" | sed -n 's/^iops average \([0-9]*\) .*/\1/p' | tail -n1)
            ;;
        fio-rand-read-4k-qd1 | fio-rand-write-4k-qd1)
            if [[ -z $fio ]]; then
                echo n/a
                return
            fi
            local rw=randread
            [[ $test == fio-rand-write-4k-qd1 ]] && rw=randwrite
            # fio's filename syntax escapes ':'.
            local u=${url[$t]#iscsi://}
            timeout --kill-after=5 "$limit" "$fio" --name=qd1 --ioengine=libiscsi --filename="iscsi\\://${u//:/\\:}" \
                --rw=$rw --bs=4k --iodepth=1 --runtime="$duration" --time_based --initiator="$initiator" \
                --output-format=json >"$log" 2>"$log.err" </dev/null || true
            out=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]; print(round(j["read"]["iops"] + j["write"]["iops"]))' "$log" 2>/dev/null || true)
            ;;
        rand-write-4k-qd1)
            if ((${#write_client[@]} == 0)); then
                echo n/a
                return
            fi
            timeout --kill-after=5 "$limit" "${write_client[@]}" -i "$initiator" -m 1 -r -b $((4096 / bs)) -t "$duration" "${url[$t]}" \
                >"$log" 2>&1 </dev/null || true
            out=$(sed -n 's/^RESULT iops=\([0-9.]*\).*/\1/p' "$log" | tail -n1)
            out=${out%.*}
            ;;
        seq-write-1m-qd8)
            if ((${#write_client[@]} == 0)); then
                echo n/a
                return
            fi
            timeout --kill-after=5 "$limit" "${write_client[@]}" -i "$initiator" -m 8 -b $((1048576 / bs)) -t "$duration" "${url[$t]}" \
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

# spread SAMPLES...: "min-max" of the numeric samples ("-" when none).
spread() {
    local vals
    vals=$(printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g) || true
    [[ -n $vals ]] || { echo -; return; }
    echo "$(head -n1 <<<"$vals")-$(tail -n1 <<<"$vals")"
}

all_tests=(fio-rand-read-4k-qd1 fio-rand-write-4k-qd1 rand-read-4k-qd1 rand-write-4k-qd1 rand-read-4k-qd32
    seq-read-1m-qd8 seq-write-1m-qd8 tcp-loopback)
declare -A metric=([fio-rand-read-4k-qd1]=IOPS [fio-rand-write-4k-qd1]=IOPS
    [rand-read-4k-qd1]=IOPS [rand-write-4k-qd1]=IOPS [rand-read-4k-qd32]=IOPS [seq-read-1m-qd8]=MiB/s
    [seq-write-1m-qd8]=MiB/s [tcp-loopback]=MiB/s)
tests=()
for test in "${all_tests[@]}"; do
    if [[ -z $only || ,$only, == *,$test,* ]]; then tests+=("$test"); fi
done
for test in ${only//,/ }; do
    [[ -n ${metric[$test]:-} ]] || { echo "io.sh: unknown test $test (known: ${all_tests[*]})" >&2; exit 2; }
done

# iperf3 REP: one 1-stream TCP run over loopback, MiB/s (the receiver's).
iperf() {
    local log=$results/iperf3-$1.log port
    port=$(free_port)
    timeout $((duration + 20)) iperf3 -s -1 -B 127.0.0.1 -p "$port" >"$log.server" 2>&1 </dev/null &
    local spid=$!
    for _ in $(seq 50); do ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.1; done
    timeout --kill-after=5 $((duration + 15)) iperf3 -c 127.0.0.1 -p "$port" -t "$duration" -f M >"$log" 2>&1 </dev/null || true
    kill "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    local out
    out=$(awk '/receiver/ { for (i = 1; i < NF; i++) if ($(i+1) == "MBytes/sec") print $i }' "$log" | tail -n1)
    echo "${out:-error}"
}
declare -A figure=() range=() all=()
for test in "${tests[@]}"; do
    declare -A samples=()
    for rep in $(seq "$reps"); do
        # Alternate which target goes first (ABBA) so that drift in the
        # machine's background load does not favour either.
        order=("${targets[@]}")
        if ((rep % 2 == 0 && ${#targets[@]} == 2)); then order=("${targets[1]}" "${targets[0]}"); fi
        if [[ $test == tcp-loopback ]]; then
            echo "io.sh: $test (rep $rep/$reps, ${duration}s)" >&2
            samples[iperf3]+="$(iperf "$rep") "
            continue
        fi
        for t in "${order[@]}"; do
            echo "io.sh: $test on $t (rep $rep/$reps, ${duration}s)" >&2
            samples[$t]+="$(run "$t" "$test" "$rep") "
        done
    done
    for t in "${targets[@]}" iperf3; do
        [[ -n ${samples[$t]:-} ]] || continue
        # shellcheck disable=SC2086 # word splitting of the sample list is intended
        figure[$t,$test]=$(median ${samples[$t]})
        # shellcheck disable=SC2086
        range[$t,$test]=$(spread ${samples[$t]})
        all[$t,$test]=${samples[$t]% }
    done
    unset samples
done

csv=$results/io.csv
echo "test,metric,tgt,oxcopyd,ratio_oxcopyd_over_tgt,tgt_min_max,oxcopyd_min_max,tgt_samples,oxcopyd_samples" >"$csv"
printf '%-20s %-6s %12s %12s %8s   %-19s %-19s\n' test metric tgt oxcopyd ratio "tgt min-max" "oxcopyd min-max"
for test in "${tests[@]}"; do
    if [[ $test == tcp-loopback ]]; then
        # The transport limit, and each target's 1 MiB reads against it.
        l=${figure[iperf3,$test]}
        printf '%-20s %-6s %12s (iperf3, one stream)   %-19s\n' "$test" MiB/s "$l" "${range[iperf3,$test]}"
        echo "$test,MiB/s,$l,,,${range[iperf3,$test]},,${all[iperf3,$test]},," >>"$csv"
        for t in "${targets[@]}"; do
            r=${figure[$t,seq-read-1m-qd8]:-}
            if [[ $r =~ ^[0-9.]+$ && $l =~ ^[0-9.]+$ ]]; then
                printf '  seq-read-1m-qd8 / tcp-loopback, %s: %s\n' "$t" "$(awk -v a="$r" -v b="$l" 'BEGIN{printf "%.2f", a / b}')"
            fi
        done
        continue
    fi
    a=${figure[tgt,$test]}
    b=${figure[oxcopyd,$test]:-n/a}
    ratio=n/a
    if [[ $a =~ ^[0-9.]+$ && $b =~ ^[0-9.]+$ ]] && awk -v a="$a" 'BEGIN{exit !(a > 0)}'; then
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", b / a}')
    fi
    ra=${range[tgt,$test]} rb=${range[oxcopyd,$test]:--}
    printf '%-20s %-6s %12s %12s %8s   %-19s %-19s\n' "$test" "${metric[$test]}" "$a" "$b" "$ratio" "$ra" "$rb"
    echo "$test,${metric[$test]},$a,$b,$ratio,$ra,$rb,${all[tgt,$test]},${all[oxcopyd,$test]:-}" >>"$csv"
done
echo "io.sh: results in $results (reps=$reps, ${duration}s each)" >&2
