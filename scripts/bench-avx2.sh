#!/usr/bin/env bash
# Every benchmark as on a CPU without AVX-512, on this one: both sides capped at AVX2 in the same run.
#
#   bash scripts/bench-avx2.sh [THREADS] [extra `bench all` flags]
#
# flowprior: a release build without the `avx512` feature (gemm's AVX-512 matrix-product kernels
# left out; built in `just bench`'s target directory, where only the crates whose features differ are
# compiled again, and copied to target/avx2/flowprior) and FLOWPRIOR_MAX_ISA=avx2 for the project's
# own kernels.
# The references: PyTorch's kernels (ATEN_CPU_CAPABILITY), MKL (MKL_ENABLE_INSTRUCTIONS), oneDNN
# (ONEDNN_MAX_CPU_ISA) and faiss (FAISS_OPT_LEVEL) capped at AVX2 too. This is not a CPU that has
# only AVX2 (its cores, caches and clocks are this one's), but both sides run the code such a CPU runs.
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-1}"
shift || true
export CARGO_TARGET_DIR=target/release-build
cargo build --locked --release --no-default-features --features flex
mkdir -p target/avx2
cp "$CARGO_TARGET_DIR/release/flowprior" target/avx2/flowprior
export FLOWPRIOR_MAX_ISA=avx2
export ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 FAISS_OPT_LEVEL=avx2
echo "== AVX2 only: flowprior built without avx512, FLOWPRIOR_MAX_ISA=avx2; references capped at AVX2"
target/avx2/flowprior bench all --threads "$threads" "$@"
