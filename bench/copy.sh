#!/usr/bin/env bash
# `oxcopy cp` benchmark: copies of 64 MiB, 256 MiB, 1 GiB and 4 GiB between
# two LUNs of one running oxcopyd, by each method the CLI has —
#   host    READ(16) + WRITE(16) through the CLI (8 commands in flight)
#   xcopy   EXTENDED COPY (the target copies: reflink / copy_file_range)
#   token   POPULATE TOKEN + WRITE USING TOKEN (IMMED, RRTI polling)
# — with the LUN backing files on an XFS (reflink=1) and on an ext4 loop
# filesystem, plus the outside reference: the host copy (same CLI, same
# settings) between two LUNs of tgt (scripts/tgt.sh; on the ext4 loop
# filesystem), when tgtd is installed. All wall-clock time of the `oxcopy`
# process as it reports it in --json (login and inspection excluded).
#
#   bench/copy.sh [--sizes "64 256 1024 4096"] [--fs "xfs ext4"] [--methods "host xcopy token"]
#                 [--reps N] [--no-tgt] [--out DIR] [--keep]
#
# Needs root (losetup, mkfs.xfs, mkfs.ext4, mount) and about twice the
# largest size free under /tmp (the loop image). Builds with
# `cargo build --release -p oxcopyd -p oxcopy-cli -p oxcopy-bench` (binaries
# from ${CARGO_TARGET_DIR:-target}/release). The source LUN is filled with
# real (non-zero, incompressible) data once per filesystem; before every
# copy the destination range is hole-punched and `sync` runs; after it the
# two ranges are compared with cmp. With --reps N (default 1) each copy runs
# N times and the median is kept.
#
# Output (default DIR = docs/bench): DIR/copy.csv (fs, method, size_bytes,
# seconds, bytes_per_second, wire_bytes, reps), DIR/copy.svg (seconds vs
# size, log-log, one line per method / filesystem, drawn by oxcopy-copy-plot
# from crates/bench) and a table of the ratios on stdout. Every process
# started here is stopped by PID; filesystems are unmounted and exactly the
# loop devices attached here detached, on any exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"
sizes="64 256 1024 4096"
filesystems="xfs ext4"
methods="host xcopy token"
reps=1
tgt=1
out=$root/docs/bench
keep=0
iqn=iqn.2026-11.dev.oxcopy:copy-bench

while [[ $# -gt 0 ]]; do
    case $1 in
        --sizes) sizes=${2:?}; shift 2 ;;
        --fs) filesystems=${2:?}; shift 2 ;;
        --methods) methods=${2:?}; shift 2 ;;
        --reps) reps=${2:?}; shift 2 ;;
        --no-tgt) tgt=0; shift ;;
        --out) out=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) usage ;;
        *) echo "copy.sh: unexpected argument: $1" >&2; usage ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "copy.sh: needs root (loop filesystems)" >&2; exit 2; }
for t in losetup mkfs.xfs mkfs.ext4 fallocate cmp python3; do
    command -v "$t" >/dev/null || { echo "copy.sh: $t not installed" >&2; exit 2; }
done
if ((tgt)) && ! command -v tgtd >/dev/null; then
    echo "copy.sh: tgtd not installed (apt-get install tgt): no tgt reference" >&2
    tgt=0
fi
(cd "$root" && cargo build --release -q -p oxcopyd -p oxcopy-cli -p oxcopy-bench)
bin=${CARGO_TARGET_DIR:-$root/target}/release
oxcopyd=$bin/oxcopyd
oxcopy=$bin/oxcopy
copy_bench=$bin/oxcopy-copy-bench
plot=$bin/oxcopy-copy-plot
mkdir -p "$out"
out=$(cd "$out" && pwd)

max_mib=0
for n in $sizes; do ((n > max_mib)) && max_mib=$n; done
work=$(mktemp -d /tmp/oxcopy-copy-bench.XXXXXX)
logs=$work/logs
mkdir -p "$logs"
tgt_port=
tgt_dir=
cleanup() {
    kill_oxcopyd
    if [[ -n $tgt_port ]]; then
        "$root/scripts/tgt.sh" stop "$tgt_port" "$tgt_dir" >/dev/null 2>&1 || true
        tgt_port=
    fi
    drop_loop_fs
}
trap 'cleanup; [[ $keep -eq 1 ]] || rm -rf "$work"' EXIT

# A port below 32768 (tgtd's control port is the iSCSI port, see tgt.sh).
free_low_port() {
    python3 -c '
import random, socket
for p in random.sample(range(20000, 30000), 200):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
'
}

csv=$out/copy.csv
echo "fs,method,size_bytes,seconds,bytes_per_second,wire_bytes,reps" >"$csv"

# copy_once FS METHOD MIB SRC_URL DST_URL SRC_FILE DST_FILE BLOCK_SIZE -> appends one CSV row
measure() {
    local fs=$1 method=$2 mib=$3 src_url=$4 dst_url=$5 src_file=$6 dst_file=$7 bs=$8
    local bytes=$((mib << 20)) blocks=$(((mib << 20) / bs)) secs=() wire=0 i m=$method
    [[ $m == tgt-host ]] && m=host
    for i in $(seq "$reps"); do
        fallocate -p -o 0 -l "$bytes" "$dst_file"
        sync
        local log=$logs/$fs-$method-$mib-$i.json
        if ! "$oxcopy" cp --json --no-progress --method "$m" "$src_url?blocks=$blocks" "$dst_url" >"$log" \
            2>"$logs/$fs-$method-$mib-$i.err"; then
            echo "copy.sh: $fs $method $mib MiB failed: $(cat "$logs/$fs-$method-$mib-$i.err")" >&2
            return 1
        fi
        cmp -n "$bytes" "$src_file" "$dst_file" || { echo "copy.sh: $fs $method $mib MiB: data differs" >&2; exit 1; }
        read -r s w < <(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["seconds"], j["wire_bytes_sent"]+j["wire_bytes_received"])' "$log")
        secs+=("$s")
        wire=$w
    done
    python3 - "$fs" "$method" "$bytes" "$wire" "$reps" "${secs[@]}" >>"$csv" <<'PY'
import statistics, sys
fs, method, size, wire, reps = sys.argv[1:6]
s = statistics.median(map(float, sys.argv[6:]))
print(f"{fs},{method},{size},{s:.6f},{int(size) / s:.0f},{wire},{reps}")
PY
    tail -1 "$csv" | awk -F, '{ printf "  %-5s %-8s %6d MiB  %9.3f s  %8.1f MiB/s\n", $1, $2, $3 / 1048576, $4, $5 / 1048576 }' >&2
}

for fs in $filesystems; do
    # Room for the two LUN files (tgt reuses them after oxcopyd stops), with slack.
    lun_bytes=$((max_mib << 20))
    make_loop_fs "$fs" $((2 * lun_bytes + (2 << 30)))
    src=$mnt/src.img dst=$mnt/dst.img
    truncate -s "$lun_bytes" "$src" "$dst"
    "$copy_bench" fill --file "$src" >"$logs/$fs-fill.log"
    port=$(free_port)
    oxcopyd_config "$work/oxcopyd-$fs.toml" "$port" "$work/state-$fs" "$src" "$dst"
    start_oxcopyd "$work/oxcopyd-$fs.toml" "$logs/$fs-oxcopyd.log" "$port"
    url=iscsi://127.0.0.1:$port/$iqn
    for mib in $sizes; do
        for m in $methods; do
            measure "$fs" "$m" "$mib" "$url/0" "$url/1" "$src" "$dst" 512 || echo "  ($fs $m $mib MiB: no result)" >&2
        done
    done
    stop_oxcopyd

    if [[ $fs == ext4 && $tgt -eq 1 ]]; then
        # The same two files (same data, same filesystem), now served by tgt:
        # LUN 1 (tgt.sh uses an existing image as is) and LUN 2.
        tgt_dir=$mnt/tgt
        mkdir -p "$tgt_dir"
        ln -s "$src" "$tgt_dir/tgt-lun.img"
        tgt_port=$(free_low_port)
        "$root/scripts/tgt.sh" start "$tgt_port" "$tgt_dir" >/dev/null
        timeout 10 tgtadm -C "$tgt_port" --lld iscsi --op new --mode logicalunit --tid 1 --lun 2 \
            --backing-store "$dst"
        turl=iscsi://127.0.0.1:$tgt_port/iqn.2026-11.dev.oxcopy:tgt
        for mib in $sizes; do
            measure ext4 tgt-host "$mib" "$turl/1" "$turl/2" "$src" "$dst" 512 || echo "  (tgt $mib MiB: no result)" >&2
        done
        "$root/scripts/tgt.sh" stop "$tgt_port" "$tgt_dir" >/dev/null
        tgt_port=
    fi
    rm -f "$src" "$dst"
    release_loop_fs
    rm -f "$img" # --keep keeps the logs, not the images
done

"$plot" --csv "$csv" --out "$out/copy.svg"
python3 - "$csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
t = {(r["fs"], r["method"], int(r["size_bytes"])): float(r["seconds"]) for r in rows}
sizes = sorted({int(r["size_bytes"]) for r in rows})
fss = [f for f in ["xfs", "ext4"] if any(r["fs"] == f for r in rows)]
def ratio(a, b):
    return f"{a / b:8.1f}x" if a and b else "       -"
print(f"{'fs':5} {'MiB':>5} {'host s':>9} {'xcopy s':>9} {'token s':>9} {'tgt s':>9}  {'host/xcopy':>10} {'host/token':>10} {'tgt/token':>10}")
for fs in fss:
    for s in sizes:
        g = lambda m, f=fs: t.get((f, m, s))
        h, x, k, tg = g("host"), g("xcopy"), g("token"), t.get(("ext4", "tgt-host", s))
        f = lambda v: f"{v:9.3f}" if v else "        -"
        print(f"{fs:5} {s >> 20:5} {f(h)} {f(x)} {f(k)} {f(tg)}  {ratio(h, x):>10} {ratio(h, k):>10} {ratio(tg, k):>10}")
PY
echo "results: $csv, $out/copy.svg (logs in $logs$([[ $keep -eq 1 ]] || echo ', removed at exit'))" >&2
