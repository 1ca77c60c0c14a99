#!/usr/bin/env bash
# The long crash-safety run: ROUNDS (default 100) rounds of writes (FUA or
# synced), EXTENDED COPY and token copies against the real oxcopyd, killed
# with SIGKILL at a random moment each round, restarted on the same data dir
# and checked (durable writes present, untouched bytes unchanged, APTPL
# reservations back, no stray files). A failure prints OXCOPY_CRASH_SEED;
# rerun with it to reproduce:
#
#   scripts/crash.sh                  # 100 rounds
#   scripts/crash.sh 1000
#   OXCOPY_CRASH_SEED=1234 scripts/crash.sh 20
#
# With --rbd the LUNs are Ceph RBD images of the cluster OXCOPY_CEPH_CONF
# names (scripts/ceph-cluster.sh start DIR prints one; oxcopyd is built with
# --features ceph), plus a file LUN for copies RBD -> file and file -> RBD;
# ROUNDS defaults to 10 there: each restart waits ~30-40 s for the killed
# daemon's exclusive locks (see crates/oxcopyd/tests/crash.rs, `restart`).
#
#   OXCOPY_CEPH_CONF=DIR/ceph.conf scripts/crash.sh --rbd [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} == --rbd ]]; then
    shift
    : "${OXCOPY_CEPH_CONF:?crash.sh --rbd: set OXCOPY_CEPH_CONF (scripts/ceph-cluster.sh start DIR prints one)}"
    export OXCOPY_REQUIRE_CEPH=1 OXCOPY_CRASH_ROUNDS=${1:-10}
    exec cargo test -p oxcopyd --release --features ceph --test crash -- --nocapture --exact \
        sigkill_mid_workload_loses_nothing_acknowledged_on_rbd
fi
export OXCOPY_CRASH_ROUNDS=${1:-100}
exec cargo test -p oxcopyd --release --test crash -- --nocapture --exact sigkill_mid_workload_loses_nothing_acknowledged
