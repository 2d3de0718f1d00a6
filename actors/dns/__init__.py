"""Cluster DNS: ``SERVICE.NAMESPACE.svc[.cluster.local]`` answered from live Services.

``DnsCore`` (core.py) keeps Service and Endpoints informers and answers UDP queries on the
address it is given; actor.py is the per-node Ray wrapper (the only module importing Ray).
"""

from .core import DnsCore, DnsServer, RecordTable

__all__ = ["DnsCore", "DnsServer", "RecordTable"]
