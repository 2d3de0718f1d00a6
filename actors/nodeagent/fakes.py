"""In-memory ports for the node agent, with the real ones' semantics."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .ports import NodePlan, RayNode

KINDS = ("kubelet", "proxy", "dns", "gpu")


@dataclass
class FakeMembership:
    """Ray's node table: nodes join alive and, like Ray's GCS, stay listed (dead) after leaving."""

    table: dict[str, RayNode] = field(default_factory=dict)

    def join(self, node: RayNode) -> RayNode:
        node = replace(node, alive=True)
        self.table[node.node_id] = node
        return node

    def leave(self, node_id: str) -> None:
        self.table[node_id] = replace(self.table[node_id], alive=False)

    def nodes(self) -> list[RayNode]:
        return list(self.table.values())


@dataclass
class FakeDeployer:
    """Named detached actors: deploying an existing name is a no-op (``get_if_exists``)."""

    actors: dict[str, NodePlan] = field(default_factory=dict)  # actor name -> plan
    calls: list[tuple[str, str]] = field(default_factory=list)

    def _deploy(self, kind: str, plan: NodePlan) -> None:
        self.calls.append((kind, plan.node_name))
        self.actors.setdefault(f"{kind}-{plan.node_name}", plan)

    def deploy_kubelet(self, plan: NodePlan) -> None:
        self._deploy("kubelet", plan)

    def deploy_proxy(self, plan: NodePlan) -> None:
        self._deploy("proxy", plan)

    def deploy_gpu_plugin(self, plan: NodePlan) -> None:
        self._deploy("gpu", plan)

    def deploy_dns(self, plan: NodePlan) -> None:
        self._deploy("dns", plan)

    def remove(self, node_name: str) -> None:
        self.calls.append(("remove", node_name))
        for kind in KINDS:
            self.actors.pop(f"{kind}-{node_name}", None)

    def kinds(self, node_name: str) -> set[str]:
        return {k for k in KINDS if f"{k}-{node_name}" in self.actors}


@dataclass
class FakeAutoscaler:
    """The standing resource request (each call replaces the last) and the history of calls."""

    requests: list[list[dict[str, float]]] = field(default_factory=list)

    def request(self, bundles: list[dict[str, float]]) -> None:
        self.requests.append([dict(b) for b in bundles])

    @property
    def standing(self) -> list[dict[str, float]]:
        return self.requests[-1] if self.requests else []
