#!/usr/bin/env bash
# The main job on a fresh machine: install kray, start a local cluster (embedded etcd + Ray +
# control plane), apply the sample manifest, and show it stored and listed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$(pwd)/.venv/bin:$PATH"
kray up
kray apply -f examples/hello.yaml
kray get namespaces
kray get configmaps,pods,services -n demo
kray get pod hello -n demo -o yaml
echo
echo "The cluster stays up: try 'kray get pods -A', 'kray api-resources'; stop it with 'kray down'."
