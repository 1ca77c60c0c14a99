#!/usr/bin/env bash
# The Linux kernel's NVMe/TCP host (nvme-tcp, nvme-cli 2.3) against oxcopyd,
# in the QEMU guest of ../shared/tools/linux-guest. One oxcopyd serves an
# iSCSI LUN and an NVMe subsystem whose namespace 1 is that LUN's file (both
# protocols on one file) and whose namespace 2 is a file of its own. Inside
# the guest: nvme discover, connect, id-ctrl / id-ns (Copy advertised),
# O_DIRECT write and read-back, nvme dsm / write-zeroes / compare, nvme copy
# (format 0h, several ranges, data checked), a format 2h cross-namespace
# Copy through io-passthru (after enabling it with Host Behavior Support),
# mkfs.ext4 + mount + fsck on namespace 2; then the target is restarted
# while connected and the host reconnects and reads the data back; finally
# nvme disconnect. The host side checks what the guest reports, and that
# the iSCSI LUN (read with our initiator) holds what the guest copied.
#
#   scripts/guest-nvme.sh [--bin DIR] [--keep]
#
#   --bin DIR   where oxcopyd and oxcopy are (default: cargo build --release
#               -p oxcopyd -p oxcopy-cli, then target/release)
#   --keep      keep the scratch directory (config, logs, guest output)
#
# Needs root for the guest kit's setup (apt-get), python3 for free ports and
# the restart signal. The daemon is started here, its PID kept in a file, and
# stopped by PID (SIGTERM, then SIGKILL after 10 s) on exit, whatever happens.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kit=${LINUX_GUEST_TOOLS:-$root/../shared/tools/linux-guest}
bin=
keep=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --bin) bin=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
        *) echo "guest-nvme: unexpected argument $1" >&2; exit 2 ;;
    esac
done
[[ -x $kit/setup.sh && -x $kit/run.sh ]] || { echo "guest-nvme: no guest kit at $kit" >&2; exit 2; }
if [[ -z $bin ]]; then
    (cd "$root" && cargo build --release -q -p oxcopyd -p oxcopy-cli)
    bin=${CARGO_TARGET_DIR:-$root/target}/release
fi
oxcopyd=$bin/oxcopyd
oxcopy=$bin/oxcopy
[[ -x $oxcopyd && -x $oxcopy ]] || { echo "guest-nvme: $oxcopyd or $oxcopy missing" >&2; exit 2; }

echo "== guest kit (setup.sh)" >&2
"$kit/setup.sh" >&2
guest_kit=${GUEST_KIT:-/var/tmp/linux-guest}
qemu_bin=$guest_kit/q/usr/bin/qemu-system-x86_64
if LD_LIBRARY_PATH=$guest_kit/q/usr/lib/x86_64-linux-gnu ldd "$qemu_bin" | grep -q 'not found'; then
    [[ $(id -u) -eq 0 ]] || { echo "guest-nvme: QEMU libraries missing (run as root to install them)" >&2; exit 2; }
    # shellcheck disable=SC2046 # one package name per word
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $(apt-cache depends qemu-system-x86 qemu-system-common | awk '$1 == "Depends:" && $2 ~ /^lib/ { print $2 }' | sort -u) >/dev/null
fi

work=$(mktemp -d /tmp/oxcopy-guest-nvme.XXXXXX)
pidfile=$work/oxcopyd.pid
watcher=
stop_all() {
    [[ -z $watcher ]] || kill -TERM "$watcher" 2>/dev/null || true
    local p
    p=$(cat "$pidfile" 2>/dev/null || true)
    if [[ -n $p ]]; then
        kill -TERM "$p" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    fi
    [[ -z $watcher ]] || wait "$watcher" 2>/dev/null || true
}
trap 'stop_all; if [[ $keep -eq 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

iqn=iqn.2026-12.dev.oxcopy:guest-nvme
nqn=nqn.2026-12.dev.oxcopy:guest-nvme
iscsi_port=$(free_port) nvme_port=$(free_port) signal_port=$(free_port)
size_mib=64
cat >"$work/oxcopyd.toml" <<EOF
[server]
listen = ["127.0.0.1:$iscsi_port"]
data_dir = "$work/state"
nop_interval = 0

[[target]]
iqn = "$iqn"
[[target.lun]]
id = 0
path = "$work/lun0.img"
size = "${size_mib}MiB"

[[subsystem]]
nqn = "$nqn"
listen = ["127.0.0.1:$nvme_port"]
[[subsystem.namespace]]
nsid = 1
path = "$work/lun0.img"
[[subsystem.namespace]]
nsid = 2
path = "$work/ns2.img"
size = "${size_mib}MiB"
EOF

# start: run oxcopyd, keep its PID in $pidfile, wait (at most 30 s) until
# its NVMe/TCP listener accepts connections.
start() {
    RUST_LOG=${RUST_LOG:-info} "$oxcopyd" --config "$work/oxcopyd.toml" >>"$work/oxcopyd.log" 2>&1 &
    local p=$!
    echo "$p" >"$pidfile"
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$nvme_port") 2>/dev/null; then
            echo "== oxcopyd PID $p (iSCSI 127.0.0.1:$iscsi_port, NVMe/TCP 127.0.0.1:$nvme_port)" >&2
            return 0
        fi
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    echo "guest-nvme: oxcopyd did not start:" >&2
    cat "$work/oxcopyd.log" >&2
    exit 1
}
start

# The restart: when the guest connects to its 10.0.2.100:3260 (forwarded to
# $signal_port), the daemon is stopped (SIGTERM) and started again while the
# guest stays connected; the guest then reads through the reconnection.
(
    python3 - "$signal_port" <<'PY' || exit 0
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1)
s.settimeout(280)
c, _ = s.accept()
c.close()
PY
    p=$(cat "$pidfile")
    echo "== restart requested by the guest: stopping oxcopyd PID $p" >&2
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    sleep 2
    start
) &
watcher=$!

cat >"$work/guest.sh" <<EOF
#!/bin/sh
# Runs inside the guest. Every check prints GUEST-OK NAME or GUEST-FAIL NAME.
N=/usr/bin/nvme
ok() { echo "GUEST-OK \$1"; }
fail() { echo "GUEST-FAIL \$*"; }
bs=512
\$N discover -t tcp -a 10.0.2.101 -s 4420 >/tmp/disc 2>&1
if grep -q "subnqn: *$nqn" /tmp/disc; then ok discover; else cat /tmp/disc; fail discover; fi
\$N connect -t tcp -a 10.0.2.101 -s 4420 -n $nqn --reconnect-delay=1 --ctrl-loss-tmo=120 || { fail connect; exit 1; }
for i in \$(seq 100); do [ -b /dev/nvme0n1 ] && [ -b /dev/nvme0n2 ] && break; sleep 0.2; done
[ -b /dev/nvme0n1 ] && [ -b /dev/nvme0n2 ] && ok connect || { ls /dev/nvme*; fail "connect: no namespaces"; exit 1; }

\$N id-ctrl /dev/nvme0 >/tmp/idctrl 2>&1
oncs=\$(sed -n 's/^oncs *: *//p' /tmp/idctrl)
if [ -n "\$oncs" ] && [ \$((oncs & 0x100)) -ne 0 ] && grep -q "subnqn *: *$nqn" /tmp/idctrl; then ok "id-ctrl oncs=\$oncs"; else cat /tmp/idctrl; fail id-ctrl; fi
\$N id-ns /dev/nvme0n1 >/tmp/idns 2>&1
nsze=\$(sed -n 's/^nsze *: *//p' /tmp/idns)
msrc=\$(sed -n 's/^msrc *: *//p' /tmp/idns)
if [ "\$((nsze))" -eq $((size_mib * 2048)) ] && [ -n "\$msrc" ] && [ "\$((msrc))" -gt 0 ]; then ok "id-ns nsze=\$nsze msrc=\$msrc"; else cat /tmp/idns; fail id-ns; fi

# O_DIRECT write and read-back (8 MiB at 1 MiB).
dd if=/dev/urandom of=/tmp/pat bs=1M count=8 2>/dev/null
dd if=/tmp/pat of=/dev/nvme0n1 bs=1M seek=1 oflag=direct 2>/dev/null
dd if=/dev/nvme0n1 of=/tmp/back bs=1M skip=1 count=8 iflag=direct 2>/dev/null
cmp -s /tmp/pat /tmp/back && ok odirect || fail odirect
echo "GUEST-PATTERN \$(md5sum </tmp/pat | cut -d' ' -f1)"

# nvme compare: the first 4 KiB of the pattern matches at LBA 2048; a
# changed byte does not.
dd if=/tmp/pat of=/tmp/c4k bs=4096 count=1 2>/dev/null
if \$N compare /dev/nvme0n1 -s 2048 -c 7 -z 4096 -d /tmp/c4k >/dev/null 2>&1; then ok compare-match; else fail compare-match; fi
printf 'X' | dd of=/tmp/c4k bs=1 seek=100 conv=notrunc 2>/dev/null
if \$N compare /dev/nvme0n1 -s 2048 -c 7 -z 4096 -d /tmp/c4k >/dev/null 2>&1; then fail compare-mismatch; else ok compare-mismatch; fi

# nvme write-zeroes: LBAs 4096..4103 (inside the pattern) read back zero.
\$N write-zeroes /dev/nvme0n1 -s 4096 -c 7 >/dev/null 2>&1 || fail write-zeroes-cmd
z=\$(dd if=/dev/nvme0n1 bs=512 skip=4096 count=8 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
zz=\$(dd if=/dev/zero bs=512 count=8 2>/dev/null | md5sum | cut -d' ' -f1)
n=\$(dd if=/dev/nvme0n1 bs=512 skip=4104 count=8 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
p=\$(dd if=/tmp/pat bs=512 skip=2056 count=8 2>/dev/null | md5sum | cut -d' ' -f1)
[ "\$z" = "\$zz" ] && [ "\$n" = "\$p" ] && ok write-zeroes || fail write-zeroes

# nvme dsm deallocate: LBAs 6144..6151 read back zero (thin namespace).
\$N dsm /dev/nvme0n1 --ad -s 6144 -b 8 >/dev/null 2>&1 || fail dsm-cmd
d=\$(dd if=/dev/nvme0n1 bs=512 skip=6144 count=8 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
[ "\$d" = "\$zz" ] && ok dsm || fail dsm

# nvme copy, format 0h, three ranges of the pattern (LBA 2048 = pattern
# byte 0) to LBA 65536: pattern blocks 100..107, 300..315 and 1000..1000.
\$N copy /dev/nvme0n1 --sdlba=65536 --slbs=2148,2348,3048 --blocks=7,15,0 >/tmp/copy 2>&1 || { cat /tmp/copy; fail copy-cmd; }
dd if=/tmp/pat bs=512 skip=100 count=8 2>/dev/null >/tmp/want
dd if=/tmp/pat bs=512 skip=300 count=16 2>/dev/null >>/tmp/want
dd if=/tmp/pat bs=512 skip=1000 count=1 2>/dev/null >>/tmp/want
dd if=/dev/nvme0n1 bs=512 skip=65536 count=25 iflag=direct 2>/dev/null >/tmp/got
cmp -s /tmp/want /tmp/got && ok copy-format0 || fail copy-format0
echo "GUEST-COPIED \$(md5sum </tmp/want | cut -d' ' -f1)"

# Copy descriptor formats 2h are off until the host enables them (Host
# Behavior Support, feature 16h, CDFE bit 2 at bytes 4-5).
# Format 2h descriptor (32 bytes): SNSID 1, SLBA 2048, NLB 15 (16 blocks).
printf '01000000 00000000 0008000000000000 0f00 0000000000000000 000000000000' | tr -d ' ' | xxd -r -p >/tmp/desc2
if \$N io-passthru /dev/nvme0n2 --opcode=0x19 --namespace-id=2 --cdw10=4096 --cdw12=0x200 --data-len=32 --write --input-file=/tmp/desc2 >/tmp/pt0 2>&1; then
    fail "copy-format2 accepted before CDFE"
else
    ok copy-format2-refused
fi
printf '00000000 0400' | tr -d ' ' | xxd -r -p >/tmp/hbs
dd if=/dev/zero bs=1 count=506 2>/dev/null >>/tmp/hbs
\$N set-feature /dev/nvme0 -f 0x16 -v 0 --data-len=512 --data=/tmp/hbs >/tmp/sf 2>&1 || { cat /tmp/sf; fail set-feature-hbs; }
if \$N io-passthru /dev/nvme0n2 --opcode=0x19 --namespace-id=2 --cdw10=4096 --cdw12=0x200 --data-len=32 --write --input-file=/tmp/desc2 >/tmp/pt 2>&1; then
    dd if=/tmp/pat bs=512 count=16 2>/dev/null | md5sum | cut -d' ' -f1 >/tmp/w2
    dd if=/dev/nvme0n2 bs=512 skip=4096 count=16 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1 >/tmp/g2
    cmp -s /tmp/w2 /tmp/g2 && ok copy-format2 || fail copy-format2
else
    cat /tmp/pt; fail copy-format2-cmd
fi

# A file system on namespace 2: mkfs, mount, write, unmount, fsck.
/usr/bin/mke2fs -q -F -t ext4 /dev/nvme0n2 >/tmp/mkfs 2>&1 || { cat /tmp/mkfs; fail mkfs; }
mkdir -p /mnt/ns2
if mount -t ext4 /dev/nvme0n2 /mnt/ns2; then
    cp /tmp/pat /mnt/ns2/pat && sync && umount /mnt/ns2
    /usr/bin/e2fsck -fn /dev/nvme0n2 >/tmp/fsck 2>&1 && ok mkfs-fsck || { cat /tmp/fsck; fail fsck; }
    mount -t ext4 /dev/nvme0n2 /mnt/ns2 && cmp -s /tmp/pat /mnt/ns2/pat && ok fs-readback || fail fs-readback
    umount /mnt/ns2
else
    fail mount
fi

# The target restarts while connected: ask the host, then read through
# the reconnection (the host retries the I/O once the queue is back).
# (The blocks as they are now: write-zeroes and dsm changed some.)
w=\$(dd if=/dev/nvme0n1 bs=1M skip=1 count=8 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
echo restart | nc 10.0.2.100 3260 >/dev/null 2>&1
sleep 3
r=\$(timeout 90 dd if=/dev/nvme0n1 bs=1M skip=1 count=8 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
[ "\$r" = "\$w" ] && ok reconnect || { echo "read \$r, before the restart \$w"; dmesg | grep -i nvme | tail -20; fail reconnect; }

\$N disconnect -n $nqn >/tmp/disc2 2>&1 && grep -q "disconnected 1" /tmp/disc2 && ok disconnect || { cat /tmp/disc2; fail disconnect; }
echo "GUEST-END"
EOF

echo "== booting the guest (nvme-tcp to 127.0.0.1:$nvme_port)" >&2
"$kit/run.sh" --nvme "$nvme_port" --iscsi "$signal_port" --timeout 400 "$work/guest.sh" | tee "$work/guest.log" >&2 || true

fails=$(grep -c '^GUEST-FAIL' "$work/guest.log" || true)
oks=$(grep -c '^GUEST-OK' "$work/guest.log" || true)
want_oks=16
status=0
if ! grep -q '^GUEST-END' "$work/guest.log"; then
    echo "guest-nvme: FAIL: the guest script did not finish" >&2
    status=1
fi
if [[ $fails -ne 0 || $oks -ne $want_oks ]]; then
    echo "guest-nvme: FAIL: $oks checks passed (want $want_oks), $fails failed" >&2
    grep '^GUEST-FAIL' "$work/guest.log" >&2 || true
    status=1
fi
# Namespace 1 is the iSCSI LUN's file: the guest's NVMe copy is there for
# iSCSI readers too.
copied=$(sed -n 's/^GUEST-COPIED \([0-9a-f]*\).*/\1/p' "$work/guest.log" | head -n1)
"$oxcopy" cp --method host "iscsi://127.0.0.1:$iscsi_port/$iqn/0?lba=65536&blocks=25" "$work/copied.bin" >/dev/null 2>&1 || true
via_iscsi=$(md5sum <"$work/copied.bin" 2>/dev/null | cut -d' ' -f1)
if [[ -z $copied || $copied != "$via_iscsi" ]]; then
    echo "guest-nvme: FAIL: the LUN read over iSCSI ($via_iscsi) lacks the guest's NVMe copy (${copied:-none})" >&2
    status=1
fi
[[ $status -eq 0 ]] && echo "guest-nvme: OK ($oks checks in the guest, NVMe copy seen over iSCSI)"
exit $status
