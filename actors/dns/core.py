"""Cluster DNS for pods: A records for Services, answered from informer caches.

Why DNS and not an /etc/hosts file written into each pod: a hosts file is a snapshot taken
when the pod starts, so a Service created after its clients (the usual order for a training
job's rendezvous Service and its workers) would never resolve, and a headless Service's pod
list goes stale as pods come and go. A DNS server answers from the live Service/Endpoints
caches, pods use it through the ordinary resolver (``getaddrinfo`` in torch.distributed,
NCCL, gRPC) via ``resolv.conf`` (``nameserver <node DNS address>``, ``search
<ns>.svc.cluster.local svc.cluster.local cluster.local``, ``options ndots:5``), which the
kubelet writes the way kube's does. Wire format is dnslib's (a small, maintained, pure-Python
codec); serving is a plain asyncio datagram endpoint.

Names served (``<domain>`` defaults to ``cluster.local``; the forms without it answer too):
- ``<svc>.<ns>.svc.<domain>``: A = the ClusterIP; for a headless Service, the ready endpoint
  addresses; for ExternalName, a CNAME to the external name.
- ``<hostname>.<svc>.<ns>.svc.<domain>``: for a headless Service, the ready endpoint addresses
  whose ``hostname`` is ``<hostname>`` (a pod with ``spec.hostname`` and ``spec.subdomain=<svc>``,
  e.g. a StatefulSet's ``web-0.web.default.svc.cluster.local``).
- anything else under ``<domain>`` or ``svc``: NXDOMAIN; names outside: REFUSED (no
  recursion here; an upstream forwarder is a later addition).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field

from dnslib import CNAME, QTYPE, RCODE, RR, A, DNSRecord  # type: ignore[import-untyped]

from kray.actors.framework import Informer, ListWatcher
from kray.crds.core import Endpoints, Service
from kray.crds.core.service import EndpointAddress
from kray.crds.registry import REGISTRY, Registry

log = logging.getLogger(__name__)

DEFAULT_DOMAIN = "cluster.local"
TTL = 5  # short: a Service deleted and recreated gets a new IP
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # Linux; not exported by every Python build


@dataclass
class Answer:
    addresses: list[str] = field(default_factory=list)
    cname: str | None = None


class RecordTable:
    """Name -> answer, computed from the Service and Endpoints caches on each lookup."""

    def __init__(self, services: Informer, endpoints: Informer, domain: str = DEFAULT_DOMAIN) -> None:
        self.services = services
        self.endpoints = endpoints
        self.domain = domain.strip(".").lower()

    def _split(self, qname: str) -> tuple[str, str, str | None] | bool | None:
        """(service, namespace, hostname or None) for a service or per-pod name; True: ours but no
        such form; None: not ours."""
        name = qname.rstrip(".").lower()
        suffix = "." + self.domain
        if name.endswith(suffix):
            name = name[: -len(suffix)]
        elif name != self.domain and not name.endswith(".svc"):
            return None
        labels = name.split(".")
        if len(labels) == 3 and labels[2] == "svc":
            return labels[0], labels[1], None
        if len(labels) == 4 and labels[3] == "svc":
            return labels[1], labels[2], labels[0]
        return True

    def lookup(self, qname: str) -> Answer | bool | None:
        """An Answer; False: NXDOMAIN (our zone, no such name); None: not our zone."""
        split = self._split(qname)
        if split is None:
            return None
        if split is True:
            return False
        assert isinstance(split, tuple)
        svc_name, ns, hostname = split
        svc = self.services.cache.get_by_name(ns, svc_name)
        if not isinstance(svc, Service):
            return False
        spec = svc.spec
        headless = not spec.cluster_ip or spec.cluster_ip == "None"
        if hostname is not None:
            if spec.type == "ExternalName" or not headless:
                return False  # per-pod names exist only under headless Services
            ips = sorted({a.ip for a in self._addresses(ns, svc_name) if (a.hostname or "").lower() == hostname})
            return Answer(ips) if ips else False
        if spec.type == "ExternalName" and spec.external_name:
            return Answer(cname=spec.external_name)
        if spec.cluster_ip and not headless:
            return Answer([spec.cluster_ip])
        return Answer(sorted({a.ip for a in self._addresses(ns, svc_name)}))

    def _addresses(self, ns: str, svc_name: str) -> list[EndpointAddress]:
        """The Service's ready endpoint addresses (not-ready ones are not served)."""
        ep = self.endpoints.cache.get_by_name(ns, svc_name)
        subsets = (ep.subsets if isinstance(ep, Endpoints) else None) or ()
        return [a for s in subsets for a in s.addresses or ()]


class DnsServer(asyncio.DatagramProtocol):
    """One UDP socket; every datagram is a query answered from ``records``."""

    def __init__(self, records: RecordTable) -> None:
        self.records = records
        self.transport: asyncio.DatagramTransport | None = None
        self.queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint's transport (the isinstance check fails for the selector one).
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = self.answer(data)
        except Exception as exc:  # a malformed packet must not stop the server
            log.debug("dns: bad query from %s: %s", addr, exc)
            return
        if self.transport is not None:
            self.transport.sendto(reply, addr)

    def answer(self, data: bytes) -> bytes:
        self.queries += 1
        request = DNSRecord.parse(data)
        reply = request.reply()  # id, question, QR and RD copied; AA set
        q = request.q
        qname = str(q.qname)
        found = self.records.lookup(qname)
        if found is None:
            reply.header.rcode = RCODE.REFUSED
            reply.header.aa = 0
        elif found is False:
            reply.header.rcode = RCODE.NXDOMAIN
        else:
            assert isinstance(found, Answer)
            if found.cname and q.qtype in (QTYPE.A, QTYPE.CNAME, QTYPE.ANY):
                reply.add_answer(RR(qname, QTYPE.CNAME, rdata=CNAME(found.cname), ttl=TTL))
            elif q.qtype in (QTYPE.A, QTYPE.ANY):
                for ip in found.addresses:
                    reply.add_answer(RR(qname, QTYPE.A, rdata=A(ip), ttl=TTL))
            # Other types of an existing name (AAAA: IPv4-only cluster): NOERROR, no data.
        return bytes(reply.pack())


def bind_udp(host: str, port: int) -> socket.socket:
    """A UDP socket on ``host:port``, bound even while ``host`` is not (yet) a local address.

    The node's DNS address is its pod bridge's gateway, and the bridge appears with the node's
    first pod: IP_FREEBIND lets the server start first and answer once the address is there.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class DnsCore:
    """Informers + records + the UDP endpoint on ``host:port`` (port 0: any free port)."""

    def __init__(
        self,
        list_watcher: ListWatcher,
        host: str = "127.0.0.1",
        port: int = 53,
        *,
        domain: str = DEFAULT_DOMAIN,
        registry: Registry = REGISTRY,
    ) -> None:
        self.host, self.port = host, port
        self.services = Informer(list_watcher, registry.for_model(Service))
        self.endpoints = Informer(list_watcher, registry.for_model(Endpoints))
        self.records = RecordTable(self.services, self.endpoints, domain)
        self.server = DnsServer(self.records)
        # No event handlers: each query reads the caches, so an answer is as fresh as they are.
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    async def start(self, sync_timeout: float | None = 30.0) -> bool:
        self.services.start()
        self.endpoints.start()
        ok = await self.services.wait_for_sync(sync_timeout) and await self.endpoints.wait_for_sync(sync_timeout)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self.server, sock=bind_udp(self.host, self.port))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return ok

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        with contextlib.suppress(Exception):
            await self.services.stop()
            await self.endpoints.stop()
