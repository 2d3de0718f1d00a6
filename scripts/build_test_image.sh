#!/usr/bin/env bash
# Build the tiny busybox test image as an OCI image layout tar (no registry, no docker).
# Usage: scripts/build_test_image.sh [OUT_TAR]   (default: build/images/busybox.tar)
# Needs Debian's busybox-static (/bin/busybox); tests import the tar as busybox:latest.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/images/busybox.tar}"
busybox="$(command -v busybox || true)"
if [ -z "$busybox" ] || ! applets="$("$busybox" --list 2>/dev/null)"; then
    echo "busybox not found: run scripts/install_system.sh" >&2
    exit 1
fi
rootfs="$(mktemp -d /tmp/kray-busybox-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{bin,etc,tmp,root,proc,sys,dev,home,var/run}
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
# One symlink per applet this busybox knows (sh, echo, ps, hostname, sleep, cat, wget, nc, ...).
for applet in $applets; do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
mkdir -p "$(dirname "$out")"
PY="${PYTHON:-.venv/bin/python}"
"$PY" -m kray.runtime.imagebuild --rootfs "$rootfs" --out "$out" --cmd sh >/dev/null
echo "$out"
