"""ResourceQuota (core/v1): a namespace's hard caps, with Kubernetes' resource names and checks.

An admin caps a team's namespace with ``spec.hard``::

    requests.nvidia.com/gpu: "8"     # extended resources: requests only (never overcommitted)
    requests.cpu: "64"               # also `cpu`; and limits.cpu
    limits.memory: 256Gi             # also `memory`/requests.memory
    pods: "20"                       # pods not in a terminal phase
    count/trainingjobs.kray.io: "4"  # objects of any kind in storage: count/<plural>[.<group>]

The API server's quota admission (``kray.actors.apiserver.quota``) charges ``status.used`` before
an object is written; the resourcequota controller (``kray.actors.controllers.resourcequota``)
recomputes it from the live objects. The usage arithmetic both share lives here, as pure
functions, following kube's quota evaluators (pkg/quota/v1/evaluator/core).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

from pydantic import Field, model_validator

from ..meta import KrayModel, Resource
from ..quantity import Quantity, ResourceList
from ..registry import kind
from ..validation import FieldValueError, invalid, is_qualified_name
from .container import Container
from .pod import Pod, qos_class

REQUESTS = "requests."
LIMITS = "limits."
COUNT = "count/"
_HUGEPAGES = ("hugepages-", "requests.hugepages-")

# core/v1 standardQuotaResources (IsStandardQuotaResourceName), hugepages aside.
STANDARD_QUOTA_RESOURCES = frozenset((
    "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory", "requests.storage",
    "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage", "pods", "services",
    "replicationcontrollers", "resourcequotas", "secrets", "persistentvolumeclaims", "configmaps",
    "services.nodeports", "services.loadbalancers",
))  # fmt: skip
# Core kinds whose bare plural was an object count before count/<resource> existed.
LEGACY_OBJECT_COUNTS = frozenset(
    {"services", "configmaps", "secrets", "resourcequotas", "persistentvolumeclaims", "replicationcontrollers"}
)
_INTEGER_RESOURCES = frozenset({"pods", "services.nodeports", "services.loadbalancers", *LEGACY_OBJECT_COUNTS})
# What the pod evaluator tracks (kube's podResources); plus requests.<extended> and hugepages.
POD_RESOURCES = frozenset((
    "count/pods", "pods", "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory",
    "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage",
))  # fmt: skip
# kube's own word for it is "a mistake": a quota on cpu or memory makes every container state
# them, else the pod is refused ("must specify ..."). Kept, since clients rely on it.
MUST_SPECIFY = frozenset({"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"})
SCOPES = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass", "CrossNamespacePodAffinity")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_EXISTS_ONLY = ("Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "CrossNamespacePodAffinity")
_SCOPED_RESOURCES = frozenset(
    {"pods", "cpu", "memory", "limits.cpu", "limits.memory", "requests.cpu", "requests.memory"}
)
_BAD = "FieldValueInvalid"
INVALID_QUOTA_RESOURCE = "must be a standard resource for quota"
_ZERO = Quantity(0)


# ---- resource names ----


def is_native(name: str) -> bool:
    """kube's IsNativeResource: no domain, or one under kubernetes.io."""
    return "/" not in name or "kubernetes.io/" in name


def is_extended(name: str) -> bool:
    """A device or other extended resource a container may request (``nvidia.com/gpu``)."""
    return not is_native(name) and not name.startswith(REQUESTS) and not is_qualified_name(REQUESTS + name)


def _quota_name_errors(name: str) -> list[str]:
    errors = is_qualified_name(name)
    if errors:
        return errors
    if "/" not in name:
        standard = name in STANDARD_QUOTA_RESOURCES or name.startswith(_HUGEPAGES)
        return [] if standard else [INVALID_QUOTA_RESOURCE]
    if name.startswith(COUNT) or name.startswith(REQUESTS):
        return []
    # Stricter than kube, which accepts these and then never counts them: extended resources
    # are never overcommitted (limits equal requests), so only requests.<name> is quota'd.
    base = name.removeprefix(LIMITS)
    return [f"{INVALID_QUOTA_RESOURCE}: use {REQUESTS}{base} for an extended resource"]


def _integer(name: str) -> bool:
    return name in _INTEGER_RESOURCES or name.startswith(COUNT)


def validate_resource_list(values: Mapping[str, Quantity] | None, field: str) -> list[tuple[str, str, str]]:
    """Names and values of a quota's ``hard`` (kube's ValidateResourceQuotaSpec)."""
    errors: list[tuple[str, str, str]] = []
    for name, value in (values or {}).items():
        path = f"{field}[{name}]"
        errors += [(path, invalid(name, m), _BAD) for m in _quota_name_errors(name)]
        if value.amount < 0:
            errors.append((path, invalid(str(value), "must be greater than or equal to 0"), _BAD))
        elif _integer(name) and value.amount != value.amount.to_integral_value():
            errors.append((path, invalid(str(value), "must be an integer"), _BAD))
    return errors


# ---- the kind ----


class ScopedResourceSelectorRequirement(KrayModel):
    scope_name: str
    operator: str
    values: list[str] | None = None


class ScopeSelector(KrayModel):
    match_expressions: list[ScopedResourceSelectorRequirement] | None = None


class ResourceQuotaSpec(KrayModel):
    hard: ResourceList | None = None
    scopes: list[str] | None = None
    scope_selector: ScopeSelector | None = None

    @model_validator(mode="after")
    def _check(self) -> ResourceQuotaSpec:
        errors = validate_resource_list(self.hard, "hard")
        names = sorted(self.hard or {})
        used: list[str] = []
        scopes = self.scopes or []
        for scope in scopes:
            if scope not in SCOPES:
                errors.append(("scopes", _invalid_list(scopes, "unsupported scope"), _BAD))
            errors += [("scopes", _invalid_list(scopes, m), _BAD) for m in _scope_fits(scope, names)]
            used.append(scope)
        expressions = (self.scope_selector.match_expressions if self.scope_selector else None) or []
        for i, req in enumerate(expressions):
            path = f"scopeSelector.matchExpressions[{i}]"
            if req.scope_name not in SCOPES:
                errors.append((f"{path}.scopeName", invalid(req.scope_name, "unsupported scope"), _BAD))
            errors += [(path, invalid(req.scope_name, m), _BAD) for m in _scope_fits(req.scope_name, names)]
            if req.scope_name in _EXISTS_ONLY and req.operator != "Exists":
                why = f"must be 'Exists' when scope is any of {', '.join(_EXISTS_ONLY)}"
                errors.append((f"{path}.operator", invalid(req.operator, why), _BAD))
            if req.operator in ("In", "NotIn") and not req.values:
                why = "Required value: must be at least one value when `operator` is 'In' or 'NotIn' for scope selector"
                errors.append((f"{path}.values", why, "FieldValueRequired"))
            elif req.operator in ("Exists", "DoesNotExist") and req.values:
                why = "must be no value when `operator` is 'Exists' or 'DoesNotExist' for scope selector"
                errors.append((f"{path}.values", _invalid_list(req.values, why), _BAD))
            elif req.operator not in OPERATORS:
                errors.append((f"{path}.operator", invalid(req.operator, "not a valid selector operator"), _BAD))
            used.append(req.scope_name)
        for a, b in (("BestEffort", "NotBestEffort"), ("Terminating", "NotTerminating")):
            if a in used and b in used:
                errors.append(("scopes", _invalid_list(scopes or used, "conflicting scopes"), _BAD))
        if errors:
            raise FieldValueError(errors)
        return self


def _invalid_list(values: list[str], detail: str) -> str:
    return f"Invalid value: {json.dumps(values)}: {detail}"


def _scope_fits(scope: str, names: list[str]) -> list[str]:
    """kube's IsResourceQuotaScopeValidForResource, over the standard names of ``hard``."""
    allowed = frozenset({"pods"}) if scope == "BestEffort" else _SCOPED_RESOURCES
    if scope not in SCOPES:
        return []
    bad = [n for n in names if n in STANDARD_QUOTA_RESOURCES and n not in allowed]
    return ["unsupported scope applied to resource"] if bad else []


class ResourceQuotaStatus(KrayModel):
    hard: ResourceList | None = None
    used: ResourceList | None = None


@kind
class ResourceQuota(Resource):
    KIND: ClassVar[str] = "ResourceQuota"
    PLURAL: ClassVar[str] = "resourcequotas"
    SINGULAR: ClassVar[str] = "resourcequota"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("quota",)
    HAS_STATUS_SUBRESOURCE: ClassVar[bool] = True

    spec: ResourceQuotaSpec = Field(default_factory=ResourceQuotaSpec)
    status: ResourceQuotaStatus | None = None


# ---- resource lists (kube's quota.Add / Mask, with its formats) ----


def add(a: Mapping[str, Quantity] | None, b: Mapping[str, Quantity] | None) -> ResourceList:
    """Key-wise sum. A zero takes the other side's format (as kube's Quantity.Add), so a
    ``0`` plus ``1Gi`` prints as ``1Gi``, not 1073741824."""
    out: ResourceList = dict(a or {})
    for name, q in (b or {}).items():
        mine = out.get(name)
        if mine is None or mine.is_zero():
            out[name] = Quantity.from_decimal((mine.amount if mine else 0) + q.amount, q.format)
        else:
            out[name] = mine + q
    return out


def mask(values: Mapping[str, Quantity] | None, names: Iterable[str]) -> ResourceList:
    keep = set(names)
    return {k: v for k, v in (values or {}).items() if k in keep}


def pretty(values: Mapping[str, Quantity]) -> str:
    """kube's prettyPrint: ``name=quantity`` pairs, sorted, comma-joined."""
    return ",".join(f"{k}={values[k]}" for k in sorted(values))


# ---- which resources an object is charged for ----


def resource_of(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def kind_of_count(name: str) -> tuple[str, str] | None:
    """(group, plural) that ``count/<plural>[.<group>]`` or a legacy name counts."""
    if name.startswith(COUNT):
        plural, _, group = name[len(COUNT) :].partition(".")
        return group, plural
    if name in LEGACY_OBJECT_COUNTS:
        return "", name
    if name.startswith("services."):
        return "", "services"
    return None


def _is_pod(group: str, plural: str) -> bool:
    return group == "" and plural == "pods"


def matching_resources(group: str, plural: str, names: Iterable[str]) -> set[str]:
    """The quota resources (of ``names``) that objects of this kind consume."""
    names = set(names)
    if _is_pod(group, plural):
        return {
            n
            for n in names
            if n in POD_RESOURCES or n.startswith(_HUGEPAGES) or (n.startswith(REQUESTS) and not is_native(n))
        }
    mine = {COUNT + resource_of(group, plural)}
    if group == "" and plural in LEGACY_OBJECT_COUNTS:
        mine.add(plural)
    if group == "" and plural == "services":
        mine |= {"services.nodeports", "services.loadbalancers"}
    return names & mine


def compute_usage(requests: Mapping[str, Quantity], limits: Mapping[str, Quantity]) -> ResourceList:
    """kube's podComputeUsageHelper: quota names from a pod's (or a container's) requests/limits."""
    out: ResourceList = {"pods": Quantity(1)}
    for name in ("cpu", "memory", "ephemeral-storage"):
        if name in requests:
            out[name] = out[REQUESTS + name] = requests[name]
        if name in limits:
            out[LIMITS + name] = limits[name]
    for name, q in requests.items():
        if name.startswith("hugepages-"):
            out[name] = out[REQUESTS + name] = q
        elif is_extended(name):
            out[REQUESTS + name] = q
    return out


def pod_charged(pod: Pod, now: datetime) -> bool:
    """kube's QuotaV1Pod: terminal pods, and pods past their deletion grace, are not charged."""
    phase = pod.status.phase if pod.status else None
    if phase in ("Succeeded", "Failed"):
        return False
    meta = pod.metadata
    if meta.deletion_timestamp is not None and meta.deletion_grace_period_seconds is not None:
        return now <= meta.deletion_timestamp + timedelta(seconds=meta.deletion_grace_period_seconds)
    return True


def pod_usage(pod: Pod, now: datetime) -> ResourceList:
    """What a pod consumes: count/pods always (it is in storage), the rest while it is charged."""
    usage: ResourceList = {"count/pods": Quantity(1)}
    if not pod_charged(pod, now):
        return usage
    return add(usage, compute_usage(pod.spec.resource_requests(), pod.spec.resource_limits()))


def object_usage(group: str, plural: str, obj: Resource, now: datetime) -> ResourceList:
    if _is_pod(group, plural) and isinstance(obj, Pod):
        return pod_usage(obj, now)
    usage: ResourceList = {COUNT + resource_of(group, plural): Quantity(1)}
    if group == "" and plural in LEGACY_OBJECT_COUNTS:
        usage[plural] = Quantity(1)
    spec: Any = getattr(obj, "spec", None)
    if group == "" and plural == "services" and spec is not None:
        kind_ = getattr(spec, "type", "ClusterIP")
        ports = len(getattr(spec, "ports", None) or [])
        if kind_ == "LoadBalancer":
            usage["services.loadbalancers"] = Quantity(1)
        if kind_ == "NodePort" or (kind_ == "LoadBalancer" and spec.allocate_load_balancer_node_ports is not False):
            usage["services.nodeports"] = Quantity(ports)
    return usage


def missing_requests(pod: Pod, restricted: Iterable[str]) -> str:
    """kube's pod Constraints: '' when every container states what a cpu/memory quota needs,
    else ``must specify requests.cpu for: main,sidecar``."""
    required = MUST_SPECIFY & set(restricted)
    missing: dict[str, set[str]] = {}
    containers: list[Container] = [*pod.spec.containers, *(pod.spec.init_containers or [])]
    for c in containers:
        limits = (c.resources.limits if c.resources else None) or {}
        have = compute_usage(c.requests(), limits)
        for name in required - set(have):
            missing.setdefault(name, set()).add(c.name)
    if not missing:
        return ""
    return "must specify " + "; ".join(f"{r} for: {','.join(sorted(missing[r]))}" for r in sorted(missing))


# ---- scopes ----


def scope_requirements(spec: ResourceQuotaSpec) -> list[ScopedResourceSelectorRequirement]:
    """spec.scopes (each an Exists requirement) plus spec.scopeSelector's expressions."""
    reqs = [ScopedResourceSelectorRequirement(scope_name=s, operator="Exists") for s in spec.scopes or []]
    return reqs + list((spec.scope_selector.match_expressions if spec.scope_selector else None) or [])


def _cross_namespace(pod: Pod) -> bool:
    affinity = pod.spec.affinity
    for group in (getattr(affinity, "pod_affinity", None), getattr(affinity, "pod_anti_affinity", None)):
        if group is None:
            continue
        terms = list(group.required_during_scheduling_ignored_during_execution or [])
        terms += [w.pod_affinity_term for w in group.preferred_during_scheduling_ignored_during_execution or []]
        if any(t.namespaces or t.namespace_selector is not None for t in terms):
            return True
    return False


def _pod_matches(req: ScopedResourceSelectorRequirement, pod: Pod) -> bool:
    scope = req.scope_name
    if scope in ("Terminating", "NotTerminating"):
        deadline = pod.spec.active_deadline_seconds
        return (deadline is not None and deadline >= 0) == (scope == "Terminating")
    if scope in ("BestEffort", "NotBestEffort"):
        return (qos_class(pod.spec) == "BestEffort") == (scope == "BestEffort")
    if scope == "CrossNamespacePodAffinity":
        return _cross_namespace(pod)
    if scope == "PriorityClass":
        name = pod.spec.priority_class_name or ""
        return {
            "In": bool(name) and name in (req.values or []),
            "NotIn": name not in (req.values or []),
            "Exists": bool(name),
            "DoesNotExist": not name,
        }.get(req.operator, False)
    return False


def matches_scopes(spec: ResourceQuotaSpec, obj: Resource) -> bool:
    """Whether a quota's scopes select ``obj``: no scopes select everything; scopes are about
    pods, so a scoped quota selects no other kind."""
    reqs = scope_requirements(spec)
    if not reqs:
        return True
    return isinstance(obj, Pod) and all(_pod_matches(r, obj) for r in reqs)
