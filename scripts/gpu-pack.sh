#!/usr/bin/env bash
# Builds what a GPU machine needs to run flowprior's CUDA path, on this (x86-64, no GPU needed) machine,
# and packs it into .gpu/ (ignored by git): the `flowprior` binary and the unit-test binary, both with
# the `cuda` backend, release profile, xz-compressed. scripts/gpu-run.sh unpacks and runs them there.
# CUDARC_CUDA_VERSION names the CUDA API the binaries are built against (default 13.0, the driver
# generation of the machines lent here); the libraries themselves are loaded at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda-build}"
cargo build --locked --release --features cuda
tests=$(cargo test --locked --release --features gpu-tests --lib --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])' | tail -1)
[ -n "$tests" ] || { echo "no unit-test binary was built" >&2; exit 1; }
mkdir -p .gpu
strip -o .gpu/flowprior "$CARGO_TARGET_DIR/release/flowprior"
strip -o .gpu/flowprior-tests "$tests"
xz -T2 -6 -f .gpu/flowprior .gpu/flowprior-tests
# The binaries name test fixtures and weights by the checkout they were built in (CARGO_MANIFEST_DIR).
pwd > .gpu/built-in.txt
ls -la .gpu
