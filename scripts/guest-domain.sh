#!/usr/bin/env bash
# A cross-node token copy, read back by the Linux kernel's own initiator:
# two oxcopyd nodes of one copy domain (A on 127.0.0.2, B on 127.0.0.1,
# one shared key file), a random pattern written to A's LUN through our
# initiator, `oxcopy token create` on A's LUN and `oxcopy token write` on
# B's LUN (B pulls the data from A over the node link), then the Linux
# guest of ../shared/tools/linux-guest boots, logs in to B with open-iscsi
# (iscsiadm, node record made by hand), reads the LUN with dd and prints
# its md5sum; the host compares it with the pattern's. Exit status 0 only
# when they match.
#
#   scripts/guest-domain.sh [--size MIB] [--bin DIR] [--keep] [--local]
#
#   --size MIB  LUN size (default 64)
#   --bin DIR   where oxcopyd and oxcopy are (default: cargo build --release
#               -p oxcopyd -p oxcopy-cli, then target/release)
#   --keep      keep the scratch directory (configs, logs, token)
#   --local     no copy domain: write the pattern straight to B's LUN (checks
#               the guest part alone)
#
# Needs root for the guest kit's setup (apt-get), python3 for free ports.
# Both daemons are started here, their PIDs recorded, and stopped by PID
# (SIGTERM, then SIGKILL after 10 s) on exit, whatever happens.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kit=${LINUX_GUEST_TOOLS:-$root/../shared/tools/linux-guest}
size_mib=64
bin=
keep=0
local_only=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --size) size_mib=${2:?}; shift 2 ;;
        --bin) bin=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        --local) local_only=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
        *) echo "guest-domain: unexpected argument $1" >&2; exit 2 ;;
    esac
done
[[ -x $kit/setup.sh && -x $kit/run.sh ]] || { echo "guest-domain: no guest kit at $kit" >&2; exit 2; }
if [[ -z $bin ]]; then
    (cd "$root" && cargo build --release -q -p oxcopyd -p oxcopy-cli)
    bin=${CARGO_TARGET_DIR:-$root/target}/release
fi
oxcopyd=$bin/oxcopyd
oxcopy=$bin/oxcopy
[[ -x $oxcopyd && -x $oxcopy ]] || { echo "guest-domain: $oxcopyd or $oxcopy missing" >&2; exit 2; }

echo "== guest kit (setup.sh)" >&2
"$kit/setup.sh" >&2
# The kit's QEMU is unpacked, not installed: the shared libraries it links
# against (libpmem1, libpixman, ...) must be on the host. Install what
# qemu-system-x86 depends on when ldd finds something missing (as root).
guest_kit=${GUEST_KIT:-/var/tmp/linux-guest}
qemu_bin=$guest_kit/q/usr/bin/qemu-system-x86_64
if LD_LIBRARY_PATH=$guest_kit/q/usr/lib/x86_64-linux-gnu ldd "$qemu_bin" | grep -q 'not found'; then
    [[ $(id -u) -eq 0 ]] || { echo "guest-domain: QEMU libraries missing (run as root to install them)" >&2; exit 2; }
    # shellcheck disable=SC2046 # one package name per word
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $(apt-cache depends qemu-system-x86 qemu-system-common | awk '$1 == "Depends:" && $2 ~ /^lib/ { print $2 }' | sort -u) >/dev/null
fi
if LD_LIBRARY_PATH=$guest_kit/q/usr/lib/x86_64-linux-gnu ldd "$qemu_bin" | grep 'not found' >&2; then
    echo "guest-domain: QEMU still misses libraries" >&2
    exit 2
fi

work=$(mktemp -d /tmp/oxcopy-guest-domain.XXXXXX)
pids=()
stop_all() {
    local p
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    pids=()
}
trap 'stop_all; if [[ $keep -eq 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi' EXIT

free_port() { python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1])' "$1"; }

iqn_a=iqn.2026-11.dev.oxcopy:guest-domain-a
iqn_b=iqn.2026-11.dev.oxcopy:guest-domain-b
# B on 127.0.0.1: the guest's 10.0.2.100:3260 is forwarded to 127.0.0.1:PORT.
ip_a=127.0.0.2 ip_b=127.0.0.1
port_a=$(free_port $ip_a) port_b=$(free_port $ip_b)
link_a=$(free_port $ip_a) link_b=$(free_port $ip_b)
metrics_b=$(free_port $ip_b)
(umask 077 && head -c 32 /dev/urandom >"$work/domain.key")

# node NAME IP PORT LINK IQN: write $work/NAME.toml (one 512-byte-block LUN).
node_config() {
    local name=$1 ip=$2 port=$3 link=$4 iqn=$5
    {
        printf '[server]\nlisten = ["%s:%s"]\ndata_dir = "%s"\nnop_interval = 0\n' "$ip" "$port" "$work/state-$name"
        [[ $name != B ]] || printf 'metrics = "%s:%s"\n' "$ip" "$metrics_b"
        printf '\n[[target]]\niqn = "%s"\n\n[[target.lun]]\nid = 0\npath = "%s"\nsize = "%sMiB"\n' \
            "$iqn" "$work/$name-lun0.img" "$size_mib"
        if [[ $local_only -eq 0 ]]; then
            printf '\n[copy_domain]\nkey_file = "%s"\nnode_listen = "%s:%s"\n' "$work/domain.key" "$ip" "$link"
            printf 'nodes = ["%s:%s", "%s:%s"]\n' "$ip_a" "$link_a" "$ip_b" "$link_b"
        fi
    } >"$work/$name.toml"
}

# start NAME PORT IP: run oxcopyd on $work/NAME.toml, record its PID, wait
# (at most 30 s) until it accepts iSCSI connections.
start() {
    local name=$1 ip=$2 port=$3 p
    RUST_LOG=${RUST_LOG:-warn} "$oxcopyd" --config "$work/$name.toml" >"$work/$name.log" 2>&1 &
    p=$!
    pids+=("$p")
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null; then
            echo "== node $name: oxcopyd PID $p on $ip:$port" >&2
            return 0
        fi
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    echo "guest-domain: node $name did not start:" >&2
    cat "$work/$name.log" >&2
    exit 1
}

node_config A $ip_a "$port_a" "$link_a" $iqn_a
node_config B $ip_b "$port_b" "$link_b" $iqn_b
start A $ip_a "$port_a"
start B $ip_b "$port_b"
url_a=iscsi://$ip_a:$port_a/$iqn_a/0
url_b=iscsi://$ip_b:$port_b/$iqn_b/0

head -c $((size_mib << 20)) /dev/urandom >"$work/pattern.img"
want=$(md5sum <"$work/pattern.img" | cut -d' ' -f1)
if [[ $local_only -eq 1 ]]; then
    echo "== --local: pattern written straight to B" >&2
    "$oxcopy" cp --method host "$work/pattern.img" "$url_b" >&2
else
    echo "== pattern to A, token on A, token write on B" >&2
    "$oxcopy" cp --method host "$work/pattern.img" "$url_a" >&2
    "$oxcopy" token create --ttl 120 -o "$work/a.tok" "$url_a" >&2
    # Point in time: A's first MiB changes after the token was made; B must
    # get the pattern, not the zeros.
    head -c $((1 << 20)) /dev/zero >"$work/zero.img"
    "$oxcopy" cp --method host "$work/zero.img" "$url_a?blocks=2048" >&2
    "$oxcopy" token write --delete --no-progress "$work/a.tok" "$url_b" >&2
    # B pulled the whole LUN from A over the node link.
    remote=$(python3 -c 'import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
text = opener.open(sys.argv[1], timeout=10).read().decode()
print(sum(int(float(l.split()[1])) for l in text.splitlines() if l.startswith("oxcopy_copy_bytes_total{method=\"remote\"}")))' \
        "http://$ip_b:$metrics_b/metrics")
    echo "== B's oxcopy_copy_bytes_total{method=\"remote\"}: $remote" >&2
    if [[ $remote -ne $((size_mib << 20)) ]]; then
        echo "guest-domain: FAIL: B pulled $remote bytes from A, not $((size_mib << 20))" >&2
        exit 1
    fi
fi

cat >"$work/guest.sh" <<EOF
#!/bin/sh
# Runs inside the guest: log in to B, read its LUN, print the md5sum.
mkdir -p /run/lock/iscsi /var/lib/iscsi /etc/iscsi/nodes
/usr/bin/iscsid || { echo "GUEST-FAIL iscsid"; exit 1; }
sleep 1
/usr/bin/iscsiadm -m node -o new -T $iqn_b -p 10.0.2.100:3260 >/dev/null || { echo "GUEST-FAIL node record"; exit 1; }
/usr/bin/iscsiadm -m node -T $iqn_b -p 10.0.2.100:3260 --login || { echo "GUEST-FAIL login"; exit 1; }
dev=
for i in \$(seq 150); do
    for d in /sys/block/sd*; do [ -e "\$d/size" ] && dev=/dev/\${d##*/}; done
    [ -n "\$dev" ] && [ -b "\$dev" ] && break
    dev=
    sleep 0.2
done
[ -n "\$dev" ] || { echo "GUEST-FAIL no disk"; exit 1; }
echo "GUEST-DISK \$dev \$(cat /sys/block/\${dev##*/}/size) sectors"
sum=\$(dd if=\$dev bs=1048576 count=$size_mib 2>/dev/null | md5sum | cut -d' ' -f1)
echo "GUEST-MD5 \$sum"
/usr/bin/iscsiadm -m node -T $iqn_b -p 10.0.2.100:3260 --logout >/dev/null 2>&1 || true
EOF
echo "== booting the guest (open-iscsi login to B at 127.0.0.1:$port_b)" >&2
"$kit/run.sh" --iscsi "$port_b" --timeout 300 "$work/guest.sh" | tee "$work/guest.log" >&2 || true
got=$(sed -n 's/^GUEST-MD5 \([0-9a-f]*\).*/\1/p' "$work/guest.log" | head -n1)
echo "pattern md5 $want; guest read ${got:-nothing}" >&2
if [[ -z $got || $got != "$want" ]]; then
    echo "guest-domain: FAIL: the guest did not read the pattern from B's LUN" >&2
    exit 1
fi
echo "guest-domain: OK ($size_mib MiB, md5 $want)"
