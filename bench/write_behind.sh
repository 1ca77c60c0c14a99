#!/usr/bin/env bash
# Write-behind on vs off: buffered write throughput, and what a flush and a
# POPULATE TOKEN then wait for.
#
#   bench/write_behind.sh [--oxcopyd PATH] [--io-bench PATH] [--dir DIR]
#                          [--size GIB] [--duration SECS] [--reps N]
#
# oxcopyd serves one LUN file of --size GiB (default 4) in --dir (default
# /work/oxcopy-wb; a disk-backed file system, so writeback is real), started
# alternately with `write_behind = "64MiB"` (the default) and `0` (off),
# --reps times each (default 3). Each run: oxcopy-io-bench writes 1 MiB
# WRITE(16)s, 8 in flight, sequentially (wrapping) for --duration seconds
# (default 10) — the throughput figure — and right after the writes stop,
# one SYNCHRONIZE CACHE of the whole LUN is timed (--sync-after): what an
# initiator's flush then waits for. Prints the medians and the
# ratios on/off. The daemon is stopped by PID, the files removed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
target_dir=${CARGO_TARGET_DIR:-$root/target}
oxcopyd=$target_dir/release/oxcopyd
io_bench=$target_dir/release/oxcopy-io-bench
dir=/work/oxcopy-wb
size=4
duration=10
reps=3
iqn=iqn.2026-12.dev.oxcopy:wb
source "$here/lib.sh"

while [[ $# -gt 0 ]]; do
    case $1 in
        --oxcopyd) oxcopyd=${2:?}; shift 2 ;;
        --io-bench) io_bench=${2:?}; shift 2 ;;
        --dir) dir=${2:?}; shift 2 ;;
        --size) size=${2:?}; shift 2 ;;
        --duration) duration=${2:?}; shift 2 ;;
        --reps) reps=${2:?}; shift 2 ;;
        -h | --help) usage ;;
        *) echo "$prog: unexpected argument: $1" >&2; usage ;;
    esac
done
for b in "$oxcopyd" "$io_bench"; do
    [[ -x $b ]] || { echo "$prog: $b missing (cargo build --release -p oxcopyd -p oxcopy-bench)" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/oxcopy-wb.XXXXXX")
mkdir -p "$dir"
lun=$dir/lun-$$.img
trap 'set +e; [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid"; rm -rf "$work" "$lun"' EXIT
truncate -s "${size}G" "$lun"
port=$(free_port)

# run WB: one run with write_behind = WB; prints "MIB_S FLUSH_MS".
run() {
    local cfg=$work/ox.toml out
    oxcopyd_config "$cfg" "$port" "$work/data" "$lun" "$lun.unused"
    # One LUN only, and the write-behind under test.
    sed -i '/^\[\[target.lun\]\]$/,$d' "$cfg"
    sed -i "s/^nop_interval = 0$/&\nwrite_behind = \"$1\"/" "$cfg"
    printf '[[target.lun]]\nid = 0\npath = "%s"\n' "$lun" >>"$cfg"
    mkdir -p "$work/data"
    start_oxcopyd "$cfg" "$work/ox-$1.log" "$port"
    out=$(timeout $((duration + 600)) "$io_bench" --write --sync-after -m 8 -b 2048 -t "$duration" "iscsi://127.0.0.1:$port/$iqn/0")
    stop_oxcopyd
    sync "$lun"
    echo "$(sed -n 's/^RESULT .*mib_s=\([0-9.]*\).*/\1/p' <<<"$out") $(sed -n 's/^RESULT .*sync_ms=\([0-9]*\).*/\1/p' <<<"$out")"
}

# Warm-up, not counted: the first pass over a new file pays for allocating
# its blocks and page-cache pages, which neither setting is about.
echo "$prog: warm-up pass over the ${size} GiB LUN" >&2
timeout 600 dd if=/dev/zero of="$lun" bs=1M count=$((size * 1024)) conv=notrunc status=none
sync "$lun"

declare -a on_mib=() off_mib=() on_ms=() off_ms=()
for rep in $(seq "$reps"); do
    order=("64MiB" "0")
    ((rep % 2 == 0)) && order=("0" "64MiB")
    for wb in "${order[@]}"; do
        echo "$prog: write_behind=$wb (rep $rep/$reps, ${duration}s)" >&2
        read -r mib ms < <(run "$wb")
        echo "$prog:   $mib MiB/s, flush after the writes: $ms ms" >&2
        if [[ $wb == 0 ]]; then off_mib+=("$mib") off_ms+=("$ms"); else on_mib+=("$mib") on_ms+=("$ms"); fi
    done
done
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
a=$(median "${on_mib[@]}") b=$(median "${off_mib[@]}") c=$(median "${on_ms[@]}") d=$(median "${off_ms[@]}")
printf '%-28s %12s %12s %8s\n' "" "wb 64MiB" "wb off" "on/off"
printf '%-28s %12s %12s %8s\n' "seq-write-1m-qd8 MiB/s" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", a / b}')"
printf '%-28s %12s %12s %8s\n' "flush right after, ms" "$c" "$d" "$(awk -v a="$c" -v b="$d" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 0)}')"
