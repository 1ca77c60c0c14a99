#!/usr/bin/env bash
# NVMe/TCP against iSCSI, one oxcopyd and one client binary, and NVMe Copy
# against a host copy:
#
#   bench/nvme.sh [--oxcopyd PATH] [--bench-dir DIR] [--duration S] [--reps N]
#                 [--size GIB] [--io-size MIB] [--results DIR] [--quick] [--no-copy] [--keep]
#
# 1. I/O: one oxcopyd serves ONE backing file (--io-size MiB, default 1024,
#    512-byte blocks, filled with random data, served from the page cache)
#    as iSCSI LUN 0 and as NVMe namespace 1 of one subsystem (the namespace
#    shares the LUN). oxcopy-io-bench (one thread, one TCP connection per
#    protocol: one iSCSI session, one NVMe I/O queue) runs, --duration
#    seconds each (default 10), --reps times per protocol (default 3),
#    alternating which protocol goes first (ABBA):
#      rand-read-4k-qd1    4 KiB reads at random LBAs, 1 in flight   (IOPS)
#      rand-read-4k-qd32   4 KiB reads at random LBAs, 32 in flight  (IOPS)
#      seq-read-1m-qd8     1 MiB reads, sequential, 8 in flight      (MiB/s)
#      seq-write-1m-qd8    1 MiB writes, sequential, 8 in flight     (MiB/s)
#    with the ratio NVMe/iSCSI of the medians (goals: >= 1.2 at QD32,
#    >= 1.0 elsewhere) and the daemon's and the client's CPU time per
#    command (utime+stime; far less sensitive to background load).
# 2. Copy (root: a loop-mounted XFS, reflink=1, like bench/odx.sh): a
#    --size GiB (default 4) source namespace filled with random data and an
#    empty destination namespace of the same size (4 KiB blocks), copied
#    --reps times each way, in a rotating order, into a freshly punched
#    destination, each checked with cmp:
#      offload  NVMe Copy (format 2h, namespace 1 -> 2; the ranges split
#               within MSSRL/MCL/MSRC) by oxcopy-nvme-copy-bench
#      host     NVMe Read + Write of the same bytes through our NVMe/TCP
#               host, 16 chunks of 1 MiB in flight
#    with host/offload (goal >= 100) and the wire bytes per Copy command
#    (both directions, every connection; goal < 4 KiB). --no-copy skips it.
#
# --quick: a smoke run (256 MiB LUN, 256 MiB copy, 2 s per test, 1 rep).
# Binaries: --oxcopyd PATH and --bench-dir DIR (with oxcopy-io-bench,
# oxcopy-nvme-copy-bench, oxcopy-copy-bench); by default
# `cargo build --release -p oxcopyd -p oxcopy-bench` runs first and
# ${CARGO_TARGET_DIR:-target}/release is used. Every client runs under
# `timeout`; oxcopyd is stopped by PID, the filesystem unmounted and the
# loop device detached (exactly the one attached) on exit. Output: tables
# on stdout, DIR/nvme-io.csv, DIR/nvme-copy.csv and every log in DIR
# (default ./bench-results/nvme-YYYYmmdd-HHMMSS). See bench/README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"

oxcopyd=
bin=
duration=10
reps=3
size_mib=4096
io_mib=1024
results=
keep=0
copy=1
quick=0
iqn=iqn.2026-12.dev.oxcopy:nvme-bench
nqn=nqn.2026-12.dev.oxcopy:nvme-bench
initiator=iqn.2026-12.dev.oxcopy:nvme-bench-client

while [[ $# -gt 0 ]]; do
    case $1 in
        --oxcopyd) oxcopyd=${2:?}; shift 2 ;;
        --bench-dir) bin=${2:?}; shift 2 ;;
        --duration) duration=${2:?}; shift 2 ;;
        --reps) reps=${2:?}; shift 2 ;;
        --size) size_mib=$((${2:?} * 1024)); shift 2 ;;
        --io-size) io_mib=${2:?}; shift 2 ;;
        --results) results=${2:?}; shift 2 ;;
        --quick) quick=1; shift ;;
        --no-copy) copy=0; shift ;;
        --keep) keep=1; shift ;;
        -h | --help) usage ;;
        *) echo "$prog: unexpected argument: $1" >&2; usage ;;
    esac
done
if ((quick)); then
    duration=2 reps=1 size_mib=256 io_mib=256
fi
[[ $duration =~ ^[0-9]+$ && $duration -ge 1 ]] || { echo "$prog: --duration must be whole seconds" >&2; exit 2; }
[[ $reps =~ ^[0-9]+$ && $reps -ge 1 ]] || { echo "$prog: --reps must be >= 1" >&2; exit 2; }
[[ $size_mib =~ ^[0-9]+$ && $size_mib -ge 64 ]] || { echo "$prog: --size must be >= 1 (GiB)" >&2; exit 2; }
[[ $io_mib =~ ^[0-9]+$ && $io_mib -ge 16 ]] || { echo "$prog: --io-size must be >= 16 (MiB)" >&2; exit 2; }
for t in python3 curl cmp; do
    command -v "$t" >/dev/null || { echo "$prog: $t not installed" >&2; exit 2; }
done
if ((copy)); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "$prog: the copy part needs root (loop filesystem); run as root or with --no-copy" >&2
        exit 2
    fi
    for t in losetup mkfs.xfs fallocate; do
        command -v "$t" >/dev/null || { echo "$prog: $t not installed" >&2; exit 2; }
    done
    need_kib=$(((2 * size_mib + 1024) << 10))
    avail_kib=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $4 }')
    ((avail_kib > need_kib)) || { echo "$prog: needs $((need_kib >> 20)) GiB free in ${TMPDIR:-/tmp}" >&2; exit 2; }
fi
if [[ -z $bin ]]; then
    (cd "$root" && timeout 1800 cargo build --release -q -p oxcopyd -p oxcopy-bench)
    bin=${CARGO_TARGET_DIR:-$root/target}/release
    [[ $bin == /* ]] || bin=$root/$bin
fi
oxcopyd=${oxcopyd:-$bin/oxcopyd}
io_bench=$bin/oxcopy-io-bench
nvme_copy=$bin/oxcopy-nvme-copy-bench
copy_bench=$bin/oxcopy-copy-bench
for b in "$oxcopyd" "$io_bench" "$nvme_copy" "$copy_bench"; do
    [[ -x $b ]] || { echo "$prog: not executable: $b" >&2; exit 2; }
done
[[ -n $results ]] || results=$root/bench-results/nvme-$(date +%Y%m%d-%H%M%S)
mkdir -p "$results"
results=$(cd "$results" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/oxcopy-nvme-bench.XXXXXX")
trap 'cleanup; [[ $keep -eq 1 ]] && echo "$prog: kept $work" >&2 || rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# wait_port PORT: until something listens on 127.0.0.1:PORT (oxcopyd alive).
wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "$prog: oxcopyd is not listening on 127.0.0.1:$1" >&2
    exit 1
}

# CPU ticks (utime + stime) of process PID.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -r), $(nproc) CPUs"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "oxcopyd: $oxcopyd ($(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo "duration=$duration reps=$reps io_mib=$io_mib copy_mib=$size_mib"
} >"$results/run.txt"

# --- 1. I/O: iSCSI vs NVMe/TCP on one shared file ------------------------
lun=$work/lun0.img
echo "$prog: filling a $io_mib MiB backing file with random data" >&2
timeout 600 head -c "$((io_mib << 20))" /dev/urandom >"$lun"
iport=$(free_port)
nport=$(free_port)
while [[ $nport == "$iport" ]]; do nport=$(free_port); done
cat >"$work/oxcopyd-io.toml" <<EOF
[server]
listen = ["127.0.0.1:$iport"]
data_dir = "$work/state-io"
nop_interval = 0

[[target]]
iqn = "$iqn"
[[target.lun]]
id = 0
path = "$lun"
block_size = 512

[[subsystem]]
nqn = "$nqn"
listen = ["127.0.0.1:$nport"]
[[subsystem.namespace]]
nsid = 1
path = "$lun"
EOF
cp "$work/oxcopyd-io.toml" "$results/oxcopyd-io.toml"
start_oxcopyd "$work/oxcopyd-io.toml" "$results/oxcopyd-io.log" "$iport"
wait_port "$nport"
declare -A url=([iscsi]=iscsi://127.0.0.1:$iport/$iqn/0 [nvme]=nvme+tcp://127.0.0.1:$nport/$nqn/1)

tests=(rand-read-4k-qd1 rand-read-4k-qd32 seq-read-1m-qd8 seq-write-1m-qd8)
declare -A targs=([rand-read-4k-qd1]="--read -r -m 1 -b 8" [rand-read-4k-qd32]="--read -r -m 32 -b 8"
    [seq-read-1m-qd8]="--read -m 8 -b 2048" [seq-write-1m-qd8]="--write -m 8 -b 2048")
declare -A metric=([rand-read-4k-qd1]=IOPS [rand-read-4k-qd32]=IOPS [seq-read-1m-qd8]=MiB/s [seq-write-1m-qd8]=MiB/s)
declare -A goal=([rand-read-4k-qd1]=1.0 [rand-read-4k-qd32]=1.2 [seq-read-1m-qd8]=1.0 [seq-write-1m-qd8]=1.0)

# run PROTO TEST REP: one client run; appends "figure daemon_us client_us"
# (CPU microseconds per command) to $results/PROTO-TEST.samples.
run() {
    local proto=$1 test=$2 rep=$3 log d0 d1 fig ios cu
    log=$results/$proto-$test-$rep.log
    d0=$(cpu_ticks "$pid")
    # shellcheck disable=SC2086 # the test's arguments are split on purpose
    timeout --kill-after=5 $((duration + 30)) /usr/bin/time -f "CPU user=%U sys=%S" \
        "$io_bench" -i "$initiator" ${targs[$test]} -t "$duration" "${url[$proto]}" >"$log" 2>&1 </dev/null || true
    d1=$(cpu_ticks "$pid")
    if [[ ${metric[$test]} == IOPS ]]; then
        fig=$(sed -n 's/^RESULT iops=\([0-9.]*\).*/\1/p' "$log")
    else
        fig=$(sed -n 's/^RESULT .*mib_s=\([0-9.]*\).*/\1/p' "$log")
    fi
    ios=$(sed -n 's/^RESULT iops=\([0-9.]*\) .* secs=\([0-9.]*\).*/\1 \2/p' "$log" | awk '{ printf "%.0f", $1 * $2 }')
    cu=$(sed -n 's/^CPU user=\([0-9.]*\) sys=\([0-9.]*\)/\1 \2/p' "$log" | awk '{ print $1 + $2 }')
    if [[ -z $fig || -z $ios || $ios -eq 0 ]]; then
        echo "$prog: $test over $proto produced no figure; see $log" >&2
        echo "error - -" >>"$results/$proto-$test.samples"
        return
    fi
    awk -v f="$fig" -v d=$((d1 - d0)) -v hz="$hz" -v n="$ios" -v c="${cu:-0}" \
        'BEGIN { printf "%s %.2f %.2f\n", f, d * 1e6 / hz / n, c * 1e6 / n }' >>"$results/$proto-$test.samples"
    echo "$prog: $test over $proto (rep $rep): $fig ${metric[$test]}" >&2
}

for test in "${tests[@]}"; do
    : >"$results/iscsi-$test.samples"
    : >"$results/nvme-$test.samples"
    for rep in $(seq "$reps"); do
        order=(iscsi nvme)
        ((rep % 2 == 0)) && order=(nvme iscsi)
        for proto in "${order[@]}"; do run "$proto" "$test" "$rep"; done
    done
done
stop_oxcopyd
rm -f "$lun"

io_csv=$results/nvme-io.csv
python3 - "$results" "$io_csv" "${tests[@]}" <<'PY'
import statistics, sys
res, out, tests = sys.argv[1], sys.argv[2], sys.argv[3:]
metric = {"rand-read-4k-qd1": "IOPS", "rand-read-4k-qd32": "IOPS", "seq-read-1m-qd8": "MiB/s", "seq-write-1m-qd8": "MiB/s"}
goal = {"rand-read-4k-qd32": 1.2}
def load(proto, test):
    rows = [l.split() for l in open(f"{res}/{proto}-{test}.samples") if l.strip()]
    rows = [r for r in rows if r[0] != "error"]
    return [float(r[0]) for r in rows], [float(r[1]) for r in rows], [float(r[2]) for r in rows]
def med(v):
    return statistics.median(v) if v else float("nan")
def rng(v):
    return f"{min(v):.0f}-{max(v):.0f}" if v else "-"
with open(out, "w") as f:
    f.write("test,metric,iscsi,nvme,ratio_nvme_over_iscsi,goal,iscsi_min_max,nvme_min_max,"
            "iscsi_daemon_cpu_us_per_cmd,nvme_daemon_cpu_us_per_cmd,iscsi_client_cpu_us_per_cmd,"
            "nvme_client_cpu_us_per_cmd,iscsi_samples,nvme_samples\n")
    print(f"{'test':18} {'metric':6} {'iSCSI':>10} {'NVMe/TCP':>10} {'NVMe/iSCSI':>10} {'goal':>5}"
          f"   {'iSCSI min-max':>15} {'NVMe min-max':>15}   CPU us/cmd daemon iSCSI/NVMe, client iSCSI/NVMe")
    for t in tests:
        fi, di, ci = load("iscsi", t)
        fn, dn, cn = load("nvme", t)
        a, b = med(fi), med(fn)
        ratio = b / a if a > 0 else float("nan")
        g = goal.get(t, 1.0)
        f.write(f"{t},{metric[t]},{a:.1f},{b:.1f},{ratio:.2f},{g},{rng(fi)},{rng(fn)},{med(di):.2f},{med(dn):.2f},"
                f"{med(ci):.2f},{med(cn):.2f},{' '.join(map(str, fi))},{' '.join(map(str, fn))}\n")
        mark = "" if ratio >= g else "  (below goal)"
        print(f"{t:18} {metric[t]:6} {a:10.0f} {b:10.0f} {ratio:10.2f} {g:5.1f}   {rng(fi):>15} {rng(fn):>15}"
              f"   {med(di):.1f}/{med(dn):.1f}, {med(ci):.1f}/{med(cn):.1f}{mark}")
PY

# --- 2. Copy: NVMe Copy vs the host, on XFS (reflink=1) --------------------
if ((copy)); then
    # No `-o discard`: with it the first reflink after punching the last
    # copy waited for the discards of 4 GiB of freed extents (0.6 s).
    make_loop_fs xfs "$((2 * size_mib + 1024))M"
    bytes=$((size_mib << 20))
    blocks=$((bytes / 4096))
    src=$mnt/ns1.img dst=$mnt/ns2.img
    truncate -s "$bytes" "$src" "$dst"
    timeout 1200 "$copy_bench" fill --file "$src" >"$results/copy-fill.log"
    # Written back through the loop device to the image's disk before the
    # first copy (else that writeback throttles the first host copy's
    # writes), and the source read into the page cache (both copies read
    # from it).
    sync
    timeout 600 cat "$src" >/dev/null
    iport=$(free_port)
    nport=$(free_port)
    mport=$(free_port)
    cat >"$work/oxcopyd-copy.toml" <<EOF
[server]
listen = ["127.0.0.1:$iport"]
data_dir = "$work/state-copy"
metrics = "127.0.0.1:$mport"
nop_interval = 0

[[subsystem]]
nqn = "$nqn"
listen = ["127.0.0.1:$nport"]
[[subsystem.namespace]]
nsid = 1
path = "$src"
block_size = 4096
[[subsystem.namespace]]
nsid = 2
path = "$dst"
block_size = 4096
EOF
    cp "$work/oxcopyd-copy.toml" "$results/oxcopyd-copy.toml"
    start_oxcopyd "$work/oxcopyd-copy.toml" "$results/oxcopyd-copy.log" "$nport"
    curl -s "http://127.0.0.1:$mport/metrics" >/dev/null || { echo "$prog: no metrics on port $mport" >&2; exit 1; }
    nurl=nvme+tcp://127.0.0.1:$nport/$nqn
    limit=$((300 + (size_mib >> 3))) # generous: the host copy at >= 8 MiB/s
    reset_dst() { fallocate -p -o 0 -l "$bytes" "$dst"; sync; }
    check() { timeout 600 cmp "$src" "$dst" || { echo "$prog: $1 copy differs from the source" >&2; exit 1; }; }
    : >"$results/copy-offload.log"
    : >"$results/copy-host.log"
    moved=()
    run_offload() {
        reset_dst
        offload_copy "$results/copy-offload.log" timeout --kill-after=5 "$limit" \
            "$nvme_copy" --copy 1:0 2:0 "$blocks" "$nurl"
        check offload
    }
    run_host() {
        reset_dst
        timeout --kill-after=5 "$limit" "$nvme_copy" --host -m 16 --chunk $((1 << 20)) --copy 1:0 2:0 "$blocks" "$nurl" |
            tee -a "$results/copy-host.log" >&2
        check host
    }
    run_rotating "$reps" offload host
    stop_oxcopyd
    copy_csv=$results/nvme-copy.csv
    python3 - "$results" "$copy_csv" "$size_mib" "${moved[@]}" <<'PY'
import re, statistics, sys
res, out, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
moved = [int(x) >> 20 for x in sys.argv[4:8]] if len(sys.argv) >= 8 else []
def results(name):
    rows = []
    for l in open(f"{res}/copy-{name}.log"):
        if l.startswith("RESULT "):
            rows.append(dict(kv.split("=", 1) for kv in l.split()[1:]))
    return rows
off, host = results("offload"), results("host")
if not off or not host:
    sys.exit("nvme.sh: a copy produced no RESULT line")
med = lambda rows, k: statistics.median(float(r[k]) for r in rows)
rng = lambda rows, k: f"{min(float(r[k]) for r in rows):.4f}-{max(float(r[k]) for r in rows):.4f}"
o, h = med(off, "secs"), med(host, "secs")
wpc = med(off, "wire_per_command")
with open(out, "w") as f:
    f.write("size_mib,offload_s,host_s,host_over_offload,offload_commands,offload_wire_bytes,wire_bytes_per_copy_command,"
            "host_commands,host_wire_bytes,reflink_mib,cfr_mib,rw_mib,hole_mib,offload_min_max,host_min_max\n")
    f.write(f"{mib},{o:.6f},{h:.6f},{h / o:.1f},{med(off, 'commands'):.0f},{med(off, 'wire_bytes'):.0f},{wpc:.0f},"
            f"{med(host, 'commands'):.0f},{med(host, 'wire_bytes'):.0f},{','.join(map(str, moved)) or ',,,'},"
            f"{rng(off, 'secs')},{rng(host, 'secs')}\n")
print(f"{'copy MiB':>8} {'NVMe Copy s':>11} {'host s':>8} {'host/Copy':>9} {'Copy cmds':>9} {'wire B/Copy cmd':>15}"
      f" {'host wire MiB':>13}  moved by Copy (reflink/cfr/rw/hole MiB)")
print(f"{mib:8} {o:11.4f} {h:8.3f} {h / o:8.1f}x {med(off, 'commands'):9.0f} {wpc:15.0f}"
      f" {med(host, 'wire_bytes') / 2**20:13.0f}  {'/'.join(map(str, moved))}")
print(f"spread (min-max s): Copy {rng(off, 'secs')}, host {rng(host, 'secs')}")
print("goals: host/Copy >= 100x; wire bytes per Copy command < 4096")
PY
    rm -f "$src" "$dst"
    release_loop_fs
    rm -f "$img"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$results/run.txt"
echo "$prog: results in $results" >&2
