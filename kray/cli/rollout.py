"""``kray rollout status|history|undo|restart deploy/NAME`` (kubectl's rollout, for Deployments).

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


def parse_target(args: tuple[str, ...]) -> str:
    """``deploy/web``, ``deployment/web`` or ``deployment web`` -> ``web``."""
    if len(args) == 1 and "/" in args[0]:
        kind, _, name = args[0].partition("/")
    elif len(args) == 2:
        kind, name = args
    else:
        raise CliError("expected deploy/NAME (or: deployment NAME)")
    if kind.lower() not in ("deploy", "deployment", "deployments", "deployment.apps", "deployments.apps"):
        raise CliError(f'rollout is supported for deployments, not "{kind}"')
    if not name:
        raise CliError("a deployment name is required")
    return name


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
    """Manage the rollout of a Deployment."""


@rollout_cmd.command("status")
@_target
@_namespace
@click.option("-w", "--watch/--no-watch", default=True, help="Wait for the rollout to finish.")
@click.option("--timeout", type=float, default=0.0, help="Seconds to wait (0: forever).")
def status_cmd(target: tuple[str, ...], namespace: str, watch: bool, timeout: float) -> None:
    """Show the status of the rollout (and wait for it to finish)."""
    import kray.crds  # noqa: F401
    from kray.crds.apps import Deployment

    name = parse_target(target)
    deadline = time.monotonic() + timeout if timeout > 0 else None
    last = None
    with make_client() as client:
        while True:
            message, done = status_message(client.get(Deployment, name, namespace))
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
    from kray.crds.apps import Deployment

    name = parse_target(target)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch: dict[str, Any] = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
    with make_client() as client:
        client.patch(Deployment, name, patch, namespace)
    click.echo(f"deployment.apps/{name} restarted")
