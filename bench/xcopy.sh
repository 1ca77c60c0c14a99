#!/usr/bin/env bash
# Copy-offload benchmark: copy an N GiB LUN (filled with real, non-zero data)
# to another LUN three ways in one run, on an XFS (reflink=1) and on an ext4
# loop filesystem, and compare:
#   xcopy   EXTENDED COPY through oxcopyd (0Ah segments of 1 GiB; the target
#           copies by reflink / copy_file_range below the protocol)
#   host    the host copying: READ(16) + WRITE(16) through our initiator over
#           loopback TCP (8 chunks of 4 MiB in flight)
#   direct  copy_file_range(2) on the two backing files, no iSCSI at all
#
#   bench/xcopy.sh [--sizes "1 4"] [--fs "xfs ext4"] [--reps N] [--oxcopyd PATH]
#                  [--copy-bench PATH] [--results DIR] [--keep]
#
# Needs root (losetup, mkfs.xfs, mkfs.ext4, mount). By default
# `cargo build --release -p oxcopyd -p oxcopy-bench` runs first and the
# binaries come from ${CARGO_TARGET_DIR:-target}/release. Each copy starts
# from an empty (hole-punched) destination after `sync`; every copy is
# checked with cmp. The page cache stays warm (source data was just
# written), the same for all three ways. With --reps N (default 3) the three
# ways run N times, interleaved in a rotating order, and the medians are
# reported (the machine may be shared: single runs are noisy); every sample
# is in the per-way logs.
#
# Output: a table on stdout (seconds per way, host/xcopy speed-up, xcopy
# speed as a fraction of direct copy_file_range, and the bytes oxcopyd's
# metrics attribute to reflink / copy_file_range / read_write / hole for the
# EXTENDED COPY), DIR/xcopy.csv, and the logs in DIR (default
# ./bench-results/xcopy-YYYYmmdd-HHMMSS). Goals: XFS xcopy >= 100x host;
# ext4 xcopy >= 0.8x direct. oxcopyd is stopped by PID, filesystems
# unmounted and loop devices detached (exactly the ones attached) on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"
sizes="1 4"
reps=3
filesystems="xfs ext4"
oxcopyd=
copy_bench=
results=
keep=0
iqn=iqn.2026-11.dev.oxcopy:xcopy-bench

while [[ $# -gt 0 ]]; do
    case $1 in
        --sizes) sizes=${2:?}; shift 2 ;;
        --fs) filesystems=${2:?}; shift 2 ;;
        --reps) reps=${2:?}; shift 2 ;;
        --oxcopyd) oxcopyd=${2:?}; shift 2 ;;
        --copy-bench) copy_bench=${2:?}; shift 2 ;;
        --results) results=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) usage ;;
        *) echo "xcopy.sh: unexpected argument: $1" >&2; usage ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "xcopy.sh: needs root (loop filesystems)" >&2; exit 2; }
for t in losetup mkfs.xfs mkfs.ext4 fallocate curl cmp; do
    command -v "$t" >/dev/null || { echo "xcopy.sh: $t not installed" >&2; exit 2; }
done
if [[ -z $oxcopyd || -z $copy_bench ]]; then
    (cd "$root" && cargo build --release -q -p oxcopyd -p oxcopy-bench)
    bin=${CARGO_TARGET_DIR:-$root/target}/release
    oxcopyd=${oxcopyd:-$bin/oxcopyd}
    copy_bench=${copy_bench:-$bin/oxcopy-copy-bench}
fi
[[ -n $results ]] || results=$root/bench-results/xcopy-$(date +%Y%m%d-%H%M%S)
mkdir -p "$results"
results=$(cd "$results" && pwd)

work=$(mktemp -d /tmp/oxcopy-xcopy-bench.XXXXXX)
trap 'cleanup; [[ $keep -eq 1 ]] || rm -rf "$work"' EXIT

# Spread (min-max) of the secs= figures of a log.
result_range() { sed -n 's/^RESULT .* secs=\([0-9.]*\) .*/\1/p' "$1" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.4f-%.4f\n", lo, hi }'; }
# Median of the secs= figures of a log.
result_secs() {
    sed -n 's/^RESULT .* secs=\([0-9.]*\) .*/\1/p' "$1" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

max_n=0
for n in $sizes; do ((n > max_n)) && max_n=$n; done
csv=$results/xcopy.csv
echo "fs,size_gib,xcopy_s,host_s,direct_s,host_over_xcopy,xcopy_speed_vs_direct,reflink_bytes,cfr_bytes,rw_bytes,hole_bytes,xcopy_range,host_range,direct_range" >"$csv"

for fs in $filesystems; do
    make_loop_fs "$fs" "$((2 * max_n + 2))G"
    for n in $sizes; do
        size=$((n << 30))
        src=$mnt/src.img dst=$mnt/dst.img
        rm -f "$src" "$dst"
        truncate -s "$size" "$src" "$dst"
        "$copy_bench" fill --file "$src" >"$results/$fs-$n-fill.log"
        port=$(free_port) mport=$(free_port)
        oxcopyd_config "$work/oxcopyd.toml" "$port" "$work/state-$fs-$n" "$src" "$dst" "$mport"
        start_oxcopyd "$work/oxcopyd.toml" "$results/$fs-$n-oxcopyd.log" "$port"
        url=iscsi://127.0.0.1:$port/$iqn
        reset_dst() { fallocate -p -o 0 -l "$size" "$dst"; sync; }
        check() { cmp "$src" "$dst" || { echo "xcopy.sh: $1 copy differs from the source" >&2; exit 1; }; }

        : >"$results/$fs-$n-xcopy.log"
        : >"$results/$fs-$n-host.log"
        : >"$results/$fs-$n-direct.log"
        run_xcopy() {
            reset_dst
            offload_copy "$results/$fs-$n-xcopy.log" "$copy_bench" xcopy "$url" --src-lun 0 --dst-lun 1
            check xcopy
        }
        run_host() {
            reset_dst
            host_copy "$results/$fs-$n-host.log"
            check host
        }
        run_direct() {
            reset_dst
            direct_copy "$results/$fs-$n-direct.log"
            check direct
        }
        moved=()
        run_rotating "$reps" xcopy host direct

        stop_oxcopyd
        xs=$(result_secs "$results/$fs-$n-xcopy.log")
        hs=$(result_secs "$results/$fs-$n-host.log")
        ds=$(result_secs "$results/$fs-$n-direct.log")
        ranges=("$(result_range "$results/$fs-$n-xcopy.log")" "$(result_range "$results/$fs-$n-host.log")"
            "$(result_range "$results/$fs-$n-direct.log")")
        python3 - "$fs" "$n" "$xs" "$hs" "$ds" "${moved[@]}" "${ranges[@]}" >>"$csv" <<'PY'
import sys
fs, n, xs, hs, ds = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])
rest = sys.argv[6:13]
print(f"{fs},{n},{xs:.6f},{hs:.6f},{ds:.6f},{hs / xs:.1f},{ds / xs:.2f}," + ",".join(rest))
PY
        rm -f "$src" "$dst"
    done
    release_loop_fs
done

python3 - "$csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(f"{'fs':5} {'GiB':>4} {'xcopy s':>9} {'host s':>9} {'direct s':>9} {'host/xcopy':>11} {'xcopy vs direct':>16}  moved by (reflink/cfr/rw/hole, MiB)  spread xcopy | host | direct (s)")
for r in rows:
    mib = lambda k: int(r[k]) >> 20
    print(f"{r['fs']:5} {r['size_gib']:>4} {float(r['xcopy_s']):9.3f} {float(r['host_s']):9.3f} {float(r['direct_s']):9.3f}"
          f" {float(r['host_over_xcopy']):10.1f}x {float(r['xcopy_speed_vs_direct']):15.2f}x"
          f"  {mib('reflink_bytes')}/{mib('cfr_bytes')}/{mib('rw_bytes')}/{mib('hole_bytes')}"
          f"  {r['xcopy_range']} | {r['host_range']} | {r['direct_range']}")
print("goals: xfs host/xcopy >= 100x; ext4 xcopy speed >= 0.8x direct copy_file_range")
PY
echo "results in $results" >&2
