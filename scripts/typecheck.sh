#!/usr/bin/env bash
# mypy over the whole `kray` namespace. The source folders are mapped into one package by
# setuptools' package-dir, which mypy cannot follow through the editable install, so we lay
# out the same namespace as a tree of links and check that.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
tree="build/typecheck"
rm -rf "$tree" && mkdir -p "$tree/kray"
for entry in kray/*; do ln -s "$root/$entry" "$tree/kray/"; done
for pkg in actors crds runtime deviceplugins; do ln -s "$root/$pkg" "$tree/kray/$pkg"; done
cd "$tree"
exec "$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" -p kray "$@"
