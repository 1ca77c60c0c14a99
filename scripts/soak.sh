#!/usr/bin/env bash
# The long soak: 16 sessions of mixed reads, writes, COMPARE AND WRITE,
# EXTENDED COPY and token copies with checksummed data against the real
# oxcopyd for SECONDS (default 60), after measuring 4 KiB read latency idle
# and during a COPY_MIB (default 4096) MiB EXTENDED COPY. Prints ops, p50/p99
# latencies and the daemon's VmRSS at start, peak and end.
#
#   scripts/soak.sh            # 60 s
#   scripts/soak.sh 600        # ten minutes
#   COPY_MIB=16384 scripts/soak.sh 300
#
# With --rbd the LUNs are Ceph RBD images of the cluster OXCOPY_CEPH_CONF
# names (scripts/ceph-cluster.sh start DIR prints one; oxcopyd is built with
# --features ceph): the large copy goes file -> RBD (COPY_MIB default 1024;
# the test cluster keeps two replicas), the sessions copy RBD -> RBD and
# RBD -> file.
#
#   OXCOPY_CEPH_CONF=DIR/ceph.conf scripts/soak.sh --rbd [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} == --rbd ]]; then
    shift
    : "${OXCOPY_CEPH_CONF:?soak.sh --rbd: set OXCOPY_CEPH_CONF (scripts/ceph-cluster.sh start DIR prints one)}"
    export OXCOPY_REQUIRE_CEPH=1 OXCOPY_SOAK_SECS=${1:-60} OXCOPY_SOAK_COPY_MIB=${COPY_MIB:-1024}
    exec cargo test -p oxcopyd --release --features ceph --test soak -- --nocapture --exact soak_on_rbd
fi
export OXCOPY_SOAK_SECS=${1:-60}
export OXCOPY_SOAK_COPY_MIB=${COPY_MIB:-4096}
exec cargo test -p oxcopyd --release --test soak -- --nocapture --exact soak
