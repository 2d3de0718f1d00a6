"""``kray logs POD | trainingjob/NAME | -l SELECTOR [-c CONTAINER] [-f] [--previous] [--tail N]``:
container logs through the API server's ``pods/{name}/log`` (which proxies to the node's kubelet).

Several pods (a selector, or every replica of a TrainingJob) are printed one after another in
name order, each line prefixed with ``[pod/NAME/CONTAINER]`` when ``--prefix`` is given.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from kray.cli.common import fail, make_client

# KIND/NAME forms that mean "the pods of this object", and the label their pods carry.
OWNER_LABELS = {"trainingjob": "kray.io/job-name", "trainingjobs": "kray.io/job-name", "tj": "kray.io/job-name"}


@click.command("logs")
@click.argument("target", required=False)
@click.option("-l", "--selector", default=None, help="Label selector: the logs of every matching pod.")
@click.option("-c", "--container", default=None, help="Container name (needed when the pod has several).")
@click.option("--all-containers", is_flag=True, help="The logs of every container of each pod, in order.")
@click.option("-f", "--follow", is_flag=True, help="Keep streaming new output (one pod).")
@click.option("-p", "--previous", is_flag=True, help="The previous instance's log (after a restart).")
@click.option("--tail", type=int, default=-1, help="Lines from the end to show (-1: all).")
@click.option("--timestamps", is_flag=True, help="Prefix each line with its RFC3339 time.")
@click.option("--prefix", is_flag=True, help="Prefix each line with [pod/NAME/CONTAINER].")
@click.option("-n", "--namespace", default="default")
def logs_cmd(
    target: str | None,
    selector: str | None,
    container: str | None,
    all_containers: bool,
    follow: bool,
    previous: bool,
    tail: int,
    timestamps: bool,
    prefix: bool,
    namespace: str,
) -> None:
    """Print the logs of a container in a pod (or in every pod a selector or a TrainingJob names)."""
    from httpx import TransportError

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
    if all_containers and container:
        fail("--all-containers and -c cannot be used together")
    pod, selector = _target(target, selector)
    client = make_client()
    try:
        pods = [pod] if pod else _matching(client, selector or "", namespace)
        if follow and (len(pods) > 1 or all_containers):
            fail(f"-f follows one container; {len(pods)} pod(s) match: {', '.join(pods)}")
        for pod in pods:
            for name in _containers(client, namespace, pod) if all_containers else [container]:
                if name:
                    params["container"] = name
                _stream(client, namespace, pod, params, f"[pod/{pod}{'/' + name if name else ''}] " if prefix else "")
    except TransportError as exc:
        fail(f"cannot reach the kray API server at {client.server}: {exc}")
    finally:
        client.close()


def _target(target: str | None, selector: str | None) -> tuple[str | None, str | None]:
    """(one pod's name, None) or (None, a label selector); bad combinations fail here, offline."""
    if target and selector:
        fail("give a pod name or a selector (-l), not both")
    if not target:
        if not selector:
            fail("a pod name, trainingjob/NAME or -l SELECTOR is required")
        return None, selector
    kind, slash, name = target.partition("/")
    if not slash or kind in ("pod", "pods", "po"):
        return (name if slash else target), None
    label = OWNER_LABELS.get(kind.lower())
    if label is None:
        fail(f'cannot get logs of "{kind}": use a pod, trainingjob/NAME or -l SELECTOR')
    return None, f"{label}={name}"


def _matching(client: Any, selector: str, namespace: str) -> list[str]:
    from kray.crds import Pod

    names = sorted(p.name for p in client.list(Pod, namespace, label_selector=selector).items)
    if not names:
        fail(f"no pods in namespace {namespace} match {selector}")
    return names


def _containers(client: Any, namespace: str, pod: str) -> list[str]:
    """Init containers, then the others, as kubectl's --all-containers prints them."""
    from kray.crds import Pod

    spec = client.get(Pod, pod, namespace).spec
    return [c.name for c in [*(spec.init_containers or []), *spec.containers]]


def _stream(client: Any, namespace: str, pod: str, params: dict[str, str], prefix: str) -> None:
    from kray.client.errors import error_from_response

    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
    timeout = None if "follow" in params else client.timeout
    out = sys.stdout.buffer
    with client._http.stream("GET", path, params=params, timeout=timeout) as resp:
        if resp.status_code >= 400:
            fail(str(error_from_response(resp.status_code, resp.read())))
        if not prefix:
            for chunk in resp.iter_raw():
                out.write(chunk)
                out.flush()
            return
        for line in resp.iter_lines():
            out.write(f"{prefix}{line}\n".encode())
            out.flush()
