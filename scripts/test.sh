#!/usr/bin/env bash
# Install what the tests need, then lint, type-check and run the whole suite.
# Quick unit run without etcd/Ray:  scripts/test.sh -m "not etcd and not ray and not root"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled
.venv/bin/ruff check .
.venv/bin/ruff format --check .
bash scripts/typecheck.sh
.venv/bin/pytest "$@"
