"""``kray top node|pod``: CPU and memory usage from the API server's ``metrics.k8s.io``, printed
as kubectl prints it (CPU in millicores, memory in Mi; nodes also as a share of allocatable).

``--gpu`` adds GPU(%) and GPU-MEMORY(bytes), from kray's extension keys in the same documents
(``nvidia.com/gpu.utilization``: percent busy averaged over a container's or node's GPUs;
``nvidia.com/gpu.memory``: memory used on them). ``<none>``: no GPUs; ``<unknown>``: GPUs that
cannot tell that figure."""

from __future__ import annotations

from typing import Any

import click

from kray.cli import printers
from kray.cli.common import fail, make_client

METRICS = "/apis/metrics.k8s.io/v1beta1"
GPU_UTILIZATION = "nvidia.com/gpu.utilization"  # the names actors/apiserver/metricsapi.py serves
GPU_MEMORY = "nvidia.com/gpu.memory"
GPU_HEADER = ["GPU(%)", "GPU-MEMORY(bytes)"]


def cpu_milli(quantity: str) -> int:
    """Millicores of a CPU quantity ("250m", "1", "123456789n", "5u")."""
    from kray.crds.quantity import Quantity

    return int(Quantity(quantity).amount * 1000)


def memory_mi(quantity: str) -> int:
    from kray.crds.quantity import Quantity

    return int(Quantity(quantity).amount) // (1024 * 1024)


def gpu_columns(usages: list[dict[str, str]]) -> list[str]:
    """GPU(%) and GPU-MEMORY(bytes) over the usage of one or more containers (or one node): the
    busy percentages averaged (each container's is already its GPUs' average), the memory summed."""
    from kray.crds.quantity import Quantity

    gpu = [u for u in usages if GPU_UTILIZATION in u or GPU_MEMORY in u]
    if not gpu:
        return ["<none>", "<none>"]
    busy = [int(Quantity(u[GPU_UTILIZATION]).amount) for u in gpu if GPU_UTILIZATION in u]
    used = [int(Quantity(u[GPU_MEMORY]).amount) for u in gpu if GPU_MEMORY in u]
    return [
        f"{sum(busy) // len(busy)}%" if busy else "<unknown>",
        f"{sum(used) // (1024 * 1024)}Mi" if used else "<unknown>",
    ]


def _get(client: Any, path: str, one: bool = False, **params: str) -> dict[str, Any]:
    """A metrics document; ``one``: a single object, whose absence is the error to report."""
    from kray.client import NotFound
    from kray.client.ops import Request

    try:
        return dict(client.request(Request("GET", path, params={k: v for k, v in params.items() if v})))
    except NotFound as exc:
        fail(exc.message if one else "Metrics API not available")


def _sort(rows: list[tuple[list[str], int, int]], sort_by: str | None) -> list[list[str]]:
    if sort_by == "cpu":
        rows.sort(key=lambda r: -r[1])
    elif sort_by == "memory":
        rows.sort(key=lambda r: -r[2])
    return [r[0] for r in rows]


@click.group("top")
def top_cmd() -> None:
    """Display resource (CPU/memory) usage of nodes or pods."""


@top_cmd.command("node")
@click.argument("name", required=False)
@click.option("-l", "--selector", default=None, help="Label selector.")
@click.option("--sort-by", type=click.Choice(["cpu", "memory"]), default=None)
@click.option("--no-headers", is_flag=True)
@click.option("--gpu", is_flag=True, help="Add GPU(%) and GPU-MEMORY(bytes) (kray's GPU usage).")
def top_node(name: str | None, selector: str | None, sort_by: str | None, no_headers: bool, gpu: bool) -> None:
    """CPU and memory of nodes, and their share of what the node can give (allocatable)."""
    from kray.client.paths import ResourceRef

    nodes_ref = ResourceRef(group="", version="v1", plural="nodes", namespaced=False, kind="Node")
    with make_client() as client:
        doc = _get(
            client, f"{METRICS}/nodes/{name}" if name else f"{METRICS}/nodes", bool(name), labelSelector=selector or ""
        )
        items = [doc] if name else doc.get("items") or []
        allocatable = {
            n["metadata"]["name"]: (n.get("status") or {}).get("allocatable") or {}
            for n in client.list_raw(nodes_ref).items
        }
    if not items:
        fail("metrics not available yet")
    rows = []
    for m in items:
        node, usage = m["metadata"]["name"], m.get("usage") or {}
        cpu, mem = cpu_milli(usage.get("cpu", "0")), memory_mi(usage.get("memory", "0"))
        alloc = allocatable.get(node, {})
        cpu_cap, mem_cap = cpu_milli(str(alloc.get("cpu", "0"))), memory_mi(str(alloc.get("memory", "0")))
        cpu_pct = f"{cpu * 100 // cpu_cap}%" if cpu_cap else "<unknown>"
        mem_pct = f"{mem * 100 // mem_cap}%" if mem_cap else "<unknown>"
        extra = gpu_columns([usage]) if gpu else []
        rows.append(([node, f"{cpu}m", cpu_pct, f"{mem}Mi", mem_pct, *extra], cpu, mem))
    header = None if no_headers else ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]
    if header is not None and gpu:
        header += GPU_HEADER
    click.echo(printers.format_table(header, _sort(rows, sort_by)))


@top_cmd.command("pod")
@click.argument("name", required=False)
@click.option("-n", "--namespace", default=None, help="Namespace (default: default).")
@click.option("-A", "--all-namespaces", is_flag=True)
@click.option("-l", "--selector", default=None, help="Label selector.")
@click.option("--containers", is_flag=True, help="One row per container.")
@click.option("--sort-by", type=click.Choice(["cpu", "memory"]), default=None)
@click.option("--no-headers", is_flag=True)
@click.option("--gpu", is_flag=True, help="Add GPU(%) and GPU-MEMORY(bytes) (kray's GPU usage).")
def top_pod(
    name: str | None,
    namespace: str | None,
    all_namespaces: bool,
    selector: str | None,
    containers: bool,
    sort_by: str | None,
    no_headers: bool,
    gpu: bool,
) -> None:
    """CPU and memory of pods (or of each of their containers)."""
    with make_client() as client:
        ns = namespace or client.namespace
        if name:
            items = [_get(client, f"{METRICS}/namespaces/{ns}/pods/{name}", one=True)]
        else:
            path = f"{METRICS}/pods" if all_namespaces else f"{METRICS}/namespaces/{ns}/pods"
            items = _get(client, path, labelSelector=selector or "").get("items") or []
    if not items:
        where = "" if all_namespaces else f" in {ns} namespace"
        click.echo(f"No resources found{where}.", err=True)
        return
    rows = []
    for m in items:
        meta = m["metadata"]
        lead = [meta["namespace"]] if all_namespaces else []
        per = [(c["name"], cpu_milli(c["usage"]["cpu"]), memory_mi(c["usage"]["memory"])) for c in m["containers"]]
        usages = [c["usage"] for c in m["containers"]]
        if containers:
            for (cname, cpu, mem), usage in zip(per, usages, strict=True):
                extra = gpu_columns([usage]) if gpu else []
                rows.append(([*lead, meta["name"], cname, f"{cpu}m", f"{mem}Mi", *extra], cpu, mem))
        else:
            cpu, mem = sum(p[1] for p in per), sum(p[2] for p in per)
            extra = gpu_columns(usages) if gpu else []
            rows.append(([*lead, meta["name"], f"{cpu}m", f"{mem}Mi", *extra], cpu, mem))
    columns = ["POD", "NAME"] if containers else ["NAME"]
    columns = [*(["NAMESPACE"] if all_namespaces else []), *columns, "CPU(cores)", "MEMORY(bytes)"]
    header = None if no_headers else [*columns, *(GPU_HEADER if gpu else [])]
    click.echo(printers.format_table(header, _sort(rows, sort_by)))
