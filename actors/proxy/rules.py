"""The proxy's ruleset as data, and its rendering as one nft transaction.

One table per node (``table ip kray-<node>``), shaped like kube-proxy's nftables mode:

- ``prerouting`` (traffic from pods) and ``output`` (traffic from the node itself) are NAT
  hooks at ``dstnat`` priority that look up ``ip daddr . meta l4proto . th dport`` in the
  ``service-ips`` verdict map: one lookup, however many Services there are.
- each Service port has a chain ``svc-...`` that spreads new connections over its endpoints
  with ``numgen random mod N vmap { i : goto ep-... }``; each endpoint chain marks hairpin
  traffic (a pod reaching itself through its Service) for masquerade and DNATs.
- a Service port without ready endpoints is in the ``no-endpoints`` set instead, and the
  ``filter-output``/``filter-forward`` chains reject new connections to it at once (a TCP
  reset, ICMP port unreachable for UDP: "connection refused") rather than letting them leave and time out.
- ``postrouting`` (``srcnat``) masquerades marked packets. With ``masquerade_all`` every
  Service connection is marked: on a plain Linux bridge without br_netfilter, a reply between
  two pods of one node is switched, not routed, so it would bypass the host's conntrack and
  reach the client from the pod's address instead of the ClusterIP; SNAT to the node makes
  replies come back through the host.

Rendering replaces the table whole (``table X; delete table X; table X {...}`` in one file),
so ``nft -f`` applies every update atomically and nothing stale survives.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

MASQ_MARK = 0x4000  # the bit kube-proxy uses too
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, order=True)
class Backend:
    ip: str
    port: int


@dataclass(frozen=True)
class ServiceRule:
    """One ClusterIP:port/protocol and the endpoints new connections go to."""

    namespace: str
    name: str
    port_name: str
    cluster_ip: str
    port: int
    protocol: str  # "tcp" | "udp" | "sctp"
    backends: tuple[Backend, ...]

    @property
    def chain(self) -> str:
        """A readable, unique, nft-safe chain name (the hash keeps truncated names apart)."""
        ident = f"{self.namespace}/{self.name}/{self.port_name}/{self.protocol}"
        digest = hashlib.sha1(ident.encode()).hexdigest()[:8]
        label = _UNSAFE.sub("_", f"{self.namespace}_{self.name}_{self.port_name or self.port}")[:60]
        return f"svc-{label}-{self.protocol}-{digest}"

    def endpoint_chain(self, i: int) -> str:
        return f"ep-{self.chain[4:]}-{i}"


@dataclass(frozen=True)
class Ruleset:
    table: str
    services: tuple[ServiceRule, ...] = ()
    family: str = "ip"
    masquerade_all: bool = True
    mark: int = MASQ_MARK
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def service(self, namespace: str, name: str, port_name: str = "") -> ServiceRule | None:
        for s in self.services:
            if (s.namespace, s.name, s.port_name) == (namespace, name, port_name):
                return s
        return None

    def render(self) -> str:
        """The nft script that makes the kernel's table exactly this ruleset, atomically."""
        t, fam, mark = self.table, self.family, f"0x{self.mark:08x}"
        lines = [f"table {fam} {t}", f"delete table {fam} {t}", f"table {fam} {t} {{"]
        active = [s for s in self.services if s.backends]
        elements = [f"{s.cluster_ip} . {s.protocol} . {s.port} : goto {s.chain}" for s in active]
        lines += ["  map service-ips {", "    type ipv4_addr . inet_proto . inet_service : verdict"]
        if elements:
            lines.append("    elements = { " + ",\n      ".join(elements) + " }")
        lines.append("  }")
        empty = [f"{s.cluster_ip} . {s.protocol} . {s.port}" for s in self.services if not s.backends]
        lines += ["  set no-endpoints {", "    type ipv4_addr . inet_proto . inet_service"]
        if empty:
            lines.append("    elements = { " + ", ".join(empty) + " }")
        lines.append("  }")
        match = "ct state new ip daddr . meta l4proto . th dport @no-endpoints"
        for name, hook in (("filter-output", "output"), ("filter-forward", "forward")):
            lines += [
                f"  chain {name} {{",
                # Before DNAT (-100) so the set sees the ClusterIP; only new connections.
                f"    type filter hook {hook} priority -110; policy accept;",
                # A TCP reset reaches a local socket reliably; an ICMP error is what UDP gets.
                f"    {match} meta l4proto tcp reject with tcp reset",
                f"    {match} reject",
                "  }",
            ]
        lines += [
            "  chain services {",
            "    ip daddr . meta l4proto . th dport vmap @service-ips",
            "  }",
            "  chain mark-for-masquerade {",
            f"    meta mark set meta mark | {mark}",
            "  }",
        ]
        # "dstnat" names -100 only in prerouting; output takes the number.
        for name, hook, prio in (("prerouting", "prerouting", "dstnat"), ("output", "output", "-100")):
            lines += [
                f"  chain {name} {{",
                f"    type nat hook {hook} priority {prio}; policy accept;",
                "    jump services",
                "  }",
            ]
        lines += [
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            f"    meta mark & {mark} == {mark} meta mark set meta mark & 0x{~self.mark & 0xFFFFFFFF:08x} masquerade",
            "  }",
        ]
        for s in active:
            lines.append(f"  chain {s.chain} {{")
            if self.masquerade_all:
                lines.append("    jump mark-for-masquerade")
            if len(s.backends) == 1:
                lines.append(f"    goto {s.endpoint_chain(0)}")
            else:
                targets = ", ".join(f"{i} : goto {s.endpoint_chain(i)}" for i in range(len(s.backends)))
                lines.append(f"    numgen random mod {len(s.backends)} vmap {{ {targets} }}")
            lines.append("  }")
            for i, b in enumerate(s.backends):
                lines += [
                    f"  chain {s.endpoint_chain(i)} {{",
                    f"    ip saddr {b.ip} jump mark-for-masquerade",  # hairpin
                    f"    meta l4proto {s.protocol} dnat to {b.ip}:{b.port}",
                    "  }",
                ]
        lines.append("}")
        return "\n".join(lines) + "\n"
