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
set -euo pipefail
cd "$(dirname "$0")/.."
export OXCOPY_SOAK_SECS=${1:-60}
export OXCOPY_SOAK_COPY_MIB=${COPY_MIB:-4096}
exec cargo test -p oxcopyd --release --test soak -- --nocapture
