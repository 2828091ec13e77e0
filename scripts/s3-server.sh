#!/usr/bin/env bash
# A real S3 server for tests and local use: a one-node Ceph cluster (monitor, one BlueStore OSD on a sparse file)
# behind the Ceph object gateway (RGW), listening on 127.0.0.1 only (or on SWARM_S3_HOST).
#
#   scripts/s3-server.sh up       start it (or report that it already runs), create the user and the bucket
#   scripts/s3-server.sh down     stop the daemons, wait for them to exit, remove the data
#   scripts/s3-server.sh status   exit 0 when it runs and answers signed requests, 1 otherwise
#   scripts/s3-server.sh env      print the SWARM_TEST_S3_* variables: eval "$(scripts/s3-server.sh env)"
#
# For test runs (test/setup/s3-server.ts), which may overlap:
#   scripts/s3-server.sh up --lease PID   as `up`, and record that process PID uses the server
#   scripts/s3-server.sh release PID      drop PID's lease; stop the server when a leased `up` started it and no
#                                         live process holds a lease. A server started by a plain `up` is never
#                                         stopped this way (a plain `up` also adopts one that tests started).
# `up`, `down` and `release` take a lock ($SWARM_S3_DIR.lock), so overlapping calls never start two servers.
#
# Settings (environment):
#   SWARM_S3_PORT        gateway port (7480)
#   SWARM_S3_HOST        IPv4 address the gateway binds and is reached at (127.0.0.1), e.g. an address inside a
#                        network namespace; the monitor always stays on 127.0.0.1
#   SWARM_S3_MON_PORT    monitor port (SWARM_S3_PORT + 10000, so two servers on different ports do not collide)
#   SWARM_S3_DIR         data, logs and pid files (/tmp/swarm-s3); wiped by `up` and `down`
#   SWARM_S3_DISK_BYTES  size of the sparse OSD file (20 GiB; only written blocks use disk)
#   SWARM_S3_TIMEOUT     seconds `up` waits for the gateway (120)
# The user (access key test, secret testsecret), bucket (swarm-test) and region (us-east-1) are fixed: they are test
# values, and the agent's own SWARM_S3_* settings must not change them.
#
# Why some settings are what they are:
# - glibc malloc thresholds in the gateway's environment keep its multi-MiB buffers on the heap; without them it spends
#   most of its CPU in page faults and GETs run about 3x slower.
# - tcp_nodelay on the beast frontend: without it every small response (lists, HEADs) waits ~50 ms for delayed ACKs.
# - size 1 pools, few PGs, small caches: one disk, one node, a shared machine.
set -euo pipefail

PORT=${SWARM_S3_PORT:-7480}
HOST=${SWARM_S3_HOST:-127.0.0.1}
[[ $HOST =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || { printf 's3-server: SWARM_S3_HOST must be an IPv4 address, got "%s"\n' "$HOST" >&2; exit 2; }
MON_PORT=${SWARM_S3_MON_PORT:-$((PORT + 10000))}
DIR=${SWARM_S3_DIR:-/tmp/swarm-s3}
DISK_BYTES=${SWARM_S3_DISK_BYTES:-21474836480}
TIMEOUT=${SWARM_S3_TIMEOUT:-120}
ACCESS_KEY=test
SECRET_KEY=testsecret
BUCKET=swarm-test
REGION=us-east-1
ENDPOINT="http://$HOST:$PORT"
MARKER="$DIR/.swarm-s3-server"
LOCK="$DIR.lock"
LEASES="$DIR.leases"
# set when this call started the server
STARTED=0
# daemon name -> process name, in stop order (gateway first, monitor last)
DAEMONS=("client.rgw.swarm:radosgw" "osd.0:ceph-osd" "mon.a:ceph-mon")

log () { printf 's3-server: %s\n' "$*" >&2; }
die () { log "$*"; exit 1; }

require_binaries () {
  local missing=() bin
  for bin in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    die "missing Ceph programs: ${missing[*]}. Install them with:
  apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw"
  fi
  command -v curl >/dev/null 2>&1 || die "missing curl. Install it with: apt-get install -y --no-install-recommends curl"
}

# A signed S3 request with curl's built-in SigV4; prints the HTTP status.
s3_request () {
  local method=$1 path=$2
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$method" \
    --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
    "$ENDPOINT$path" || true
}

# pid of a running daemon of ours, or nothing
daemon_pid () {
  local name=${1%%:*} comm=${1##*:} pid
  [ -f "$DIR/run/$name.pid" ] || return 0
  pid=$(cat "$DIR/run/$name.pid" 2>/dev/null || true)
  # the pid file may be stale and the pid reused: only a process with the daemon's name counts
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$comm" ]; then
    echo "$pid"
  fi
}

running_pids () {
  local d
  for d in "${DAEMONS[@]}"; do daemon_pid "$d"; done
}

healthy () {
  [ -f "$MARKER" ] || return 1
  [ "$(running_pids | wc -l)" -eq ${#DAEMONS[@]} ] || return 1
  [ "$(s3_request HEAD "/$BUCKET")" = 200 ]
}

port_in_use () {
  (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null
}

print_env () {
  cat <<ENV
export SWARM_TEST_S3_ENDPOINT=$ENDPOINT
export SWARM_TEST_S3_ACCESS_KEY_ID=$ACCESS_KEY
export SWARM_TEST_S3_SECRET_ACCESS_KEY=$SECRET_KEY
export SWARM_TEST_S3_REGION=$REGION
export SWARM_TEST_S3_BUCKET=$BUCKET
ENV
}

stop () {
  local d pid pids=() deadline
  for d in "${DAEMONS[@]}"; do
    pid=$(daemon_pid "$d")
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); fi
  done
  deadline=$((SECONDS + 20))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid ignored SIGTERM for 20 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
  done
  [ ${#pids[@]} -gt 0 ] && log "stopped ${#pids[@]} daemon(s)"
  return 0
}

wipe () {
  if [ -e "$DIR" ] && [ ! -f "$MARKER" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    die "$DIR exists and was not made by this script; remove it or set SWARM_S3_DIR"
  fi
  rm -rf "$DIR"
}

write_config () {
  cat > "$DIR/ceph.conf" <<CONF
[global]
fsid = $1
mon_host = v2:127.0.0.1:$MON_PORT
mon_initial_members = a
public_network = 127.0.0.0/8
ms_bind_ipv6 = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 1
mon_data_avail_crit = 0
auth_allow_insecure_global_id_reclaim = false
osd_crush_chooseleaf_type = 0
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
run_dir = $DIR/run
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log
keyring = $DIR/keyring
mon_data = $DIR/mon/\$id
osd_data = $DIR/osd/\$id
[osd]
keyring = $DIR/osd/\$id/keyring
osd_objectstore = bluestore
bluestore_block_create = true
bluestore_block_size = $DISK_BYTES
bluestore_fsck_on_mkfs = false
bluestore_cache_autotune = false
bluestore_cache_size = 268435456
osd_memory_target = 1073741824
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1
[client.rgw.swarm]
rgw_frontends = beast endpoint=$HOST:$PORT tcp_nodelay=1
rgw_data = $DIR/rgw
rgw_dns_name = $HOST
CONF
}

fail_start () {
  log "$1"
  local f
  for f in "$DIR"/log/*.log "$DIR"/log/*.out; do
    [ -s "$f" ] && { log "--- last lines of $f"; tail -n 15 "$f" >&2; }
  done
  stop
  exit 1
}

start () {
  require_binaries
  if healthy; then
    log "already running"
    echo "$ENDPOINT"
    return 0
  fi
  [ -n "$(running_pids)" ] && { log "running but not answering; restarting"; stop; }
  port_in_use "$PORT" "$HOST" && die "port $PORT is taken by another program; set SWARM_S3_PORT"
  port_in_use "$MON_PORT" && die "port $MON_PORT (monitor) is taken by another program; set SWARM_S3_MON_PORT"
  wipe
  mkdir -p "$DIR"/{run,log,mon/a,osd/0,rgw}
  : > "$MARKER"
  export CEPH_CONF="$DIR/ceph.conf"
  local fsid osd_uuid osd_secret osd_id deadline status
  fsid=$(cat /proc/sys/kernel/random/uuid)
  write_config "$fsid"

  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n client.rgw.swarm --cap mon 'allow rw' --cap osd 'allow rwx' >/dev/null
  monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$fsid" "$DIR/monmap" >/dev/null
  ceph-mon --mkfs -i a --monmap "$DIR/monmap" >"$DIR/log/mon-mkfs.out" 2>&1 || fail_start "monitor mkfs failed"
  ceph-mon -i a 9>&- || fail_start "monitor did not start"

  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  osd_secret=$(ceph-authtool --gen-print-key)
  printf '{"cephx_secret": "%s"}' "$osd_secret" > "$DIR/osd-secret.json"
  osd_id=$(timeout 60 ceph --connect-timeout 30 osd new "$osd_uuid" -i "$DIR/osd-secret.json" 2>>"$DIR/log/ceph-cli.out") \
    || fail_start "monitor did not answer within 60 s"
  rm -f "$DIR/osd-secret.json"
  [ "$osd_id" = 0 ] || fail_start "expected OSD id 0, got '$osd_id'"
  ceph-authtool --create-keyring "$DIR/osd/0/keyring" --name osd.0 --add-key "$osd_secret" >/dev/null
  timeout 120 ceph-osd -i 0 --mkfs --osd-uuid "$osd_uuid" >"$DIR/log/osd-mkfs.out" 2>&1 || fail_start "OSD mkfs failed"
  ceph-osd -i 0 2>>"$DIR/log/osd-start.out" 9>&- || fail_start "OSD did not start"

  # radosgw forks into the background once it reaches the monitor; bound that wait too
  MALLOC_MMAP_THRESHOLD_=67108864 MALLOC_TRIM_THRESHOLD_=4294967296 \
    timeout 60 radosgw -n client.rgw.swarm 9>&- || fail_start "gateway did not start"

  deadline=$((SECONDS + TIMEOUT))
  until curl -sf -o /dev/null --max-time 2 "$ENDPOINT/"; do
    [ $SECONDS -lt $deadline ] || fail_start "gateway did not answer on $ENDPOINT within ${TIMEOUT} s"
    [ -n "$(daemon_pid "${DAEMONS[0]}")" ] || fail_start "gateway exited"
    sleep 0.25
  done

  if ! radosgw-admin user info --uid="$ACCESS_KEY" >/dev/null 2>&1; then
    radosgw-admin user create --uid="$ACCESS_KEY" --display-name="$ACCESS_KEY" \
      --access-key="$ACCESS_KEY" --secret="$SECRET_KEY" >/dev/null 2>>"$DIR/log/ceph-cli.out" || fail_start "user create failed"
  fi
  status=$(s3_request PUT "/$BUCKET")
  case $status in
    200|409) ;;
    *) fail_start "creating bucket $BUCKET got HTTP $status" ;;
  esac
  healthy || fail_start "gateway does not answer signed requests"
  STARTED=1
  log "ready after ${SECONDS} s: $ENDPOINT bucket $BUCKET (access key $ACCESS_KEY, region $REGION); data in $DIR"
  echo "$ENDPOINT"
}

take_lock () {
  exec 9>"$LOCK"
  flock -w "$((TIMEOUT + 60))" 9 || die "timed out waiting for another s3-server.sh call (lock $LOCK)"
}

check_pid () {
  [[ ${1:-} =~ ^[1-9][0-9]*$ ]] || die "expected a process id, got '${1:-}'"
}

# leases of processes still alive; dead ones are removed
live_leases () {
  local lease n=0
  for lease in "$LEASES"/*; do
    [ -f "$lease" ] || continue
    if kill -0 "${lease##*/}" 2>/dev/null; then n=$((n + 1)); else rm -f "$lease"; fi
  done
  echo "$n"
}

remove_data () {
  [ -f "$MARKER" ] && rm -rf "$DIR"
  return 0
}

usage="usage: $0 up [--lease PID] | down | status | env | release PID"
case ${1:-} in
  up)
    lease=
    if [ "${2:-}" = --lease ]; then check_pid "${3:-}"; lease=$3; elif [ -n "${2:-}" ]; then die "$usage"; fi
    take_lock
    start
    mkdir -p "$LEASES"
    if [ -n "$lease" ]; then
      echo "$lease" > "$LEASES/$lease"
      [ "$STARTED" = 1 ] && : > "$LEASES/.started-for-tests"
    else
      rm -f "$LEASES/.started-for-tests"
    fi
    exit 0 ;;
  release)
    check_pid "${2:-}"
    take_lock
    rm -f "$LEASES/$2"
    if [ -f "$LEASES/.started-for-tests" ] && [ "$(live_leases)" = 0 ]; then
      stop
      remove_data
      rm -f "$LEASES/.started-for-tests"
    fi
    exit 0 ;;
  down)
    take_lock
    stop
    remove_data
    rm -rf "$LEASES"
    exit 0 ;;
  status)
    if healthy; then echo "running: $ENDPOINT bucket $BUCKET (pids $(running_pids | tr '\n' ' '))"; exit 0; fi
    if [ -n "$(running_pids)" ]; then echo "unhealthy: daemons run (pids $(running_pids | tr '\n' ' ')) but $ENDPOINT does not answer"; else echo "not running"; fi
    exit 1 ;;
  env) print_env ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
