"""Helpers every command shares: the client, kind resolution, user-facing errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from kray.client import Client, ResourceRef


class CliError(Exception):
    """A problem to report as one ``error: ...`` line and exit code 1."""


def fail(message: str) -> NoReturn:
    raise CliError(message)


def one_object(target: tuple[str, ...]) -> tuple[str, str]:
    """(kind, name) from ``KIND/NAME`` or ``KIND NAME``."""
    if len(target) == 1 and "/" in target[0]:
        kind, _, name = target[0].partition("/")
        return kind, name
    if len(target) == 2:
        return target[0], target[1]
    raise CliError("expected KIND/NAME (or: KIND NAME)")


def make_client(ctx: click.Context | None = None) -> Client:
    """A client for the configured cluster (``~/.kray/config``, ``KRAY_SERVER``/``KRAY_TOKEN``)."""
    from kray.client import Client
    from kray.config import ConfigError, load_config

    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    opts: dict[str, Any] = root.obj if isinstance(root.obj, dict) else {}
    server, token = opts.get("server"), opts.get("token")
    if server and token is not None:
        return Client(server=server, token=token)
    try:
        config = load_config()
    except ConfigError:
        if not server:
            raise
        return Client(server=server, token="")  # a server without auth, named on the command line
    return Client(config, server=server or None, token=token)


def resolve_kind(client: Client, name: str) -> ResourceRef:
    """A resource by user-typed name: the server's discovery first (so custom resources work),
    then the local registry when discovery does not know it."""
    from kray.client import UnknownResource

    try:
        return client.resolve(name)
    except UnknownResource as exc:
        local = _local_ref(name)
        if local is None:
            raise CliError(str(exc)) from None
        return local


def _local_ref(name: str) -> ResourceRef | None:
    from kray.client.paths import ref_of

    try:
        import kray.crds  # noqa: F401  (registers every built-in kind)
        from kray.crds.registry import REGISTRY, UnknownKindError
    except ImportError:
        return None
    try:
        return ref_of(REGISTRY.resolve(name))
    except UnknownKindError:
        return None


def ref_for_manifest(client: Client, api_version: str, kind: str) -> ResourceRef:
    """The resource a manifest's apiVersion/kind maps to, from discovery, else the local registry."""
    from kray.client import UnknownResource
    from kray.client.paths import ref_of

    try:
        return client.resource_for(api_version, kind)
    except UnknownResource as exc:
        try:
            import kray.crds  # noqa: F401
            from kray.crds.registry import REGISTRY, UnknownKindError
        except ImportError:
            raise CliError(str(exc)) from None
        try:
            return ref_of(REGISTRY.get(api_version, kind))
        except UnknownKindError:
            raise CliError(str(exc)) from None


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message for errors a user can cause; None for real bugs (let them raise)."""
    if isinstance(exc, CliError):
        return str(exc)
    from kray.config import ConfigError

    if isinstance(exc, ConfigError):
        return str(exc)
    mod = type(exc).__module__
    if mod.startswith("kray.client"):
        from kray.client.errors import ApiError, KrayClientError

        if isinstance(exc, ApiError) and exc.status == 401:
            return "Unauthorized: the API server rejected the token (check KRAY_TOKEN or ~/.kray/config)"
        if isinstance(exc, KrayClientError):
            return str(exc)
    from kray.cli.manifests import ManifestError

    if isinstance(exc, ManifestError):
        return str(exc)
    return None


def split_kinds(arg: str) -> list[str]:
    return [k for k in arg.split(",") if k]
