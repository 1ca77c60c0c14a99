#!/usr/bin/env bash
# Two RBD gateways forming one copy domain, against the cluster
# OXCOPY_CEPH_CONF names (scripts/ceph-cluster.sh start DIR prints one):
# gateway A (127.0.0.2) serves image X, gateway B (127.0.0.3) serves image Y
# and a file LUN; both share the copy-domain key and list each other.
#   1. A token made on A for X, with X overwritten after POPULATE TOKEN, is
#      written by B into Y: Y holds X's point in time, B read X's snapshot
#      from the cluster (oxcopy_link_direct_opens{result="creator_up"}) and
#      A served no byte over the node link (oxcopy_link_bytes_sent 0).
#   2. Gateway A killed (SIGKILL) after POPULATE TOKEN: B still writes the
#      token, into Y and into its file LUN, from the snapshot alone
#      (result="creator_down"), point in time checked.
#   3. The killed gateway's snapshot is left in the cluster; once its watch
#      on X has expired, the next start of any gateway (B restarted) removes
#      it.
# Every daemon is stopped by PID; the images are removed at the end.
#
#   OXCOPY_CEPH_CONF=DIR/ceph.conf scripts/rbd-domain.sh [--bin DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=
while [[ $# -gt 0 ]]; do
    case $1 in
        --bin) bin=${2:?}; shift 2 ;;
        *) echo "rbd-domain: unexpected argument $1" >&2; exit 2 ;;
    esac
done
conf=${OXCOPY_CEPH_CONF:?rbd-domain: set OXCOPY_CEPH_CONF to the cluster\'s ceph.conf}
if [[ -z $bin ]]; then
    (cd "$root" && cargo build --release -q -p oxcopyd --features ceph && cargo build --release -q -p oxcopy-cli)
    bin=${CARGO_TARGET_DIR:-$root/target}/release
fi
oxcopyd=$bin/oxcopyd
oxcopy=$bin/oxcopy
work=$(mktemp -d /tmp/oxcopy-rbd-domain.XXXXXX)
tag=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
x=rbd/dom-x-$tag y=rbd/dom-y-$tag
declare -A pid=()
stop() { # stop NAME: TERM, then KILL after 10 s
    local p=${pid[$1]:-}
    [[ -n $p ]] || return 0
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset "pid[$1]"
}
cleanup() {
    local n
    for n in "${!pid[@]}"; do stop "$n"; done
    for i in "$x" "$y"; do
        rbd -c "$conf" snap purge "$i" >/dev/null 2>&1 || true
        rbd -c "$conf" rm "$i" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "rbd-domain: FAIL: $*" >&2
    for f in "$work"/*.log; do echo "--- $f" >&2; tail -20 "$f" >&2; done
    exit 1
}
free_port() { python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"; }

iqn=iqn.2026-12.dev.oxcopy:rbd-domain
head -c 32 /dev/urandom >"$work/domain.key"
chmod 600 "$work/domain.key"
pa=$(free_port 127.0.0.2) la=$(free_port 127.0.0.2) ma=$(free_port 127.0.0.2)
pb=$(free_port 127.0.0.3) lb=$(free_port 127.0.0.3) mb=$(free_port 127.0.0.3)
# config NAME ADDR PORT LINK METRICS IMAGE [file]
config() {
    cat >"$work/$1.toml" <<EOF
[server]
listen = ["$2:$3"]
data_dir = "$work/state-$1"
nop_interval = 0
metrics = "$2:$5"
[copy_domain]
key_file = "$work/domain.key"
node_listen = "$2:$4"
nodes = ["127.0.0.2:$la", "127.0.0.3:$lb"]
[[target]]
iqn = "$iqn"
[[target.lun]]
id = 0
rbd = "$6"
size = "64MiB"
ceph_conf = "$conf"
rbd_timeout = 10
EOF
    if [[ ${7:-} == file ]]; then
        cat >>"$work/$1.toml" <<EOF
[[target.lun]]
id = 1
path = "$work/file-$1.img"
size = "64MiB"
EOF
    fi
}
start() { # start NAME ADDR PORT
    "$oxcopyd" --config "$work/$1.toml" >>"$work/$1.log" 2>&1 &
    pid[$1]=$!
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/$2/$3") 2>/dev/null && return 0
        kill -0 "${pid[$1]}" 2>/dev/null || fail "gateway $1 did not start"
        sleep 0.1
    done
    fail "gateway $1 did not listen within 30 s"
}
scrape() { python3 -c 'import sys,urllib.request; print(urllib.request.urlopen("http://"+sys.argv[1]+"/metrics", timeout=5).read().decode())' "$1"; }
metric() { # metric ADDR:PORT NAME LABELS -> value (0 when absent)
    scrape "$1" | awk -v n="$2" -v l="$3" '
        { key = $1 }
        (l == "" && key == n) || (l != "" && key == n "{" l "}") { print $2; found = 1; exit }
        END { if (!found) print 0 }'
}
config a 127.0.0.2 "$pa" "$la" "$ma" "$x"
config b 127.0.0.3 "$pb" "$lb" "$mb" "$y" file
start a 127.0.0.2 "$pa"
start b 127.0.0.3 "$pb"
ua=iscsi://127.0.0.2:$pa/$iqn ub=iscsi://127.0.0.3:$pb/$iqn

# 1. A alive: B reads X's snapshot from the cluster, not through A.
head -c $((64 << 20)) /dev/urandom >"$work/p1"
"$oxcopy" cp --method host "$work/p1" "$ua/0" >/dev/null
"$oxcopy" token create --ttl 300 -o "$work/t1.tok" "$ua/0" >/dev/null
head -c $((4 << 20)) /dev/urandom >"$work/junk"
"$oxcopy" cp --method host "$work/junk" "$ua/0?blocks=8192" >/dev/null
"$oxcopy" token write --no-progress "$work/t1.tok" "$ub/0" >/dev/null || fail "B could not write A's token"
"$oxcopy" cp --method host "$ub/0" "$work/y1" >/dev/null
cmp -s "$work/p1" "$work/y1" || fail "Y does not hold X's point in time (token made on A, written by B)"
[[ $(metric "127.0.0.3:$mb" oxcopy_link_direct_opens_total 'result="creator_up"') -ge 1 ]] \
    || fail "B did not read the snapshot from the cluster: $(scrape "127.0.0.3:$mb" | grep direct)"
rados=$(metric "127.0.0.3:$mb" oxcopy_copy_bytes_total 'method="rados"')
[[ $rados -ge $((48 << 20)) ]] || fail "B copied only $rados bytes inside the cluster (RADOS copy_from); want >= 48 MiB of 64"
sent=$(metric "127.0.0.2:$ma" oxcopy_link_bytes_sent_total "")
[[ $sent -eq 0 ]] || fail "A served $sent bytes over the node link; want 0"
echo "rbd-domain: ok: token made on A written by B from the cluster ($((rados >> 20)) MiB by RADOS copy_from, A served 0 link bytes)"

# 2. A killed after POPULATE TOKEN: B completes from the snapshot alone.
"$oxcopy" cp --method host "$ua/0" "$work/p2" >/dev/null
"$oxcopy" token create --ttl 300 -o "$work/t2.tok" "$ua/0" >/dev/null
"$oxcopy" cp --method host "$work/junk" "$ua/0?blocks=8192" >/dev/null
snap=$(rbd -c "$conf" snap ls "$x" | awk '$2 ~ /^oxcopy\./ { print $2 }')
[[ $(wc -w <<<"$snap") -eq 2 ]] || fail "X should carry the two live tokens' snapshots: $snap"
kill -KILL "${pid[a]}"
wait "${pid[a]}" 2>/dev/null || true
unset "pid[a]"
"$oxcopy" token write --no-progress "$work/t2.tok" "$ub/0" >/dev/null || fail "B could not write the token of killed A"
"$oxcopy" token write --no-progress "$work/t2.tok" "$ub/1" >/dev/null || fail "B could not write the token of killed A into its file LUN"
"$oxcopy" cp --method host "$ub/0" "$work/y2" >/dev/null
"$oxcopy" cp --method host "$ub/1" "$work/f2" >/dev/null
cmp -s "$work/p2" "$work/y2" || fail "Y does not hold X's point in time after A was killed"
cmp -s "$work/p2" "$work/f2" || fail "the file LUN does not hold X's point in time after A was killed"
[[ $(metric "127.0.0.3:$mb" oxcopy_link_direct_opens_total 'result="creator_down"') -ge 2 ]] \
    || fail "B did not use the snapshot alone: $(scrape "127.0.0.3:$mb" | grep direct)"
echo "rbd-domain: ok: gateway A killed after POPULATE TOKEN, B wrote its token from the snapshot (RBD and file LUN)"

# 3. The killed gateway's snapshots stay until its watch on X expires
#    (osd_client_watch_timeout, 30 s); then any gateway's start removes them.
n=$(rbd -c "$conf" snap ls "$x" | grep -c ' oxcopy\.' || true)
[[ $n -eq 2 ]] || fail "the killed gateway's snapshots: $n, want 2 left in the cluster"
for i in $(seq 90); do
    rbd -c "$conf" status "$x" 2>/dev/null | grep -q 'watcher=' || break
    [[ $i -lt 90 ]] || fail "the killed gateway still watches X after 90 s"
    sleep 1
done
stop b
start b 127.0.0.3 "$pb"
for i in $(seq 60); do
    n=$(rbd -c "$conf" snap ls "$x" | grep -c ' oxcopy\.' || true)
    [[ $n -eq 0 ]] && break
    [[ $i -lt 60 ]] || fail "the restarted gateway B did not remove the dead tokens' snapshots ($n left)"
    sleep 0.5
done
grep -q "removing the snapshot of a token whose gateway is gone" "$work/b.log" || fail "B's log does not say it removed them"
[[ -z $(rbd -c "$conf" image-meta list "$x" 2>/dev/null | grep 'oxcopy.snap.' || true) ]] \
    || fail "records of removed snapshots are left in X's metadata"
echo "rbd-domain: ok: snapshots of the killed gateway's tokens removed at the next gateway start"
echo "rbd-domain: all checks passed"
