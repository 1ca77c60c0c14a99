#!/usr/bin/env bash
# Two gateways on one RBD image, against the cluster OXCOPY_CEPH_CONF names
# (scripts/ceph-cluster.sh start DIR prints one):
#   - `cargo test --features ceph --test rbd_gateways` (OXCOPY_REQUIRE_CEPH=1):
#     APTPL reservations live in the image's metadata (oxcopy.pr) and a second
#     gateway with another data directory enforces them; a takeover makes the
#     old gateway's WRITE and PERSISTENT RESERVE OUT end in CHECK CONDITION,
#     not applied;
#   - with the `oxcopy` CLI: gateway A serves image X, gateway B starts with
#     `rbd_takeover = true` on X: A's writes fail (DATA PROTECT), B reads
#     what A wrote before, not after, and serves; A still stops cleanly;
#   - B SIGKILLed: its restart without takeover waits for the dead client's
#     watch to expire (osd_client_watch_timeout, ~30 s) and then serves;
#   - B SIGKILLed again: A started with rbd_takeover serves at once.
# Timings are printed. Every daemon is stopped by PID; the image is removed.
#
#   OXCOPY_CEPH_CONF=DIR/ceph.conf scripts/rbd-takeover.sh [--bin DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=
while [[ $# -gt 0 ]]; do
    case $1 in
        --bin) bin=${2:?}; shift 2 ;;
        *) echo "rbd-takeover: unexpected argument $1" >&2; exit 2 ;;
    esac
done
conf=${OXCOPY_CEPH_CONF:?rbd-takeover: set OXCOPY_CEPH_CONF to the cluster\'s ceph.conf}

# Reservations across gateways and the fencing of a taken-over gateway,
# checked command by command (status and sense) by the Rust test.
(cd "$root" && OXCOPY_REQUIRE_CEPH=1 cargo test --release -q -p oxcopyd --features ceph --test rbd_gateways)
echo "rbd-takeover: ok: APTPL state in the image metadata, seen by another gateway; a taken-over gateway's WRITE / PR OUT refused"

if [[ -z $bin ]]; then
    (cd "$root" && cargo build --release -q -p oxcopyd --features ceph && cargo build --release -q -p oxcopy-cli)
    bin=${CARGO_TARGET_DIR:-$root/target}/release
fi
oxcopyd=$bin/oxcopyd
oxcopy=$bin/oxcopy
work=$(mktemp -d /tmp/oxcopy-rbd-takeover.XXXXXX)
tag=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
img=rbd/takeover-$tag
declare -A pid=()
cleanup() {
    local p
    for p in "${pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pid[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    # A SIGKILLed gateway's watch keeps the image busy for ~30 s.
    for _ in $(seq 45); do rbd -c "$conf" rm --no-progress "$img" >/dev/null 2>&1 && break; sleep 1; done
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "rbd-takeover: FAIL: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# Each gateway on its own loopback address.
net=$((RANDOM % 200 + 20))
ip_a=127.0.$net.1 ip_b=127.0.$net.2
free_port() { python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"; }
port_a=$(free_port $ip_a) port_b=$(free_port $ip_b)
iqn=iqn.2026-12.dev.oxcopy:rbd-takeover

# config NAME IP PORT TAKEOVER
config() {
    cat >"$work/$1.toml" <<EOF
[server]
listen = ["$2:$3"]
data_dir = "$work/state-$1"
nop_interval = 0
[[target]]
iqn = "$iqn"
[[target.lun]]
id = 0
rbd = "$img"
size = "16MiB"
ceph_conf = "$conf"
rbd_timeout = 5
rbd_takeover = $4
EOF
}
# start NAME IP PORT TAKEOVER BOUND: start a gateway, wait (at most BOUND s)
# until it listens; sets `took` to the seconds it took.
start() {
    config "$1" "$2" "$3" "$4"
    local t0 p
    t0=$(now)
    "$oxcopyd" --config "$work/$1.toml" >>"$work/$1.log" 2>&1 &
    p=$!
    pid[$1]=$p
    for _ in $(seq $(($5 * 10))); do
        (exec 3<>"/dev/tcp/$2/$3") 2>/dev/null && { took=$(since "$t0"); return; }
        kill -0 "$p" 2>/dev/null || { cat "$work/$1.log" >&2; fail "gateway $1 exited instead of serving"; }
        sleep 0.1
    done
    cat "$work/$1.log" >&2
    fail "gateway $1 did not serve within $5 s"
}
# stop NAME: SIGTERM by PID, a clean exit within 20 s.
stop() {
    local p=${pid[$1]} rc
    kill -TERM "$p"
    for _ in $(seq 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && fail "gateway $1 did not stop within 20 s"
    set +e; wait "$p"; rc=$?; set -e
    unset "pid[$1]"
    [[ $rc -eq 0 ]] || { cat "$work/$1.log" >&2; fail "gateway $1 exited $rc"; }
}
crash() {
    kill -KILL "${pid[$1]}"
    wait "${pid[$1]}" 2>/dev/null || true
    unset "pid[$1]"
}
ua=iscsi://$ip_a:$port_a/$iqn/0
ub=iscsi://$ip_b:$port_b/$iqn/0
head -c $((1 << 20)) /dev/urandom >"$work/p1"
head -c $((1 << 20)) /dev/urandom >"$work/p2"
head -c $((1 << 20)) /dev/urandom >"$work/p3"

start a $ip_a $port_a false 60
t=$took
"$oxcopy" cp --method host "$work/p1" "$ua?blocks=2048" >/dev/null
echo "rbd-takeover: A serving after $t s, wrote P1"

start b $ip_b $port_b true 60
t=$took
grep -q "took over the exclusive lock" "$work/b.log" || { cat "$work/b.log" >&2; fail "B's log does not say it took over"; }
set +e
t0=$(now)
timeout 60 "$oxcopy" cp --method host "$work/p2" "$ua?blocks=2048" >"$work/a-write.log" 2>&1
rc=$?
tw=$(since "$t0")
set -e
[[ $rc -ne 0 && $rc -ne 124 ]] || fail "a write through A after the takeover: exit $rc (want an error, not success or a hang)"
grep -q "DATA PROTECT" "$work/a-write.log" || { cat "$work/a-write.log" >&2; fail "A's refused write is not DATA PROTECT"; }
"$oxcopy" cp --method host "$ub?blocks=2048" "$work/back" >/dev/null
cmp -s "$work/p1" "$work/back" || fail "B does not read P1: A's write after the takeover was applied"
"$oxcopy" cp --method host "$work/p2" "$ub?blocks=2048" >/dev/null
"$oxcopy" cp --method host "$ub?blocks=2048" "$work/back" >/dev/null
cmp -s "$work/p2" "$work/back" || fail "B does not read back its own write"
stop a
echo "rbd-takeover: ok: B took over in $t s; A's write failed in $tw s ($(grep -o 'DATA PROTECT[^)]*)' "$work/a-write.log" | head -1)), not applied; B serves; A stopped cleanly"

# B dies holding the lock: its watch lives on for osd_client_watch_timeout.
crash b
start b $ip_b $port_b false 60
t=$took
"$oxcopy" cp --method host "$ub?blocks=2048" "$work/back" >/dev/null
cmp -s "$work/p2" "$work/back" || fail "B restarted after SIGKILL does not read P2"
echo "rbd-takeover: ok: B restarted after SIGKILL (no takeover) serving after $t s (the dead client's watch must expire first)"

crash b
start a $ip_a $port_a true 20
t=$took
"$oxcopy" cp --method host "$ua?blocks=2048" "$work/back" >/dev/null
cmp -s "$work/p2" "$work/back" || fail "A taking over from a SIGKILLed B does not read P2"
"$oxcopy" cp --method host "$work/p3" "$ua?blocks=2048" >/dev/null
stop a
echo "rbd-takeover: ok: A took over from a SIGKILLed B in $t s"
echo "rbd-takeover: all checks passed"
