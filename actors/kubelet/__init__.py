"""The kubelet: runs the Pods bound to its node through the node's CRI runtime service.

``Kubelet`` (the core, handed its ports) lives in ``kubelet.py``; ``actor.py`` is the Ray
wrapper that pins it to its node; ``logserver.py`` serves container logs over HTTP.
"""

from .kubelet import Kubelet
from .ports import ApiPort, CriPort, DevicePort, KubeletConfig, VolumePort

__all__ = ["ApiPort", "CriPort", "DevicePort", "Kubelet", "KubeletConfig", "VolumePort"]
