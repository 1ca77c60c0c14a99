#!/usr/bin/env bash
# oxcopyd as an RBD gateway against librbd itself, and offloaded copies
# between RBD LUNs against the host copy of the same LUNs, on one Ceph test
# cluster started for the run (scripts/ceph-cluster.sh: 1 mon, 2 OSDs on
# sparse files, pool size 1 so that two SIZE-GiB images fit):
#
#   bench/rbd.sh [--size GIB] [--reps N] [--io-mib MIB] [--results DIR] [--bin DIR] [--quick]
#
# 1. I/O on one image of --io-mib MiB (default 1024), filled first:
#      rbd bench (librbd in the same machine, --rbd-cache=false, as the
#      gateway opens images) and oxcopy-io-bench through the gateway (one
#      iSCSI session), alternating (rbd, gateway, rbd, gateway, ...):
#        rand-read-4k-qd32   4 KiB random reads, 32 in flight        (IOPS)
#        rand-write-4k-qd32  4 KiB random writes, 32 in flight       (IOPS)
#        seq-read-1m-qd8     1 MiB sequential reads, 8 in flight     (MiB/s)
#        seq-write-1m-qd8    1 MiB sequential writes, 8 in flight    (MiB/s)
#      gateway/rbd of the medians (goal >= 0.7 for reads).
# 2. Copy of a --size GiB (default 4) RBD LUN filled with data into another
#    RBD LUN of the same gateway, --reps times (default 2) per method in a
#    rotating order, each destination checked against the source
#    (rbd export | md5sum):
#      host   READ + WRITE through our initiator (oxcopy cp --method host)
#      xcopy  EXTENDED COPY (oxcopy cp --method xcopy)
#      token  POPULATE TOKEN + WRITE USING TOKEN (oxcopy cp --method token)
#    with host/offload (goal >= 3), the bytes the gateway exchanged with the
#    cluster during the copy (its librados messengers' msgr_send_bytes +
#    msgr_recv_bytes, from the client admin sockets) as a share of the copy
#    size (goal <= 1 %), and the gateway's copy metrics by method
#    (rados / rbd).
# 3. POPULATE TOKEN latency on the whole SIZE-GiB LUN (an RBD snapshot),
#    10 times (goal < 50 ms).
#
# --quick: a smoke run (256 MiB images, 2 s I/O tests, 1 rep). Binaries from
# --bin DIR (oxcopyd built with --features ceph, oxcopy, oxcopy-io-bench,
# oxcopy-odx-bench); by default they are built first. The cluster and the
# gateway are stopped by PID on exit. Output: tables on stdout, every log
# and rbd-io.csv / rbd-copy.csv in DIR (default ./bench-results/rbd-DATE).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
prog=bench/rbd.sh
size_gib=4 reps=2 io_mib=1024 duration=10 results= bin= quick=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --size) size_gib=${2:?}; shift 2 ;;
        --reps) reps=${2:?}; shift 2 ;;
        --io-mib) io_mib=${2:?}; shift 2 ;;
        --results) results=${2:?}; shift 2 ;;
        --bin) bin=${2:?}; shift 2 ;;
        --quick) quick=1; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "$prog: unexpected argument $1" >&2; exit 2 ;;
    esac
done
if ((quick)); then size_mib=256 io_mib=256 duration=2 reps=1; else size_mib=$((size_gib * 1024)); fi
if [[ -z $bin ]]; then
    (cd "$root" && cargo build --release -q -p oxcopyd --features ceph && cargo build --release -q -p oxcopy-cli -p oxcopy-bench)
    bin=${CARGO_TARGET_DIR:-$root/target}/release
fi
results=${results:-$PWD/bench-results/rbd-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$results"
work=$(mktemp -d /tmp/oxcopy-rbd-bench.XXXXXX)
ceph_dir=$work/ceph
gw_pid=
cleanup() {
    if [[ -n $gw_pid ]]; then
        kill -TERM "$gw_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$gw_pid" 2>/dev/null || true
    fi
    "$root/scripts/ceph-cluster.sh" stop "$ceph_dir" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
log() { echo "$prog: $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
now_ns() { date +%s%N; }

CEPH_POOL_SIZE=1 CEPH_OSD_BLOCK=$((size_mib * 3 / 1024 + 8))G "$root/scripts/ceph-cluster.sh" start "$ceph_dir" >"$results/ceph-start.log"
conf=$ceph_dir/ceph.conf
rbd_() { timeout 900 rbd -c "$conf" "$@"; }
rbd_ create --size "${size_mib}M" rbd/src
rbd_ create --size "${size_mib}M" rbd/dst
rbd_ create --size "${io_mib}M" rbd/io
log "filling the images"
rbd_ bench --io-type write --io-size 4M --io-threads 16 --io-total "${size_mib}M" --io-pattern seq rbd/src >"$results/fill-src.log"
rbd_ bench --io-type write --io-size 4M --io-threads 16 --io-total "${io_mib}M" --io-pattern seq rbd/io >"$results/fill-io.log"
src_md5=$(rbd_ export --no-progress rbd/src - | md5sum | cut -d' ' -f1)

iqn=iqn.2026-12.dev.oxcopy:rbd-bench
port=$(free_port) mport=$(free_port)
cat >"$work/gw.toml" <<EOF
[server]
listen = ["127.0.0.1:$port"]
data_dir = "$work/state"
nop_interval = 0
metrics = "127.0.0.1:$mport"
[copy_domain]
# An RBD snapshot costs only what changes after it: let the 10 POPULATE
# TOKENs of the whole LUN below live side by side.
max_snapshot_bytes = "1TiB"
max_snapshot_bytes_per_initiator = "1TiB"
[[target]]
iqn = "$iqn"
[[target.lun]]
id = 0
rbd = "rbd/src"
ceph_conf = "$conf"
rbd_timeout = 60
[[target.lun]]
id = 1
rbd = "rbd/dst"
ceph_conf = "$conf"
rbd_timeout = 60
[[target.lun]]
id = 2
rbd = "rbd/io"
ceph_conf = "$conf"
rbd_timeout = 60
EOF
start_gw() {
    "$bin/oxcopyd" --config "$work/gw.toml" >>"$results/oxcopyd.log" 2>&1 &
    gw_pid=$!
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        kill -0 "$gw_pid" 2>/dev/null || { log "the gateway did not start"; exit 1; }
        sleep 0.1
    done
    log "the gateway did not listen"; exit 1
}
stop_gw() {
    kill -TERM "$gw_pid"
    for _ in $(seq 300); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$gw_pid" 2>/dev/null || true
    wait "$gw_pid" 2>/dev/null || true
    gw_pid=
}
u=iscsi://127.0.0.1:$port/$iqn

# ---- 1. I/O: rbd bench against the gateway ------------------------------
tests=(rand-read-4k-qd32 rand-write-4k-qd32 seq-read-1m-qd8 seq-write-1m-qd8)
declare -A gwargs=([rand-read-4k-qd32]="--read -r -m 32 -b 8" [rand-write-4k-qd32]="--write -r -m 32 -b 8"
    [seq-read-1m-qd8]="--read -m 8 -b 2048" [seq-write-1m-qd8]="--write -m 8 -b 2048")
declare -A rbdargs=([rand-read-4k-qd32]="--io-type read --io-size 4K --io-threads 32 --io-pattern rand"
    [rand-write-4k-qd32]="--io-type write --io-size 4K --io-threads 32 --io-pattern rand"
    [seq-read-1m-qd8]="--io-type read --io-size 1M --io-threads 8 --io-pattern seq"
    [seq-write-1m-qd8]="--io-type write --io-size 1M --io-threads 8 --io-pattern seq")
declare -A unit=([rand-read-4k-qd32]=IOPS [rand-write-4k-qd32]=IOPS [seq-read-1m-qd8]=MiB/s [seq-write-1m-qd8]=MiB/s)
declare -A iosz=([rand-read-4k-qd32]=4096 [rand-write-4k-qd32]=4096 [seq-read-1m-qd8]=1048576 [seq-write-1m-qd8]=1048576)
declare -A total=([rand-read-4k-qd32]=$((duration * 12))M [rand-write-4k-qd32]=$((duration * 4))M
    [seq-read-1m-qd8]=$((duration * 600))M [seq-write-1m-qd8]=$((duration * 200))M)
# rbd bench prints "elapsed: S ops: N ops/sec: X bytes/sec: Y"
rbd_run() { # TEST REP
    local t=$1 out
    # shellcheck disable=SC2086
    out=$(rbd_ bench --rbd-cache=false ${rbdargs[$t]} --io-total "${total[$t]}" rbd/io 2>&1 | tee "$results/rbd-$t-$2.log" | sed -n 's/.*ops\/sec: *\([0-9.]*\) .*/\1/p' | tail -1)
    # bytes/sec is printed in human units: use ops/sec x the I/O size.
    if [[ ${unit[$t]} == IOPS ]]; then awk '{ printf "%.0f\n", $1 }' <<<"$out"; else awk -v s="${iosz[$t]}" '{ printf "%.1f\n", $1 * s / 1048576 }' <<<"$out"; fi
}
gw_run() { # TEST REP
    local t=$1 l=$results/gw-$t-$2.log
    # shellcheck disable=SC2086
    timeout --kill-after=5 $((duration + 60)) "$bin/oxcopy-io-bench" ${gwargs[$t]} -t "$duration" "$u/2" >"$l" 2>&1 </dev/null || true
    if [[ ${unit[$t]} == IOPS ]]; then sed -n 's/^RESULT iops=\([0-9.]*\).*/\1/p' "$l"; else sed -n 's/^RESULT .*mib_s=\([0-9.]*\).*/\1/p' "$l"; fi
}
echo "test,rep,rbd_bench,gateway" >"$results/rbd-io.csv"
io_reps=$((quick ? 1 : 3))
for t in "${tests[@]}"; do
    for rep in $(seq "$io_reps"); do
        r=$(rbd_run "$t" "$rep")
        start_gw
        g=$(gw_run "$t" "$rep")
        stop_gw
        echo "$t,$rep,${r:-},${g:-}" >>"$results/rbd-io.csv"
        log "$t rep $rep: rbd bench ${r:-?} gateway ${g:-?} ${unit[$t]}"
    done
done

# ---- 2. Copies ---------------------------------------------------------
start_gw
msgr_bytes() { # the gateway's librados messenger bytes, both directions, all its connections
    local s tot=0 n
    for s in "$ceph_dir"/run/ceph-client.admin."$gw_pid".*.asok; do
        [[ -S $s ]] || continue
        n=$(timeout 20 ceph --admin-daemon "$s" perf dump 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(v.get("msgr_send_bytes", 0) + v.get("msgr_recv_bytes", 0) for k, v in d.items() if k.startswith("AsyncMessenger::Worker")))' || echo 0)
        tot=$((tot + n))
    done
    echo "$tot"
}
method_bytes() { # method -> oxcopy_copy_bytes_total
    python3 -c 'import sys,urllib.request; print(urllib.request.urlopen("http://127.0.0.1:'"$mport"'/metrics", timeout=5).read().decode())' |
        awk -v m="$1" '$1 == "oxcopy_copy_bytes_total{method=\"" m "\"}" { print $2; f = 1 } END { if (!f) print 0 }'
}
bytes=$((size_mib << 20))
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
echo "method,rep,seconds,gateway_cluster_bytes,rados_bytes,rbd_bytes,read_write_bytes,md5_ok,gateway_cpu_s" >"$results/rbd-copy.csv"
methods=(host xcopy token)
for rep in $(seq "$reps"); do
    order=("${methods[@]:rep%3}" "${methods[@]:0:rep%3}")
    for m in "${order[@]}"; do
        m0=$(msgr_bytes) ra0=$(method_bytes rados) rb0=$(method_bytes rbd) rw0=$(method_bytes read_write)
        c0=$(cpu_ticks "$gw_pid")
        t0=$(now_ns)
        timeout 1800 "$bin/oxcopy" cp --method "$m" --no-progress "$u/0" "$u/1" >"$results/copy-$m-$rep.log" 2>&1 ||
            { log "copy $m failed: $(tail -3 "$results/copy-$m-$rep.log")"; exit 1; }
        t1=$(now_ns)
        c1=$(cpu_ticks "$gw_pid")
        m1=$(msgr_bytes) ra1=$(method_bytes rados) rb1=$(method_bytes rbd) rw1=$(method_bytes read_write)
        ok=1
        [[ $(rbd_ export --no-progress rbd/dst - | md5sum | cut -d' ' -f1) == "$src_md5" ]] || ok=0
        secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
        cpu=$(awk -v d=$((c1 - c0)) -v hz="$hz" 'BEGIN { printf "%.2f", d / hz }')
        echo "$m,$rep,$secs,$((m1 - m0)),$((ra1 - ra0)),$((rb1 - rb0)),$((rw1 - rw0)),$ok,$cpu" >>"$results/rbd-copy.csv"
        log "copy $m rep $rep: $secs s, gateway CPU $cpu s, gateway<->cluster $(((m1 - m0) >> 20)) MiB, rados $(((ra1 - ra0) >> 20)) MiB, rbd $(((rb1 - rb0) >> 20)) MiB, checked=$ok"
        ((ok)) || { log "the copy by $m differs from the source"; exit 1; }
        rbd_ bench --io-type write --io-size 4M --io-threads 16 --io-total 16M --io-pattern seq rbd/io >/dev/null 2>&1 || true
    done
done

# ---- 3. POPULATE TOKEN latency on the whole LUN -------------------------
"$bin/oxcopy-odx-bench" populate --bytes "$bytes" --reps 10 "$u" >"$results/populate.log" 2>&1 || true
stop_gw

# ---- Tables ------------------------------------------------------------
echo
echo "I/O through the gateway vs rbd bench (librbd, rbd_cache=false), medians of $io_reps"
printf '%-20s %12s %12s %8s %s\n' test rbd_bench gateway ratio unit
for t in "${tests[@]}"; do
    r=$(awk -F, -v t="$t" '$1 == t && $3 != "" { print $3 }' "$results/rbd-io.csv" | median)
    g=$(awk -F, -v t="$t" '$1 == t && $4 != "" { print $4 }' "$results/rbd-io.csv" | median)
    printf '%-20s %12s %12s %8s %s\n' "$t" "$r" "$g" "$(awk -v r="$r" -v g="$g" 'BEGIN { if (r > 0) printf "%.2f", g / r; else print "-" }')" "${unit[$t]}"
done
echo
echo "Copy of ${size_mib} MiB RBD -> RBD, medians of $reps"
printf '%-6s %9s %12s %14s %12s %10s %10s\n' method seconds host/this 'gw<->cluster' rados_MiB rbd_MiB gw_cpu_s
h=$(awk -F, '$1 == "host" { print $3 }' "$results/rbd-copy.csv" | median)
for m in "${methods[@]}"; do
    s=$(awk -F, -v m="$m" '$1 == m { print $3 }' "$results/rbd-copy.csv" | median)
    gb=$(awk -F, -v m="$m" '$1 == m { print $4 }' "$results/rbd-copy.csv" | median)
    ra=$(awk -F, -v m="$m" '$1 == m { print $5 }' "$results/rbd-copy.csv" | median)
    rb=$(awk -F, -v m="$m" '$1 == m { print $6 }' "$results/rbd-copy.csv" | median)
    cpu=$(awk -F, -v m="$m" '$1 == m { print $9 }' "$results/rbd-copy.csv" | median)
    printf '%-6s %9s %12s %13s%% %12s %10s %10s\n' "$m" "$s" "$(awk -v h="$h" -v s="$s" 'BEGIN { printf "%.2f", h / s }')" \
        "$(awk -v g="$gb" -v b="$bytes" 'BEGIN { printf "%.3f", g * 100 / b }')" "$(awk -v x="$ra" 'BEGIN { printf "%.0f", x / 1048576 }')" \
        "$(awk -v x="$rb" 'BEGIN { printf "%.0f", x / 1048576 }')" "$cpu"
done
echo
echo "POPULATE TOKEN on the whole ${size_mib} MiB LUN (an RBD snapshot):"
sed -n 's/^RESULT mode=populate .* secs=\([0-9.]*\) .*/\1/p' "$results/populate.log" | awk '{ print $1 * 1000 }' >"$work/pop.ms"
echo "  median $(median <"$work/pop.ms") ms, max $(sort -g "$work/pop.ms" | tail -1) ms over $(wc -l <"$work/pop.ms") (goal < 50 ms)"
echo
echo "results in $results"
