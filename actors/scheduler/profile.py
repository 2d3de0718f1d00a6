"""Scheduler profiles: which plugins run, their score weights and args, loadable from a dict.

The dict mirrors a KubeSchedulerConfiguration profile (what ``kray up`` will read)::

    schedulerName: default-scheduler
    percentageOfNodesToScore: 0          # 0 or missing: adaptive
    plugins:
      disabled: [{name: PodTopologySpread}]      # or [{name: "*"}] to start from nothing
      enabled: [{name: NodeResourcesFit, weight: 2}]
    pluginConfig:
      - name: NodeResourcesFit
        args: {scoringStrategy: {type: MostAllocated}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .framework import Framework, PluginFactory


@dataclass
class PluginSpec:
    name: str
    weight: int = 1
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Profile:
    scheduler_name: str = "default-scheduler"
    plugins: list[PluginSpec] = field(default_factory=list)
    # None: adaptive (50% minus 1% per 125 nodes, at least 5%), as kube-scheduler.
    percentage_of_nodes_to_score: int | None = None

    @classmethod
    def default(cls, scheduler_name: str = "default-scheduler") -> Profile:
        from .plugins import DEFAULT_PLUGINS

        return cls(scheduler_name, [PluginSpec(n, w) for n, w in DEFAULT_PLUGINS])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        profile = cls.default(data.get("schedulerName", "default-scheduler"))
        pct = data.get("percentageOfNodesToScore")
        profile.percentage_of_nodes_to_score = int(pct) if pct else None
        plugins = data.get("plugins") or {}
        disabled = {p["name"] for p in plugins.get("disabled") or []}
        if "*" in disabled:
            profile.plugins = []
        else:
            profile.plugins = [p for p in profile.plugins if p.name not in disabled]
        for entry in plugins.get("enabled") or []:
            existing = next((p for p in profile.plugins if p.name == entry["name"]), None)
            if existing is None:
                profile.plugins.append(PluginSpec(entry["name"], int(entry.get("weight", 1))))
            elif "weight" in entry:
                existing.weight = int(entry["weight"])
        args = {c["name"]: c.get("args") or {} for c in data.get("pluginConfig") or []}
        for p in profile.plugins:
            p.args = args.get(p.name, p.args)
        return profile

    def build(self, framework: Framework, registry: dict[str, PluginFactory] | None = None) -> Framework:
        """Instantiate the plugins into ``framework``; unknown names fail loudly at startup."""
        if registry is None:
            from .plugins import REGISTRY

            registry = REGISTRY
        for spec in self.plugins:
            factory = registry.get(spec.name)
            if factory is None:
                raise ValueError(f"profile {self.scheduler_name}: unknown plugin {spec.name!r}")
            framework.add_plugin(factory(spec.args, framework), spec.weight)
        return framework
