# Source this to build or run with `--features tch`:  source scripts/libtorch-env.sh
# Uses the venv made by scripts/setup-libtorch.sh (override with TORCH_VENV).
_fp_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="${TORCH_VENV:-$_fp_root/.venv-torch}"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
_fp_torch_lib="$("$VIRTUAL_ENV/bin/python" -c 'import torch, os; print(os.path.join(torch.__path__[0], "lib"))')"
export LD_LIBRARY_PATH="$_fp_torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset _fp_root _fp_torch_lib
