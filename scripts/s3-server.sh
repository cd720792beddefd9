#!/usr/bin/env bash
# A real S3 server for the integration tests: Ceph's radosgw (Debian 12's ceph 16.2.15) on a throwaway single-node cluster
# (one monitor, one OSD, no manager), everything in a temp dir, listening on 127.0.0.1 only, no systemd.
#
#   scripts/s3-server.sh [start]
#
# Logs go to stderr. Once S3 answers, it prints on stdout, one per line and in this order:
#   S3_ENDPOINT=http://127.0.0.1:PORT  S3_REGION=us-east-1  S3_ACCESS_KEY=…  S3_SECRET_KEY=…  S3_BUCKET=…  S3_READY=1
# (the bucket exists, empty, owned by that user; path-style addressing; SigV4 and V2 signatures are checked), then runs until
# SIGTERM or SIGINT, when it stops every daemon it started, by pid (TERM, KILL after S3_STOP_GRACE seconds; the OSD KILL),
# and removes its temp dir. If a daemon dies on its own, it cleans up the same way and exits 1.
#
# Environment (all optional): S3_PORT (default: a free port), S3_BUCKET (byoi-test), S3_ACCESS_KEY / S3_SECRET_KEY (default:
# random), S3_STORE=memstore|bluestore (memstore: objects held in the OSD's memory; bluestore: on a sparse file in the temp
# dir), S3_CAPACITY_MB (4096: the OSD's size), S3_MIN_PART_BYTES (radosgw's smallest part but the last, rgw_multipart_min_part_size:
# S3's 5 MiB by default; tests lower it to make many parts of a small image), S3_START_TIMEOUT (180 s), S3_STOP_GRACE (10 s), S3_KEEP_DIR=1 (keep the
# temp dir and its logs, for debugging), TMPDIR.
# Needs the Debian packages ceph-mon ceph-osd radosgw (ceph-common, pulled in, gives ceph, monmaptool, radosgw-admin),
# plus curl, python3 and uuid-runtime.
set -euo pipefail

[ "${1:-start}" = start ] || { echo "usage: $0 [start]" >&2; exit 2; }
for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool curl python3 uuidgen; do
  command -v "$tool" >/dev/null || { echo "s3-server: $tool is missing (make deps-deb installs it)" >&2; exit 1; }
done

BUCKET=${S3_BUCKET:-byoi-test}
STORE=${S3_STORE:-memstore}
CAPACITY_MB=${S3_CAPACITY_MB:-4096}
START_TIMEOUT=${S3_START_TIMEOUT:-180}
STOP_GRACE=${S3_STOP_GRACE:-10}
REGION=us-east-1
case $STORE in memstore|bluestore) ;; *) echo "s3-server: S3_STORE must be memstore or bluestore" >&2; exit 2;; esac

log() { echo "s3-server: $*" >&2; }
# Times in bash itself (a python3 per log line cost ~0.3 s each on a loaded machine).
t0=${EPOCHREALTIME//[.,]/}
elapsed() { local us=$((${EPOCHREALTIME//[.,]/} - t0)); printf '%d.%ds' $((us / 1000000)) $((us % 1000000 / 100000)); }

D=$(mktemp -d "${TMPDIR:-/tmp}/s3-server.XXXXXX")
PIDS=()          # the daemons, in start order
stopping=0

stop_pid() {
  local pid=$1 n
  if [ "$pid" = "${OSD_PID:-}" ]; then kill -KILL "$pid" 2>/dev/null || true
  else
    kill -TERM "$pid" 2>/dev/null || true
    for ((n = 0; n < STOP_GRACE * 10; n++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  [ "$stopping" = 1 ] && return
  stopping=1
  trap - TERM INT EXIT
  local i
  # Each daemon by the pid this script started, one after the other in reverse order (radosgw, which still talks to the
  # OSD as it stops; the OSD; the monitor): TERM, then KILL if still there after S3_STOP_GRACE seconds. The OSD gets KILL at
  # once, as its store is thrown away (on TERM it takes ~5 s, a memstore writing all its objects to the temp dir).
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
  if [ "${S3_KEEP_DIR:-0}" = 1 ]; then log "kept $D"; else rm -rf "$D"; fi
  log "stopped"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 0' TERM INT

fail() {
  log "FAILED: $*"
  local f
  for f in "$D"/log/*; do
    [ -s "$f" ] || continue
    echo "---- ${f##*/} (last lines) ----" >&2
    grep -v 'AUTH_CONNECTING' "$f" | tail -n 15 >&2 || true
  done
  exit 1
}

# One python3 for all of it (each start costs ~0.5 s on a loaded machine): two free ports (bound at the same time, so they
# differ), an access key of 20 upper-case letters and digits, a secret key of 40 letters and digits.
read -r MON_PORT free_s3_port random_access random_secret < <(python3 -c '
import secrets, socket, string
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
key = lambda alphabet, n: "".join(secrets.choice(alphabet) for _ in range(n))
print(*(s.getsockname()[1] for s in socks), key(string.ascii_uppercase + string.digits, 20), key(string.ascii_letters + string.digits, 40))
') || fail "python3: free ports and keys"
S3_PORT=${S3_PORT:-$free_s3_port}
ACCESS_KEY=${S3_ACCESS_KEY:-$random_access}
SECRET_KEY=${S3_SECRET_KEY:-$random_secret}
FSID=$(uuidgen)
mkdir -p "$D/run" "$D/log" "$D/mon.a" "$D/osd0" "$D/rgw"

# Ceph-internal auth is off ("none": nothing but this machine's loopback reaches the daemons); S3's own signature checks
# are radosgw's and stay on. One OSD: pools of size 1, few PGs, no autoscaler (that lives in the absent manager).
cat > "$D/ceph.conf" <<EOF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
run dir = $D/run
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
keyring = $D/keyring
mon data = $D/mon.\$id
osd data = $D/osd\$id
osd objectstore = $STORE
memstore device bytes = $((CAPACITY_MB * 1024 * 1024))
bluestore block create = true
bluestore block size = $((CAPACITY_MB * 1024 * 1024))
bluestore fsck on mount = false
osd memory target = 939524096
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
# Paxos commits every 50 ms instead of every second: each step of the start (the OSD's boot, each of radosgw's pools)
# waits for a commit or two; the defaults (1 s, 50 ms minimum) made the start ~20 s, this ~8 s. One monitor: nothing to batch.
paxos propose interval = 0.05
paxos min wait = 0.01
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$S3_PORT
rgw data = $D/rgw
rgw multipart min part size = ${S3_MIN_PART_BYTES:-5242880}
EOF
export CEPH_CONF=$D/ceph.conf
ceph_cli() { timeout 60 ceph --connect-timeout 30 "$@"; }

log "temp dir $D, monitor on 127.0.0.1:$MON_PORT, S3 on 127.0.0.1:$S3_PORT, $STORE OSD of $CAPACITY_MB MiB"

# Monitor.
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$D/monmap" >/dev/null 2>&1 || fail "monmaptool"
ceph-mon --mkfs -i a --monmap "$D/monmap" >"$D/log/mon-mkfs.out" 2>&1 || fail "ceph-mon --mkfs"
ceph-mon -f -i a >"$D/log/mon.out" 2>&1 &
PIDS+=($!)
ceph_cli mon stat >/dev/null 2>&1 || fail "the monitor did not answer"
log "monitor up ($(elapsed))"

# One OSD.
OSD_UUID=$(uuidgen)
OSD_ID=$(ceph_cli osd new "$OSD_UUID" 2>>"$D/log/cli.out") || fail "ceph osd new"
ceph-osd -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >"$D/log/osd-mkfs.out" 2>&1 || fail "ceph-osd --mkfs"
ceph-osd -f -i "$OSD_ID" >"$D/log/osd.out" 2>&1 &
OSD_PID=$!
PIDS+=("$OSD_PID")
deadline=$((SECONDS + START_TIMEOUT))
until ceph_cli osd stat 2>/dev/null | grep -q ' 1 up'; do
  [ $SECONDS -lt $deadline ] || fail "the OSD did not come up within ${START_TIMEOUT}s"
  kill -0 "${PIDS[-1]}" 2>/dev/null || fail "ceph-osd exited"
  sleep 0.1
done
log "OSD up ($(elapsed))"

# radosgw (beast frontend); on first start it creates the default realm/zone and its pools.
radosgw -f -n client.rgw.a >"$D/log/rgw.out" 2>&1 &
PIDS+=($!)
until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$S3_PORT/"; do
  [ $SECONDS -lt $deadline ] || fail "radosgw did not answer within ${START_TIMEOUT}s"
  kill -0 "${PIDS[-1]}" 2>/dev/null || fail "radosgw exited"
  sleep 0.1
done
log "radosgw answering ($(elapsed))"

radosgw-admin user create --uid=byoi-test --display-name="byoi-agent tests" \
  --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >"$D/log/user-create.out" 2>&1 || fail "radosgw-admin user create"

# The bucket, made over S3 itself with a SigV4-signed PUT (curl 7.88 does not send x-amz-content-sha256: given here).
code=$(curl -s -o "$D/log/bucket-create.out" -w '%{http_code}' --max-time 30 -X PUT \
  --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
  -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
  "http://127.0.0.1:$S3_PORT/$BUCKET") || true
[ "$code" = 200 ] || fail "creating bucket $BUCKET: HTTP $code $(cat "$D/log/bucket-create.out" 2>/dev/null)"
log "ready ($(elapsed)); pids ${PIDS[*]}"

printf 'S3_ENDPOINT=http://127.0.0.1:%s\nS3_REGION=%s\nS3_ACCESS_KEY=%s\nS3_SECRET_KEY=%s\nS3_BUCKET=%s\nS3_READY=1\n' \
  "$S3_PORT" "$REGION" "$ACCESS_KEY" "$SECRET_KEY" "$BUCKET"

# Until a signal (the TERM/INT trap exits 0) or until a daemon dies (exit 1).
set +e
wait -n "${PIDS[@]}"
log "a daemon exited on its own (status $?)"
fail "daemon exited"
