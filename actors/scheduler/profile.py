"""Scheduler profiles: which plugins run, their score weights and args, loadable from a dict.

The dict mirrors a KubeSchedulerConfiguration profile (what ``kray up`` will read)::

    schedulerName: default-scheduler
    percentageOfNodesToScore: 0          # 0 or missing: adaptive
    plugins:
      multiPoint: {disabled: [{name: PodTopologySpread}]}   # the whole plugin; "*": every default
      score:                                               # one extension point
        enabled: [{name: NodeResourcesFit, weight: 2}]
        disabled: [{name: InterPodAffinity}]               # its Filter still runs
    pluginConfig:
      - name: NodeResourcesFit
        args: {scoringStrategy: {type: MostAllocated}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .framework import EXTENSION_POINTS, Framework, PluginFactory

MULTI_POINT = "multiPoint"
ALL_POINTS = frozenset(EXTENSION_POINTS)


@dataclass
class PluginSpec:
    name: str
    weight: int = 1
    args: dict[str, Any] = field(default_factory=dict)
    # The extension points it runs at (None: every point it implements).
    points: frozenset[str] | None = None


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
        """A profile from its dict, unchecked (``config.load_scheduler_config`` validates first;
        an unknown plugin here fails in ``build``)."""
        profile = cls.default(data.get("schedulerName") or "default-scheduler")
        pct = data.get("percentageOfNodesToScore")
        profile.percentage_of_nodes_to_score = int(pct) if pct else None
        plugins = data.get("plugins") or {}
        # kray's shorthand: plugins.enabled/disabled at the top mean multiPoint.
        shorthand = {"enabled": plugins.get("enabled"), "disabled": plugins.get("disabled")}
        profile._apply_set(MULTI_POINT, plugins.get(MULTI_POINT) or {})
        profile._apply_set(MULTI_POINT, shorthand)
        for point in EXTENSION_POINTS:
            profile._apply_set(point, plugins.get(point) or {})
        args = {c["name"]: c.get("args") or {} for c in data.get("pluginConfig") or []}
        for p in profile.plugins:
            p.args = args.get(p.name, p.args)
        return profile

    def _apply_set(self, point: str, plugin_set: dict[str, Any]) -> None:
        """kube's merge of one point's {enabled, disabled} onto the plugins so far."""
        disabled = {p["name"] for p in plugin_set.get("disabled") or []}
        for spec in list(self.plugins):
            if "*" in disabled or spec.name in disabled:
                if point == MULTI_POINT:
                    self.plugins.remove(spec)
                else:
                    spec.points = (spec.points if spec.points is not None else ALL_POINTS) - {point}
        for entry in plugin_set.get("enabled") or []:
            found = next((p for p in self.plugins if p.name == entry["name"]), None)
            only = None if point == MULTI_POINT else frozenset({point})
            if found is None:
                self.plugins.append(PluginSpec(entry["name"], int(entry.get("weight") or 1), points=only))
                continue
            if found.points is not None:
                found.points = None if only is None else found.points | only
            if entry.get("weight") and point in (MULTI_POINT, "score"):
                found.weight = int(entry["weight"])

    def build(self, framework: Framework, registry: dict[str, PluginFactory] | None = None) -> Framework:
        """Instantiate the plugins into ``framework``; unknown names fail loudly at startup."""
        if registry is None:
            from .plugins import REGISTRY

            registry = REGISTRY
        for spec in self.plugins:
            factory = registry.get(spec.name)
            if factory is None:
                raise ValueError(f"profile {self.scheduler_name}: unknown plugin {spec.name!r}")
            framework.add_plugin(factory(spec.args, framework), spec.weight, spec.points)
        return framework
