#!/usr/bin/env bash
# Runs a command with a throw-away PostgreSQL cluster on loopback, for the tests that use a real
# PostgreSQL run store:   scripts/with-postgres.sh cargo test ...
# The cluster lives in a temporary folder, listens on 127.0.0.1 at a free port, asks TCP clients for
# a password (SCRAM), and is stopped and deleted when the command ends. The command sees its address
# as FLOWPRIOR_TEST_PG (a superuser URL with its password; tests create one database each on it).
# Needs Debian's postgresql package (installed here if missing, when running as root).
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq postgresql >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
  else
    echo "with-postgres: PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1
  fi
fi
BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
WORK=$(mktemp -d /tmp/flowprior-pg.XXXXXX)
chmod 755 "$WORK"
as_pg() { if [ "$(id -u)" = 0 ]; then chown -R postgres: "$WORK"; su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
echo "$PASSWORD" > "$WORK/pw"
as_pg "$BIN/initdb -D $WORK/data --auth-local=trust --auth-host=scram-sha-256 --pwfile=$WORK/pw -U postgres" >/dev/null
# Room for many test databases and worker processes at once; durability is not needed here.
as_pg "$BIN/pg_ctl -D $WORK/data -l $WORK/log -w start -o \"-k $WORK -p $PORT -c listen_addresses=127.0.0.1 \
  -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off\"" >/dev/null
stop() { as_pg "$BIN/pg_ctl -D $WORK/data -m immediate stop" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap stop EXIT
export FLOWPRIOR_TEST_PG="postgres://postgres:$PASSWORD@127.0.0.1:$PORT/postgres"
echo "with-postgres: PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT" >&2
"$@"
