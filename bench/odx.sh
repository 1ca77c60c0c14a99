#!/usr/bin/env bash
# ODX (token copy) benchmark, in one run on an XFS (reflink=1) and an ext4
# loop filesystem, medians of --reps runs (default 3):
#   populate  POPULATE TOKEN of 1 GiB of a LUN filled with real data (and
#             PT + RRTI), default ROD type (the copy manager's choice: a
#             point-in-time token, a reflink snapshot on XFS)
#   token     PT + RRTI + WRITE USING TOKEN (DEL_TKN) of the whole N GiB
#             source LUN to the destination LUN, through oxcopyd
#   host      the host copying: READ(16) + WRITE(16) through our initiator
#             over loopback TCP (8 chunks of 4 MiB in flight)
#   direct    copy_file_range(2) on the two backing files, no iSCSI at all
#   write     4 KiB WRITE(16) latency (one at a time, distinct blocks) into
#             the first GiB of the source, with no token ("none") and under a
#             live point-in-time token over that GiB ("pit": copy-on-write
#             of the old block first on ext4, a shared extent on XFS); the
#             token is deleted (a one-block WUT with DEL_TKN) after its run,
#             and pit/none is the median of the ratios of adjacent pairs
# plus the bytes on the wire of one token copy (iSCSI headers and data, both
# directions, from the initiator's counters).
#
#   bench/odx.sh [--size N] [--fs "xfs ext4"] [--reps N] [--writes N]
#                [--oxcopyd PATH] [--odx-bench PATH] [--copy-bench PATH]
#                [--results DIR] [--keep]
#
# Needs root (losetup, mkfs.xfs, mkfs.ext4, mount). By default
# `cargo build --release -p oxcopyd -p oxcopy-bench` runs first and the
# binaries come from ${CARGO_TARGET_DIR:-target}/release. Every copy starts
# from an empty (hole-punched) destination after `sync` and is checked with
# cmp. token/host/direct run --reps times in a rotating order; write-latency
# runs alternate none/pit. Output: a table with the ratios on stdout,
# DIR/odx.csv and every log in DIR (default ./bench-results/odx-YYYYmmdd-HHMMSS).
# Goals: PT of 1 GiB on XFS < 10 ms; XFS token copy >= 100x host; ext4 token
# copy >= 0.8x direct copy_file_range; wire bytes of a token copy < 4 KiB.
# oxcopyd is stopped by PID, the filesystem unmounted and the loop device
# detached (exactly the one attached) on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"
size=4
reps=3
writes=2000
filesystems="xfs ext4"
oxcopyd=
odx_bench=
copy_bench=
results=
keep=0
iqn=iqn.2026-11.dev.oxcopy:odx-bench

while [[ $# -gt 0 ]]; do
    case $1 in
        --size) size=${2:?}; shift 2 ;;
        --fs) filesystems=${2:?}; shift 2 ;;
        --reps) reps=${2:?}; shift 2 ;;
        --writes) writes=${2:?}; shift 2 ;;
        --oxcopyd) oxcopyd=${2:?}; shift 2 ;;
        --odx-bench) odx_bench=${2:?}; shift 2 ;;
        --copy-bench) copy_bench=${2:?}; shift 2 ;;
        --results) results=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) usage ;;
        *) echo "odx.sh: unexpected argument: $1" >&2; usage ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "odx.sh: needs root (loop filesystems)" >&2; exit 2; }
for t in losetup mkfs.xfs mkfs.ext4 fallocate curl cmp python3; do
    command -v "$t" >/dev/null || { echo "odx.sh: $t not installed" >&2; exit 2; }
done
# Each filesystem image holds the two N GiB LUN files at most (plus snapshots).
need_kib=$(((2 * size + 2) << 20))
avail_kib=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $4 }')
((avail_kib > need_kib)) || { echo "odx.sh: needs $((need_kib >> 20)) GiB free in ${TMPDIR:-/tmp}" >&2; exit 2; }
if [[ -z $oxcopyd || -z $odx_bench || -z $copy_bench ]]; then
    (cd "$root" && cargo build --release -q -p oxcopyd -p oxcopy-bench)
    bin=${CARGO_TARGET_DIR:-$root/target}/release
    oxcopyd=${oxcopyd:-$bin/oxcopyd}
    odx_bench=${odx_bench:-$bin/oxcopy-odx-bench}
    copy_bench=${copy_bench:-$bin/oxcopy-copy-bench}
fi
[[ -n $results ]] || results=$root/bench-results/odx-$(date +%Y%m%d-%H%M%S)
mkdir -p "$results"
results=$(cd "$results" && pwd)

work=$(mktemp -d /tmp/oxcopy-odx-bench.XXXXXX)
trap 'cleanup; [[ $keep -eq 1 ]] || rm -rf "$work"' EXIT

# Median of the KEY= figures of the RESULT lines of a log.
median() {
    sed -n "s/^RESULT .* $2=\([0-9.]*\).*/\1/p" "$1" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
spread() { sed -n "s/^RESULT .* $2=\([0-9.]*\).*/\1/p" "$1" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s\n", lo, hi }'; }

csv=$results/odx.csv
echo "fs,size_gib,pt_1g_ms,pt_rrti_1g_ms,token_s,host_s,direct_s,host_over_token,token_speed_vs_direct,wire_bytes,write_none_us,write_pit_us,pit_over_none,reflink_bytes,cfr_bytes,rw_bytes,hole_bytes,pt_range_s,token_range_s,host_range_s,direct_range_s" >"$csv"

for fs in $filesystems; do
    # discard: blocks freed in the filesystem are punched out of the image file.
    make_loop_fs "$fs" "$((3 * size + 4))G" -o discard
    bytes=$((size << 30))
    src=$mnt/src.img dst=$mnt/dst.img
    truncate -s "$bytes" "$src" "$dst"
    "$copy_bench" fill --file "$src" >"$results/$fs-fill.log"
    port=$(free_port) mport=$(free_port)
    oxcopyd_config "$work/oxcopyd.toml" "$port" "$work/state-$fs" "$src" "$dst" "$mport"
    start_oxcopyd "$work/oxcopyd.toml" "$results/$fs-oxcopyd.log" "$port"
    url=iscsi://127.0.0.1:$port/$iqn
    reset_dst() { fallocate -p -o 0 -l "$bytes" "$dst"; sync; }
    check() { cmp "$src" "$dst" || { echo "odx.sh: $1 copy differs from the source" >&2; exit 1; }; }

    sync
    "$odx_bench" populate "$url" --lun 0 --bytes $((1 << 30)) --reps "$reps" | tee "$results/$fs-populate.log" >&2

    : >"$results/$fs-token.log"
    : >"$results/$fs-host.log"
    : >"$results/$fs-direct.log"
    moved=()
    run_token() {
        reset_dst
        offload_copy "$results/$fs-token.log" "$odx_bench" token-copy "$url" --src-lun 0 --dst-lun 1
        check token
    }
    run_host() {
        reset_dst
        host_copy "$results/$fs-host.log"
        check host
    }
    run_direct() {
        reset_dst
        direct_copy "$results/$fs-direct.log"
        check direct
    }
    run_rotating "$reps" token host direct

    # Write latency last (it changes the source): none/pit alternating, a
    # different set of blocks each run.
    : >"$results/$fs-write.log"
    for rep in $(seq "$reps"); do
        for mode in none pit; do
            [[ $mode == pit ]] && seed=$((rep * 2 + 1)) || seed=$((rep * 2))
            "$odx_bench" write-lat "$url" --lun 0 --bytes $((1 << 30)) --count "$writes" --token "$mode" \
                --seed "$seed" | tee -a "$results/$fs-write.log" >&2
            echo "# after $mode: $(curl -s "http://127.0.0.1:$mport/metrics" | grep '^oxcopy_rod_snapshot_bytes ')" |
                tee -a "$results/$fs-write.log" >&2
        done
    done

    stop_oxcopyd

    grep 'mode=write-none' "$results/$fs-write.log" >"$results/$fs-write-none.log" || true
    grep 'mode=write-pit' "$results/$fs-write.log" >"$results/$fs-write-pit.log" || true
    # Latency ratio pit/none per adjacent pair (runs alternate), then the median.
    pair_ratio=$(sed -n 's/^RESULT mode=write-\([a-z]*\) .* median_us=\([0-9.]*\).*/\1 \2/p' "$results/$fs-write.log" |
        python3 -c 'import sys, statistics
v = [l.split() for l in sys.stdin]
r = [float(p[1]) / float(n[1]) for n, p in zip(v[0::2], v[1::2]) if n[0] == "none" and p[0] == "pit"]
print(statistics.median(r) if r else float("nan"))')
    python3 - "$fs" "$size" "$pair_ratio" \
        "$(median "$results/$fs-populate.log" secs)" "$(median "$results/$fs-populate.log" with_rrti_secs)" \
        "$(median "$results/$fs-token.log" secs)" "$(median "$results/$fs-host.log" secs)" \
        "$(median "$results/$fs-direct.log" secs)" "$(median "$results/$fs-token.log" wire_bytes)" \
        "$(median "$results/$fs-write-none.log" median_us)" "$(median "$results/$fs-write-pit.log" median_us)" \
        "${moved[@]}" \
        "$(spread "$results/$fs-populate.log" secs)" "$(spread "$results/$fs-token.log" secs)" \
        "$(spread "$results/$fs-host.log" secs)" "$(spread "$results/$fs-direct.log" secs)" >>"$csv" <<'PY'
import sys
a = sys.argv[1:]
fs, n, ratio = a[0], a[1], float(a[2])
pt, ptr, tok, host, direct, wire, wn, wp = map(float, a[3:11])
rest = a[11:19]
print(f"{fs},{n},{pt * 1e3:.3f},{ptr * 1e3:.3f},{tok:.6f},{host:.6f},{direct:.6f},{host / tok:.1f},{direct / tok:.2f},"
      f"{int(wire)},{wn:.1f},{wp:.1f},{ratio:.2f}," + ",".join(rest))
PY
    rm -f "$src" "$dst"
    release_loop_fs
    rm -f "$img"
done

python3 - "$csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(f"{'fs':5} {'GiB':>3} {'PT 1GiB ms':>10} {'+RRTI ms':>9} {'token s':>8} {'host s':>8} {'direct s':>8}"
      f" {'host/token':>10} {'token vs direct':>15} {'wire B':>7} {'4K write us none/pit':>21} {'pit/none':>8}"
      f"  moved by token copy (reflink/cfr/rw/hole, MiB)")
for r in rows:
    mib = lambda k: int(r[k]) >> 20
    print(f"{r['fs']:5} {r['size_gib']:>3} {float(r['pt_1g_ms']):10.2f} {float(r['pt_rrti_1g_ms']):9.2f}"
          f" {float(r['token_s']):8.3f} {float(r['host_s']):8.3f} {float(r['direct_s']):8.3f}"
          f" {float(r['host_over_token']):9.1f}x {float(r['token_speed_vs_direct']):14.2f}x {r['wire_bytes']:>7}"
          f" {float(r['write_none_us']):10.1f}/{float(r['write_pit_us']):<10.1f} {float(r['pit_over_none']):7.2f}x"
          f"  {mib('reflink_bytes')}/{mib('cfr_bytes')}/{mib('rw_bytes')}/{mib('hole_bytes')}")
print("spread (min-max s): " + "; ".join(f"{r['fs']}: PT {r['pt_range_s']} token {r['token_range_s']} host {r['host_range_s']} direct {r['direct_range_s']}" for r in rows))
print("goals: xfs PT 1 GiB < 10 ms; xfs host/token >= 100x; ext4 token >= 0.8x direct copy_file_range; wire bytes < 4096")
PY
echo "results in $results" >&2
