"""kray's node runtime (the containerd/CRI layer of a kubelet), bottom layers:

oci        ContainerConfig -> OCI runtime-spec config.json (bundle)
ocirt      OciRuntime port; crun (in a private mount ns on hybrid cgroups) and runc drivers
shim       per-container supervisor: CRI-format logs, exit code / OOM to state.json, cleanup
containers ContainerManager: create/start/status/stop/remove on top of bundle + shim
cgroups    cgroup v1 paths, memory/OOM counters, folder removal
images     ImageStore: OCI layouts, unpack with whiteouts, per-container overlay rootfs
imagebuild write OCI layouts from directories (test images)
network    BridgeNetwork: netns per pod sandbox, veth on a node bridge, host-local IPAM
"""
