#!/usr/bin/env bash
# LUNs on Ceph RBD end to end, against the cluster OXCOPY_CEPH_CONF names
# (scripts/ceph-cluster.sh start DIR prints one): one oxcopyd (built with
# --features ceph) serving two RBD LUNs and a file LUN, driven by `oxcopy`:
#   - host copy file -> RBD, read back;
#   - a point-in-time token on an RBD LUN is an RBD snapshot: the source is
#     overwritten after POPULATE TOKEN, WRITE USING TOKEN to the other RBD
#     LUN still writes the old data, and deleting the token removes the
#     snapshot;
#   - EXTENDED COPY RBD -> file, file -> RBD and RBD -> RBD, token copy
#     file -> RBD, a point-in-time token RBD -> file (source overwritten
#     after POPULATE TOKEN), data checked;
#   - a second gateway asked to serve the same image refuses to start
#     (the first holds the image's exclusive lock), naming the LUN;
#   - a LUN on an unreachable cluster fails the start within rbd_timeout,
#     naming the LUN;
#   - with OXCOPY_CEPH_DIR (the cluster's scripts/ceph-cluster.sh DIR): the
#     cluster stopped while serving — RBD commands fail within the timeout,
#     the file LUN serves, and after a restart the RBD LUN serves again.
# Every daemon is stopped by PID; the images are removed at the end.
#
#   OXCOPY_CEPH_CONF=DIR/ceph.conf scripts/rbd-e2e.sh [--bin DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=
while [[ $# -gt 0 ]]; do
    case $1 in
        --bin) bin=${2:?}; shift 2 ;;
        *) echo "rbd-e2e: unexpected argument $1" >&2; exit 2 ;;
    esac
done
conf=${OXCOPY_CEPH_CONF:?rbd-e2e: set OXCOPY_CEPH_CONF to the cluster\'s ceph.conf}
if [[ -z $bin ]]; then
    (cd "$root" && cargo build --release -q -p oxcopyd --features ceph && cargo build --release -q -p oxcopy-cli)
    bin=${CARGO_TARGET_DIR:-$root/target}/release
fi
oxcopyd=$bin/oxcopyd
oxcopy=$bin/oxcopy
work=$(mktemp -d /tmp/oxcopy-rbd-e2e.XXXXXX)
tag=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
src=rbd/e2e-src-$tag dst=rbd/e2e-dst-$tag
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    rbd -c "$conf" rm "$src" >/dev/null 2>&1 || true
    rbd -c "$conf" rm "$dst" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "rbd-e2e: FAIL: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

iqn=iqn.2026-12.dev.oxcopy:rbd-e2e
port=$(free_port)
# config NAME PORT CEPH_CONF: a gateway serving both images and a file.
config() {
    cat >"$work/$1.toml" <<EOF
[server]
listen = ["127.0.0.1:$2"]
data_dir = "$work/state-$1"
nop_interval = 0
[[target]]
iqn = "$iqn"
[[target.lun]]
id = 0
rbd = "$src"
size = "64MiB"
ceph_conf = "$3"
rbd_timeout = 5
[[target.lun]]
id = 1
rbd = "$dst"
size = "64MiB"
ceph_conf = "$3"
rbd_timeout = 5
[[target.lun]]
id = 2
path = "$work/file-$1.img"
size = "64MiB"
EOF
}
config a "$port" "$conf"
"$oxcopyd" --config "$work/a.toml" >"$work/a.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/a.log" >&2; fail "gateway A did not start"; }
    sleep 0.1
done
u=iscsi://127.0.0.1:$port/$iqn

head -c $((64 << 20)) /dev/urandom >"$work/pat"
"$oxcopy" cp --method host "$work/pat" "$u/0" >/dev/null
"$oxcopy" cp --method host "$u/0" "$work/back0" >/dev/null
cmp -s "$work/pat" "$work/back0" || fail "host copy file -> RBD read back differs"
echo "rbd-e2e: ok: host copy file -> RBD"

# Point in time: the token is an RBD snapshot of the source image.
"$oxcopy" token create --ttl 120 -o "$work/t.tok" "$u/0" >/dev/null
snaps=$(rbd -c "$conf" snap ls "$src" | grep -c 'oxcopy\.' || true)
[[ $snaps -eq 1 ]] || fail "POPULATE TOKEN made $snaps RBD snapshots, not 1"
head -c $((1 << 20)) /dev/zero >"$work/zero"
"$oxcopy" cp --method host "$work/zero" "$u/0?blocks=2048" >/dev/null
"$oxcopy" token write --delete --no-progress "$work/t.tok" "$u/1" >/dev/null
"$oxcopy" cp --method host "$u/1" "$work/back1" >/dev/null
cmp -s "$work/pat" "$work/back1" || fail "WRITE USING TOKEN did not write the point-in-time data"
snaps=$(rbd -c "$conf" snap ls "$src" | grep -c 'oxcopy\.' || true)
[[ $snaps -eq 0 ]] || fail "the deleted token's snapshot is still there ($snaps)"
echo "rbd-e2e: ok: point-in-time token RBD -> RBD (an RBD snapshot, removed with the token)"

"$oxcopy" cp --method xcopy "$u/1" "$u/2" >/dev/null
"$oxcopy" cp --method host "$u/2" "$work/back2" >/dev/null
cmp -s "$work/pat" "$work/back2" || fail "EXTENDED COPY RBD -> file differs"
echo "rbd-e2e: ok: EXTENDED COPY RBD -> file"
"$oxcopy" cp --method token "$u/2" "$u/0" >/dev/null
"$oxcopy" cp --method host "$u/0" "$work/back3" >/dev/null
cmp -s "$work/pat" "$work/back3" || fail "token copy file -> RBD differs"
echo "rbd-e2e: ok: token copy file -> RBD"

# The other routes: EXTENDED COPY RBD -> RBD (inside the cluster: RADOS
# copy_from for whole objects, no byte through the gateway) and file ->
# RBD, and a point-in-time token RBD -> file.
head -c $((64 << 20)) /dev/urandom >"$work/pat2"
"$oxcopy" cp --method host "$work/pat2" "$u/2" >/dev/null
"$oxcopy" cp --method xcopy "$u/2" "$u/1" >/dev/null
"$oxcopy" cp --method host "$u/1" "$work/back4" >/dev/null
cmp -s "$work/pat2" "$work/back4" || fail "EXTENDED COPY file -> RBD differs"
echo "rbd-e2e: ok: EXTENDED COPY file -> RBD"
"$oxcopy" cp --method xcopy "$u/1" "$u/0" >/dev/null
"$oxcopy" cp --method host "$u/0" "$work/back5" >/dev/null
cmp -s "$work/pat2" "$work/back5" || fail "EXTENDED COPY RBD -> RBD differs"
echo "rbd-e2e: ok: EXTENDED COPY RBD -> RBD"
"$oxcopy" token create --ttl 120 -o "$work/t2.tok" "$u/0" >/dev/null
"$oxcopy" cp --method host "$work/zero" "$u/0?blocks=2048" >/dev/null
"$oxcopy" token write --delete --no-progress "$work/t2.tok" "$u/2" >/dev/null
"$oxcopy" cp --method host "$u/2" "$work/back6" >/dev/null
cmp -s "$work/pat2" "$work/back6" || fail "the point-in-time token RBD -> file did not write the point-in-time data"
echo "rbd-e2e: ok: point-in-time token RBD -> file (source overwritten after POPULATE TOKEN)"
# Put LUNs 0 and 2 back to the first pattern for what follows.
"$oxcopy" cp --method host "$work/pat" "$u/0" >/dev/null
"$oxcopy" cp --method host "$work/pat" "$u/2" >/dev/null

# The cluster stops answering while the gateway serves: commands on the
# RBD LUNs end (with an error, not a hang) within the timeout, the file LUN
# keeps serving, and the RBD LUNs work again once the cluster is back.
# (Only when this script may restart the cluster: OXCOPY_CEPH_DIR.)
if [[ -n ${OXCOPY_CEPH_DIR:-} ]]; then
    "$root/scripts/ceph-cluster.sh" stop "$OXCOPY_CEPH_DIR" >/dev/null
    set +e
    t0=$(date +%s)
    timeout 120 "$oxcopy" cp --method host "$u/0?blocks=8" "$work/stalled" >"$work/stalled.log" 2>&1
    rc=$?
    t1=$(date +%s)
    set -e
    [[ $rc -ne 0 && $rc -ne 124 ]] || fail "a read with the cluster down: exit $rc (want an error, not success or a hang)"
    "$oxcopy" cp --method host "$u/2" "$work/file-while-down" >/dev/null || fail "the file LUN stopped serving with the cluster"
    cmp -s "$work/pat" "$work/file-while-down" || fail "the file LUN read back differs while the cluster is down"
    "$root/scripts/ceph-cluster.sh" start "$OXCOPY_CEPH_DIR" >/dev/null
    ok=0
    for _ in $(seq 30); do
        if "$oxcopy" cp --method host "$u/0" "$work/after" >/dev/null 2>&1 && cmp -s "$work/pat" "$work/after"; then
            ok=1
            break
        fi
        sleep 2
    done
    [[ $ok -eq 1 ]] || fail "the RBD LUN did not serve again after the cluster came back"
    echo "rbd-e2e: ok: cluster down: an RBD read failed in $((t1 - t0)) s (exit $rc), the file LUN served; back: the data read again"
fi

# A second gateway on the same images: refused (the exclusive lock).
port_b=$(free_port)
config b "$port_b" "$conf"
set +e
timeout 60 "$oxcopyd" --config "$work/b.toml" >"$work/b.log" 2>&1
rc=$?
set -e
[[ $rc -eq 2 ]] || { cat "$work/b.log" >&2; fail "gateway B on images A serves: exit $rc, not 2"; }
grep -q "LUN 0 of $iqn" "$work/b.log" || { cat "$work/b.log" >&2; fail "gateway B's refusal does not name the LUN"; }
grep -qi "lock" "$work/b.log" || { cat "$work/b.log" >&2; fail "gateway B's refusal does not say the image is locked"; }
echo "rbd-e2e: ok: a second gateway refuses the images the first serves (exit $rc)"

# An unreachable cluster: the start fails within the timeout, naming the LUN.
sed -e 's/^mon[_ ]host.*$/mon_host = 127.0.0.1:1/' "$conf" >"$work/dead.conf"
grep -q 'mon_host = 127.0.0.1:1' "$work/dead.conf" || echo "mon_host = 127.0.0.1:1" >>"$work/dead.conf"
config c "$(free_port)" "$work/dead.conf"
set +e
t0=$(date +%s)
timeout 120 "$oxcopyd" --config "$work/c.toml" >"$work/c.log" 2>&1
rc=$?
t1=$(date +%s)
set -e
[[ $rc -eq 2 ]] || { cat "$work/c.log" >&2; fail "a gateway on an unreachable cluster: exit $rc, not 2"; }
grep -q "LUN 0 of $iqn" "$work/c.log" || { cat "$work/c.log" >&2; fail "the unreachable-cluster error does not name the LUN"; }
echo "rbd-e2e: ok: unreachable cluster: start failed in $((t1 - t0)) s (exit $rc), naming the LUN"
echo "rbd-e2e: all checks passed"
