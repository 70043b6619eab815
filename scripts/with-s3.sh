#!/usr/bin/env bash
# Runs a command with a throw-away S3-compatible server on loopback (moto, from PyPI), for the tests
# that keep artifacts in an object store:   scripts/with-s3.sh cargo test ...
# The server holds one empty bucket, `flowprior-test`; the command sees FLOWPRIOR_TEST_S3 (its URL)
# and the AWS_* variables the object store reads (endpoint, region, dummy credentials, plain HTTP).
# A second server checks credentials: bucket `flowprior-readonly` and a user allowed only to read it,
# for the test of a bucket without write access (FLOWPRIOR_TEST_S3_RO_ENDPOINT, _KEY, _SECRET).
set -euo pipefail
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
  pip install -q 'moto[server]' >/dev/null 2>&1 || { echo "with-s3: cannot install moto[server] from PyPI" >&2; exit 1; }
fi
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; return 1; }
PORT=$(free_port); RO_PORT=$(free_port)
LOG=$(mktemp /tmp/flowprior-moto.XXXXXX.log)
python3 -m moto.server -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
MOTO=$!
# Credentials are checked after the first 4 requests, which set up the bucket and the reading user.
INITIAL_NO_AUTH_ACTION_COUNT=4 python3 -m moto.server -H 127.0.0.1 -p "$RO_PORT" >>"$LOG" 2>&1 &
MOTO_RO=$!
trap 'kill $MOTO $MOTO_RO 2>/dev/null || true; rm -f "$LOG"' EXIT
wait_up "$PORT"
# The credential-checking server is awaited without a request (each would count among the first 4).
python3 - "$RO_PORT" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
PY
read -r RO_KEY RO_SECRET < <(python3 - "$RO_PORT" <<'PY'
import json, sys
import boto3
kw = dict(endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", aws_access_key_id="setup",
          aws_secret_access_key="setup", region_name="us-east-1")
boto3.client("s3", **kw).create_bucket(Bucket="flowprior-readonly")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="reader")
iam.put_user_policy(UserName="reader", PolicyName="read-only", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]}))
key = iam.create_access_key(UserName="reader")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
PY
)
export FLOWPRIOR_TEST_S3_RO_ENDPOINT="http://127.0.0.1:$RO_PORT" FLOWPRIOR_TEST_S3_RO_KEY="$RO_KEY" \
  FLOWPRIOR_TEST_S3_RO_SECRET="$RO_SECRET"
curl -sf -X PUT "http://127.0.0.1:$PORT/flowprior-test" >/dev/null || { echo "with-s3: the server did not start" >&2; cat "$LOG" >&2; exit 1; }
export AWS_ENDPOINT="http://127.0.0.1:$PORT" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export FLOWPRIOR_TEST_S3="s3://flowprior-test"
echo "with-s3: moto S3 server on 127.0.0.1:$PORT, bucket flowprior-test" >&2
"$@"
