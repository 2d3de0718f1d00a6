#!/usr/bin/env bash
# Install kray into ./.venv (created if missing). Usage: scripts/install.sh [--test]
# --test also installs what the test suite needs (pytest, the official kubernetes client, ruff, mypy).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# crun/runc, nftables and busybox for the node runtime (apt-get; a no-op when present); with
# --test also a real OCI registry (docker-registry) and htpasswd for the image-pull tests.
bash scripts/install_system.sh "${1:-}"
# [train]: PyTorch for the training example (the main job); [test] includes it.
extras="[train]"
if [ "${1:-}" = "--test" ]; then extras="[test]"; fi
.venv/bin/python -m pip install --quiet -e ".${extras}"
echo "kray installed in $(pwd)/.venv (run .venv/bin/kray, or put .venv/bin on PATH)"
