#!/usr/bin/env bash
# Copy-domain benchmark: two oxcopyd nodes in two network namespaces, the
# cross-node token copy against the raw TCP throughput between them and
# against a host copy that crosses a third machine. One run, medians of
# --reps repetitions (default 3), side by side:
#   iperf3  raw TCP throughput A -> B on the A-B link (one stream, the
#           direction the token copy's data takes)
#   token   `oxcopy cp --method token` of the whole LUN of A to the LUN of
#           B: POPULATE TOKEN on A, WRITE USING TOKEN on B, B pulls the
#           data from A over the node link; plus the initiator's wire bytes
#           (goal < 4 KiB) and B's oxcopy_copy_bytes_total{method="remote"}
#   host    `oxcopy cp --method host` A -> B through the initiator: every
#           byte goes A -> host -> B (two hops)
# Ratios printed: token/iperf3 (goal >= 0.8), token/host (goal >= 1.8).
#
#   bench/domain.sh [--size 4GiB] [--reps 3] [--fs loop|tmpfs] [--drop-caches] [--fresh-destination] [--iperf-secs 10]
#                   [--methods "iperf3 token host"] [--bin DIR] [--results DIR] [--keep]
#
# (--methods without token: no [copy_domain] in the configurations, for
# daemons without copy domains.)
#
# Network: three namespaces, a triangle of veth pairs —
#   A (node A)  10.77.0.1 -- 10.77.0.2  B (node B)   the A-B link: node link, iperf3
#   A           10.77.1.1 -- 10.77.1.3  H (host)     iSCSI to A
#   B           10.77.2.2 -- 10.77.2.3  H            iSCSI to B
# The initiator runs in H for both copies: for the host copy it must not be
# co-located with either node (else one hop is loopback), and keeping it
# there for the token copy means both copies are driven from the same place;
# the token copy's data never touches H (its wire bytes show it), it takes
# the A-B link that iperf3 measures.
# Storage: A's LUN on an XFS (reflink=1) loop filesystem, B's on an ext4 one
# (two image files under $TMPDIR, about size + 2 GiB each); with --fs tmpfs,
# each on a tmpfs of its own (no block layer: what the network path and the
# daemons can do when the disks are not the limit; no reflink, so A's token
# is copy-on-write and its bytes are read through a buffer). A's LUN is
# filled with random data once; before every copy B's LUN is overwritten
# with zeros in place and `sync` runs (its pages stay allocated and cached,
# as on a LUN being overwritten: both copies then write into cached pages;
# on this kind of VM a page the kernel has never touched costs more to
# allocate than the whole network path — --fresh-destination hole-punches
# B's LUN instead, measuring that cost too); after every copy the two LUN
# files are compared with cmp.
# Page cache: NOT dropped by default — the source stays cached (as it would
# on a node that just wrote it), so the figures measure the network path and
# the daemons, not the disk under the loop images; --drop-caches drops the
# caches (echo 3 > /proc/sys/vm/drop_caches) before every copy instead.
#
# Needs root (ip netns, losetup, mkfs, mount), iperf3 (installed with
# apt-get when missing), python3, curl. Binaries: `cargo build --release -p
# oxcopyd -p oxcopy-cli` unless --bin DIR has oxcopyd and oxcopy. Output:
# a table on stdout, DIR/domain.csv and every log in DIR (default
# ./bench-results/domain-YYYYmmdd-HHMMSS). Daemons and iperf3 servers are
# stopped by PID, filesystems unmounted, exactly the loop devices attached
# here detached and the namespaces deleted on any exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$here/lib.sh"
size=4GiB
reps=3
methods="iperf3 token host"
drop=0
fresh=0
fs_kind=loop
iperf_secs=10
bin=
results=
keep=0
iqn_a=iqn.2026-11.dev.oxcopy:domain-bench-a
iqn_b=iqn.2026-11.dev.oxcopy:domain-bench-b

while [[ $# -gt 0 ]]; do
    case $1 in
        --size) size=${2:?}; shift 2 ;;
        --reps) reps=${2:?}; shift 2 ;;
        --methods) methods=${2:?}; shift 2 ;;
        --drop-caches) drop=1; shift ;;
        --fresh-destination) fresh=1; shift ;;
        --fs) fs_kind=${2:?}; shift 2 ;;
        --iperf-secs) iperf_secs=${2:?}; shift 2 ;;
        --bin) bin=${2:?}; shift 2 ;;
        --results) results=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) usage ;;
        *) echo "domain.sh: unexpected argument: $1" >&2; usage ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "domain.sh: needs root (namespaces, loop filesystems)" >&2; exit 2; }
bytes=$(python3 -c 'import re,sys
m = re.fullmatch(r"(\d+)\s*(|B|KiB|MiB|GiB|TiB|K|M|G|T)", sys.argv[1])
if not m: sys.exit("bad --size " + sys.argv[1])
u = {"": 1, "B": 1, "K": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20, "G": 1 << 30, "GiB": 1 << 30, "T": 1 << 40, "TiB": 1 << 40}
print(int(m[1]) * u[m[2]])' "$size")
((bytes % (1 << 20) == 0 && bytes > 0)) || { echo "domain.sh: --size must be a positive multiple of 1 MiB" >&2; exit 2; }
if ! command -v iperf3 >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null
fi
for t in ip losetup mkfs.xfs mkfs.ext4 fallocate cmp python3 curl iperf3; do
    command -v "$t" >/dev/null || { echo "domain.sh: $t not installed" >&2; exit 2; }
done
img_mib=$(((bytes >> 20) + 2048))
avail_kib=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $4 }')
((avail_kib > 2 * img_mib * 1024)) || { echo "domain.sh: needs $((2 * img_mib)) MiB free in ${TMPDIR:-/tmp}" >&2; exit 2; }
if [[ -z $bin ]]; then
    (cd "$root" && cargo build --release -q -p oxcopyd -p oxcopy-cli)
    bin=${CARGO_TARGET_DIR:-$root/target}/release
fi
oxcopyd=$bin/oxcopyd
oxcopy=$bin/oxcopy
[[ -x $oxcopyd && -x $oxcopy ]] || { echo "domain.sh: $oxcopyd or $oxcopy missing" >&2; exit 2; }
[[ -n $results ]] || results=$root/bench-results/domain-$(date +%Y%m%d-%H%M%S)
mkdir -p "$results"
results=$(cd "$results" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/oxcopy-domain-bench.XXXXXX")

# --- teardown: everything by what was recorded here --------------------------
ns_a=oxd$$-a ns_b=oxd$$-b ns_h=oxd$$-h
namespaces=()
pids=()
mounts=()
loops=()
teardown() {
    local p m d n
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    pids=()
    for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
    mounts=()
    for d in "${loops[@]}"; do losetup -d "$d" 2>/dev/null || true; done
    loops=()
    for n in "${namespaces[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    namespaces=()
    if [[ $keep -eq 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap teardown EXIT

# --- network -------------------------------------------------------------------
for n in $ns_a $ns_b $ns_h; do
    ip netns add "$n"
    namespaces+=("$n")
    ip -n "$n" link set lo up
done
# veth NS1 IP1 NS2 IP2 NAME: a veth pair between two namespaces, /24 each.
veth() {
    ip link add "$5a" netns "$1" type veth peer name "$5b" netns "$3"
    ip -n "$1" addr add "$2/24" dev "$5a"
    ip -n "$3" addr add "$4/24" dev "$5b"
    ip -n "$1" link set "$5a" up
    ip -n "$3" link set "$5b" up
}
veth "$ns_a" 10.77.0.1 "$ns_b" 10.77.0.2 vab
veth "$ns_a" 10.77.1.1 "$ns_h" 10.77.1.3 vah
veth "$ns_b" 10.77.2.2 "$ns_h" 10.77.2.3 vbh
in_ns() { ip netns exec "$@"; }

# --- storage -------------------------------------------------------------------
# loop_fs FS NAME: an FS filesystem on a loop device, mounted on $work/NAME
# (prints the mount point).
loop_fs() {
    local fs=$1 name=$2 img dev
    img=$work/$name.img
    truncate -s "${img_mib}M" "$img"
    dev=$(losetup -f --show "$img")
    loops+=("$dev")
    case $fs in
        xfs) mkfs.xfs -q -f -m reflink=1 "$dev" ;;
        ext4) mkfs.ext4 -q -F "$dev" ;;
    esac
    mkdir -p "$work/$name"
    mount -t "$fs" -o discard "$dev" "$work/$name"
    mounts+=("$work/$name")
    echo "== $fs on $dev for node $name" >&2
}
# tmpfs_fs NAME: a tmpfs of its own on $work/NAME (--fs tmpfs).
tmpfs_fs() {
    mkdir -p "$work/$1"
    mount -t tmpfs -o "size=${img_mib}M" "oxd-bench-$1" "$work/$1"
    mounts+=("$work/$1")
    echo "== tmpfs for node $1" >&2
}
if [[ $fs_kind == tmpfs ]]; then
    tmpfs_fs a
    tmpfs_fs b
else
    loop_fs xfs a
    loop_fs ext4 b
fi
src=$work/a/lun0.img dst=$work/b/lun0.img
echo "== filling A's LUN with $((bytes >> 20)) MiB of random data" >&2
head -c "$bytes" /dev/urandom >"$src"
truncate -s "$bytes" "$dst"
sync

# --- daemons -------------------------------------------------------------------
(umask 077 && head -c 32 /dev/urandom >"$work/domain.key")
# node_config NAME ISCSI_IP LINK_IP LUN: a config in $work/NAME.toml.
node_config() {
    {
        printf '[server]\nlisten = ["%s:3260"]\ndata_dir = "%s"\nmetrics = "%s:9100"\nnop_interval = 0\n' \
            "$2" "$work/state-$1" "$2"
        printf '\n[[target]]\niqn = "%s"\n\n[[target.lun]]\nid = 0\npath = "%s"\n' "$5" "$4"
        [[ " $methods " == *" token "* ]] || return 0
        printf '\n[copy_domain]\nkey_file = "%s"\nnode_listen = "%s:7001"\n' "$work/domain.key" "$3"
        printf 'nodes = ["10.77.0.1:7001", "10.77.0.2:7001"]\n'
    } >"$work/$1.toml"
}
node_config a 10.77.1.1 10.77.0.1 "$src" $iqn_a
node_config b 10.77.2.2 10.77.0.2 "$dst" $iqn_b
# start_node NAME NS IP: oxcopyd in NS (ip netns exec execs it: $! is its PID),
# wait until it accepts iSCSI connections from H.
start_node() {
    local p
    RUST_LOG=${RUST_LOG:-warn} ip netns exec "$2" "$oxcopyd" --config "$work/$1.toml" >"$results/oxcopyd-$1.log" 2>&1 &
    p=$!
    pids+=("$p")
    for _ in $(seq 300); do
        if in_ns "$ns_h" bash -c "exec 3<>/dev/tcp/$3/3260" 2>/dev/null; then
            echo "== node $1: oxcopyd PID $p in $2 on $3:3260" >&2
            return 0
        fi
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    echo "domain.sh: node $1 did not start" >&2
    cat "$results/oxcopyd-$1.log" >&2
    exit 1
}
start_node a "$ns_a" 10.77.1.1
start_node b "$ns_b" 10.77.2.2
url_a=iscsi://10.77.1.1:3260/$iqn_a/0
url_b=iscsi://10.77.2.2:3260/$iqn_b/0
remote_bytes() {
    in_ns "$ns_h" curl -s --noproxy "*" http://10.77.2.2:9100/metrics |
        awk '$1 == "oxcopy_copy_bytes_total{method=\"remote\"}" { print $2 }' | sed 's/^$/0/; s/\..*//'
}

# --- the measurements ------------------------------------------------------------
csv=$results/domain.csv
echo "rep,what,seconds,bytes_per_second,wire_bytes_sent,wire_bytes_received,remote_bytes" >"$csv"
prepare() {
    if [[ $fresh -eq 1 ]]; then
        fallocate -p -o 0 -l "$bytes" "$dst"
    else
        dd if=/dev/zero of="$dst" bs=4M count=$((bytes >> 22)) conv=notrunc status=none
    fi
    sync
    if [[ $drop -eq 1 ]]; then echo 3 >/proc/sys/vm/drop_caches; fi
}
check() { cmp "$src" "$dst" || { echo "domain.sh: $1 copy differs from the source" >&2; exit 1; }; }

# One iperf3 server in B for the whole run (stopped by PID at exit).
iperf_port=5201
in_ns "$ns_b" iperf3 -s -B 10.77.0.2 -p $iperf_port >"$results/iperf3-server.log" 2>&1 &
pids+=("$!")
run_iperf3() {
    local rep=$1 out=$results/iperf3-$1.json ok=0
    for _ in $(seq 50); do # the server may not listen yet: retry, bounded
        if in_ns "$ns_a" iperf3 -c 10.77.0.2 -p $iperf_port -t "$iperf_secs" -J >"$out" 2>/dev/null; then
            ok=1
            break
        fi
        sleep 0.2
    done
    ((ok)) || { echo "domain.sh: iperf3 A -> B failed:" >&2; cat "$out" >&2; exit 1; }
    python3 - "$out" "$rep" >>"$csv" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
s = j["end"]["sum_received"]
print(f'{sys.argv[2]},iperf3,{s["seconds"]:.6f},{s["bits_per_second"] / 8:.0f},,,')
PY
    echo "iperf3 rep $rep: $(tail -n1 "$csv")" >&2
}

run_copy() { # run_copy REP METHOD
    local rep=$1 method=$2 before after out=$results/$2-$1.json
    prepare
    before=$(remote_bytes)
    in_ns "$ns_h" "$oxcopy" cp --method "$method" --json "$url_a" "$url_b" >"$out" 2>"$results/$method-$rep.err" || {
        echo "domain.sh: $method copy failed:" >&2
        cat "$results/$method-$rep.err" >&2
        exit 1
    }
    after=$(remote_bytes)
    check "$method"
    python3 - "$out" "$rep" "$method" "$((${after:-0} - ${before:-0}))" >>"$csv" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
if j["method"] != sys.argv[3]:
    sys.exit(f'asked for {sys.argv[3]}, oxcopy used {j["method"]} (fallback: {j.get("fallback")})')
print(f'{sys.argv[2]},{sys.argv[3]},{j["seconds"]:.6f},{j["bytes_per_second"]:.0f},{j["wire_bytes_sent"]},{j["wire_bytes_received"]},{sys.argv[4]}')
PY
    echo "$method rep $rep: $(tail -n1 "$csv")" >&2
}
run_token() { run_copy "$1" token; }
run_host() { run_copy "$1" host; }

# Rotate the order so that no way always follows the same other one.
read -r -a ways <<<"$methods"
for rep in $(seq "$reps"); do
    for ((k = 0; k < ${#ways[@]}; k++)); do
        "run_${ways[(rep + k) % ${#ways[@]}]}" "$rep"
    done
done

python3 - "$csv" "$bytes" "$drop" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
size, drop = int(sys.argv[2]), sys.argv[3] == "1"
def col(what, key):
    return [float(r[key]) for r in rows if r["what"] == what and r[key] != ""]
med = lambda v: statistics.median(v) if v else float("nan")
mib = lambda b: b / (1 << 20)
ip, tok, host = (med(col(w, "bytes_per_second")) for w in ("iperf3", "token", "host"))
ratio = lambda a, b: a / b if b == b and b else float("nan")
print(f"copy domain benchmark: {mib(size):.0f} MiB LUN, {len(col('token', 'seconds'))} reps, page cache "
      + ("dropped before every copy" if drop else "kept (not dropped)"))
print(f"{'':8} {'median MiB/s':>12} {'min-max MiB/s':>17} {'median s':>9} {'wire sent/recv B':>18}")
for w in ("iperf3", "token", "host"):
    v = col(w, "bytes_per_second")
    if not v:
        continue
    s = col(w, "seconds")
    wire = ""
    if w != "iperf3":
        wire = f"{med(col(w, 'wire_bytes_sent')):.0f}/{med(col(w, 'wire_bytes_received')):.0f}"
    print(f"{w:8} {mib(med(v)):12.1f} {mib(min(v)):8.1f}-{mib(max(v)):<8.1f} {med(s):9.3f} {wire:>18}")
rb = col("token", "remote_bytes")
print(f"B's oxcopy_copy_bytes_total{{method=\"remote\"}} per token copy: {sorted(set(int(x) for x in rb))} (LUN {size})")
print(f"token/iperf3 = {ratio(tok, ip):.2f} (goal >= 0.8)   token/host = {ratio(tok, host):.2f} (goal >= 1.8)   "
      f"token wire bytes = {med(col('token', 'wire_bytes_sent')) + med(col('token', 'wire_bytes_received')):.0f} (goal < 4096)")
PY
echo "results in $results" >&2
