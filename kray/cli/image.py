"""`kray image pull|import|ls|rm`: the local node's image store, through its CRI ImageService.

Images come from registries (`kray image pull`, or the kubelet when a pod needs one) or from OCI
image layouts (a directory or a tar) by import; `scripts/build_test_image.sh` builds the busybox
test image.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click


def _socket(node: str | None, state_dir: Path | None) -> Path:
    from kray.cluster import LocalState, default_state_dir

    state = LocalState.load(state_dir or default_state_dir())
    nodes: dict[str, str] = state.extra.get("nodes", {})
    if not nodes:
        raise click.ClickException("no local node recorded: run `kray up` (as root) first")
    if node is None:
        if len(nodes) > 1:
            raise click.ClickException(f"several local nodes; choose one with --node: {', '.join(sorted(nodes))}")
        node = next(iter(nodes))
    if node not in nodes:
        raise click.ClickException(f'no local node "{node}"; known: {", ".join(sorted(nodes))}')
    return Path(nodes[node]) / "cri.sock"


def _run(coro_factory):  # type: ignore[no-untyped-def]
    import grpc

    try:
        return asyncio.run(coro_factory())
    except grpc.aio.AioRpcError as exc:
        raise click.ClickException(exc.details() or str(exc.code())) from None


@click.group()
def image() -> None:
    """Manage the images on this machine's kray node."""


_node = click.option("--node", help="The local node (default: the only one).")
_state = click.option("--state-dir", type=click.Path(path_type=Path), help="The state dir `kray up` used.")


@image.command("import")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--name", "name", help="Image name to store it under (default: from the layout's annotations).")
@_node
@_state
def import_cmd(source: Path, name: str | None, node: str | None, state_dir: Path | None) -> None:
    """Import an OCI image layout (a .tar or a directory)."""
    from kray.runtime.cri.client import RuntimeClient

    kind = "oci-archive" if source.is_file() else "oci"
    ref = f"{kind}:{source.resolve()}" + (f":{name}" if name else "")

    async def go() -> str:
        async with RuntimeClient(_socket(node, state_dir)) as cri:
            return await cri.pull_image(ref)

    click.echo(f"imported {_run(go)}")


@image.command("pull")
@click.argument("ref")
@click.option("--creds", help="USER:PASSWORD for the registry (default: a matching ~/.docker/config.json entry).")
@_node
@_state
def pull_cmd(ref: str, creds: str | None, node: str | None, state_dir: Path | None) -> None:
    """Pull an image from its registry onto this machine's node (e.g. docker.io/library/python:3.12)."""
    from kray.actors.kubelet.images import credentials_for, node_docker_config
    from kray.runtime.cri import api_pb2 as pb
    from kray.runtime.cri.client import RuntimeClient

    if creds is not None and ":" not in creds:
        raise click.BadParameter("want USER:PASSWORD", param_hint="--creds")
    user, _, password = (creds or "").partition(":")
    auths = [pb.AuthConfig(username=user, password=password)] if creds else credentials_for(ref, node_docker_config())

    async def go() -> str:
        async with RuntimeClient(_socket(node, state_dir)) as cri:
            return await cri.pull_image(ref, auth=auths[0] if auths else None)

    click.echo(f"pulled {ref} ({_run(go)})")


@image.command("ls")
@_node
@_state
def ls_cmd(node: str | None, state_dir: Path | None) -> None:
    """List the node's images."""
    from kray.runtime.cri.client import RuntimeClient

    async def go() -> list[tuple[str, str, int]]:
        async with RuntimeClient(_socket(node, state_dir)) as cri:
            return [(", ".join(i.repo_tags) or "<none>", i.id[:19], i.size) for i in await cri.list_images()]

    rows = _run(go)
    width = max([len("IMAGE"), *(len(r[0]) for r in rows)])
    click.echo(f"{'IMAGE':<{width}}   {'ID':<19}   SIZE")
    for tags, image_id, size in rows:
        click.echo(f"{tags:<{width}}   {image_id:<19}   {size / 1e6:.1f}MB")


@image.command("rm")
@click.argument("name")
@_node
@_state
def rm_cmd(name: str, node: str | None, state_dir: Path | None) -> None:
    """Remove an image from the node."""
    from kray.runtime.cri.client import RuntimeClient

    async def go() -> None:
        async with RuntimeClient(_socket(node, state_dir)) as cri:
            await cri.remove_image(name)

    _run(go)
    click.echo(f"removed {name}")
