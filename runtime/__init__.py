"""kray's node runtime (the containerd/CRI layer of a kubelet), bottom layers:

oci        ContainerConfig -> OCI runtime-spec config.json (bundle)
ocirt      OciRuntime port; crun (in a private mount ns on hybrid cgroups) and runc drivers
procrt     the `process` runtime: containers as plain host processes, NO isolation (non-root)
shim       per-container supervisor: CRI-format logs, exit code / OOM to state.json, cleanup
shimfork   a warm helper that forks shims (a fork instead of a Python start per container)
containers ContainerManager: create/start/status/stop/remove on top of bundle + shim
cgroups    cgroup v1 paths, memory/OOM counters, folder removal
images     ImageStore: OCI layouts, unpack with whiteouts, per-container overlay rootfs
imagebuild write OCI layouts from directories (test images)
network    BridgeNetwork: netns per pod sandbox, veth on a node bridge, host-local IPAM
pidns      a pod's shared PID namespace (shareProcessNamespace), held by a sleeping PID 1
"""
