#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and end-to-end tests, and the
# libiscsi conformance suites against a scratch oxcopyd. Installs missing
# Debian packages first (needs root for that). Exit status non-zero on any
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v iscsi-test-cu >/dev/null || need+=(libiscsi-bin)
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
[[ -x /usr/sbin/tgtd ]] || need+=(tgt)
if ((${#need[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "test-all: missing ${need[*]} (run as root to install them)" >&2
        exit 1
    fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings

echo "== cargo test (unit, property and end-to-end tests)"
# As root the reflink/copy_file_range tests make real XFS and ext4 loop
# filesystems and the CLI tests start the peer target tgt; require both there
# so a broken setup fails instead of skipping.
if [[ $(id -u) -eq 0 ]]; then export OXCOPY_REQUIRE_XFS=1 OXCOPY_REQUIRE_TGT=1; fi
cargo test --workspace --release 2>&1 | tee target/cargo-test.log
grep -q "test result: ok" target/cargo-test.log

echo "== Linux guest (open-iscsi) reads a cross-node token copy"
# Two oxcopyd nodes of one copy domain, a token made on A written on B,
# read back by the kernel's iSCSI initiator in the QEMU guest of
# ../shared/tools/linux-guest (its setup installs Debian packages: root).
if [[ $(id -u) -eq 0 ]]; then
    scripts/guest-domain.sh
    echo "== Linux guest (nvme-tcp, nvme-cli): discover, connect, I/O, dsm, write-zeroes, compare, copy, mkfs, reconnect"
    scripts/guest-nvme.sh
elif [[ ${OXCOPY_REQUIRE_GUEST:-0} == 1 ]]; then
    echo "test-all: OXCOPY_REQUIRE_GUEST=1 but the guest test needs root" >&2
    exit 1
else
    echo "skipped: the Linux guest test needs root"
fi

echo "== libiscsi conformance against a scratch oxcopyd"
scripts/conformance-oxcopyd.sh
echo "== libiscsi conformance: the LU on a striped volume, and on a volume stacked 3 deep"
scripts/conformance-oxcopyd.sh --lun0 striped
scripts/conformance-oxcopyd.sh --lun0 stacked

echo "== Ceph RBD: the backend against a real cluster, libiscsi conformance on an RBD LUN, copies and refusals end to end"
# A single-machine cluster (one monitor, two OSDs on 127.0.0.1) from
# Debian's packages, stopped by PID on exit. As root (CI) the RBD tests are
# required: without the packages this step fails instead of skipping.
if command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null && [[ -e /usr/include/rbd/librbd.h && -e /usr/include/rados/librados.hpp ]]; then
    ceph_dir=$(mktemp -d /tmp/oxcopy-ceph.XXXXXX)
    trap 'scripts/ceph-cluster.sh stop "$ceph_dir" >/dev/null 2>&1 || true; rm -rf "$ceph_dir"' EXIT
    scripts/ceph-cluster.sh start "$ceph_dir"
    export OXCOPY_CEPH_CONF=$ceph_dir/ceph.conf OXCOPY_REQUIRE_CEPH=1
    cargo clippy -p oxcopy-rbd -p oxcopyd --all-targets --release --features oxcopyd/ceph -- -D warnings
    cargo test --release -p oxcopy-rbd --features ceph 2>&1 | tee target/cargo-test-rbd.log
    grep -q "test result: ok" target/cargo-test-rbd.log
    scripts/conformance-oxcopyd.sh --lun0 rbd
    OXCOPY_CEPH_DIR=$ceph_dir scripts/rbd-e2e.sh
    scripts/rbd-domain.sh
    scripts/rbd-takeover.sh
    echo "== Ceph RBD: the crash test (SIGKILL mid-workload, restart, nothing acknowledged lost) and the soak on RBD LUNs"
    # 3 rounds (each restart waits ~30 s for the killed daemon's
    # exclusive locks) and 20 s of mixed I/O after a 256 MiB file -> RBD copy.
    scripts/crash.sh --rbd 3
    COPY_MIB=256 scripts/soak.sh --rbd 20
    unset OXCOPY_REQUIRE_CEPH
    scripts/ceph-cluster.sh stop "$ceph_dir"
elif [[ $(id -u) -eq 0 || ${OXCOPY_REQUIRE_CEPH:-0} == 1 ]]; then
    echo "test-all: the Ceph packages are missing (apt-get install ceph-mon ceph-osd ceph-common librbd-dev librados-dev libradospp-dev)" >&2
    exit 1
else
    echo "skipped: no Ceph packages (not root)"
fi

echo "== fuzz targets: build, then a short run of each"
# cargo-fuzz comes from crates.io when missing; scripts/fuzz.sh falls back to
# RUSTC_BOOTSTRAP=1 without a nightly toolchain. OXCOPY_FUZZ_SECS per target
# (default 15; JOBS at a time, default the CPU count), new inputs under target/.
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
FUZZ_WORK=$PWD/target/fuzz-ci scripts/fuzz.sh "${OXCOPY_FUZZ_SECS:-15}"
