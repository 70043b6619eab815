#!/usr/bin/env bash
# The k-NN benchmark's reference: faiss-cpu (IndexFlatL2) and numpy from PyPI in .venv-bench.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${BENCH_VENV:-.venv-bench}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import faiss, numpy' 2>/dev/null || \
  "$VENV/bin/pip" install --quiet --disable-pip-version-check faiss-cpu==1.15.1 numpy
"$VENV/bin/python" -c 'import faiss; print("faiss", faiss.__version__)'
