"""``kray cordon|uncordon NODE`` and ``kray drain NODE``: take a node (say, one with a failing GPU)
out of scheduling and move its pods away, with kubectl's flags, messages and safety rules.

Like kubectl, drain evicts pods through the API server's eviction subresource, so that each
pod's PodDisruptionBudget is honoured: an eviction the budget refuses (429) is retried every 5 s
until ``--timeout``; ``--disable-eviction`` deletes pods directly instead, bypassing the budgets.
Either way drain then watches until each pod is gone. Which pods may go is decided by
``plan_drain``, a pure function with kubectl's filters: mirror pods are skipped, DaemonSet pods
need ``--ignore-daemonsets``, pods with emptyDir data need ``--delete-emptydir-data``, and pods no
controller would recreate need ``--force``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from .common import CliError, make_client, resolve_kind
from .wait import parse_duration

if TYPE_CHECKING:
    from kray.client import Client, ResourceRef

Obj = dict[str, Any]
PodKey = tuple[str, str]  # (namespace, name)

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# kubectl's drain/filters.go wording; errors read "cannot delete <fatal>: ns/a, ns/b".
DAEMONSET_FATAL = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
DAEMONSET_WARNING = "ignoring DaemonSet-managed Pods"
LOCAL_STORAGE_FATAL = "Pods with local storage (use --delete-emptydir-data to override)"
LOCAL_STORAGE_WARNING = "deleting Pods with local storage"
UNMANAGED_FATAL = "Pods declare no controller (use --force to override)"
UNMANAGED_WARNING = "deleting Pods that declare no controller"
EVICTION_RETRY_SECONDS = 5.0  # kubectl's fixed pause after a 429 from the eviction subresource


def _key(pod: Obj) -> PodKey:
    meta = pod.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _controller(pod: Obj) -> Obj | None:
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), None)


def _finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


@dataclass
class DrainPlan:
    """The pods to delete; messages -> pods for refusals (``errors``) and notices (``warnings``)."""

    delete: list[Obj] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)

    def error_text(self) -> str:
        messages = [f"cannot delete {msg}: {', '.join(pods)}" for msg, pods in self.errors.items()]
        return messages[0] if len(messages) == 1 else f"[{', '.join(messages)}]"

    def warning_text(self) -> str:
        return "; ".join(f"{msg}: {', '.join(pods)}" for msg, pods in self.warnings.items())


def plan_drain(pods: list[Obj], *, ignore_daemonsets: bool, delete_emptydir_data: bool, force: bool) -> DrainPlan:
    """kubectl's filters in kubectl's order; the first that refuses or skips a pod decides."""
    plan = DrainPlan()
    for pod in pods:
        name = "/".join(_key(pod))
        controller = _controller(pod)
        finished = _finished(pod)
        if controller is not None and controller.get("kind") == "DaemonSet" and not finished:
            # The DaemonSet controller would put it straight back, so deleting it is pointless.
            if ignore_daemonsets:
                plan.warnings.setdefault(DAEMONSET_WARNING, []).append(name)
            else:
                plan.errors.setdefault(DAEMONSET_FATAL, []).append(name)
            continue
        if MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {}):
            continue  # a static pod's mirror: the kubelet owns it, deleting it does nothing
        volumes = (pod.get("spec") or {}).get("volumes") or []
        if not finished and any("emptyDir" in v for v in volumes):
            if not delete_emptydir_data:
                plan.errors.setdefault(LOCAL_STORAGE_FATAL, []).append(name)
                continue
            plan.warnings.setdefault(LOCAL_STORAGE_WARNING, []).append(name)
        if controller is None and not finished:
            # Nothing would recreate it elsewhere: its work is lost unless the user says so.
            if not force:
                plan.errors.setdefault(UNMANAGED_FATAL, []).append(name)
                continue
            plan.warnings.setdefault(UNMANAGED_WARNING, []).append(name)
        plan.delete.append(pod)
    return plan


# ---- cordon / uncordon ----


def _node_names(client: Client, nodes_ref: ResourceRef, names: tuple[str, ...], selector: str | None) -> list[str]:
    if names and selector:
        raise CliError("names cannot be provided when a selector (-l) is specified")
    if names:
        return list(names)
    if not selector:
        raise CliError("resource(s) were provided, but no name was specified: give NODE or -l SELECTOR")
    items = client.list_raw(nodes_ref, label_selector=selector).items
    if not items:
        raise CliError("No resources found")
    return [str((n.get("metadata") or {}).get("name", "")) for n in items]


def set_unschedulable(client: Client, nodes_ref: ResourceRef, name: str, desired: bool) -> None:
    """Cordon (``desired``) or uncordon one node, printing kubectl's line."""
    node = client.get_raw(nodes_ref, name)
    verb = "cordoned" if desired else "uncordoned"
    if bool((node.get("spec") or {}).get("unschedulable")) == desired:
        click.echo(f"node/{name} already {verb}")
        return
    # null removes the field, as kubectl's patch does for uncordon (spec.unschedulable is omitempty).
    client.patch_raw(nodes_ref, name, {"spec": {"unschedulable": True if desired else None}}, patch_type="merge")
    click.echo(f"node/{name} {verb}")


def _cordon(names: tuple[str, ...], selector: str | None, desired: bool) -> None:
    with make_client() as client:
        nodes_ref = resolve_kind(client, "nodes")
        for name in _node_names(client, nodes_ref, names, selector):
            set_unschedulable(client, nodes_ref, name, desired)


_node_args = click.argument("names", nargs=-1, metavar="NODE...")
_selector = click.option("-l", "--selector", help="Act on every node matching this label selector.")


@click.command("cordon")
@_node_args
@_selector
def cordon_cmd(names: tuple[str, ...], selector: str | None) -> None:
    """Mark nodes unschedulable: new pods will not be placed there (running pods stay)."""
    _cordon(names, selector, True)


@click.command("uncordon")
@_node_args
@_selector
def uncordon_cmd(names: tuple[str, ...], selector: str | None) -> None:
    """Mark nodes schedulable again."""
    _cordon(names, selector, False)


# ---- drain ----


def _wait_gone(
    client: Client,
    pods_ref: ResourceRef,
    node: str,
    pending: dict[PodKey, str],
    deadline: float | None,
    verb: str = "deleted",
) -> bool:
    """Watch the node's pods until every pending one (by UID: a replacement with the same name
    does not count) is gone, printing each; False when the deadline passes first."""
    from kray.client import Gone

    def gone(key: PodKey) -> None:
        pending.pop(key, None)
        click.echo(f"pod/{key[1]} {verb}")

    on_node = f"spec.nodeName={node}"
    while pending:
        listed = client.list_raw(pods_ref, all_namespaces=True, field_selector=on_node)
        live = {_key(p): (p.get("metadata") or {}).get("uid") for p in listed.items}
        for key, uid in list(pending.items()):
            if live.get(key) != uid:
                gone(key)
        if not pending:
            break
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        events = client.watch_raw(
            pods_ref,
            all_namespaces=True,
            resource_version=listed.resource_version or None,
            field_selector=on_node,
            timeout_seconds=None if remaining is None else max(1, math.ceil(remaining)),
        )
        try:
            for event in events:
                key = _key(event.object)
                if event.type == "DELETED" and pending.get(key) == (event.object.get("metadata") or {}).get("uid"):
                    gone(key)
                if not pending or (deadline is not None and time.monotonic() >= deadline):
                    break
        except Gone:
            pass  # compacted: list again
    return not pending


@dataclass(frozen=True)
class DrainOptions:
    ignore_daemonsets: bool
    delete_emptydir_data: bool
    force: bool
    grace_period: int | None  # None: each pod's own terminationGracePeriodSeconds
    timeout: str  # as the user typed it, for the message
    pod_selector: str | None
    disable_eviction: bool = False


def _evict(
    client: Client, pods: list[Obj], options: DrainOptions, deadline: float | None
) -> tuple[dict[PodKey, str], str | None]:
    """Evict each pod, retrying those whose disruption budget refuses (429) every 5 s, in rounds
    (kubectl runs one goroutine per pod; rounds print the same lines). Returns the evicted pods
    (key -> UID) and the error that stopped it, if any."""
    from kray.client import ApiError, NotFound, TooManyRequests

    evicted: dict[PodKey, str] = {}
    waiting = list(pods)
    while waiting:
        refused: list[Obj] = []
        for pod in waiting:
            namespace, name = _key(pod)
            click.echo(f"evicting pod {namespace}/{name}")
            which = f'pods/"{name}" -n "{namespace}"'
            if deadline is not None and time.monotonic() >= deadline:
                return evicted, f"error when evicting {which}: global timeout reached: {options.timeout}"
            try:
                client.evict(name, namespace, grace_period_seconds=options.grace_period)
            except NotFound:
                continue  # already gone
            except TooManyRequests as exc:
                retry = f"will retry after {EVICTION_RETRY_SECONDS:g}s"
                click.echo(f"error when evicting {which} ({retry}): {exc}", err=True)
                refused.append(pod)
                continue
            except ApiError as exc:
                return evicted, f"error when evicting {which}: {exc}"
            evicted[(namespace, name)] = str((pod.get("metadata") or {}).get("uid") or "")
        waiting = refused
        if waiting:
            pause = EVICTION_RETRY_SECONDS
            if deadline is not None:  # wake at the deadline, not 5 s past it, to report the timeout
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
    return evicted, None


def _drain_node(
    client: Client,
    refs: tuple[ResourceRef, ResourceRef],
    node: str,
    options: DrainOptions,
    deadline: float | None,
) -> str | None:
    """Cordon, then delete and wait out the node's pods; the error text, or None when drained."""
    nodes_ref, pods_ref = refs
    set_unschedulable(client, nodes_ref, node, True)
    pods = client.list_raw(
        pods_ref, all_namespaces=True, field_selector=f"spec.nodeName={node}", label_selector=options.pod_selector
    ).items
    plan = plan_drain(
        pods,
        ignore_daemonsets=options.ignore_daemonsets,
        delete_emptydir_data=options.delete_emptydir_data,
        force=options.force,
    )
    if plan.errors:
        return plan.error_text()  # refuse before deleting anything
    if plan.warnings:
        click.echo(f"Warning: {plan.warning_text()}", err=True)
    if not options.disable_eviction:
        evicted, error = _evict(client, plan.delete, options, deadline)
        # Pods already evicted are still waited for (and reported), as kubectl's goroutines do.
        done = _wait_gone(client, pods_ref, node, evicted, deadline, "evicted")
        if error is not None:
            return error
        return None if done else f"drain did not complete within {options.timeout}"
    from kray.client import NotFound

    pending: dict[PodKey, str] = {}
    for pod in plan.delete:
        namespace, name = _key(pod)
        try:
            client.delete_raw(pods_ref, name, namespace, grace_period_seconds=options.grace_period)
        except NotFound:
            continue  # already gone
        pending[(namespace, name)] = str((pod.get("metadata") or {}).get("uid") or "")
    if not _wait_gone(client, pods_ref, node, pending, deadline):
        return f"drain did not complete within {options.timeout}"
    return None


@click.command("drain")
@_node_args
@_selector
@click.option("--ignore-daemonsets", is_flag=True, help="Leave DaemonSet-managed pods in place.")
@click.option("--delete-emptydir-data", "--delete-local-data", is_flag=True, help="Delete pods with emptyDir data too.")
@click.option("--force", is_flag=True, help="Delete pods that no controller manages (they are not recreated).")
@click.option("--grace-period", type=int, default=-1, help="Seconds each pod gets to stop (-1: the pod's own).")
@click.option("--timeout", default="0s", show_default=True, help="How long to wait for the pods (0: forever).")
@click.option("--pod-selector", help="Only delete the node's pods matching this label selector.")
@click.option(
    "--disable-eviction",
    is_flag=True,
    help="Delete pods instead of evicting them: this bypasses their PodDisruptionBudgets, use with caution.",
)
def drain_cmd(
    names: tuple[str, ...],
    selector: str | None,
    ignore_daemonsets: bool,
    delete_emptydir_data: bool,
    force: bool,
    grace_period: int,
    timeout: str,
    pod_selector: str | None,
    disable_eviction: bool,
) -> None:
    """Cordon nodes, then evict their pods (controllers recreate them on other nodes)."""
    seconds = parse_duration(timeout)
    deadline = time.monotonic() + seconds if seconds > 0 else None
    options = DrainOptions(
        ignore_daemonsets=ignore_daemonsets,
        delete_emptydir_data=delete_emptydir_data,
        force=force,
        grace_period=grace_period if grace_period >= 0 else None,
        timeout=timeout,
        pod_selector=pod_selector,
        disable_eviction=disable_eviction,
    )
    with make_client() as client:
        refs = (resolve_kind(client, "nodes"), resolve_kind(client, "pods"))
        nodes = _node_names(client, refs[0], names, selector)
        for i, node in enumerate(nodes):
            error = _drain_node(client, refs, node, options, deadline)
            if error is None:
                click.echo(f"node/{node} drained")
                continue
            # kubectl's report: the failure, then every node not drained (this one included).
            click.echo(f'error: unable to drain node "{node}" due to error: {error}, continuing command...', err=True)
            click.echo("There are pending nodes to be drained:", err=True)
            for pending_node in nodes[i:]:
                click.echo(f" {pending_node}", err=True)
            raise CliError(error)
