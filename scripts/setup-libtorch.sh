#!/usr/bin/env bash
# libtorch for the `tch` backend: a Python venv with the PyPI torch wheel that burn-tch 0.21 (tch 0.22)
# expects, torch==2.9.0. The Linux wheel bundles CUDA libraries (~4 GB download, ~7 GB on disk).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${TORCH_VENV:-.venv-torch}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.9.0") else 1)' 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check torch==2.9.0
fi
"$VENV/bin/python" -c 'import torch; print("torch", torch.__version__, "at", torch.__path__[0])'
