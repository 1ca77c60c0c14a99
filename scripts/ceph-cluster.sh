#!/usr/bin/env bash
# Single-machine Ceph test cluster (Debian 12 packages, Ceph 16.2 "pacific"),
# everything under one directory, network on 127.0.0.1 only.
#
#   scripts/ceph-cluster.sh start  DIR   # create (first time) or restart; prints CEPH_CONF=DIR/ceph.conf
#   scripts/ceph-cluster.sh stop   DIR   # stop exactly the daemons this script started (by PID file)
#   scripts/ceph-cluster.sh status DIR   # which recorded daemons run; `ceph -s` if the monitor runs
#
# Needs root, iproute2 (ss) and: apt-get install -y ceph-mon ceph-osd ceph-common librbd-dev librados-dev
# (ceph-mgr comes along by Recommends; it is only started with CEPH_MGR=1.)
#
# Layout of DIR: ceph.conf, keyring (mon. + client.admin), monmap, mon.a/ (mon store),
# osd.N/ (bluestore on a sparse file osd.N/block), mgr.x/, log/, run/ (asok + *.pid).
#
# Environment knobs (first start only, they are written into ceph.conf):
#   CEPH_OSDS=2          number of OSDs (>=1)
#   CEPH_POOL_SIZE=2     replica count of pool "rbd" (1 or 2; min_size is 1)
#   CEPH_OSD_BLOCK=10G   sparse size of each OSD's block file
#   CEPH_MON_PORT=       msgr2 port of the monitor (msgr1 uses port+1); default: a free one
#   CEPH_MGR=0           1: also run a ceph-mgr (not needed for rbd; ~300 MB RSS; gives HEALTH_OK
#                        instead of HEALTH_WARN "no active mgr" and `ceph -s` usage figures)
#   CEPH_START_TIMEOUT=120  seconds `start` waits for health + a working `rbd create`
#   CEPH_STOP_TIMEOUT=30    seconds `stop` waits after SIGTERM before SIGKILL
set -euo pipefail

CREATING=0
die() {
  echo "ceph-cluster: $*" >&2
  [ "$CREATING" = 1 ] && echo "ceph-cluster: creation failed; clean up with: $0 stop $DIR && rm -rf $DIR" >&2
  exit 1
}
log() { echo "ceph-cluster: $*" >&2; }

[ $# -eq 2 ] || die "usage: $0 start|stop|status DIR"
cmd=$1
[ "$cmd" = start ] && { mkdir -p "$2" || die "cannot create $2"; }
[ -d "$2" ] || die "no directory $2"
DIR=$(cd "$2" && pwd -P)
CONF=$DIR/ceph.conf
RUN=$DIR/run
LOGD=$DIR/log

START_TIMEOUT=${CEPH_START_TIMEOUT:-120}
STOP_TIMEOUT=${CEPH_STOP_TIMEOUT:-30}

# ---- PID bookkeeping -------------------------------------------------------------------------
# A PID file is trusted only if the process still runs the daemon binary with our ceph.conf on
# its command line, so a recycled PID is never signalled.
pid_alive() { # name -> prints pid, returns 0 if our daemon runs
  local f=$RUN/$1.pid pid cmdl
  [ -f "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  cmdl=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdl == *" $CONF "* ]] || return 1
  echo "$pid"
}

daemon_names() { # all names that have a pid file, OSDs first, mon last
  local f n
  for f in "$RUN"/osd.*.pid "$RUN"/mgr.*.pid "$RUN"/mon.*.pid; do
    [ -e "$f" ] || continue
    n=${f##*/}; echo "${n%.pid}"
  done
}

spawn() { # name binary args... : run in foreground mode (-f), detached, record the PID
  local name=$1; shift
  if pid_alive "$name" >/dev/null; then log "$name already runs (pid $(pid_alive "$name"))"; return 0; fi
  # setsid: own session, so the daemon survives the caller's job control; -f keeps it from
  # forking, so $! is the daemon itself.
  # Debian's Ceph uses glibc malloc (not tcmalloc): limit its per-thread arenas, or RSS balloons.
  setsid env MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}" "$@" -f -c "$CONF" </dev/null >>"$LOGD/$name.stdout" 2>&1 &
  echo $! >"$RUN/$name.pid"
  log "started $name pid $!"
}

ceph_() { timeout 20 ceph -c "$CONF" --connect-timeout 15 "$@"; }

stop_one() { # name
  local name=$1 pid i
  pid=$(pid_alive "$name") || { rm -f "$RUN/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    [ -d "/proc/$pid" ] || break
    # a zombie of ours would linger until reaped; treat as gone
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
    sleep 0.1
  done
  if [ -d "/proc/$pid" ] && pid_alive "$name" >/dev/null; then
    log "$name pid $pid did not stop in ${STOP_TIMEOUT}s, SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  fi
  rm -f "$RUN/$name.pid"
  log "stopped $name (pid $pid)"
}

# ---- first-time creation ---------------------------------------------------------------------
uuidgen() { cat /proc/sys/kernel/random/uuid; }

# no listener on 127.0.0.1/any at port $1 (TIME_WAIT leftovers do not block Ceph's bind)
port_free() { [ -z "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]; }
# no socket at all on port $1 (used when choosing a port for a new cluster)
port_unused() { [ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]; }

pick_port() { # a port P with P and P+1 free
  local p i
  if [ -n "${CEPH_MON_PORT:-}" ]; then
    port_free "$CEPH_MON_PORT" && port_free $((CEPH_MON_PORT + 1)) || die "port $CEPH_MON_PORT or +1 busy"
    echo "$CEPH_MON_PORT"; return
  fi
  # below the usual ephemeral range (32768-60999) and above Ceph's OSD range (6800-7568)
  for ((i = 0; i < 200; i++)); do
    p=$((10000 + (RANDOM % 11000) * 2))
    if port_unused "$p" && port_unused $((p + 1)); then echo "$p"; return; fi
  done
  die "no free port found"
}

write_conf() { # fsid port
  local fsid=$1 port=$2
  cat >"$CONF" <<EOF
# written by scripts/ceph-cluster.sh -- test cluster, not for production
[global]
fsid = $fsid
mon_host = [v2:127.0.0.1:$port,v1:127.0.0.1:$((port + 1))]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = $DIR/keyring
run_dir = $RUN
admin_socket = $RUN/\$cluster-\$name.asok
osd_pool_default_size = ${CEPH_POOL_SIZE:-2}
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 16
osd_pool_default_pgp_num = 16
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
auth_allow_insecure_global_id_reclaim = false
ms_bind_ipv4 = true
ms_bind_ipv6 = false

[client]
# one admin socket per client process (librbd perf counters: ceph --admin-daemon ... perf dump)
admin_socket = $RUN/\$cluster-\$name.\$pid.\$cctid.asok

[mon]
mon_data = $DIR/\$name
log_file = $LOGD/\$name.log
mon_memory_target = 256M
mon_osd_full_ratio = .97
mon_osd_nearfull_ratio = .95
mon_osd_backfillfull_ratio = .96
mon_data_avail_warn = 5
mon_data_avail_crit = 2
# A self-managed snapshot id (every RBD snapshot: a point-in-time token's
# POPULATE TOKEN) is allocated by an OSD map change, which the monitor
# proposes at most every paxos_propose_interval (default 1 s: snapshot
# creation then takes 1-2 s). 10 ms keeps POPULATE TOKEN near 50 ms; see
# docs/ceph.md "Snapshot latency".
paxos_propose_interval = 0.01

[mgr]
mgr_data = $DIR/\$name
log_file = $LOGD/\$name.log

[osd]
osd_data = $DIR/\$name
keyring = $DIR/\$name/keyring
log_file = $LOGD/\$name.log
osd_objectstore = bluestore
# the block device is the sparse file osd.N/block, created by mkfs
bluestore_block_create = true
bluestore_block_size = ${CEPH_OSD_BLOCK:-10G}
bluestore_block_db_create = false
bluestore_block_wal_create = false
bluestore_fsck_on_mkfs = false
# small memory: the autotuner's floor is osd_memory_cache_min; fix the cache instead
osd_memory_target = 512M
bluestore_cache_autotune = false
bluestore_cache_size = 64M
# rocksdb's default memtables are 4 x 256 MiB; keep them small
bluestore_rocksdb_options = compression=kNoCompression,max_write_buffer_number=2,min_write_buffer_number_to_merge=1,recycle_log_file_num=2,write_buffer_size=16777216,writable_file_max_buffer_size=0,compaction_readahead_size=2097152,max_background_compactions=1,max_total_wal_size=67108864
osd_op_num_shards = 2
# the PG log is the largest mempool at idle; a test cluster needs little of it
osd_min_pg_log_entries = 250
osd_max_pg_log_entries = 500
osd_target_pg_log_entries_per_osd = 20000
osd_op_num_threads_per_shard = 1
osd_crush_update_on_start = true
EOF
}

create() {
  local fsid port i uuid id n=${CEPH_OSDS:-2}
  [ "$n" -ge 1 ] || die "CEPH_OSDS must be >= 1"
  for b in ceph-mon ceph-osd ceph-authtool monmaptool ceph rbd ss setsid; do
    command -v "$b" >/dev/null || die "$b missing: apt-get install -y ceph-mon ceph-osd ceph-common"
  done
  log "creating a new cluster in $DIR"
  CREATING=1
  mkdir -p "$RUN" "$LOGD"
  fsid=$(uuidgen)
  port=$(pick_port)
  write_conf "$fsid" "$port"
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port,v1:127.0.0.1:$((port + 1))]" \
    "$DIR/monmap" >/dev/null
  mkdir -p "$DIR/mon.a"
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring" ||
    die "ceph-mon --mkfs failed"
  spawn mon.a ceph-mon -i a
  for ((i = 0; i < 60; i++)); do ceph_ mon stat >/dev/null 2>&1 && break; sleep 1; done
  ceph_ mon stat >/dev/null || die "monitor does not answer, see $LOGD/mon.a.log"
  for ((i = 0; i < n; i++)); do
    uuid=$(uuidgen)
    id=$(ceph_ osd new "$uuid") || die "ceph osd new failed"
    mkdir -p "$DIR/osd.$id"
    ceph-osd -c "$CONF" -i "$id" --mkfs --mkkey --osd-uuid "$uuid" --no-mon-config >>"$LOGD/osd.$id.stdout" 2>&1 ||
      die "mkfs of osd.$id failed, see $LOGD/osd.$id.log"
    ceph_ auth add "osd.$id" osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
      -i "$DIR/osd.$id/keyring" >/dev/null 2>&1 || die "auth add osd.$id failed"
    echo "$id" >>"$DIR/osd-ids"
  done
  if [ "${CEPH_MGR:-0}" = 1 ]; then
    mkdir -p "$DIR/mgr.x"
    ceph_ auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
      -o "$DIR/mgr.x/keyring" >/dev/null 2>&1 || die "auth for mgr.x failed"
    echo x >"$DIR/mgr-ids"
  fi
  start_daemons
  wait_osds_up "$n"
  ceph_ osd pool create rbd 16 16 replicated >/dev/null 2>&1 || die "pool create failed"
  ceph_ osd pool set rbd size "${CEPH_POOL_SIZE:-2}" --yes-i-really-mean-it >/dev/null 2>&1 ||
    die "pool set size failed"
  ceph_ osd pool set rbd min_size 1 >/dev/null 2>&1 || die "pool set min_size failed"
  ceph_ osd pool application enable rbd rbd >/dev/null 2>&1 || die "application enable failed"
  timeout 60 rbd -c "$CONF" pool init rbd || die "rbd pool init failed"
  touch "$DIR/.created"
  CREATING=0
}

start_daemons() {
  local id
  pid_alive mon.a >/dev/null || spawn mon.a ceph-mon -i a
  if [ -f "$DIR/mgr-ids" ]; then
    spawn mgr.x ceph-mgr -i x --keyring "$DIR/mgr.x/keyring"
  fi
  while read -r id; do spawn "osd.$id" ceph-osd -i "$id"; done <"$DIR/osd-ids"
}

wait_osds_up() { # n
  local i up
  for ((i = 0; i < START_TIMEOUT; i++)); do
    up=$(ceph_ osd stat -f json 2>/dev/null | grep -o '"num_up_osds":[0-9]*' | cut -d: -f2 || true)
    [ "${up:-0}" -ge "$1" ] && return 0
    sleep 1
  done
  die "only ${up:-0} of $1 OSDs up after ${START_TIMEOUT}s, see $LOGD/"
}

do_start() {
  local t0=$SECONDS deadline h n ok=0
  if [ -f "$DIR/.created" ]; then
    [ -f "$CONF" ] && [ -f "$DIR/osd-ids" ] || die "$DIR looks damaged (no ceph.conf/osd-ids)"
    if ! pid_alive mon.a >/dev/null; then
      # the monitor's address is baked into its monmap: the port must still be free
      local port
      port=$(sed -n 's/^mon_host = \[v2:127.0.0.1:\([0-9]*\),.*/\1/p' "$CONF")
      port_free "$port" || die "monitor port $port is taken by something else; cannot restart $DIR (remove it and start afresh)"
    fi
    mkdir -p "$RUN" "$LOGD"
    start_daemons
  elif [ -e "$CONF" ] || [ -d "$DIR/mon.a" ]; then
    die "$DIR holds an unfinished or foreign cluster (no .created marker); remove it first"
  else
    create
  fi
  n=$(wc -l <"$DIR/osd-ids")
  deadline=$((t0 + START_TIMEOUT))
  wait_osds_up "$n"
  while [ $SECONDS -lt $deadline ]; do
    h=$(ceph_ health 2>/dev/null || true)
    case $h in
    HEALTH_OK* | HEALTH_WARN*)
      timeout 30 rbd -c "$CONF" rm rbd/probe >/dev/null 2>&1 || true
      if timeout 30 rbd -c "$CONF" create rbd/probe --size 16M 2>/dev/null; then ok=1; break; fi
      ;;
    esac
    sleep 1
  done
  [ $ok = 1 ] || die "cluster not usable after ${START_TIMEOUT}s (health: ${h:-none}); see $LOGD/"
  log "ready in $((SECONDS - t0))s: $(ceph_ health 2>/dev/null)"
  echo "CEPH_CONF=$CONF"
}

do_stop() {
  local name any=0
  [ -d "$RUN" ] || { log "nothing recorded in $DIR"; return 0; }
  for name in $(daemon_names); do any=1; stop_one "$name"; done
  [ $any = 1 ] || log "no daemon recorded in $RUN"
}

do_status() {
  local name pid rss any=0 mon=0
  [ -d "$RUN" ] || { echo "no cluster in $DIR"; return 3; }
  for name in $(daemon_names); do
    any=1
    if pid=$(pid_alive "$name"); then
      rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
      echo "$name running pid $pid rss ${rss}kB"
      [ "${name%%.*}" = mon ] && mon=1
    else
      echo "$name not running (stale pid file)"
    fi
  done
  [ $any = 1 ] || { echo "stopped: no daemon of $DIR runs"; return 3; }
  if [ $mon = 1 ]; then ceph_ -s 2>&1 || true; else echo "monitor down"; return 3; fi
  echo "CEPH_CONF=$CONF"
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
*) die "usage: $0 start|stop|status DIR" ;;
esac
