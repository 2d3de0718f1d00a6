#!/usr/bin/env bash
# System packages the node runtime needs: OCI runtimes (crun preferred, runc fallback), nftables
# for services, busybox-static for the test image, iproute2 for debugging pod networks.
# --test adds what only the tests use: the CNCF distribution registry and htpasswd.
# Idempotent and quiet: does nothing when everything is installed. Needs root (or sudo).
set -euo pipefail
packages=(crun runc nftables busybox-static iproute2 gcc libc6-dev)
if [ "${1:-}" = "--test" ]; then packages+=(docker-registry apache2-utils); fi
missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "install_system: apt-get not found; install ${missing[*]} by hand" >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install_system: installing ${missing[*]}"
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
