#!/usr/bin/env bash
# The main job on a fresh machine: install kray (and PyTorch), start a local cluster (embedded
# etcd + Ray + control plane + a kubelet on this machine), run a distributed PyTorch training
# job (1 master + 2 workers, gloo on CPU) as a TrainingJob, follow it to Succeeded, and show
# the loss falling in every rank's log. Run as root (containers need namespaces and cgroups).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$(pwd)/.venv/bin:$PATH"
kray up
kray get nodes

# A first Pod, from the busybox test image (built here from Debian's busybox-static).
kray image import "$(bash scripts/build_test_image.sh)" --name busybox:latest
kray delete pod hello -n demo --ignore-not-found  # a rerun starts the pod afresh
kray apply -f examples/hello.yaml

# The main job: distributed training.
kray delete trainingjob train-example --ignore-not-found
kray apply -f examples/train/trainingjob.yaml
echo "waiting for the TrainingJob to finish..."
state=""
for _ in $(seq 1 120); do
    state=$(kray get trainingjob train-example 2>/dev/null | awk 'NR == 2 {print $2}' || true)
    case "$state" in Succeeded|Failed) break ;; esac
    sleep 2
done
kray get trainingjobs
kray get pods -l kray.io/job-name=train-example -o wide
for pod in train-example-master-0 train-example-worker-0 train-example-worker-1; do
    echo "--- $pod"
    kray logs "$pod" | grep -E "^(step|final)"
done
for _ in $(seq 1 30); do kray logs hello -n demo >/dev/null 2>&1 && break; sleep 1; done
kray logs hello -n demo
[ "$state" = Succeeded ] || { echo "TrainingJob ended $state"; kray describe trainingjob train-example; exit 1; }
echo
echo "The cluster stays up: try 'kray get pods -A', 'kray describe tj train-example'; stop it with 'kray down'."
