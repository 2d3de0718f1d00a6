"""``kray api-resources`` and ``kray version``."""

from __future__ import annotations

import click

from . import printers
from .common import make_client


@click.command("api-resources")
@click.option("--namespaced", type=bool, default=None, help="Only namespaced (true) or cluster-scoped (false).")
@click.option("--api-group", help="Only resources of this API group ('' for core).")
@click.option("-o", "--output", type=click.Choice(["wide", "name"]), help="Output format.")
def api_resources_cmd(namespaced: bool | None, api_group: str | None, output: str | None) -> None:
    """List the resource types the server serves (from discovery)."""
    with make_client() as client:
        refs = client.api_resources()
    if namespaced is not None:
        refs = [r for r in refs if r.namespaced == namespaced]
    if api_group is not None:
        refs = [r for r in refs if r.group == api_group]
    refs.sort(key=lambda r: (r.group, r.plural))
    if output == "name":
        for r in refs:
            click.echo(r.resource)
        return
    header = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    if output == "wide":
        header.append("VERBS")
    rows = []
    for r in refs:
        row = [r.plural, ",".join(r.short_names), r.api_version, str(r.namespaced).lower(), r.kind]
        if output == "wide":
            row.append(",".join(r.verbs))
        rows.append(row)
    click.echo(printers.format_table(header, rows))


@click.command("version")
@click.option("--client", "client_only", is_flag=True, help="Only the client version (no server needed).")
def version_cmd(client_only: bool) -> None:
    """Print the client and server versions."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        mine = version("kray")
    except PackageNotFoundError:
        mine = "unknown"
    click.echo(f"Client Version: {mine}")
    if client_only:
        return
    from kray.client import ApiError, Request

    with make_client() as client:
        try:
            info = client.request(Request("GET", "/version"))
        except ApiError:
            info = {}
    server = info.get("gitVersion") or info.get("version") or "unknown"
    click.echo(f"Server Version: {server}")
