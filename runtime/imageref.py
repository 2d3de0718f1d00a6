"""Image references as Docker and containerd read them: `busybox` is
`docker.io/library/busybox:latest`, `nvcr.io/nvidia/pytorch:24.01-py3` names nvcr.io, and
`repo@sha256:<hex>` pins a manifest.

The grammar follows distribution's `reference` package: the first path component is a registry
host when it has a `.` or a `:`, or is `localhost`; otherwise the image is on Docker Hub, where a
one-component name lives under `library/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"  # where docker.io's /v2/ API is actually served
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")


class ReferenceError(ValueError):
    """An image name that no registry could serve: the message says which part is wrong."""


@dataclass(frozen=True)
class ImageReference:
    domain: str  # "docker.io", "nvcr.io", "127.0.0.1:5000"
    path: str  # "library/busybox"
    tag: str | None
    digest: str | None

    @property
    def api_host(self) -> str:
        """The host that serves this image's /v2/ API."""
        return DOCKER_HUB_API if self.domain == DOCKER_HUB else self.domain

    @property
    def reference(self) -> str:
        """What to ask the manifests endpoint for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"{self.domain}/{self.path}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_reference(image: str) -> ImageReference:
    """Parse and normalize `image`; raises ReferenceError naming the bad part."""
    if not image or image != image.strip():
        raise ReferenceError(f"invalid reference format: {image!r}")
    name, digest = image, None
    if "@" in image:
        name, _, digest = image.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise ReferenceError(f"invalid digest {digest!r} in {image!r}: want sha256:<64 hex digits>")
    domain, rest = DOCKER_HUB, name
    first, sep, remainder = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _HOST.fullmatch(first):
            raise ReferenceError(f"invalid registry host {first!r} in {image!r}")
        domain, rest = first, remainder
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, _, tag = rest.rpartition(":")
        if not _TAG.fullmatch(tag):
            raise ReferenceError(f"invalid tag {tag!r} in {image!r}")
    if domain in _HUB_ALIASES:
        domain = DOCKER_HUB
        if "/" not in rest:
            rest = f"library/{rest}"
    for component in rest.split("/"):
        if not _COMPONENT.fullmatch(component):
            why = (
                "must be lowercase"
                if component.lower() != component
                else "has characters a repository name cannot have"
            )
            raise ReferenceError(f"invalid repository name {rest!r} in {image!r}: {component!r} {why}")
    if len(f"{domain}/{rest}") > 255:
        raise ReferenceError(f"repository name in {image!r} is longer than 255 characters")
    if tag is None and digest is None:
        tag = "latest"
    return ImageReference(domain=domain, path=rest, tag=tag, digest=digest)
