#!/usr/bin/env bash
# Slow, opt-in end-to-end of scripts/cluster.yaml's `local` provider on THIS machine:
#   private sshd on 127.0.0.1:$PORT -> `ray up` -> `ray exec ... 'kray get nodes'` -> `ray down`.
#
# Usage (as root, from anywhere):  bash scripts/try_ray_up.sh
# Env: KRAY_SSH_PORT (22422), KRAY_SSH_USER (kraylaunch), KRAY_RAY_PORT (26379),
#      KRAY_API_PORT (16443), KEEP=1 (leave the temp dir for inspection).
#
# Safety, since other people's Ray clusters may run here:
# * sshd listens on 127.0.0.1 only, takes keys from a temp dir and admits one dedicated user;
# * everything on the "cluster" runs as that non-root user, so the `ray stop` that `ray down`
#   runs can only signal that user's processes; Ray's temp dir is in its home, ports are
#   non-default (Ray, API server), so nothing collides with a cluster already running;
# * apt-get installing openssh-server must not start the system sshd on port 22: a temporary
#   policy-rc.d forbids service starts during the install.
# `ray down` returns 0 even when it stopped nothing, so leftovers are checked by hand.
# The launch user is not root, so `kray up --container-runtime process` gives the head a kubelet
# without isolation: this checks the launcher plumbing (ray up, kray up, a kubelet whose Node
# goes Ready, kray down, ray down), not containers.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
PORT="${KRAY_SSH_PORT:-22422}"
SSH_USER="${KRAY_SSH_USER:-kraylaunch}"
RAY_PORT="${KRAY_RAY_PORT:-26379}"
API_PORT="${KRAY_API_PORT:-16443}"
RAY="$REPO/.venv/bin/ray"
PY="$REPO/.venv/bin/python"

[ "$(id -u)" -eq 0 ] || { echo "try_ray_up: run as root (it adds a user and starts an sshd)" >&2; exit 1; }
[ -x "$RAY" ] || { echo "try_ray_up: $RAY missing; run scripts/install.sh first" >&2; exit 1; }

WORK="$(mktemp -d /tmp/kray-rayup.XXXXXX)"
chmod 755 "$WORK"
CLUSTER="kray-tryup-$$"
SSHD_PID=""
RUN_STATE=""
RUN_NODES=""
MADE_USER=0
MADE_POLICY=0
ACL_DIRS=()

log() { echo "try_ray_up: $*" >&2; }

user_pids() { pgrep -u "$SSH_USER" 2>/dev/null || true; }

cleanup() {
    local rc=$?
    set +e
    if [ -n "$SSHD_PID" ] && kill -0 "$SSHD_PID" 2>/dev/null; then
        kill "$SSHD_PID"
        wait "$SSHD_PID" 2>/dev/null
    fi
    # Whatever the dedicated user still runs was started by this script (ray, etcd, actors).
    local left
    left="$(user_pids)"
    if [ -n "$left" ]; then
        log "killing leftover processes of $SSH_USER: $(echo $left)"
        for pid in $left; do kill "$pid" 2>/dev/null; done
        sleep 2
        for pid in $(user_pids); do kill -9 "$pid" 2>/dev/null; done
        for _ in $(seq 50); do [ -z "$(user_pids)" ] && break; sleep 0.2; done
    fi
    for dir in "${ACL_DIRS[@]}"; do setfacl -x "u:$SSH_USER" "$dir"; done
    if [ "$MADE_USER" = 1 ]; then
        userdel -r "$SSH_USER" >/dev/null 2>&1 || log "could not remove user $SSH_USER: remove it by hand"
    else
        rm -rf "$RUN_STATE" "$RUN_NODES"  # this run's files in a user that was there before
    fi
    [ "$MADE_POLICY" = 1 ] && rm -f /usr/sbin/policy-rc.d
    rm -f "/tmp/ray/cluster-$CLUSTER.lock" "/tmp/ray/cluster-$CLUSTER.state"
    if [ "${KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

# ---- 1. packages: sshd, rsync (file mounts), nc (the ssh proxy command) -----------------------
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v rsync >/dev/null || need+=(rsync)
command -v nc >/dev/null || need+=(netcat-openbsd)
command -v setfacl >/dev/null || need+=(acl)
if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d  # 101: action forbidden
        chmod 755 /usr/sbin/policy-rc.d
        MADE_POLICY=1
    fi
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    [ "$MADE_POLICY" = 1 ] && rm -f /usr/sbin/policy-rc.d && MADE_POLICY=0
fi

# ---- 2. the dedicated user, with kray's venv and the loopback settings in ~/.bashrc ----------
if ! id "$SSH_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$SSH_USER"
    MADE_USER=1
fi
usermod -p '*' "$SSH_USER"  # no password, but not locked: sshd without PAM refuses locked ones
HOME_DIR="$(getent passwd "$SSH_USER" | cut -d: -f6)"
RUN_STATE="$HOME_DIR/.kray/tryup-$CLUSTER"  # fresh etcd and node state for every run
RUN_NODES="$HOME_DIR/kray-nodes-$CLUSTER"
if [ -n "$(user_pids)" ]; then
    log "$SSH_USER already runs processes; refusing to mix with them"
    exit 1
fi
# The user runs the checkout's venv, whose python links to the interpreter it was made from:
# one under a private home (pyenv in /root, mode 700) cannot be run by anyone else. Grant the
# dedicated user (only it) traverse permission on such folders with an ACL, for this run only.
REAL_PY="$(readlink -f "$PY")"
dir="$(dirname "$REAL_PY")"
while [ "$dir" != "/" ]; do
    if [ "$(( $(stat -c '%a' "$dir") % 10 & 1 ))" = 0 ]; then  # no x for others
        setfacl -m "u:$SSH_USER:x" "$dir" && ACL_DIRS+=("$dir")
    fi
    dir="$(dirname "$dir")"
done
[ "${#ACL_DIRS[@]}" -gt 0 ] && log "granted $SSH_USER traverse (ACL) on: ${ACL_DIRS[*]}"
if ! su -s /bin/sh "$SSH_USER" -c "'$PY' -c 'import ray'" >/dev/null 2>&1; then
    log "$SSH_USER cannot run $PY (-> $REAL_PY) even with traverse permission on its folders"
    exit 2
fi
cat >"$HOME_DIR/.kray-tryup.sh" <<EOF
export PATH="$REPO/.venv/bin:\$PATH"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export RAY_AUTH_MODE=disabled
export RAY_USAGE_STATS_ENABLED=0
export KRAY_STATE_DIR="$RUN_STATE"
EOF
# Non-interactive ssh sessions read ~/.bashrc only before Debian's "not interactive" return.
if ! grep -q kray-tryup "$HOME_DIR/.bashrc" 2>/dev/null; then
    { echo '. "$HOME/.kray-tryup.sh"  # kray-tryup'; cat "$HOME_DIR/.bashrc" 2>/dev/null; } >"$WORK/bashrc"
    install -o "$SSH_USER" -m 644 "$WORK/bashrc" "$HOME_DIR/.bashrc"
fi
chown "$SSH_USER": "$HOME_DIR/.kray-tryup.sh"

# ---- 3. keys and a private sshd on 127.0.0.1:$PORT ------------------------------------------
ssh-keygen -q -t ed25519 -N '' -f "$WORK/client_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
mkdir -m 755 "$WORK/keys"
install -m 644 "$WORK/client_key.pub" "$WORK/keys/$SSH_USER"
cat >"$WORK/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $WORK/host_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/keys/%u
AllowUsers $SSH_USER
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
EOF
mkdir -p /run/sshd
/usr/sbin/sshd -t -f "$WORK/sshd_config"
/usr/sbin/sshd -D -e -f "$WORK/sshd_config" 2>"$WORK/sshd.log" &
SSHD_PID=$!
for _ in $(seq 50); do nc -z 127.0.0.1 "$PORT" 2>/dev/null && break; sleep 0.1; done
ssh -i "$WORK/client_key" -p "$PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o BatchMode=yes "$SSH_USER@127.0.0.1" 'command -v ray && command -v kray' >/dev/null ||
    { log "ssh as $SSH_USER does not work or has no ray/kray on PATH"; cat "$WORK/sshd.log" >&2; exit 1; }

# ---- 4. this machine's variant of scripts/cluster.yaml --------------------------------------
"$PY" - "$REPO/scripts/cluster.yaml" "$WORK/cluster.yaml" <<EOF
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
config["cluster_name"] = "$CLUSTER"
config["provider"] = {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}
config["max_workers"] = 0
config["auth"] = {
    "ssh_user": "$SSH_USER",
    "ssh_private_key": "$WORK/client_key",
    "ssh_proxy_command": "nc 127.0.0.1 $PORT",
}
config["file_mounts"] = {}  # the user runs the checkout's venv (see ~/.kray-tryup.sh)
config["setup_commands"] = []
prelude = ". ~/.kray-tryup.sh; "
config["head_start_ray_commands"] = [
    prelude + "ray start --head --port=$RAY_PORT --node-ip-address=127.0.0.1 --temp-dir=\$HOME/rt"
    " --autoscaling-config=~/ray_bootstrap_config.yaml --disable-usage-stats --dashboard-port=0"
    " --include-dashboard=false",
    prelude + "kray up --ray-address 127.0.0.1:$RAY_PORT --port $API_PORT --container-runtime process"
    " --node-root $RUN_NODES",
]
config["worker_start_ray_commands"] = []
yaml.safe_dump(config, open(sys.argv[2], "w"), sort_keys=False)
EOF
"$PY" - "$WORK/cluster.yaml" <<'EOF'
import copy, sys, yaml
from ray.autoscaler._private.util import prepare_config, validate_config
validate_config(prepare_config(copy.deepcopy(yaml.safe_load(open(sys.argv[1])))))
EOF

# ---- 5. up, use, down -----------------------------------------------------------------------
export RAY_AUTH_MODE=disabled RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
log "ray up ($WORK/cluster.yaml)"
timeout 900 "$RAY" up -y --no-config-cache "$WORK/cluster.yaml" >"$WORK/up.log" 2>&1 ||
    { log "ray up failed"; tail -50 "$WORK/up.log" >&2; exit 1; }
log "kray get nodes on the head"
nodes="$(timeout 300 "$RAY" exec "$WORK/cluster.yaml" 'for i in $(seq 60); do out=$(kray get nodes 2>&1) && echo "$out" | grep -q " Ready " && break; sleep 2; done; echo "$out"' 2>"$WORK/exec.log")" || true
echo "$nodes"
status=0
echo "$nodes" | grep -qE " Ready " || { log "no Ready Node listed"; status=1; }
timeout 120 "$RAY" exec "$WORK/cluster.yaml" 'kray down' >>"$WORK/exec.log" 2>&1 || log "kray down failed"
log "ray down"
timeout 300 "$RAY" down -y "$WORK/cluster.yaml" >"$WORK/down.log" 2>&1 || { log "ray down failed"; status=1; }

# `ray down` says "stopped" either way: what does the user still run? Ray's ssh ControlMaster
# keeps the user's session (`sshd: USER@notty`, a child of our sshd) for ControlPersist=10s.
launched_pids() { for pid in $(user_pids); do ps -o cmd= -p "$pid" | grep -q '^sshd:' || echo "$pid"; done; }
for _ in $(seq 20); do [ -z "$(launched_pids)" ] && break; sleep 1; done
left="$(launched_pids)"
if [ -n "$left" ]; then
    log "leftovers after ray down:"
    ps -o pid,cmd -p "$(echo $left | tr ' ' ,)" >&2 || true
    status=1
fi
[ "$status" = 0 ] && log "OK: ray up -> kray get nodes -> ray down, nothing left behind"
exit "$status"
