"""``kray logs POD [-c CONTAINER] [-f] [--previous] [--tail N] [-n NS]``: a container's log,
through the API server's ``pods/{name}/log`` (which proxies to the node's kubelet)."""

from __future__ import annotations

import sys

import click

from kray.cli.common import fail, make_client


@click.command("logs")
@click.argument("pod")
@click.option("-c", "--container", default=None, help="Container name (needed when the pod has several).")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new output.")
@click.option("-p", "--previous", is_flag=True, help="The previous instance's log (after a restart).")
@click.option("--tail", type=int, default=-1, help="Lines from the end to show (-1: all).")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its RFC3339 time.")
@click.option("-n", "--namespace", default="default")
def logs_cmd(
    pod: str, container: str | None, follow: bool, previous: bool, tail: int, timestamps: bool, namespace: str
) -> None:
    """Print the logs of a container in a pod."""
    from httpx import TransportError

    from kray.client.errors import error_from_response

    client = make_client()
    pod = pod.removeprefix("pod/").removeprefix("pods/")
    params: dict[str, str] = {}
    if container:
        params["container"] = container
    if follow:
        params["follow"] = "true"
    if previous:
        params["previous"] = "true"
    if tail >= 0:
        params["tailLines"] = str(tail)
    if timestamps:
        params["timestamps"] = "true"
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
    http = client._http
    try:
        with http.stream("GET", path, params=params, timeout=None if follow else client.timeout) as resp:
            if resp.status_code >= 400:
                err = error_from_response(resp.status_code, resp.read())
                fail(str(err))
            out = sys.stdout.buffer
            for chunk in resp.iter_raw():
                out.write(chunk)
                out.flush()
    except TransportError as exc:
        fail(f"cannot reach the kray API server at {client.server}: {exc}")
    finally:
        client.close()
