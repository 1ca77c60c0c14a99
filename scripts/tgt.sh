#!/usr/bin/env bash
# Start/stop the peer target tgt (tgtd) on loopback, for conformance and
# benchmark comparisons with oxcopyd.
#
#   scripts/tgt.sh start PORT IMGDIR [--size SIZE] [--iqn IQN]
#   scripts/tgt.sh stop  PORT IMGDIR
#   scripts/tgt.sh url   PORT IMGDIR
#
# start: runs `tgtd -f` in the background listening on 127.0.0.1:PORT only,
#   with its management socket on control port PORT (/var/run/tgtd/socket.PORT,
#   so it never clashes with a system tgtd or another instance), one target
#   (default iqn.2026-11.dev.oxcopy:tgt) and one file-backed LUN of SIZE
#   (default 1GiB, the same size as the oxcopyd bench LUN) at IMGDIR/tgt-lun.img,
#   created sparse if missing (an existing image is used as is). tgt's LUN 0 is
#   its controller; the disk is LUN 1. Prints the iSCSI URL on stdout.
#   State: IMGDIR/tgtd-PORT.pid and IMGDIR/tgtd-PORT.log.
# stop: shuts that tgtd down through its control socket (tgtd ignores TERM
#   while it has targets), then signals exactly the recorded PID if it is
#   still alive (TERM, then KILL).
# url: prints the URL of a started instance.
set -euo pipefail

usage() {
    echo "usage: $0 start|stop|url PORT IMGDIR [--size SIZE] [--iqn IQN]" >&2
    exit 2
}

[[ $# -ge 3 ]] || usage
cmd=$1 port=$2 imgdir=$3
shift 3
size=1G
iqn=iqn.2026-11.dev.oxcopy:tgt
while [[ $# -gt 0 ]]; do
    case $1 in
        --size) size=${2:?}; shift 2 ;;
        --iqn) iqn=${2:?}; shift 2 ;;
        *) usage ;;
    esac
done
if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    echo "bad port: $port" >&2
    exit 2
fi

pidfile=$imgdir/tgtd-$port.pid
logfile=$imgdir/tgtd-$port.log
img=$imgdir/tgt-lun.img
url="iscsi://127.0.0.1:$port/$iqn/1"

tgtadm_() { timeout 10 tgtadm -C "$port" --lld iscsi "$@"; }

# True when PID is a live (not zombie) tgtd: guards against a recycled PID,
# and an exited tgtd whose new parent has not reaped it yet counts as gone.
is_our_tgtd() {
    local pid=$1 stat
    [[ -n $pid ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ ${stat#*) } != Z* ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == tgtd ]]
}

wait_gone() { # PID TENTHS
    for _ in $(seq "$2"); do
        is_our_tgtd "$1" || return 0
        sleep 0.1
    done
    ! is_our_tgtd "$1"
}

stop() {
    [[ -f $pidfile ]] || { echo "tgt.sh: no $pidfile; nothing to stop" >&2; return 0; }
    local pid
    pid=$(cat "$pidfile")
    if is_our_tgtd "$pid"; then
        # tgtd ignores SIGTERM while it has targets: shut it down through its
        # own control socket first, then signal exactly this PID if needed.
        # Deleting the target fails while a LUN still has commands in flight
        # (a client being torn down): retry for a few seconds.
        local out='' deleted=0
        for _ in $(seq 25); do
            if out=$(tgtadm_ --op delete --mode target --tid 1 --force 2>&1); then
                deleted=1
                break
            fi
            sleep 0.2
        done
        ((deleted)) || echo "tgt.sh: deleting the target: $out" >&2
        out=$(timeout 10 tgtadm -C "$port" --op delete --mode system 2>&1) ||
            echo "tgt.sh: tgtadm --op delete --mode system: $out" >&2
        if ! wait_gone "$pid" 50; then
            kill -TERM "$pid" 2>/dev/null || true
            if ! wait_gone "$pid" 30; then
                echo "tgt.sh: tgtd $pid did not exit; killing" >&2
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    rm -f "$pidfile"
}

start() {
    command -v tgtd >/dev/null || { echo "tgtd not installed (apt-get install -y tgt)" >&2; exit 1; }
    mkdir -p "$imgdir"
    if [[ -f $pidfile ]] && is_our_tgtd "$(cat "$pidfile")"; then
        echo "tgt.sh: tgtd already running on port $port (pid $(cat "$pidfile"))" >&2
        exit 1
    fi
    if ss -Hltn "sport = :$port" | grep -q .; then
        echo "tgt.sh: port $port is already in use" >&2
        exit 1
    fi
    [[ -e $img ]] || truncate -s "$size" "$img"

    # setsid: keep tgtd out of the caller's process group (a ^C in a wrapper
    # script must go through its trap, which stops tgtd by PID).
    setsid tgtd -f -C "$port" --iscsi "portal=127.0.0.1:$port" >"$logfile" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$pidfile"

    # Wait for the management socket and the portal.
    local ok=0
    for _ in $(seq 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "tgt.sh: tgtd exited at startup; log:" >&2
            cat "$logfile" >&2
            rm -f "$pidfile"
            exit 1
        fi
        if tgtadm_ --op show --mode sys >/dev/null 2>&1 && ss -Hltn "sport = :$port" | grep -q .; then
            ok=1
            break
        fi
        sleep 0.1
    done
    if ((!ok)); then
        echo "tgt.sh: tgtd did not come up within 10 s; log:" >&2
        cat "$logfile" >&2
        stop
        exit 1
    fi
    if ! {
        tgtadm_ --op new --mode target --tid 1 --targetname "$iqn" &&
            tgtadm_ --op new --mode logicalunit --tid 1 --lun 1 --backing-store "$img" &&
            tgtadm_ --op bind --mode target --tid 1 --initiator-address ALL
    }; then
        echo "tgt.sh: configuring tgtd failed; log:" >&2
        cat "$logfile" >&2
        stop
        exit 1
    fi
    echo "$url"
}

case $cmd in
    start) start ;;
    stop) stop ;;
    url) echo "$url" ;;
    *) usage ;;
esac
