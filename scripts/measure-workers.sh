#!/usr/bin/env bash
# Which split of the cores into sweep workers x threads per worker finishes a sweep first: runs
# `sweep run SWEEP --preset PRESET --seeds 0` on a fresh store once per split and prints the wall time
# of each. Usage: bash scripts/measure-workers.sh [SWEEP] [PRESET] [BINARY]
# (default: table1 smoke, the release binary of `just bench`). Nothing else should run meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
sweep="${1:-table1}"
preset="${2:-smoke}"
bin="${3:-target/release-build/release/flowprior}"
cores=$(nproc)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "sweep $sweep, preset $preset, $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for split in "1 $cores" "$cores 1" "$cores $cores"; do
  set -- $split
  db="$tmp/w$1t$2.db"
  start=$(date +%s.%N)
  "$bin" --db "$db" sweep run "sweeps/$sweep.toml" --preset "$preset" --seeds 0 --workers "$1" --threads "$2" > "$tmp/log" 2>&1 \
    || { tail -5 "$tmp/log"; exit 1; }
  end=$(date +%s.%N)
  printf '%s worker(s) x %s thread(s): %.1f s\n' "$1" "$2" "$(echo "$end - $start" | bc)"
done
