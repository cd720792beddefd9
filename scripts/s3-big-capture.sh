#!/usr/bin/env bash
# An S3 capture past a single PUT's 5 GiB, outside `make test`: a sparse disk of S3_BIG_GIB (default 6) GiB, random
# bytes in a few places, captured with `byoi-agent capture --format raw` (every byte sent: 6 GiB) to a radosgw started
# here (scripts/s3-server.sh, bluestore on a sparse file in TMPDIR, so the object is not held in RAM), under
# /usr/bin/time -v. Then boto3 reads the object back and its sha512 must be the result's. Prints the agent's wall time
# and peak RSS; stops the server and removes its files on exit.
#   npx tsc -p tsconfig.json && bash scripts/s3-big-capture.sh
set -euo pipefail
cd "$(dirname "$0")/.."
GIB=${S3_BIG_GIB:-6}
W=$(mktemp -d "${TMPDIR:-/tmp}/s3-big.XXXXXX")
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

S3_STORE=bluestore S3_CAPACITY_MB=$(((GIB + 6) * 1024)) bash scripts/s3-server.sh >"$W/server.out" 2>"$W/server.err" &
SERVER_PID=$!
until grep -q '^S3_READY=1$' "$W/server.out"; do
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$W/server.err" >&2; exit 1; }
  sleep 0.5
done
set -a; . <(grep -v READY "$W/server.out"); set +a

python3 - "$W/disk.img" "$GIB" <<'PY'
import os, sys
path, gib = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as f:
    f.truncate(gib << 30)
    for offset in (0, 1 << 30, (gib << 30) - (8 << 20)):
        f.seek(offset)
        f.write(os.urandom(4 << 20))
PY

AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY /usr/bin/time -v -o "$W/time.txt" \
  node dist/agent/main.js capture --disk "$W/disk.img" --format raw --upload "s3://$S3_BUCKET/big/disk.raw" \
  --s3-endpoint "$S3_ENDPOINT" --json --log-level info >"$W/result.json" 2>"$W/agent.err"
grep -E 'Elapsed \(wall clock\)|Maximum resident set size' "$W/time.txt"
python3 - "$W/result.json" <<'PY'
import hashlib, json, os, sys, time
import boto3
from botocore.client import Config
result = json.load(open(sys.argv[1]))
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], aws_access_key_id=os.environ["S3_ACCESS_KEY"],
                  aws_secret_access_key=os.environ["S3_SECRET_KEY"], region_name=os.environ["S3_REGION"],
                  config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
head = s3.head_object(Bucket=os.environ["S3_BUCKET"], Key="big/disk.raw")
t = time.monotonic()
digest = hashlib.sha512()
for chunk in s3.get_object(Bucket=os.environ["S3_BUCKET"], Key="big/disk.raw")["Body"].iter_chunks(8 << 20):
    digest.update(chunk)
ok = digest.hexdigest() == result["digest"]["hex"] and head["ContentLength"] == result["bytes"]
print(json.dumps({"status": result["status"], "bytes": result["bytes"], "notes": result["notes"][-2:], "etag": head["ETag"],
                  "readBackSeconds": round(time.monotonic() - t, 1), "sha512Equal": ok}))
sys.exit(0 if ok else 1)
PY
