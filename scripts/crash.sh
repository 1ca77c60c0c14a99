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
set -euo pipefail
cd "$(dirname "$0")/.."
export OXCOPY_CRASH_ROUNDS=${1:-100}
exec cargo test -p oxcopyd --release --test crash -- --nocapture
