#!/usr/bin/env bash
# The hostile user's probe, kept: concurrent starters of new stores, kill -9 of a sweep at random
# moments and resume, diverging configurations, hostile SQL. Everything runs in a temporary folder
# on this machine and is bounded in count and time. At the end it prints what was tried and what was
# lost or wrongly recorded (nothing, or it exits non-zero).
#   bash scripts/chaos.sh [path/to/flowprior]      (`just chaos` builds it first)
set -uo pipefail
cd "$(dirname "$0")/.."
FP="${1:-${CARGO_TARGET_DIR:-target}/debug/flowprior}"
[ -x "$FP" ] || { echo "no flowprior binary at $FP: build it first (cargo build)" >&2; exit 2; }
FP="$(cd "$(dirname "$FP")" && pwd)/$(basename "$FP")"
ROUNDS="${CHAOS_ROUNDS:-20}"
KILLS="${CHAOS_KILLS:-4}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tried=0; lost=0; wrong=0
bad() { echo "  LOST/WRONG: $*"; }
q() { "$FP" --db "$1" sql "$2" --format csv | sed -n 2p; }

echo "== 1. concurrent starters: 8 processes x $ROUNDS rounds create the same new store"
for r in $(seq "$ROUNDS"); do
  db="$work/starters/r$r/store.db"
  pids=()
  for _ in $(seq 8); do "$FP" --db "$db" db init >/dev/null 2>>"$work/starters.err" & pids+=($!); done
  for p in "${pids[@]}"; do
    tried=$((tried + 1))
    wait "$p" || { lost=$((lost + 1)); bad "round $r: a starter failed: $(tail -1 "$work/starters.err")"; }
  done
done

echo "== 2. kill -9 of the smoke sweep at random moments ($KILLS times), then resume to the end"
db="$work/sweep/store.db"
for k in $(seq "$KILLS"); do
  "$FP" --db "$db" sweep run sweeps/smoke.toml >/dev/null 2>&1 &
  pid=$!
  sleep "$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.1f", 1 + rand() * 7 }')"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  tried=$((tried + 1))
done
"$FP" --db "$db" sweep run sweeps/smoke.toml >/dev/null 2>"$work/sweep.err" || {
  wrong=$((wrong + 1)); bad "the resumed sweep failed: $(tail -1 "$work/sweep.err")"; }
[ "$("$FP" --db "$db" db check)" = "$db: integrity ok" ] || { wrong=$((wrong + 1)); bad "integrity check"; }
unfinished=$(q "$db" "SELECT COUNT(*) FROM runs WHERE status <> 'finished'")
[ "$unfinished" = 0 ] || { wrong=$((wrong + 1)); bad "$unfinished runs not finished"; }
twice=$(q "$db" "SELECT COUNT(*) FROM (SELECT run_id FROM run_attempts WHERE status = 'finished' GROUP BY run_id HAVING COUNT(*) > 1)")
[ "$twice" = 0 ] || { wrong=$((wrong + 1)); bad "$twice runs finished twice"; }
mixed=$(q "$db" "SELECT COUNT(*) FROM summary s WHERE s.n <> (SELECT COUNT(*) FROM metrics m WHERE m.run_id = s.run_id AND m.key = s.key)")
[ "$mixed" = 0 ] || { wrong=$((wrong + 1)); bad "$mixed summaries count points of other attempts"; }
retaken=$(q "$db" "SELECT COUNT(*) FROM run_attempts WHERE status = 'abandoned'")
echo "   $(q "$db" "SELECT COUNT(*) FROM runs") stage runs finished once each; $retaken abandoned attempts retaken, their points kept in attempt_metrics"

echo "== 3. diverging configurations: absurd learning rates must fail, not finish"
for lr in 1e6 1e9; do
  db="$work/diverge-$lr/store.db"
  printf 'prior_lr = %s\n' "$lr" > "$work/diverge-$lr.toml"
  tried=$((tried + 1))
  if "$FP" --db "$db" toy --target moons --preset tiny --config "$work/diverge-$lr.toml" \
      --figures "$work/figs" >/dev/null 2>&1; then
    wrong=$((wrong + 1)); bad "prior_lr = $lr finished"
  fi
  finished=$(q "$db" "SELECT COUNT(*) FROM runs WHERE status = 'finished'")
  [ "$finished" = 0 ] || { wrong=$((wrong + 1)); bad "prior_lr = $lr: $finished runs recorded as finished"; }
done

echo "== 4. hostile SQL: refused before the store is touched"
db="$work/sweep/store.db"
count_rows() { q "$db" "SELECT (SELECT COUNT(*) FROM runs) || '/' || (SELECT COUNT(*) FROM metrics) || '/' || (SELECT COUNT(*) FROM summary) || '/' || (SELECT COUNT(*) FROM sqlite_master)"; }
before=$(count_rows)
while IFS= read -r stmt; do
  [ -n "$stmt" ] || continue
  tried=$((tried + 1))
  if "$FP" --db "$db" sql "$stmt" >/dev/null 2>&1; then
    wrong=$((wrong + 1)); bad "ran: $stmt"
  fi
done <<EOF
DELETE FROM runs
UPDATE runs SET status = 'failed'
DROP TABLE metrics
VACUUM INTO '$work/copy.db'
ATTACH DATABASE '$work/other.db' AS o
PRAGMA query_only = OFF
PRAGMA journal_mode = DELETE
SELECT 1; DELETE FROM runs
SELECT 1 AS a; SELECT 2 AS b
WITH x AS (SELECT 1) DELETE FROM runs
INSERT INTO runs (id) VALUES (99)
CREATE TABLE evil (x)
EOF
for f in "$work/copy.db" "$work/other.db"; do
  [ ! -e "$f" ] || { wrong=$((wrong + 1)); bad "a refused statement created $f"; }
done
after=$(count_rows)
[ "$before" = "$after" ] || { wrong=$((wrong + 1)); bad "rows changed: $before -> $after"; }
echo "   rows of runs/metrics/summary/schema before and after: $before, $after"

echo
echo "chaos: $tried tried, $lost lost, $wrong wrongly recorded or run"
[ "$lost" = 0 ] && [ "$wrong" = 0 ]
