"""KubeSchedulerConfiguration: parse and check a scheduler config file, then build its profiles.

What ``kray up --scheduler-config FILE`` reads (kube-scheduler's v1 shape, the parts kray runs)::

    apiVersion: kubescheduler.config.k8s.io/v1
    kind: KubeSchedulerConfiguration
    profiles:
      - schedulerName: gpu-packer
        plugins:
          score:
            enabled: [{name: NodeResourcesFit, weight: 3}]
            disabled: [{name: PodTopologySpread}]
        pluginConfig:
          - name: NodeResourcesFit
            args: {scoringStrategy: {type: MostAllocated}}

Every mistake is reported with the field it is in (``profiles[0].plugins.score.enabled[0].name:
unknown plugin "Foo" ...``) before anything starts; ``SchedulerConfigError`` carries them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from .cache import SchedulerCache, Snapshot
from .fakes import FakeBinder
from .framework import EXTENSION_POINTS, Framework
from .ports import FakeClock
from .profile import MULTI_POINT, Profile

API_GROUP = "kubescheduler.config.k8s.io"
KIND = "KubeSchedulerConfiguration"
MAX_WEIGHT = 100  # kube-scheduler's cap on a score plugin's weight
# The method each extension point calls, to tell a plugin enabled where it has nothing to run.
POINT_METHODS = {
    "preFilter": "pre_filter",
    "filter": "filter",
    "postFilter": "post_filter",
    "preScore": "pre_score",
    "score": "score",
    "reserve": "reserve",
    "permit": "permit",
    "preBind": "pre_bind",
    "bind": "bind",
}


class _Model(BaseModel):
    # Unknown fields are errors here (unlike wire objects): a typo must not silently do nothing.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class PluginRef(_Model):
    name: str
    weight: int | None = None


class PluginSet(_Model):
    enabled: list[PluginRef] = Field(default_factory=list)
    disabled: list[PluginRef] = Field(default_factory=list)


class Plugins(_Model):
    multi_point: PluginSet | None = None
    pre_filter: PluginSet | None = None
    filter: PluginSet | None = None
    post_filter: PluginSet | None = None
    pre_score: PluginSet | None = None
    score: PluginSet | None = None
    reserve: PluginSet | None = None
    permit: PluginSet | None = None
    pre_bind: PluginSet | None = None
    bind: PluginSet | None = None


class PluginConfig(_Model):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class ProfileConfig(_Model):
    scheduler_name: str = "default-scheduler"
    percentage_of_nodes_to_score: int | None = Field(default=None, ge=0, le=100)
    plugins: Plugins = Field(default_factory=Plugins)
    plugin_config: list[PluginConfig] = Field(default_factory=list)


class SchedulerConfiguration(_Model):
    api_version: str | None = None
    kind: str | None = None
    percentage_of_nodes_to_score: int | None = Field(default=None, ge=0, le=100)
    profiles: list[ProfileConfig] = Field(default_factory=lambda: [ProfileConfig()])
    # kube-scheduler settings kray has no use for: accepted so a kube config file loads as is.
    parallelism: int | None = None
    pod_initial_backoff_seconds: int | None = None
    pod_max_backoff_seconds: int | None = None
    leader_election: dict[str, Any] | None = None
    client_connection: dict[str, Any] | None = None
    extenders: list[dict[str, Any]] | None = None


class SchedulerConfigError(ValueError):
    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"invalid scheduler config {source}:\n  " + "\n  ".join(problems))
        self.problems = problems


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_scheduler_config(source: str | Path | dict[str, Any], name: str | None = None) -> list[Profile]:
    """The profiles of a config (a file path, YAML text, or an already parsed dict; ``name``
    says where it came from in errors); raises ``SchedulerConfigError`` listing every problem,
    each with its field."""
    if name is None:
        name = str(source) if isinstance(source, Path) else "<dict>" if isinstance(source, dict) else "<text>"
    data = parse_scheduler_config(source)
    try:
        config = SchedulerConfiguration.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_loc(e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()]
        raise SchedulerConfigError(name, problems) from None
    problems = _check(config)
    if problems:
        raise SchedulerConfigError(name, problems)
    profiles = []
    for i, pc in enumerate(config.profiles):
        raw = pc.model_dump(by_alias=True, exclude_none=True)
        if pc.percentage_of_nodes_to_score is None and config.percentage_of_nodes_to_score is not None:
            raw["percentageOfNodesToScore"] = config.percentage_of_nodes_to_score
        profile = Profile.from_dict(raw)
        problems += _check_args(i, pc, profile)
        profiles.append(profile)
    if problems:
        raise SchedulerConfigError(name, problems)
    return profiles


def parse_scheduler_config(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """The config as a plain dict (what travels to the scheduler actors)."""
    if isinstance(source, dict):
        return source
    text = source.read_text() if isinstance(source, Path) else source
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SchedulerConfigError(
            str(source) if isinstance(source, Path) else "<text>", [f"not YAML: {exc}"]
        ) from None
    if not isinstance(data, dict):
        raise SchedulerConfigError(str(source), ["(top): must be a mapping with a profiles list"])
    return data


def _check(config: SchedulerConfiguration) -> list[str]:
    from .plugins import REGISTRY

    problems = []
    if config.api_version is not None and not config.api_version.startswith(API_GROUP + "/"):
        problems.append(f'apiVersion: Unsupported value: "{config.api_version}": expected {API_GROUP}/v1')
    if config.kind is not None and config.kind != KIND:
        problems.append(f'kind: Unsupported value: "{config.kind}": expected {KIND}')
    if not config.profiles:
        problems.append("profiles: Required value: at least one profile")
    seen: set[str] = set()
    for i, profile in enumerate(config.profiles):
        where = f"profiles[{i}]"
        if not profile.scheduler_name:
            problems.append(f"{where}.schedulerName: Required value")
        elif profile.scheduler_name in seen:
            problems.append(f'{where}.schedulerName: Duplicate value: "{profile.scheduler_name}"')
        seen.add(profile.scheduler_name)
        for point in (MULTI_POINT, *EXTENSION_POINTS):
            plugin_set: PluginSet | None = getattr(profile.plugins, _snake(point))
            if plugin_set is None:
                continue
            for which, refs in (("enabled", plugin_set.enabled), ("disabled", plugin_set.disabled)):
                for j, ref in enumerate(refs):
                    at = f"{where}.plugins.{point}.{which}[{j}]"
                    if ref.name == "*" and which == "disabled":
                        continue
                    factory = REGISTRY.get(ref.name)
                    if factory is None:
                        known = ", ".join(sorted(REGISTRY))
                        problems.append(f'{at}.name: Unsupported value: "{ref.name}": unknown plugin (known: {known})')
                        continue
                    if which == "enabled" and point != MULTI_POINT and not hasattr(factory, POINT_METHODS[point]):
                        problems.append(f'{at}.name: Invalid value: "{ref.name}": does not implement {point}')
                    if ref.weight is not None:
                        if which == "disabled" or point not in (MULTI_POINT, "score"):
                            problems.append(f"{at}.weight: Forbidden: a weight only applies to enabled score plugins")
                        elif not 1 <= ref.weight <= MAX_WEIGHT:
                            problems.append(f"{at}.weight: Invalid value: {ref.weight}: must be in 1..{MAX_WEIGHT}")
        names: set[str] = set()
        for j, cfg in enumerate(profile.plugin_config):
            at = f"{where}.pluginConfig[{j}].name"
            if cfg.name not in REGISTRY:
                problems.append(f'{at}: Unsupported value: "{cfg.name}": unknown plugin')
            elif cfg.name in names:
                problems.append(f'{at}: Duplicate value: "{cfg.name}"')
            names.add(cfg.name)
    return problems


def _check_args(index: int, config: ProfileConfig, profile: Profile) -> list[str]:
    """Build each plugin once with its args: a bad argument fails now, not in a scheduler actor."""
    from .plugins import REGISTRY

    clock = FakeClock()
    framework = Framework(SchedulerCache(clock), Snapshot(), clock, FakeBinder())
    problems = []
    for spec in profile.plugins:
        try:
            REGISTRY[spec.name](spec.args, framework)
        except (ValueError, TypeError, KeyError) as exc:
            j = next((k for k, c in enumerate(config.plugin_config) if c.name == spec.name), None)
            at = f"profiles[{index}].pluginConfig[{j}].args" if j is not None else f"profiles[{index}].plugins"
            problems.append(f"{at}: Invalid value: {spec.name}: {exc}")
    return problems


def _snake(point: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in point)
