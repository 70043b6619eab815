#!/usr/bin/env bash
# Make `just` available: from PyPI (rust-just, seconds), else from crates.io (minutes).
set -euo pipefail
if command -v just >/dev/null 2>&1; then exit 0; fi
if python3 -m pip install --quiet --disable-pip-version-check rust-just; then
  scripts_dir=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  if ! command -v just >/dev/null 2>&1 && [ -x "$scripts_dir/just" ]; then
    mkdir -p "$HOME/.cargo/bin"
    ln -sf "$scripts_dir/just" "$HOME/.cargo/bin/just"
  fi
fi
command -v just >/dev/null 2>&1 || cargo install just --locked
just --version
