#!/usr/bin/env bash
# Applies the run-store migrations with psql to a throw-away PostgreSQL cluster (scripts/with-postgres.sh),
# to prove the schema is plain portable SQL (the store applies the same files through sqlx).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/with-postgres.sh bash -c '
  set -euo pipefail
  for f in migrations/*.sql; do psql "$FLOWPRIOR_TEST_PG" -v ON_ERROR_STOP=1 -q -f "$f"; done
  tables=$(psql "$FLOWPRIOR_TEST_PG" -At -c "SELECT string_agg(tablename, '"','"' ORDER BY tablename) FROM pg_tables WHERE schemaname = '"'public'"'")
  echo "PostgreSQL $(psql "$FLOWPRIOR_TEST_PG" -At -c "SHOW server_version"): migrations applied; tables: $tables"
'
