"""The image half of FakeCri: images imported (``images``: pinned, nothing to pull them from) or
served by a fake remote ``registry`` (``registry_auth`` credentials) and, once pulled, kept in
``pulled``. Sizes are ``image_sizes`` (1000 bytes unless set); ``image_fs_used_extra`` adds
bytes that are not images (what else fills the image filesystem) to ImageFsInfo's usage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from kray.runtime.cri import api_pb2 as pb


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@dataclass(kw_only=True)
class FakeImages:
    images: set[str] = field(default_factory=lambda: {"busybox"})  # imported: reported pinned
    # A fake remote registry: image -> the manifest digest it serves, and the (username, password)
    # an image needs (others pull anonymously). A pull puts the image in `pulled` (not pinned).
    registry: dict[str, str] = field(default_factory=dict)
    registry_auth: dict[str, tuple[str, str]] = field(default_factory=dict)
    pulled: dict[str, str] = field(default_factory=dict)  # image -> digest
    pull_auths: list[tuple[str, str]] = field(default_factory=list)  # (image, username or "") per PullImage
    image_sizes: dict[str, int] = field(default_factory=dict)
    image_fs_mountpoint: str = "/var/lib/kray/images"
    image_fs_used_extra: int = 0
    removed_images: list[str] = field(default_factory=list)
    if TYPE_CHECKING:
        calls: list[tuple[str, Any]]

    async def image_status(self, image: str, verbose: bool = False) -> pb.ImageStatusResponse:
        return self._status(image)

    def _status(self, image: str) -> pb.ImageStatusResponse:
        if image in self.pulled:
            name = image.partition("@")[0]
            name = name.rpartition(":")[0] if ":" in name.rpartition("/")[2] else name  # no tag
            pulled = pb.Image(
                id=f"sha256:{image}",
                repo_tags=[image],
                repo_digests=[f"{name}@{self.pulled[image]}"],
                size=self.image_sizes.get(image, 1000),
            )
            return pb.ImageStatusResponse(image=pulled)
        if image not in self.images:
            return pb.ImageStatusResponse()
        # The fake's images stand for imports (nothing to pull them from): pinned, as the runtime says.
        size = self.image_sizes.get(image, 1000)
        return pb.ImageStatusResponse(image=pb.Image(id=f"sha256:{image}", repo_tags=[image], pinned=True, size=size))

    async def pull_image(
        self, image: str, sandbox_config: pb.PodSandboxConfig | None = None, auth: pb.AuthConfig | None = None
    ) -> str:
        self.calls.append(("PullImage", image))
        self.pull_auths.append((image, auth.username if auth else ""))
        if image in self.registry:
            need = self.registry_auth.get(image)
            if need is not None and (auth is None or (auth.username, auth.password) != need):
                why = "refused the credentials" if auth else "asks for a user and password"
                raise rpc_error(grpc.StatusCode.UNAUTHENTICATED, f"{image}: the registry {why}")
            self.pulled[image] = self.registry[image]
            return f"sha256:{image}"
        if image not in self.images:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"image {image!r} not found in the local store")
        return f"sha256:{image}"

    def _image_pb(self, image: str) -> pb.Image | None:
        status = self._status(image)
        return status.image if status.HasField("image") else None

    async def list_images(self, image: str = "") -> list[pb.Image]:
        names = sorted({*self.images, *self.pulled}) if not image else [image]
        return [img for n in names if (img := self._image_pb(n)) is not None]

    async def remove_image(self, image: str) -> None:
        self.calls.append(("RemoveImage", image))
        for name in [n for n in (*self.images, *self.pulled) if image in (n, f"sha256:{n}")]:
            self.images.discard(name)
            self.pulled.pop(name, None)
            self.removed_images.append(name)

    async def image_fs_info(self) -> pb.ImageFsInfoResponse:
        used = sum(img.size for img in await self.list_images()) + self.image_fs_used_extra
        usage = pb.FilesystemUsage(
            fs_id=pb.FilesystemIdentifier(mountpoint=self.image_fs_mountpoint), used_bytes=pb.UInt64Value(value=used)
        )
        return pb.ImageFsInfoResponse(image_filesystems=[usage])
