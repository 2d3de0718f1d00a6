"""``kray create namespace|secret|configmap``: kubectl's imperative generators.

Each builds the whole object from its flags first (reading every file, checking every key), so
bad input writes nothing; then it creates it, or with ``--dry-run=client`` only prints it
(``--dry-run=server``: the server checks and admits it, answers, and stores nothing).
Keys, file sources, env files and the docker config JSON follow kubectl byte for byte.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .common import CliError

Obj = dict[str, Any]

DOCKER_HUB = "https://index.docker.io/v1/"
_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_KEY_RULE = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


# --- sources: --from-literal, --from-file, --from-env-file ------------------------------------


def _key_problems(key: str) -> list[str]:
    """kubectl's IsConfigMapKey (Secrets use the same rules)."""
    problems = []
    if len(key) > 253:
        problems.append("must be no more than 253 characters")
    if not _KEY.fullmatch(key):
        problems.append(_KEY_RULE)
    if key in (".", ".."):
        problems.append(f"must not be '{key}'")
    elif key.startswith(".."):
        problems.append("must not start with '..'")
    return problems


class Entries:
    """Keys and their bytes, in order; refuses invalid and duplicate keys as kubectl does."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        self.items: dict[str, bytes] = {}

    def add(self, key: str, value: bytes) -> None:
        problems = _key_problems(key)
        if problems:
            raise CliError(f'"{key}" is not a valid key name for a {self.kind}: {"; ".join(problems)}')
        if key in self.items:
            if self.kind == "Secret":
                raise CliError(f"cannot add key {key}, another key by that name already exists")
            where = "Data" if _text(self.items[key]) is not None else "BinaryData"
            msg = f'cannot add key "{key}", another key by that name already exists in {where} for ConfigMap'
            raise CliError(f'{msg} "{self.name}"')
        self.items[key] = value


def _text(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"error reading {path}: {(exc.strerror or str(exc)).lower()}") from None


def add_literals(entries: Entries, literals: tuple[str, ...]) -> None:
    for literal in literals:
        key, sep, value = literal.partition("=")
        if not sep or not key:
            raise CliError(f'invalid --from-literal "{literal}": expected key=value')
        entries.add(key, value.encode())


def add_files(entries: Entries, sources: tuple[str, ...]) -> None:
    """``[key=]path``; a directory adds each regular file in it under its own name."""
    for source in sources:
        key, sep, path = source.partition("=")
        if not sep:
            key, path = "", source
        elif not key:
            raise CliError(f"--from-file={source}: key name for file path {path} missing")
        elif not path:
            raise CliError(f"--from-file={source}: file path for key name {key} missing")
        if os.path.isdir(path) and key:
            raise CliError(f"--from-file={source}: cannot give a key name for a directory path")
        if os.path.isdir(path):
            with os.scandir(path) as it:
                files = sorted((e for e in it if e.is_file(follow_symlinks=False)), key=lambda e: e.name)
            for entry in files:
                entries.add(entry.name, _read(entry.path))
        else:
            entries.add(key or os.path.basename(path), _read(path))


def add_env_files(entries: Entries, paths: tuple[str, ...]) -> None:
    """``KEY=value`` lines, ``#`` comments; a bare ``KEY`` takes its value from the environment."""
    for path in paths:
        for number, raw in enumerate(_read(path).split(b"\n"), 1):
            line = _text(raw.removesuffix(b"\r"))
            if line is None:
                raise CliError(f"env file {path} contains invalid utf8 bytes at line {number}")
            line = (line.removeprefix("\ufeff") if number == 1 else line).lstrip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not _ENV_NAME.fullmatch(key):
                raise CliError(
                    f'"{key}" is not a valid key name: a valid environment variable name must consist of '
                    "alphabetic characters, digits, '_', '-', or '.', and must not start with a digit"
                )
            entries.add(key, (value if sep else os.environ.get(key, "")).encode())


def gather(kind: str, name: str, literals: tuple[str, ...], files: tuple[str, ...], envs: tuple[str, ...]) -> Entries:
    if envs and (files or literals):
        raise CliError("from-env-file cannot be combined with from-file or from-literal")
    entries = Entries(kind, name)
    add_literals(entries, literals)
    add_files(entries, files)
    add_env_files(entries, envs)
    return entries


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def secret(name: str, items: dict[str, bytes], type_: str | None = None) -> Obj:
    obj: Obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}
    obj["data"] = {k: _b64(v) for k, v in items.items()}
    return {**obj, "type": type_} if type_ else obj


def configmap(name: str, items: dict[str, bytes]) -> Obj:
    """UTF-8 values go to data, anything else to binaryData (base64), as kubectl sorts them."""
    obj: Obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    texts = {k: _text(v) for k, v in items.items()}
    obj["data"] = {k: t for k, t in texts.items() if t is not None}
    obj["binaryData"] = {k: _b64(items[k]) for k, t in texts.items() if t is None}
    return {k: v for k, v in obj.items() if v}


def docker_config_json(server: str, username: str, password: str, email: str | None) -> bytes:
    """What kubectl's json.Marshal writes: compact, empty fields omitted, <>& escaped as Go does."""
    auth = _b64(f"{username}:{password}".encode())
    entry = {"username": username, "password": password, "email": email, "auth": auth}
    doc = {"auths": {server: {k: v for k, v in entry.items() if v}}}
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text.encode()


def check_key_pair(cert: bytes, key: bytes, cert_path: str, key_path: str) -> None:
    """Both PEM, the certificate a certificate and the key matching it (Go's tls.X509KeyPair)."""
    import ssl

    certs = [m for m in _PEM.finditer(cert) if m.group(1) == b"CERTIFICATE"]
    keys = [m for m in _PEM.finditer(key) if m.group(1).endswith(b"PRIVATE KEY")]
    if not certs:
        raise CliError(f"tls: failed to find any PEM data in certificate input ({cert_path})")
    if not keys:
        raise CliError(f"tls: failed to find any PEM data in key input ({key_path})")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert_path, key_path, password=lambda: "")  # no prompt
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise CliError("tls: private key does not match public key") from None
        raise CliError(f"tls: cannot load the key pair {cert_path}, {key_path}: {exc.reason or exc}") from None


# --- sending and printing ---------------------------------------------------------------------


@dataclass
class Target:
    """What every generator shares: the name, where it goes, and how to send and print it."""

    name: str
    namespace: str | None
    dry_run: str
    output: str | None

    def submit(self, obj: Obj, plural: str, namespaced: bool = True) -> None:
        """Create ``obj`` (core/v1) and print as kubectl does; a client dry run only prints, a
        server dry run (``?dryRun=All``) is checked and answered by the server, which stores nothing."""
        label = f"{obj['kind'].lower()}/{obj['metadata']['name']}"
        if self.dry_run == "client":
            if namespaced and self.namespace:
                obj["metadata"]["namespace"] = self.namespace
            return self._print(obj, label, " (dry run)")
        from kray.client import ApiError, ResourceRef

        from .common import make_client

        ref = ResourceRef(group="", version="v1", plural=plural, namespaced=namespaced, kind=obj["kind"])
        with make_client() as client:
            if namespaced:
                obj["metadata"]["namespace"] = self.namespace or client.namespace
            try:
                created = client.create_raw(obj, ref, dry_run=self.dry_run == "server")
            except ApiError as exc:
                if exc.status == 401:
                    raise  # the shared "Unauthorized: ..." line
                click.echo(f"Error from server ({exc.reason}): {exc.message}", err=True)
                raise click.exceptions.Exit(1) from None
        self._print(created, label, " (server dry run)" if self.dry_run == "server" else "")

    def _print(self, obj: Obj, label: str, note: str) -> None:
        from . import printers

        if self.output == "name":
            click.echo(label)
        elif self.output in ("json", "yaml"):
            click.echo(printers.to_json(obj) if self.output == "json" else printers.to_yaml(obj))
        else:
            click.echo(f"{label} created{note}")


def generator(namespaced: bool = True) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Adds NAME, -n, --dry-run and -o; the command gets them as one ``Target``."""

    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(fn)
        def run(names: tuple[str, ...], dry_run: str, output: str | None, **kw: Any) -> None:
            if len(names) != 1:
                raise CliError(f"exactly one NAME is required, got {len(names)}")
            ctx, namespace = click.get_current_context(), kw.pop("namespace", None)
            while namespace is None and ctx.parent is not None:  # else -n given to `kray create` itself
                ctx = ctx.parent
                namespace = ctx.params.get("namespace")
            fn(Target(names[0], namespace if namespaced else None, dry_run, output), **kw)

        choice = click.Choice
        run = click.option("-o", "--output", type=choice(["yaml", "json", "name"]), help="Print the object.")(run)
        run = click.option("--dry-run", type=choice(["none", "client", "server"]), default="none")(run)
        if namespaced:
            run = click.option("-n", "--namespace", help="Namespace of the object.")(run)
        return click.argument("names", nargs=-1, metavar="NAME")(run)

    return wrap


_literal = click.option("--from-literal", "literals", multiple=True, metavar="KEY=VALUE", help="A key and its value.")
_file = click.option("--from-file", "files", multiple=True, metavar="[KEY=]PATH", help="A file or a directory.")
_env = click.option("--from-env-file", "envs", multiple=True, metavar="PATH", help="KEY=value lines.")
Files = tuple[str, ...]


# --- commands ----------------------------------------------------------------------------------


@click.command("namespace")
@generator(namespaced=False)
def namespace_cmd(t: Target) -> None:
    """Create a namespace."""
    t.submit({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": t.name}}, "namespaces", namespaced=False)


@click.command("configmap")
@generator()
@_literal
@_file
@_env
def configmap_cmd(t: Target, literals: Files, files: Files, envs: Files) -> None:
    """Create a configmap from literals or files. Also directories and env files."""
    t.submit(configmap(t.name, gather("ConfigMap", t.name, literals, files, envs).items), "configmaps")


@click.group("secret")
def secret_group() -> None:
    """Create a secret: generic, docker-registry or tls."""


@secret_group.command("generic")
@generator()
@_literal
@_file
@_env
@click.option("--type", "type_", help="The secret's type (default Opaque).")
def generic_cmd(t: Target, literals: Files, files: Files, envs: Files, type_: str | None) -> None:
    """Create a secret from literals or files. Also directories and env files."""
    t.submit(secret(t.name, gather("Secret", t.name, literals, files, envs).items, type_), "secrets")


@secret_group.command("docker-registry")
@generator()
@click.option("--docker-server", default=DOCKER_HUB, show_default=True, help="The registry.")
@click.option("--docker-username", help="Username for the registry.")
@click.option("--docker-password", help="Password for the registry.")
@click.option("--docker-email", help="Email for the registry (optional).")
@_file
def docker_registry_cmd(
    t: Target, docker_server: str, docker_username: str, docker_password: str, docker_email: str, files: Files
) -> None:
    """Create a secret for pulling images. Its type is kubernetes.io/dockerconfigjson."""
    entries = Entries("Secret", t.name)
    if files:
        add_files(entries, files)
        if ".dockerconfigjson" not in entries.items:
            raise CliError("--from-file must give the key .dockerconfigjson (--from-file=.dockerconfigjson=PATH)")
    elif not (docker_username and docker_password and docker_server):
        raise CliError(
            "either --from-file or the combination of --docker-username, --docker-password and --docker-server "
            "is required"
        )
    else:
        config = docker_config_json(docker_server, docker_username, docker_password, docker_email)
        entries.add(".dockerconfigjson", config)
    t.submit(secret(t.name, entries.items, "kubernetes.io/dockerconfigjson"), "secrets")


@secret_group.command("tls")
@generator()
@click.option("--cert", help="PEM certificate (chain) file.")
@click.option("--key", help="PEM private key file.")
def tls_cmd(t: Target, cert: str | None, key: str | None) -> None:
    """Create a TLS secret. Its type is kubernetes.io/tls: a certificate and its key."""
    if not cert or not key:
        raise CliError("key and cert must be specified")
    cert_pem, key_pem = _read(cert), _read(key)
    check_key_pair(cert_pem, key_pem, cert, key)
    t.submit(secret(t.name, {"tls.crt": cert_pem, "tls.key": key_pem}, "kubernetes.io/tls"), "secrets")


SUBCOMMANDS: dict[str, click.Command] = {"namespace": namespace_cmd, "secret": secret_group, "configmap": configmap_cmd}
ALIASES = {"ns": "namespace", "cm": "configmap"}  # kubectl's short names, not listed in help
