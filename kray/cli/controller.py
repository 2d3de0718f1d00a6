"""``kray controller run|list|delete``: your own controllers, hosted in the cluster as Ray actors.

``run MODULE:ATTR`` imports and wires the controller here first (a typo or a builder mistake
fails now, with one ``error:`` line), then joins the Ray cluster ``kray up`` recorded and starts
``--replicas`` detached actors ``kray-controller-<name>-<i>`` (leader-elected). ``--path DIR``
ships that folder with them (Ray's ``runtime_env`` working_dir), so code that exists only on
this machine runs on the cluster. Ray is imported only by these commands.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kray.controlplane import BUILTIN_CONTROLLERS

from .common import CliError, fail
from .printers import format_table

if TYPE_CHECKING:
    from kray.actors.framework.manager import Manager
    from kray.config import KrayConfig

_ACTOR = re.compile(r"^kray-controller-(?P<name>.+)-(?P<index>\d+)$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")
# kray's own controllers (`kray up` runs each as an actor); deleting one stops Deployments, Jobs, GC...
BUILTIN = tuple(BUILTIN_CONTROLLERS)


class _Offline:
    """Stands in for the list-watcher and writer while wiring is checked: nothing may run yet."""

    def __getattr__(self, name: str) -> Any:
        raise CliError(f"the build function used the API ({name}) while being wired; do I/O in reconcile()")


def default_name(spec: str) -> str:
    """``my_pkg.tensorboard_operator:build`` -> ``tensorboard-operator``."""
    module = spec.partition(":")[0].rsplit(".", 1)[-1]
    return module.lower().replace("_", "-").strip("-")


def check_spec(spec: str, path: Path | None, name: str) -> Manager:
    """Import and wire the controller locally, as each replica will; the wired manager tells us
    which kinds it watches. Every failure is a ``CliError`` that says what to fix."""
    if path is not None:
        sys.path.insert(0, str(path))
    import kray.crds  # noqa: F401  (built-in kinds, as the actor has them)
    from kray.actors.framework import BuilderError, Manager
    from kray.actors.framework.hosting import resolve_spec

    module, _, attr = spec.partition(":")
    try:
        build = resolve_spec(spec)
    except ModuleNotFoundError as exc:
        hint = "" if path else " (use --path DIR to send a folder of code along)"
        if exc.name and (exc.name == module or module.startswith(exc.name + ".")):
            fail(f"cannot import {module!r}: no such module{' in ' + str(path) if path else ''}{hint}")
        fail(f"importing {module!r} failed: {exc}")
    except AttributeError:
        fail(f"module {module!r} has no attribute {attr!r}")
    except ValueError as exc:
        fail(str(exc))
    except Exception as exc:  # the author's module raised while importing (syntax error, ...)
        fail(f"importing {module!r} failed: {type(exc).__name__}: {exc}")
    manager = Manager(_Offline(), _Offline(), name=name)  # type: ignore[arg-type]
    try:
        build(manager)
    except BuilderError as exc:
        fail(str(exc))
    except CliError:
        raise
    except Exception as exc:
        fail(f"{spec}(manager) failed: {type(exc).__name__}: {exc}")
    if not manager.controllers:
        fail(f"{spec} wired no controller (call ControllerBuilder(manager)...complete(reconciler))")
    return manager


def kray_config(ctx: click.Context) -> KrayConfig:
    """Where the actors reach the API server: the same server and token this CLI uses."""
    from kray.config import KrayConfig, load_config

    opts = ctx.find_root().obj if isinstance(ctx.find_root().obj, dict) else {}
    server, token = opts.get("server"), opts.get("token")
    if server and token is not None:
        return KrayConfig(server=server, token=token)
    config = load_config()
    return KrayConfig(server=server or config.server, token=config.token if token is None else token)


@contextmanager
def ray_connection(address: str | None, working_dir: Path | None = None) -> Iterator[Any]:
    """Join the cluster as a driver in Ray namespace ``kray``; always disconnect.

    Ray uploads a local ``working_dir`` only for a whole job (``ray.init``), not per actor; the
    actors this driver creates inherit it, and detached ones keep the package alive after we go.
    """
    from kray.cluster import LOOPBACK_ENV, RAY_NAMESPACE, LocalState, default_state_dir

    address = address or os.environ.get("RAY_ADDRESS") or LocalState.load(default_state_dir()).ray_address
    if not address:
        fail("no Ray cluster: run `kray up` first, or pass --ray-address HOST:PORT")
    os.environ.update(LOOPBACK_ENV)  # before importing ray: it reads some of these at import
    import ray

    kwargs: dict[str, Any] = {"runtime_env": {"working_dir": str(working_dir)}} if working_dir else {}
    if address.rpartition(":")[0] in ("127.0.0.1", "localhost"):
        kwargs["_node_ip_address"] = "127.0.0.1"  # a loopback-only cluster: join it on loopback
    try:
        ray.init(address=address, namespace=RAY_NAMESPACE, logging_level=logging.WARNING, log_to_driver=False, **kwargs)
    except Exception as exc:
        shipping = f" (shipping {working_dir} as its working_dir)" if working_dir else ""
        fail(f"cannot join the Ray cluster at {address}{shipping}: {exc}")
    try:
        yield ray
    finally:
        ray.shutdown()


def controller_actors(ray: Any) -> dict[str, list[tuple[int, str]]]:
    """Controller name -> [(replica index, actor name)], from Ray's named actors in ``kray``."""
    found: dict[str, list[tuple[int, str]]] = {}
    for actor in ray.util.list_named_actors():
        match = _ACTOR.match(actor if isinstance(actor, str) else actor.get("name", ""))
        if match:
            found.setdefault(match["name"], []).append((int(match["index"]), match.group(0)))
    return {name: sorted(replicas) for name, replicas in sorted(found.items())}


def statuses(ray: Any, actor_names: list[str], timeout: float = 5.0) -> list[dict[str, Any] | None]:
    """Each replica's ``status()``; None for one that does not answer (restarting, wedged)."""
    from kray.cluster import RAY_NAMESPACE

    refs = []
    for actor in actor_names:
        try:
            refs.append(ray.get_actor(actor, namespace=RAY_NAMESPACE).status.remote())
        except ValueError:  # gone between listing and now
            refs.append(None)
    pending = [r for r in refs if r is not None]
    ready, _ = ray.wait(pending, num_returns=len(pending), timeout=timeout) if pending else ([], [])
    out: list[dict[str, Any] | None] = []
    for ref in refs:
        try:
            out.append(ray.get(ref) if ref is not None and ref in ready else None)
        except Exception:
            out.append(None)
    return out


def summarize(replies: list[dict[str, Any] | None]) -> dict[str, str]:
    answered = [r for r in replies if r is not None]
    leader = next((str(i) for i, r in enumerate(replies) if r and r.get("leader")), "<none>")
    errors = [r["error"] for r in answered if r.get("error")]
    if errors:
        status = f"Failed: {errors[0]}"
    elif len(answered) < len(replies):
        status = f"Degraded ({len(replies) - len(answered)} not answering)"
    elif not all(r.get("synced") for r in answered):
        status = "Syncing"
    elif leader == "<none>":
        status = "Electing"
    else:
        status = "Running"
    reconciles = sum(sum((r.get("reconciles") or {}).values()) for r in answered)
    return {
        "replicas": f"{len(answered)}/{len(replies)}",
        "leader": leader,
        "status": status,
        "reconciles": str(reconciles),
    }


def kill(ray: Any, actor_names: list[str]) -> None:
    """Stop cleanly first (the leader hands back its Lease, so a successor need not wait it out)."""
    from kray.cluster import RAY_NAMESPACE

    handles = []
    for actor in actor_names:
        try:
            handles.append(ray.get_actor(actor, namespace=RAY_NAMESPACE))
        except ValueError:
            continue
    if handles:
        ray.wait([h.stop.remote() for h in handles], num_returns=len(handles), timeout=15)
    for handle in handles:
        ray.kill(handle, no_restart=True)


def warn_unserved(manager: Manager) -> None:
    """The controller runs anyway and syncs once the kinds exist; but say so now, not in a log."""
    from kray.cli.common import make_client
    from kray.client import UnknownResource

    try:
        with make_client() as client:
            for api_version, kind_name, _ in manager.informers:
                try:
                    client.resource_for(api_version, kind_name)
                except UnknownResource:
                    click.echo(
                        f"warning: the API server does not serve {kind_name} ({api_version}) yet; apply its "
                        "CustomResourceDefinition (the controller waits for it)",
                        err=True,
                    )
    except Exception as exc:  # the server being unreachable is reported by the actors' status
        click.echo(f"warning: could not check the API server's kinds: {exc}", err=True)


@click.group("controller")
def controller_cmd() -> None:
    """Run your own controllers in the cluster (as Ray actors)."""


@controller_cmd.command("run")
@click.argument("spec", metavar="MODULE:ATTR")
@click.option("--name", help="Controller name (default: from the module name).")
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True, help="Leader-elected replicas.")
@click.option("--no-leader-elect", is_flag=True, help="Reconcile without a Lease (one replica only).")
@click.option(
    "--path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder to import MODULE from; it is sent to the cluster with the controller.",
)
@click.option("--ray-address", help="Ray cluster to join (default: the one `kray up` started or joined).")
@click.option("--replace", is_flag=True, help="Delete a running controller of the same name first.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the actors.")
@click.pass_context
def run_cmd(
    ctx: click.Context,
    spec: str,
    name: str | None,
    replicas: int,
    no_leader_elect: bool,
    path: Path | None,
    ray_address: str | None,
    replace: bool,
    timeout: float,
) -> None:
    """Deploy MODULE:ATTR (a build(manager) function or a reconciler class with FOR/OWNS)."""
    if ":" not in spec:
        fail(f"controller spec {spec!r}: expected MODULE:ATTR, e.g. my_operator:build")
    name = name or default_name(spec)
    if not _NAME.match(name):
        fail(f"controller name {name!r}: use lowercase letters, digits and '-' (at most 42), or pass --name")
    if replicas > 1 and no_leader_elect:
        fail("--replicas > 1 needs leader election (drop --no-leader-elect)")
    path = path.resolve() if path else None
    manager = check_spec(spec, path, name)
    config = kray_config(ctx)
    warn_unserved(manager)
    with ray_connection(ray_address, path) as ray:
        from kray.actors.framework.hosting import deploy_controller

        existing = controller_actors(ray).get(name)
        if existing:
            if not replace:
                fail(f'controller "{name}" is already running; `kray controller delete {name}` or pass --replace')
            kill(ray, [actor for _, actor in existing])
        handles = deploy_controller(name, spec, config, replicas, not no_leader_elect)
        actor_names = [f"kray-controller-{name}-{i}" for i in range(replicas)]
        try:
            ready = ray.get([h.ready.remote() for h in handles], timeout=timeout)
        except Exception as exc:  # the runtime env could not be set up, the actor died, a timeout
            kill(ray, actor_names)
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            fail(f'controller "{name}" did not start: {first}')
        if not all(ready):
            errors = [r.get("error") for r in statuses(ray, actor_names) if r and r.get("error")]
            kill(ray, actor_names)
            fail(f'controller "{name}" failed in the cluster: {errors[0] if errors else "see the Ray logs"}')
        summary = _wait_running(ray, actor_names, min(timeout, 15.0))
        click.echo(f"controller/{name} started: {summary['replicas']} replicas, status {summary['status']}")


def _wait_running(ray: Any, actor_names: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        summary = summarize(statuses(ray, actor_names))
        if summary["status"] == "Running" or summary["status"].startswith("Failed") or time.monotonic() > deadline:
            return summary
        time.sleep(0.3)


@controller_cmd.command("list")
@click.option("--ray-address", help="Ray cluster to join (default: the one `kray up` started or joined).")
def list_cmd(ray_address: str | None) -> None:
    """Controllers running in the cluster (kray's own controller-manager included)."""
    with ray_connection(ray_address) as ray:
        rows = []
        for name, replicas in controller_actors(ray).items():
            s = summarize(statuses(ray, [actor for _, actor in replicas]))
            rows.append([name, s["replicas"], s["leader"], s["reconciles"], s["status"]])
    if not rows:
        click.echo("No controllers found.", err=True)
        return
    click.echo(format_table(["NAME", "REPLICAS", "LEADER", "RECONCILES", "STATUS"], rows))


@controller_cmd.command("delete")
@click.argument("name")
@click.option("--ray-address", help="Ray cluster to join (default: the one `kray up` started or joined).")
@click.option("--force", is_flag=True, help="Allow deleting one of kray's built-in controllers.")
def delete_cmd(name: str, ray_address: str | None, force: bool) -> None:
    """Stop a controller's actors for good (they are not restarted)."""
    if name in BUILTIN and not force:
        fail(f"{name} is one of kray's built-in controllers; pass --force to delete it anyway")
    with ray_connection(ray_address) as ray:
        replicas = controller_actors(ray).get(name)
        if not replicas:
            fail(f'controller "{name}" not found')
        kill(ray, [actor for _, actor in replicas])
    click.echo(f'controller "{name}" deleted')
