#!/usr/bin/env bash
# Copies and reads through stacked volumes (root: loop filesystems).
#
#   bench/volumes.sh [--size GIB] [--reps N] [--filesystems "xfs ext4"]
#                    [--oxcopyd PATH] [--bench-dir DIR] [--results DIR] [--keep]
#
# On each filesystem (a loop image; XFS with reflink=1, ext4), two striped
# volumes of 4 legs (64 KiB stripes), --size GiB each (default 4), legs
# filled with random data; LUN 0 = the source volume, LUN 1 = the
# destination, LUN 2 = one plain file of the same size (for the reads).
# Each of --reps rounds (default 3, order rotating) copies the source
# volume to the destination three ways:
#   token   POPULATE TOKEN + WRITE USING TOKEN (oxcopy-odx-bench token-copy)
#   host    READ(16) + WRITE(16) through our initiator (oxcopy-copy-bench host)
#   direct  copy_file_range(2) from each source leg file to its destination
#           leg, run directly (oxcopy-copy-bench direct; times summed)
# each time into a freshly punched destination, checked with cmp. Then
# 1 MiB READs at QD8 for 10 s (oxcopy-io-bench --read) from the striped
# volume LUN and from the single-file LUN, alternating, --reps times each.
# Prints and writes DIR/volumes.csv: median seconds, host/token (goal on
# XFS ≥ 100), direct/token (the token copy's speed as a fraction of
# copy_file_range; goal on ext4 ≥ 0.8), the bytes per copy method for one
# token copy, and the read MiB/s of striped vs single file.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
source "$here/lib.sh"

gib=4
reps=3
filesystems="xfs ext4"
oxcopyd=
bin=
results=
keep=0
iqn=iqn.2026-12.dev.oxcopy:volumes-bench
while [[ $# -gt 0 ]]; do
    case $1 in
        --size) gib=${2:?}; shift 2 ;;
        --reps) reps=${2:?}; shift 2 ;;
        --filesystems) filesystems=${2:?}; shift 2 ;;
        --oxcopyd) oxcopyd=${2:?}; shift 2 ;;
        --bench-dir) bin=${2:?}; shift 2 ;;
        --results) results=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) usage ;;
        *) echo "$prog: unexpected argument: $1" >&2; usage ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "$prog: needs root (loop filesystems)" >&2; exit 2; }
for t in losetup mkfs.xfs mkfs.ext4 fallocate curl cmp; do
    command -v "$t" >/dev/null || { echo "$prog: $t not installed" >&2; exit 2; }
done
if [[ -z $bin ]]; then
    (cd "$root" && cargo build --release -q -p oxcopyd -p oxcopy-bench)
    bin=${CARGO_TARGET_DIR:-$root/target}/release
fi
oxcopyd=${oxcopyd:-$bin/oxcopyd}
copy_bench=$bin/oxcopy-copy-bench
odx_bench=$bin/oxcopy-odx-bench
io_bench=$bin/oxcopy-io-bench
[[ -n $results ]] || results=$root/bench-results/volumes-$(date +%Y%m%d-%H%M%S)
mkdir -p "$results"
results=$(cd "$results" && pwd)
work=$(mktemp -d /tmp/oxcopy-volumes-bench.XXXXXX)
trap 'cleanup; [[ $keep -eq 1 ]] || rm -rf "$work"' EXIT

secs_of() { sed -n 's/^RESULT .* secs=\([0-9.]*\).*/\1/p' "$1"; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

leg=$((gib << 28)) # a quarter of the volume, bytes
csv=$results/volumes.csv
echo "fs,size_gib,token_s,host_s,direct_s,host_over_token,token_speed_vs_direct,reflink_bytes,cfr_bytes,rw_bytes,hole_bytes,striped_read_mib_s,file_read_mib_s,striped_over_file" >"$csv"

for fs in $filesystems; do
    make_loop_fs "$fs" "$((3 * gib + 3))G"
    members() { local p=$1 i out=(); for i in 0 1 2 3; do out+=("\"$mnt/$p$i.img:$leg\""); done; (IFS=,; echo "${out[*]}"); }
    for i in 0 1 2 3; do
        truncate -s "$leg" "$mnt/s$i.img" "$mnt/d$i.img"
        "$copy_bench" fill --file "$mnt/s$i.img" >/dev/null
    done
    truncate -s "$((gib << 30))" "$mnt/single.img"
    "$copy_bench" fill --file "$mnt/single.img" >/dev/null
    port=$(free_port) mport=$(free_port)
    cat >"$work/oxcopyd.toml" <<EOF
[server]
listen = ["127.0.0.1:$port"]
data_dir = "$work/state-$fs"
metrics = "127.0.0.1:$mport"
nop_interval = 0

[[volume]]
name = "src"
type = "striped"
stripe_size = "64KiB"
members = [$(members s)]

[[volume]]
name = "dst"
type = "striped"
stripe_size = "64KiB"
members = [$(members d)]

[[target]]
iqn = "$iqn"
[[target.lun]]
id = 0
volume = "src"
[[target.lun]]
id = 1
volume = "dst"
[[target.lun]]
id = 2
path = "$mnt/single.img"
EOF
    cp "$work/oxcopyd.toml" "$results/$fs-oxcopyd.toml"
    start_oxcopyd "$work/oxcopyd.toml" "$results/$fs-oxcopyd.log" "$port"
    url=iscsi://127.0.0.1:$port/$iqn
    reset_dst() { for i in 0 1 2 3; do fallocate -p -o 0 -l "$leg" "$mnt/d$i.img"; done; sync; }
    check() {
        for i in 0 1 2 3; do
            cmp "$mnt/s$i.img" "$mnt/d$i.img" || { echo "$prog: $1 copy differs from the source (leg $i)" >&2; exit 1; }
        done
    }
    : >"$results/$fs-token.log" >"$results/$fs-host.log" >"$results/$fs-direct.log"
    run_token() {
        reset_dst
        offload_copy "$results/$fs-token.log" "$odx_bench" token-copy "$url" --src-lun 0 --dst-lun 1
        check token
    }
    run_host() {
        reset_dst
        "$copy_bench" host "$url" --src-lun 0 --dst-lun 1 | tee -a "$results/$fs-host.log" >&2
        check host
    }
    run_direct() {
        reset_dst
        local total=0 s i
        for i in 0 1 2 3; do
            s=$("$copy_bench" direct --src "$mnt/s$i.img" --dst "$mnt/d$i.img" | sed -n 's/^RESULT .* secs=\([0-9.]*\).*/\1/p')
            total=$(awk -v a="$total" -v b="$s" 'BEGIN { printf "%.6f", a + b }')
        done
        echo "RESULT mode=direct-4-legs bytes=$((gib << 30)) secs=$total" | tee -a "$results/$fs-direct.log" >&2
        check direct
    }
    moved=()
    run_rotating "$reps" token host direct
    # Reads: striped volume vs one file, 1 MiB at QD8, alternating.
    : >"$results/$fs-read-striped.log" >"$results/$fs-read-file.log"
    for rep in $(seq "$reps"); do
        for l in 0 2; do
            name=striped
            [[ $l == 2 ]] && name=file
            timeout 60 "$io_bench" --read -m 8 -b 2048 -t 10 "$url/$l" | tee -a "$results/$fs-read-$name.log" >&2
        done
    done
    stop_oxcopyd
    ts=$(secs_of "$results/$fs-token.log" | median)
    hs=$(secs_of "$results/$fs-host.log" | median)
    ds=$(secs_of "$results/$fs-direct.log" | median)
    rs=$(sed -n 's/^RESULT .*mib_s=\([0-9.]*\).*/\1/p' "$results/$fs-read-striped.log" | median)
    rf=$(sed -n 's/^RESULT .*mib_s=\([0-9.]*\).*/\1/p' "$results/$fs-read-file.log" | median)
    python3 - "$fs" "$gib" "$ts" "$hs" "$ds" "${moved[@]}" "$rs" "$rf" >>"$csv" <<'PY'
import sys
fs, n = sys.argv[1], sys.argv[2]
ts, hs, ds = map(float, sys.argv[3:6])
moved = sys.argv[6:10]
rs, rf = map(float, sys.argv[10:12])
print(f"{fs},{n},{ts:.6f},{hs:.6f},{ds:.6f},{hs / ts:.1f},{ds / ts:.2f}," + ",".join(moved) + f",{rs:.1f},{rf:.1f},{rs / rf:.2f}")
PY
    rm -f "$mnt"/*.img
    release_loop_fs
done
column -s, -t "$csv"
echo "$prog: results in $results" >&2
