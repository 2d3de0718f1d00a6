"""Getting a container's image onto the node, as the kubelet's image manager does.

`imagePullPolicy` decides whether to pull: `Always` asks the registry every start (a pull whose
layers are all here only re-reads the manifest), `IfNotPresent` pulls when the node lacks the
image, `Never` never pulls. Images imported into the node's store have no registry to ask: the
runtime reports them pinned, and they count as present whatever the policy.

Credentials come from the pod's `imagePullSecrets` (`kubernetes.io/dockerconfigjson` or
`kubernetes.io/dockercfg` Secrets) and then the node's own docker config
(`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`). Entries are matched to the image's
registry as Kubernetes' keyring does (host with `*` wildcards per label, port, path prefix), most
specific first, and tried in turn; with none matching, the pull is anonymous.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from kray.crds.core import Container, Pod, Secret
from kray.runtime.cri import api_pb2 as pb
from kray.runtime.imageref import ImageReference, ReferenceError, parse_reference

from .ports import ApiPort, CriPort

log = logging.getLogger(__name__)

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"
_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_AUTH_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


class ImageNeverPull(Exception):
    """The image is absent and the policy is Never (the waiting reason ErrImageNeverPull)."""


class InvalidImageName(Exception):
    """The image name cannot be parsed (the waiting reason InvalidImageName)."""


@dataclass(frozen=True)
class _Entry:
    host: str  # may hold `*` wildcards per label
    port: str
    path: str
    auth: pb.AuthConfig

    def matches(self, ref: ImageReference) -> bool:
        host, port = _host_port(ref.domain)
        labels, patterns = host.split("."), self.host.split(".")
        if len(labels) != len(patterns):
            return False
        labels_ok = all(fnmatch.fnmatchcase(h, p) for h, p in zip(labels, patterns, strict=True))
        path_ok = not self.path or ref.path == self.path or ref.path.startswith(self.path + "/")
        return labels_ok and port == self.port and path_ok


def _host_port(domain: str) -> tuple[str, str]:
    """("::1", "5000") for "[::1]:5000", ("reg.io", "") for "reg.io"."""
    if domain.startswith("["):
        host, _, rest = domain[1:].partition("]")
        return host, rest.removeprefix(":")
    host, _, port = domain.partition(":")
    return host, port


def parse_docker_config(raw: bytes | str, wrapped: bool = True) -> list[_Entry]:
    """Entries of a docker config.json (`{"auths": {...}}`) or, unwrapped, a legacy .dockercfg.
    Raises ValueError for anything that is not such a document."""
    doc = json.loads(raw)
    auths = doc.get("auths") if wrapped and isinstance(doc, dict) else doc
    if auths is None and isinstance(doc, dict):
        auths = {}
    if not isinstance(auths, dict):
        raise ValueError("not a docker config: want a JSON object" + (' with an "auths" object' if wrapped else ""))
    entries = []
    for key, value in auths.items():
        if not isinstance(value, dict):
            continue
        url = urlsplit(key if "://" in key else f"https://{key}")
        host, port, path = (url.hostname or "").lower(), str(url.port or ""), url.path.strip("/")
        if host in _HUB_HOSTS:
            host, path = "docker.io", "" if path in ("v1", "v2") else path
        username, password = value.get("username", ""), value.get("password", "")
        if value.get("auth") and not username:
            username, _, password = base64.b64decode(value["auth"]).decode(errors="replace").partition(":")
        auth = pb.AuthConfig(
            username=username,
            password=password,
            server_address=key,
            identity_token=value.get("identitytoken", ""),
            registry_token=value.get("registrytoken", ""),
        )
        entries.append(_Entry(host, port, path, auth))
    return entries


def credentials_for(image: str, entries: list[_Entry]) -> list[pb.AuthConfig]:
    """The credentials that apply to `image`, most specific entry first."""
    try:
        ref = parse_reference(image)
    except ReferenceError:
        return []
    found = [e for e in entries if e.matches(ref)]
    found.sort(key=lambda e: ("*" not in e.host, len(e.path), len(e.host)), reverse=True)
    return [e.auth for e in found]


def node_docker_config() -> list[_Entry]:
    base = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        return parse_docker_config((base / "config.json").read_bytes())
    except (OSError, ValueError) as exc:
        if not isinstance(exc, FileNotFoundError):
            log.warning("ignoring the node's docker config %s: %s", base / "config.json", exc)
        return []


def is_registry_image(image: str) -> bool:
    """Not `host`, and not a local import (`oci:`, `oci-archive:`, an absolute path)."""
    return image != "host" and not image.startswith(("oci:", "oci-archive:", "/"))


class ImagePuller:
    def __init__(self, api: ApiPort, cri: CriPort, warn: Callable[[Pod, str, str], None]) -> None:
        self.api, self.cri, self.warn = api, cri, warn

    async def ensure(self, pod: Pod, c: Container, normal: Callable[[Pod, str, str], None]) -> None:
        """Pull `c.image` as its policy says; raises ImageNeverPull, InvalidImageName or the
        runtime's grpc error."""
        image = c.image or ""
        if is_registry_image(image):
            try:
                parse_reference(image)
            except ReferenceError as exc:
                raise InvalidImageName(f'Failed to apply default image tag "{image}": {exc}') from None
        policy = c.image_pull_policy or "IfNotPresent"
        status = await self.cri.image_status(image)
        present = status.HasField("image")
        local = status.image.pinned or not is_registry_image(image)  # imports and `host`: no registry
        if policy == "Never" or (present and (policy == "IfNotPresent" or local)):
            if not present:
                raise ImageNeverPull(f'Container image "{image}" is not present with pull policy of Never')
            normal(pod, "Pulled", f'Container image "{image}" already present on machine')
            return
        creds = await self._credentials(pod, image)  # before Pulling: a missing secret is said first
        normal(pod, "Pulling", f'Pulling image "{image}"')
        started = time.monotonic()
        await self._pull(image, creds)
        size = (await self.cri.image_status(image)).image.size
        normal(
            pod,
            "Pulled",
            f'Successfully pulled image "{image}" in {time.monotonic() - started:.3f}s. Image size: {size} bytes.',
        )

    async def _credentials(self, pod: Pod, image: str) -> list[pb.AuthConfig]:
        if not is_registry_image(image):
            return []
        return credentials_for(image, await self._secret_entries(pod)) + credentials_for(image, node_docker_config())

    async def _pull(self, image: str, creds: list[pb.AuthConfig]) -> None:
        if not creds:
            await self.cri.pull_image(image)
            return
        last: grpc.aio.AioRpcError | None = None
        for auth in creds:
            try:
                await self.cri.pull_image(image, auth=auth)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _AUTH_CODES:
                    raise
                last = exc
        assert last is not None
        raise last

    async def _secret_entries(self, pod: Pod) -> list[_Entry]:
        from kray.client.errors import NotFound

        entries: list[_Entry] = []
        for ref in pod.spec.image_pull_secrets or []:
            name = ref.name or ""
            try:
                sec: Secret = await self.api.get(Secret, name, pod.metadata.namespace)
            except NotFound:
                self.warn(
                    pod,
                    "FailedToRetrieveImagePullSecret",
                    f"Unable to retrieve some image pull secrets ({name}); attempting to pull the image"
                    " may not succeed.",
                )
                continue
            key, wrapped = (".dockerconfigjson", True) if sec.type == DOCKER_CONFIG_JSON else (".dockercfg", False)
            raw = (sec.data or {}).get(key)
            if sec.type not in (DOCKER_CONFIG_JSON, DOCKER_CFG) or raw is None:
                continue
            try:
                entries += parse_docker_config(base64.b64decode(raw), wrapped)
            except (ValueError, UnicodeDecodeError) as exc:
                self.warn(pod, "FailedToRetrieveImagePullSecret", f'image pull secret "{name}" is not valid: {exc}')
        return entries
