#!/usr/bin/env bash
# Runs a command with a throw-away S3-compatible server on loopback (moto, from PyPI), for the tests
# that keep artifacts in an object store:   scripts/with-s3.sh cargo test ...
# The server holds one empty bucket, `flowprior-test`; the command sees FLOWPRIOR_TEST_S3 (its URL)
# and the AWS_* variables the object store reads (endpoint, region, dummy credentials, plain HTTP).
set -euo pipefail
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
  pip install -q 'moto[server]' >/dev/null 2>&1 || { echo "with-s3: cannot install moto[server] from PyPI" >&2; exit 1; }
fi
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
LOG=$(mktemp /tmp/flowprior-moto.XXXXXX.log)
python3 -m moto.server -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
  sleep 0.1
done
curl -sf -X PUT "http://127.0.0.1:$PORT/flowprior-test" >/dev/null || { echo "with-s3: the server did not start" >&2; cat "$LOG" >&2; exit 1; }
export AWS_ENDPOINT="http://127.0.0.1:$PORT" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export FLOWPRIOR_TEST_S3="s3://flowprior-test"
echo "with-s3: moto S3 server on 127.0.0.1:$PORT, bucket flowprior-test" >&2
"$@"
