#!/usr/bin/env bash
# Applies the run-store migrations to a throw-away PostgreSQL cluster, to prove the schema is portable.
# Needs Debian's postgresql package (installed here if missing, when running as root).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq postgresql >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
  else
    echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1
  fi
fi
BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
WORK=$(mktemp -d)
chown -R postgres: "$WORK" 2>/dev/null || true
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
as_pg "$BIN/initdb -D $WORK/data -A trust -U postgres" >/dev/null
as_pg "$BIN/pg_ctl -D $WORK/data -o '-k $WORK -p 54329 -c listen_addresses=' -l $WORK/log -w start" >/dev/null
trap 'as_pg "$BIN/pg_ctl -D $WORK/data -m immediate stop" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
for f in migrations/*.sql; do
  as_pg "psql -v ON_ERROR_STOP=1 -q -h $WORK -p 54329 -U postgres -d postgres -f $PWD/$f"
done
tables=$(as_pg "psql -At -h $WORK -p 54329 -U postgres -d postgres -c \"SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'\"")
echo "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'): migrations applied; tables: $tables"
