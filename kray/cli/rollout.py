"""``kray rollout status|history|undo|restart deploy/NAME`` (kubectl's rollout). ``status`` and
``restart`` also take ``ds/NAME`` and ``sts/NAME``; history and undo need the ReplicaSets that
only Deployments have (kray keeps no ControllerRevisions).

The decisions are pure functions (``status_message``, ``rollback_target``) so tests can use them
without a terminal; the click commands only read, write and print.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import click

from .common import CliError, make_client

if TYPE_CHECKING:
    from kray.client import Client
    from kray.crds.apps import Deployment, ReplicaSet
    from kray.crds.core.pod import PodTemplateSpec

REVISION = "deployment.kubernetes.io/revision"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
CHANGE_CAUSE = "kubernetes.io/change-cause"


KINDS = {
    "deployments": ("deploy", "deployment", "deployments"),
    "daemonsets": ("ds", "daemonset", "daemonsets"),
    "statefulsets": ("sts", "statefulset", "statefulsets"),
}


def parse_kind_target(args: tuple[str, ...]) -> tuple[str, str]:
    """``deploy/web``, ``ds/agent``, ``statefulset db`` -> (plural, name)."""
    if len(args) == 1 and "/" in args[0]:
        kind, _, name = args[0].partition("/")
    elif len(args) == 2:
        kind, name = args
    else:
        raise CliError("expected KIND/NAME: deploy/NAME, ds/NAME or sts/NAME")
    bare = kind.lower().removesuffix(".apps")
    plural = next((p for p, names in KINDS.items() if bare in names), None)
    if plural is None:
        raise CliError(f'rollout is supported for deployments, daemonsets and statefulsets, not "{kind}"')
    if not name:
        raise CliError(f"a {plural[:-1]} name is required")
    return plural, name


def parse_target(args: tuple[str, ...]) -> str:
    """``deploy/web``, ``deployment/web`` or ``deployment web`` -> ``web`` (Deployments only)."""
    plural, name = parse_kind_target(args)
    if plural != "deployments":
        raise CliError(f"rollout history and undo need a Deployment's ReplicaSets; {plural} keep no revisions here")
    return name


def daemonset_status(ds: dict[str, Any]) -> tuple[str, bool]:
    """kubectl's DaemonSetStatusViewer on the wire form: (message, done)."""
    name, spec, status = ds["metadata"]["name"], ds.get("spec") or {}, ds.get("status") or {}
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        raise CliError("rollout status is only available for RollingUpdate strategy type")
    if (ds["metadata"].get("generation") or 0) > (status.get("observedGeneration") or 0):
        return "Waiting for daemon set spec update to be observed...", False
    desired, updated = status.get("desiredNumberScheduled") or 0, status.get("updatedNumberScheduled") or 0
    available = status.get("numberAvailable") or 0
    waiting = f'Waiting for daemon set "{name}" rollout to finish: '
    if updated < desired:
        return f"{waiting}{updated} out of {desired} new pods have been updated...", False
    if available < desired:
        return f"{waiting}{available} of {desired} updated pods are available...", False
    return f'daemon set "{name}" successfully rolled out', True


def statefulset_status(sts: dict[str, Any]) -> tuple[str, bool]:
    """kubectl's StatefulSetStatusViewer on the wire form: (message, done)."""
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        raise CliError("rollout status is only available for RollingUpdate strategy type")
    observed = status.get("observedGeneration") or 0
    if not observed or (sts["metadata"].get("generation") or 0) > observed:
        return "Waiting for statefulset spec update to be observed...", False
    replicas, ready = spec.get("replicas", 1), status.get("readyReplicas") or 0
    if ready < replicas:
        return f"Waiting for {replicas - ready} pods to be ready...", False
    updated = status.get("updatedReplicas") or 0
    partition = (strategy.get("rollingUpdate") or {}).get("partition")
    if partition:
        if updated < replicas - partition:
            return (
                f"Waiting for partitioned roll out to finish: {updated} out of {replicas - partition} new pods "
                "have been updated...",
                False,
            )
        return f"partitioned roll out complete: {updated} new pods have been updated...", True
    if status.get("updateRevision") != status.get("currentRevision"):
        revision = status.get("updateRevision")
        return f"waiting for statefulset rolling update to complete {updated} pods at revision {revision}...", False
    current, revision = status.get("currentReplicas") or 0, status.get("currentRevision")
    return f"statefulset rolling update complete {current} pods at revision {revision}...", True


def status_message(d: Deployment) -> tuple[str, bool]:
    """kubectl's DeploymentStatusViewer: (message, done). Raises CliError past the deadline."""
    s = d.status
    name = d.name
    if s is None or (d.metadata.generation or 0) > (s.observed_generation or 0):
        return "Waiting for deployment spec update to be observed...", False
    for c in s.conditions or []:
        if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded":
            raise CliError(f'deployment "{name}" exceeded its progress deadline')
    replicas, updated = d.spec.replicas, s.updated_replicas or 0
    total, ready = s.replicas or 0, s.available_replicas or 0
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if updated < replicas:
        return f"{waiting}{updated} out of {replicas} new replicas have been updated...", False
    if total > updated:
        return f"{waiting}{total - updated} old replicas are pending termination...", False
    if ready < updated:
        return f"{waiting}{ready} of {updated} updated replicas are available...", False
    return f'deployment "{name}" successfully rolled out', True


def _revision(rs: ReplicaSet) -> int:
    try:
        return int((rs.metadata.annotations or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def owned_replicasets(d: Deployment, rss: list[ReplicaSet]) -> list[ReplicaSet]:
    uid = d.metadata.uid
    owned = [r for r in rss if any(o.uid == uid and o.controller for o in r.metadata.owner_references or ())]
    return sorted(owned, key=_revision)


def rollback_target(d: Deployment, rss: list[ReplicaSet], to_revision: int | None) -> tuple[int, PodTemplateSpec]:
    """The revision to go back to and its template (the pod-template-hash label removed).

    Without ``to_revision``: the newest revision older than the current one, like kubectl.
    """
    from kray.actors.controllers.podutil import POD_TEMPLATE_HASH

    owned = owned_replicasets(d, rss)
    if to_revision:
        match = [r for r in owned if _revision(r) == to_revision]
        if not match:
            raise ValueError(
                f"unable to find specified revision {to_revision} in history (revision {to_revision} not found)"
            )
        target = match[0]
    else:
        current = int((d.metadata.annotations or {}).get(REVISION, "0") or 0)
        older = [r for r in owned if _revision(r) < current] or owned[:-1]
        if not older:
            raise ValueError("no rollout history found for deployment " + repr(d.name))
        target = older[-1]
    assert target.spec.template is not None
    template = target.spec.template.model_copy(deep=True)
    if template.metadata and template.metadata.labels:
        template.metadata.labels = {k: v for k, v in template.metadata.labels.items() if k != POD_TEMPLATE_HASH}
    return _revision(target), template


# ---- commands ----


def _load(client: Client, name: str, namespace: str) -> tuple[Deployment, list[ReplicaSet]]:
    import kray.crds  # noqa: F401  (registers the apps kinds)
    from kray.crds.apps import Deployment, ReplicaSet

    d = client.get(Deployment, name, namespace)
    return d, owned_replicasets(d, list(client.list(ReplicaSet, namespace).items))


_namespace = click.option("-n", "--namespace", default="default", show_default=True)
_target = click.argument("target", nargs=-1, required=True)


@click.group("rollout")
def rollout_cmd() -> None:
    """Manage the rollout of a Deployment, DaemonSet or StatefulSet."""


@rollout_cmd.command("status")
@_target
@_namespace
@click.option("-w", "--watch/--no-watch", default=True, help="Wait for the rollout to finish.")
@click.option("--timeout", type=float, default=0.0, help="Seconds to wait (0: forever).")
def status_cmd(target: tuple[str, ...], namespace: str, watch: bool, timeout: float) -> None:
    """Show the status of the rollout (and wait for it to finish)."""
    import kray.crds  # noqa: F401
    from kray.crds.apps import Deployment

    plural, name = parse_kind_target(target)
    deadline = time.monotonic() + timeout if timeout > 0 else None
    last = None
    with make_client() as client:
        while True:
            if plural == "deployments":
                message, done = status_message(client.get(Deployment, name, namespace))
            else:
                raw = client.get_raw(client.resolve(f"{plural}.apps"), name, namespace)
                message, done = (daemonset_status if plural == "daemonsets" else statefulset_status)(raw)
            if message != last:
                click.echo(message)
                last = message
            if done or not watch:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise CliError("timed out waiting for the condition")
            time.sleep(0.5)


@rollout_cmd.command("history")
@_target
@_namespace
@click.option("--revision", type=int, default=0, help="Show the pod template of this revision.")
def history_cmd(target: tuple[str, ...], namespace: str, revision: int) -> None:
    """List the Deployment's revisions."""
    import yaml

    name = parse_target(target)
    with make_client() as client:
        d, rss = _load(client, name, namespace)
    if revision:
        rev, template = rollback_target(d, rss, revision)
        click.echo(f"deployment.apps/{name} with revision #{rev}")
        click.echo(yaml.safe_dump(template.to_dict(), sort_keys=False).rstrip())
        return
    click.echo(f"deployment.apps/{name}")
    click.echo(f"{'REVISION':<10}CHANGE-CAUSE")
    for rs in rss:
        cause = (rs.metadata.annotations or {}).get(CHANGE_CAUSE, "<none>")
        click.echo(f"{_revision(rs):<10}{cause}")


@rollout_cmd.command("undo")
@_target
@_namespace
@click.option("--to-revision", type=int, default=0, help="The revision to roll back to (default: the previous one).")
def undo_cmd(target: tuple[str, ...], namespace: str, to_revision: int) -> None:
    """Roll back to a previous revision (its ReplicaSet's template is copied back)."""
    from kray.actors.controllers.podutil import equal_ignore_hash

    name = parse_target(target)
    with make_client() as client:
        d, rss = _load(client, name, namespace)
        try:
            rev, template = rollback_target(d, rss, to_revision or None)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        if equal_ignore_hash(template, d.spec.template):
            click.echo(f"deployment.apps/{name} skipped rollback (current template already matches revision {rev})")
            return
        d.spec.template = template
        client.update(d)  # with the resourceVersion read: a concurrent edit is a Conflict, not lost
    click.echo(f"deployment.apps/{name} rolled back")


@rollout_cmd.command("restart")
@_target
@_namespace
def restart_cmd(target: tuple[str, ...], namespace: str) -> None:
    """Restart all pods (a new rollout, by stamping the template)."""
    import kray.crds  # noqa: F401

    plural, name = parse_kind_target(target)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch: dict[str, Any] = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
    with make_client() as client:
        client.patch_raw(client.resolve(f"{plural}.apps"), name, patch, namespace)
    click.echo(f"{plural[:-1]}.apps/{name} restarted")
