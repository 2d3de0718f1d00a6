"""Device plugins: Kubernetes' device plugin API (v1beta1) for kray, and the NVIDIA GPU plugin.

- ``nvml`` / ``fake_nvml``: the NVML port, its pynvml implementation and an in-memory fake;
- ``health``: XID classification and the health loop; ``allocation``: topology-aware choice;
- ``nvidia``: the GPU plugin (core + gRPC server); ``example_widget``: a minimal other plugin;
- ``manager``: the kubelet's device manager (Registration, ListAndWatch, allocation, checkpoint);
- ``inventory``: the node's ``NodeDevices`` object; ``actor``: the Ray wrapper (imports Ray);
- ``nodesync``: the kubelet's loop that publishes NodeDevices, labels the Node and puts GPU
  health on Pods; ``hints``: the scheduler's ``kray.io/gpu-devices`` choice;
- ``deploy``: what `kray up` starts for a node's GPUs (``--fake-gpus N``, real, or nothing).
"""
