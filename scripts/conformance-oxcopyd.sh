#!/usr/bin/env bash
# Start a scratch oxcopyd (release build) on a free loopback port and run
# scripts/conformance.sh against it; stop it by PID whatever happens.
#   scripts/conformance-oxcopyd.sh [--lun0 file|striped|stacked|rbd] [--suites "…"]
#   (default: a file, the whole ALL family)
# LUN 0 (512-byte blocks, 1 GiB) is the LU under test — a file; or a
# striped volume of 4 legs (64 KiB stripes); or a volume stacked 3 deep:
# linear [ striped(64 KiB) [ mirror [ file, file ], file ], file ]; or an
# RBD image (a fresh one in pool rbd of the cluster OXCOPY_CEPH_CONF names,
# removed afterwards; oxcopyd built with --features ceph) —
# reached through two sessions
# (the same URL twice: MultipathIO and the reservation suites need a second
# I_T nexus); LUN 2 is read-only and takes the ReadOnly suite.
set -euo pipefail
cd "$(dirname "$0")/.."
lun0=file
if [[ ${1:-} == --lun0 ]]; then
    lun0=${2:?--lun0 file|striped|stacked|rbd}
    shift 2
fi
# OXCOPYD_BIN=path: test that binary instead of building target/release/oxcopyd.
if [[ -n ${OXCOPYD_BIN:-} ]]; then
    bin=$OXCOPYD_BIN
elif [[ $lun0 == rbd ]]; then
    cargo build --release -q -p oxcopyd --features ceph
    bin=${CARGO_TARGET_DIR:-$PWD/target}/release/oxcopyd
else
    cargo build --release -q -p oxcopyd
    bin=${CARGO_TARGET_DIR:-$PWD/target}/release/oxcopyd
fi
image=
work=$(mktemp -d /tmp/oxcopy-conf.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
iqn=iqn.2026-11.dev.oxcopy:conformance
# The read-only LU's file must exist (a read-only LUN is never created).
truncate -s 64MiB "$work/lun2-ro.img"
# LUN 0 (sparse) is 1 GiB: ExtendedCopy.Large copies 256 MiB and skips on LUNs under 512 MiB.
case $lun0 in
    file)
        volumes=
        lun0_backing="path = \"$work/lun0.img\"
size = \"1GiB\"" ;;
    striped)
        volumes="[[volume]]
name = \"striped\"
type = \"striped\"
stripe_size = \"64KiB\"
members = [\"$work/s0.img:256MiB\", \"$work/s1.img:256MiB\", \"$work/s2.img:256MiB\", \"$work/s3.img:256MiB\"]"
        lun0_backing='volume = "striped"' ;;
    stacked)
        volumes="[[volume]]
name = \"bottom\"
type = \"mirror\"
members = [\"$work/m0.img:256MiB\", \"$work/m1.img:256MiB\"]
[[volume]]
name = \"middle\"
type = \"striped\"
stripe_size = \"64KiB\"
members = [\"volume:bottom\", \"$work/s1.img:256MiB\"]
[[volume]]
name = \"top\"
type = \"linear\"
members = [\"volume:middle\", \"$work/l1.img:512MiB\"]"
        lun0_backing='volume = "top"' ;;
    rbd)
        [[ -n ${OXCOPY_CEPH_CONF:-} ]] || { echo "conformance-oxcopyd.sh: --lun0 rbd needs OXCOPY_CEPH_CONF" >&2; exit 2; }
        volumes=
        image=conformance-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
        lun0_backing="rbd = \"rbd/$image\"
ceph_conf = \"$OXCOPY_CEPH_CONF\"
size = \"1GiB\"" ;;
    *) echo "conformance-oxcopyd.sh: --lun0 file|striped|stacked|rbd, not $lun0" >&2; exit 2 ;;
esac
cat >"$work/oxcopyd.toml" <<TOML
[server]
listen = ["127.0.0.1:$port"]
data_dir = "$work/data"
$volumes
[[target]]
iqn = "$iqn"
[[target.lun]]
id = 0
$lun0_backing
[[target.lun]]
id = 1
path = "$work/lun1.img"
size = "256MiB"
block_size = 4096
[[target.lun]]
id = 2
path = "$work/lun2-ro.img"
read_only = true
TOML
RUST_LOG=${RUST_LOG:-warn} "$bin" --config "$work/oxcopyd.toml" >"$work/oxcopyd.log" 2>&1 &
pid=$!
cleanup() {
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    if [[ -n $image ]]; then
        rbd -c "$OXCOPY_CEPH_CONF" rm "rbd/$image" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    kill -0 "$pid" 2>/dev/null || { cat "$work/oxcopyd.log"; exit 1; }
    sleep 0.1
done
url=iscsi://127.0.0.1:$port/$iqn/0
status=0
scripts/conformance.sh "$url" "$url" --readonly-url "iscsi://127.0.0.1:$port/$iqn/2" \
    --results "${CONFORMANCE_RESULTS:-target/conformance}$([[ $lun0 == file ]] || echo "-$lun0")" "$@" || status=$?
if ! kill -0 "$pid" 2>/dev/null; then
    echo "oxcopyd died during the conformance run:" >&2
    tail -50 "$work/oxcopyd.log" >&2
    status=1
fi
exit $status
