# shellcheck shell=bash disable=SC2154 # work, iqn, oxcopyd, url, ...: set by the sourcing script
# Shared by bench/xcopy.sh, bench/odx.sh and bench/copy.sh (sourced, not
# run): usage from the script's header, free ports, oxcopyd's metrics, loop
# filesystems and one oxcopyd at a time, each torn down by `cleanup` (stop
# oxcopyd by PID, unmount, detach exactly the loop device attached here).
#
# The caller sets `work` (a scratch dir) and `oxcopyd` (the binary) before
# using the loop filesystem and daemon functions.

prog=${0##*/}
pid=
mnt=
dev=

# The comment block at the top of the script, as help.
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

metric() { # metric PORT METHOD -> bytes
    curl -s "http://127.0.0.1:$1/metrics" |
        awk -v m="oxcopy_copy_bytes_total{method=\"$2\"}" '$1 == m { print $2 }'
}

# make_loop_fs FS SIZE [MOUNT OPTION...]: a SIZE image file $work/FS.img
# (sets img), attached to a loop device (sets dev), made an FS filesystem
# (xfs with reflink=1, or ext4) and mounted on $work/mnt-FS (sets mnt).
make_loop_fs() {
    local fs=$1 size=$2
    shift 2
    img=$work/$fs.img
    truncate -s "$size" "$img"
    dev=$(losetup -f --show "$img")
    case $fs in
        xfs) mkfs.xfs -q -f -m reflink=1 "$dev" ;;
        ext4) mkfs.ext4 -q -F "$dev" ;;
        *) echo "$prog: unknown filesystem $fs" >&2; exit 2 ;;
    esac
    mnt=$work/mnt-$fs
    mkdir -p "$mnt"
    mount -t "$fs" "$@" "$dev" "$mnt"
    echo "== $fs on $dev" >&2
}

# Unmount the filesystem of make_loop_fs and detach its loop device.
release_loop_fs() {
    umount "$mnt"
    mnt=
    losetup -d "$dev"
    dev=
}

# oxcopyd_config FILE PORT DATA_DIR SRC DST [METRICS_PORT]: a configuration
# with one target ($iqn) whose LUN 0 is SRC and LUN 1 is DST.
oxcopyd_config() {
    {
        printf '[server]\nlisten = ["127.0.0.1:%s"]\ndata_dir = "%s"\n' "$2" "$3"
        [[ -z ${6:-} ]] || printf 'metrics = "127.0.0.1:%s"\n' "$6"
        printf 'nop_interval = 0\n[[target]]\niqn = "%s"\n' "$iqn"
        printf '[[target.lun]]\nid = 0\npath = "%s"\n[[target.lun]]\nid = 1\npath = "%s"\n' "$4" "$5"
    } >"$1"
}

# start_oxcopyd CONFIG LOG PORT: run oxcopyd (sets pid) and wait until it
# accepts connections on PORT; if it dies first, print its log and exit 1.
start_oxcopyd() {
    RUST_LOG=${RUST_LOG:-warn} "$oxcopyd" --config "$1" >"$2" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null; then break; fi
        kill -0 "$pid" 2>/dev/null || { cat "$2" >&2; exit 1; }
        sleep 0.1
    done
}

# Stop the oxcopyd of start_oxcopyd (SIGTERM) and reap it.
stop_oxcopyd() {
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
}

# offload_copy LOG COMMAND...: run a copy the target does (output appended
# to LOG); the first time (while the caller's `moved` array is empty), put
# in `moved` the bytes oxcopyd's metrics (on port $mport) attribute to
# reflink, copy_file_range, read_write and hole for it.
offload_copy() {
    local log=$1 before=() m i=0
    shift
    for m in reflink copy_file_range read_write hole; do before+=("$(metric "$mport" $m)"); done
    "$@" | tee -a "$log" >&2
    if ((${#moved[@]} == 0)); then
        for m in reflink copy_file_range read_write hole; do
            moved+=($(($(metric "$mport" $m) - before[i])))
            i=$((i + 1))
        done
    fi
}

# host_copy LOG: LUN 0 to LUN 1 of $url by READ(16) + WRITE(16) through our
# initiator; direct_copy LOG: copy_file_range(2) from $src to $dst.
host_copy() { "$copy_bench" host "$url" --src-lun 0 --dst-lun 1 | tee -a "$1" >&2; }
direct_copy() { "$copy_bench" direct --src "$src" --dst "$dst" | tee -a "$1" >&2; }

# run_rotating REPS WAY...: run_WAY for every WAY, REPS times, the order
# rotating from one repetition to the next so that no way always follows
# the same other one (page cache and writeback state).
run_rotating() {
    local reps=$1 rep k
    shift
    local ways=("$@")
    for rep in $(seq "$reps"); do
        for ((k = 0; k < ${#ways[@]}; k++)); do
            "run_${ways[(rep + k) % ${#ways[@]}]}"
        done
    done
}

# For the EXIT trap, whatever state the run is in: SIGTERM to oxcopyd (then
# SIGKILL after 10 s), by PID.
kill_oxcopyd() {
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        pid=
    fi
}

# For the EXIT trap: unmount (lazily if busy) and detach what is attached.
drop_loop_fs() {
    if [[ -n $mnt ]]; then
        umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
        mnt=
    fi
    if [[ -n $dev ]]; then
        losetup -d "$dev" 2>/dev/null || true
        dev=
    fi
}

cleanup() {
    kill_oxcopyd
    drop_loop_fs
}
