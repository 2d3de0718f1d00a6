"""``kray scale deploy/NAME --replicas N`` (also rs/NAME, or ``KIND NAME``)."""

from __future__ import annotations

import click

from .common import CliError, make_client, one_object, resolve_kind

_SCALABLE = {"Deployment", "ReplicaSet"}


@click.command("scale")
@click.argument("target", nargs=-1, required=True)
@click.option("--replicas", type=int, required=True, help="The new number of replicas.")
@click.option("--current-replicas", type=int, default=None, help="Only scale if the current count is this.")
@click.option("-n", "--namespace", default="default", show_default=True)
def scale_cmd(target: tuple[str, ...], replicas: int, current_replicas: int | None, namespace: str) -> None:
    """Set a Deployment's or ReplicaSet's replicas."""
    if replicas < 0:
        raise CliError("--replicas must be >= 0")
    kind, name = one_object(target)
    with make_client() as client:
        ref = resolve_kind(client, kind)
        if ref.kind not in _SCALABLE:
            raise CliError(f'cannot scale "{ref.kind}": only deployments and replicasets')
        obj = client.get_raw(ref, name, namespace)
        spec = obj.setdefault("spec", {})
        if current_replicas is not None and spec.get("replicas", 1) != current_replicas:
            raise CliError(f"expected {current_replicas} replicas, found {spec.get('replicas', 1)}")
        spec["replicas"] = replicas
        client.update_raw(obj, ref)  # the resourceVersion read makes a concurrent change a Conflict
    click.echo(f"{ref.kind.lower()}.apps/{name} scaled")
