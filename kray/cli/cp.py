"""``kray cp SRC DEST``: copy files and folders to and from containers, as kubectl cp does.

One side is ``[NAMESPACE/]POD:PATH``. Like kubectl, it runs ``tar`` in the container over exec
(the container needs a tar; busybox has one): to a pod, a tar stream built here, with its top
entry already named as the destination, is unpacked by ``tar -xmf - -C <dest's folder>``; from a
pod, ``tar -cf - -C <folder> <name>`` streams out and is unpacked here under the destination's
name. Archive members that would land outside the destination (absolute paths, ``..``, links
pointing out) are refused, as kubectl refuses them.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

from kray.cli import remote
from kray.cli.common import CliError, fail, make_client

CHUNK = 256 << 10


def split_remote(spec: str, default_namespace: str) -> tuple[str, str, str] | None:
    """(namespace, pod, path) of ``[ns/]pod:path``; None for a local path."""
    if ":" not in spec or spec.startswith(("/", ".")):
        return None
    pod, _, path = spec.partition(":")
    namespace, slash, name = pod.rpartition("/")
    if not name or not path:
        raise CliError(f"invalid remote path {spec!r}: expected [NAMESPACE/]POD:PATH")
    return (namespace if slash else default_namespace), name, path


def _tar_of(local: Path, arcname: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(local), arcname=arcname)
    return buffer.getvalue()


def _chunks(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), CHUNK):
        yield data[i : i + CHUNK]


def _safe_members(tar: tarfile.TarFile, top: str) -> list[tarfile.TarInfo]:
    members = []
    for m in tar.getmembers():
        name = posixpath.normpath(m.name)
        if name.startswith(("/", "..")) or (name != top and not name.startswith(top + "/")):
            raise CliError(f"refusing {m.name!r} from the pod: it would be written outside {top}")
        if (m.issym() or m.islnk()) and (
            m.linkname.startswith("/") or ".." in Path(posixpath.join(posixpath.dirname(name), m.linkname)).parts
        ):
            raise CliError(f"refusing the link {m.name!r} -> {m.linkname!r}: it points outside the copy")
        members.append(m)
    return members


def to_pod(client: object, local: Path, namespace: str, pod: str, dest: str, container: str | None) -> None:
    if not local.exists():
        raise CliError(f"{local} doesn't exist in local filesystem")
    dest = dest.rstrip("/") or "/"
    # Into an existing folder keeps the source's name (as cp does); else dest names the copy.
    is_dir = remote.run(
        client, namespace, pod, ["test", "-d", dest], container=container,
        on_stdout=lambda b: None, on_stderr=lambda b: None,
    ) == 0  # fmt: skip
    folder, name = (dest, local.name) if is_dir else posixpath.split(dest)
    data = _tar_of(local, name)
    errors: list[bytes] = []
    code = remote.run(
        client, namespace, pod, ["tar", "-xmf", "-", "-C", folder or "/"], container=container,
        stdin=_chunks(data), on_stdout=lambda b: None, on_stderr=errors.append,
    )  # fmt: skip
    if code != 0:
        raise CliError(f"tar in the pod failed (exit {code}): {b''.join(errors).decode(errors='replace').strip()}")


def from_pod(client: object, namespace: str, pod: str, src: str, local: Path, container: str | None) -> None:
    src = src.rstrip("/") or "/"
    folder, name = posixpath.split(src)
    chunks: list[bytes] = []
    errors: list[bytes] = []
    code = remote.run(
        client, namespace, pod, ["tar", "-cf", "-", "-C", folder or "/", name], container=container,
        on_stdout=chunks.append, on_stderr=errors.append,
    )  # fmt: skip
    if code != 0:
        raise CliError(f"{b''.join(errors).decode(errors='replace').strip() or f'tar in the pod failed (exit {code})'}")
    target = local / name if local.is_dir() else local
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r") as tar:
        members = _safe_members(tar, name)
        with tempfile.TemporaryDirectory(dir=target.parent) as staging:
            tar.extractall(staging, members=members, filter="tar")
            copied = Path(staging) / name
            if copied.is_dir() and target.is_dir():
                shutil.copytree(copied, target, symlinks=True, dirs_exist_ok=True)  # merge, as tar would
            else:
                os.replace(copied, target)


@click.command("cp")
@click.argument("src")
@click.argument("dest")
@click.option("-c", "--container", default=None, help="Container name (default: the pod's only one).")
@click.option("-n", "--namespace", default=None, help="Namespace of a POD:PATH without one (default: default).")
def cp_cmd(src: str, dest: str, container: str | None, namespace: str | None) -> None:
    """Copy files and folders to and from containers: kray cp LOCAL POD:PATH, kray cp POD:PATH LOCAL."""
    with make_client() as client:
        ns = namespace or client.namespace
        source, target = split_remote(src, ns), split_remote(dest, ns)
        if (source is None) == (target is None):
            fail("one of SRC and DEST must be a remote POD:PATH, the other a local path")
        if target is not None:
            to_pod(client, Path(src), target[0], target[1], target[2], container)
        elif source is not None:
            from_pod(client, source[0], source[1], source[2], Path(dest), container)
    sys.stdout.flush()
