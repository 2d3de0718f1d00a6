"""`kray up`, `kray down`, `kray status`: the cluster bootstrap commands."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _echo(message: str) -> None:
    click.echo(message, err=True)


@click.command()
@click.option("--etcd", "etcd", metavar="URL", help="Use this etcd (comma-separated endpoints) instead of a local one.")
@click.option("--ray-address", metavar="HOST:PORT", help="Join this Ray cluster instead of starting a local head.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API server listens on.")
@click.option("--port", default=6443, show_default=True, type=click.IntRange(1, 65535), help="API server port.")
@click.option("--num-cpus", type=click.IntRange(0), help="CPUs the local Ray head offers (default: all).")
@click.option("--state-dir", type=click.Path(path_type=Path), help="Where local etcd data, logs and PIDs go.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for each part to come up.")
@click.option(
    "--scheduler-shards", default=1, show_default=True, type=click.IntRange(1), help="Scheduler shard actors."
)
@click.option(
    "--scheduler-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A KubeSchedulerConfiguration YAML: scheduler profiles (plugins, weights, args). Checked first.",
)
@click.option("--no-kubelet", is_flag=True, help="Run no kubelet on this machine (control plane only).")
@click.option("--node-name", default="", help="This node's name (default: the hostname).")
@click.option("--pod-cidr", default="", help="This node's pod network (default: a /24 of --cluster-cidr).")
@click.option(
    "--cluster-cidr", default="10.244.0.0/16", show_default=True, help="Pod networks of all nodes: a /24 each."
)
@click.option(
    "--service-cidr",
    default="10.96.0.0/16",
    show_default=True,
    help="Where Services' ClusterIPs come from (give each kray on one machine its own).",
)
@click.option("--node-root", default="/var/lib/kray", show_default=True, help="Node state: pods, images, logs.")
@click.option(
    "--net-prefix",
    default="kray",
    show_default=True,
    help="Node bridge is <prefix>0; pod netns and veths start with it (one per kray on a machine).",
)
@click.option(
    "--fake-gpus",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Give this node N fake GPUs (nvidia.com/gpu, no device nodes) for tests and demos.",
)
@click.option(
    "--container-runtime",
    default="",
    type=click.Choice(["", "crun", "runc", "process"]),
    help="crun/runc (default: the first installed; needs root), or process: pods as plain host processes,"
    " NO isolation, for machines where kray is not root.",
)
def up(
    etcd: str | None,
    ray_address: str | None,
    host: str,
    port: int,
    num_cpus: int | None,
    state_dir: Path | None,
    timeout: float,
    scheduler_shards: int,
    scheduler_config: Path | None,
    no_kubelet: bool,
    node_name: str,
    pod_cidr: str,
    cluster_cidr: str,
    service_cidr: str,
    node_root: str,
    net_prefix: str,
    fake_gpus: int,
    container_runtime: str,
) -> None:
    """Start (or join) a kray cluster: etcd, Ray, the control plane and a node. Idempotent."""
    from kray.cluster import ClusterError, UpOptions, default_state_dir
    from kray.cluster import up as cluster_up
    from kray.controlplane import NodeOptions

    # Checked before anything starts: a bad config is a clear error and a non-zero exit.
    _check_networks(cluster_cidr, service_cidr, pod_cidr)
    sched_config = _load_scheduler_config(scheduler_config) if scheduler_config else None
    opts = UpOptions(
        state_dir=state_dir or default_state_dir(),
        etcd=etcd,
        ray_address=ray_address,
        host=host,
        port=port,
        num_cpus=num_cpus,
        timeout=timeout,
        scheduler_shards=scheduler_shards,
        scheduler_config=sched_config,
        cluster_cidr=cluster_cidr,
        service_cidr=service_cidr,
        node=NodeOptions(
            enabled=not no_kubelet,
            name=node_name,
            pod_cidr=pod_cidr,
            root=node_root,
            net_prefix=net_prefix,
            fake_gpus=fake_gpus,
            container_runtime=container_runtime,
        ),
    )
    try:
        config = cluster_up(opts, log=_echo)
    except (ClusterError, TimeoutError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"kray is up. API server: {config.server}")
    click.echo("Try:  kray get nodes   |   kray apply -f examples/hello.yaml   |   kray get pods -A")


def _check_networks(cluster_cidr: str, service_cidr: str, pod_cidr: str) -> None:
    """The three address ranges parse, and Service IPs never fall inside the pod networks."""
    import ipaddress

    nets: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
    for flag, value in (("--cluster-cidr", cluster_cidr), ("--service-cidr", service_cidr), ("--pod-cidr", pod_cidr)):
        if not value:
            continue
        try:
            nets[flag] = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=f"'{flag}'") from None
    service = nets["--service-cidr"]
    if service.num_addresses < 4:
        raise click.BadParameter(
            f"{service_cidr} is too small for Services (at least a /30)", param_hint="'--service-cidr'"
        )
    for flag in ("--cluster-cidr", "--pod-cidr"):
        other = nets.get(flag)
        if other is not None and other.version == service.version and other.overlaps(service):
            raise click.BadParameter(f"{service_cidr} overlaps {flag} {other}", param_hint="'--service-cidr'")


def _load_scheduler_config(path: Path) -> dict:
    from kray.actors.scheduler.config import SchedulerConfigError, load_scheduler_config, parse_scheduler_config

    try:
        data = parse_scheduler_config(path)
        load_scheduler_config(data, name=str(path))
    except SchedulerConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return data


@click.command()
@click.option("--state-dir", type=click.Path(path_type=Path), help="The state dir `kray up` used.")
@click.option("--purge", is_flag=True, help="Also delete the local etcd data.")
def down(state_dir: Path | None, purge: bool) -> None:
    """Stop what `kray up` started on this machine."""
    from kray.cluster import default_state_dir
    from kray.cluster import down as cluster_down

    cluster_down(state_dir or default_state_dir(), log=_echo, purge=purge)
    click.echo("kray is down.")


@click.command()
@click.option("--state-dir", type=click.Path(path_type=Path), help="The state dir `kray up` used.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(state_dir: Path | None, output: str) -> None:
    """Show whether etcd, Ray and the API server are up."""
    from kray.cluster import default_state_dir
    from kray.cluster import status as cluster_status

    report = cluster_status(state_dir or default_state_dir())
    if output == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        etcd, ray, api = report["etcd"], report["ray"], report["apiserver"]
        click.echo(f"etcd       {etcd['endpoint'] or '-':40} {'healthy' if etcd['healthy'] else 'DOWN'}")
        click.echo(f"ray        {ray['address'] or '-':40} {'reachable' if ray['reachable'] else 'DOWN'}")
        click.echo(f"apiserver  {api['url'] or '-':40} {'ready' if api['ready'] else 'DOWN'}")
    healthy = report["etcd"]["healthy"] and report["ray"]["reachable"] and report["apiserver"]["ready"]
    if not healthy:
        raise SystemExit(1)
