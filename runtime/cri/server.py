"""The CRI v1 RuntimeService and ImageService over a NodeRuntime, on a unix socket.

The servicer only translates: protobuf in, NodeRuntime call, protobuf out (records become
protobuf messages in convert.py); NodeRuntime errors become gRPC status codes (NotFound ->
NOT_FOUND, ...). Sync gRPC with a thread pool, because every operation below is blocking
(subprocesses, netlink, mounts).

A process that serves this must set GRPC_ENABLE_FORK_SUPPORT=0 before importing grpc (as
`python -m kray.runtime` does): pyroute2 forks a helper to enter a pod's netns, and with gRPC's
fork handlers active that child dies of SIGSEGV while server threads are busy.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, TypeVar

import grpc

from kray.runtime.cri import api_pb2 as pb
from kray.runtime.cri import api_pb2_grpc as pbg
from kray.runtime.cri import portforward
from kray.runtime.cri.convert import CONTAINER_STATES, container_status_pb, image_pb, labels_match, sandbox_state
from kray.runtime.cri.execstream import exec_stream
from kray.runtime.registry import Credentials
from kray.runtime.service import CriError, NodeRuntime
from kray.runtime.stats import StatsSampler

log = logging.getLogger("kray.runtime.cri")

API_VERSION = "v1"
RUNTIME_NAME = "kray"
RUNTIME_VERSION = "0.1.0"

F = TypeVar("F", bound=Callable[..., Any])


class RpcStats:
    """Calls, total and longest seconds per RPC since the service started (Status verbose
    `rpcStats`): where a node's time goes, without a profiler."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_method: dict[str, list[float]] = {}  # name -> [calls, seconds, max seconds]

    def record(self, method: str, seconds: float) -> None:
        with self._lock:
            entry = self.by_method.setdefault(method, [0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += seconds
            entry[2] = max(entry[2], seconds)

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {m: {"calls": e[0], "seconds": e[1], "max": e[2]} for m, e in self.by_method.items()}


def rpc(fn: F) -> F:
    """Map NodeRuntime errors to gRPC status codes; anything else is INTERNAL, logged."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        t0 = time.monotonic()
        try:
            return fn(self, request, context)
        except CriError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        except Exception as exc:
            log.exception("%s failed", fn.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{fn.__name__}: {type(exc).__name__}: {exc}")
        finally:
            self.stats.record(fn.__name__, time.monotonic() - t0)

    return wrapper  # type: ignore[return-value]


class RuntimeServicer(pbg.RuntimeServiceServicer):
    def __init__(self, node: NodeRuntime, stats: RpcStats | None = None) -> None:
        self.node = node
        self.stats = stats or RpcStats()
        self.usage = StatsSampler()  # remembers samples: CPU rates between two calls

    @rpc
    def Version(self, request: pb.VersionRequest, context: Any) -> pb.VersionResponse:
        return pb.VersionResponse(
            version="0.1.0", runtime_name=RUNTIME_NAME, runtime_version=RUNTIME_VERSION, runtime_api_version=API_VERSION
        )

    @rpc
    def Status(self, request: pb.StatusRequest, context: Any) -> pb.StatusResponse:
        # The process runtime puts every pod on the host network, which is as ready as it gets.
        net_ready = self.node.network is not None or not self.node.runtime.isolated
        conds = [
            pb.RuntimeCondition(type="RuntimeReady", status=True),
            pb.RuntimeCondition(
                type="NetworkReady",
                status=net_ready,
                reason="" if net_ready else "NoPodNetwork",
                message="" if net_ready else "started without --subnet: host network only",
            ),
        ]
        info: dict[str, str] = {}
        if request.verbose:
            info = {
                "runtime": json.dumps({"oci": self.node.runtime.name, "isolated": self.node.runtime.isolated}),
                "rpcStats": json.dumps(self.stats.snapshot()),
            }
        return pb.StatusResponse(status=pb.RuntimeStatus(conditions=conds), info=info)

    # sandboxes --------------------------------------------------------------------------------
    @rpc
    def RunPodSandbox(self, request: pb.RunPodSandboxRequest, context: Any) -> pb.RunPodSandboxResponse:
        rec = self.node.run_sandbox(request.config, request.runtime_handler)
        return pb.RunPodSandboxResponse(pod_sandbox_id=rec.id)

    @rpc
    def StopPodSandbox(self, request: pb.StopPodSandboxRequest, context: Any) -> pb.StopPodSandboxResponse:
        self.node.stop_sandbox(request.pod_sandbox_id)
        return pb.StopPodSandboxResponse()

    @rpc
    def RemovePodSandbox(self, request: pb.RemovePodSandboxRequest, context: Any) -> pb.RemovePodSandboxResponse:
        self.node.remove_sandbox(request.pod_sandbox_id)
        return pb.RemovePodSandboxResponse()

    @rpc
    def PodSandboxStatus(self, request: pb.PodSandboxStatusRequest, context: Any) -> pb.PodSandboxStatusResponse:
        rec = self.node.sandbox(request.pod_sandbox_id)
        cfg = rec.pb_config()
        nso = cfg.linux.security_context.namespace_options
        status = pb.PodSandboxStatus(
            id=rec.id,
            metadata=cfg.metadata,
            state=sandbox_state(rec),
            created_at=rec.created_at,
            network=pb.PodSandboxNetworkStatus(ip=rec.ip or ""),
            linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(options=nso)),
            labels=cfg.labels,
            annotations=cfg.annotations,
            runtime_handler=rec.runtime_handler,
        )
        info: dict[str, str] = {}
        if request.verbose:
            info["info"] = json.dumps(
                {"netns": rec.netns_path, "ipc": rec.ipc_path, "uts": rec.uts_path, "cgroupParent": rec.cgroup_parent}
            )
        return pb.PodSandboxStatusResponse(status=status, info=info)

    @rpc
    def ListPodSandbox(self, request: pb.ListPodSandboxRequest, context: Any) -> pb.ListPodSandboxResponse:
        f = request.filter
        items = []
        for rec in self.node.sandboxes():
            cfg = rec.pb_config()
            if f.id and not rec.id.startswith(f.id):
                continue
            if f.HasField("state") and sandbox_state(rec) != f.state.state:
                continue
            if not labels_match(cfg.labels, f.label_selector):
                continue
            items.append(
                pb.PodSandbox(
                    id=rec.id,
                    metadata=cfg.metadata,
                    state=sandbox_state(rec),
                    created_at=rec.created_at,
                    labels=cfg.labels,
                    annotations=cfg.annotations,
                    runtime_handler=rec.runtime_handler,
                )
            )
        return pb.ListPodSandboxResponse(items=items)

    # containers -------------------------------------------------------------------------------
    @rpc
    def CreateContainer(self, request: pb.CreateContainerRequest, context: Any) -> pb.CreateContainerResponse:
        rec = self.node.create_container(request.pod_sandbox_id, request.config, request.sandbox_config)
        return pb.CreateContainerResponse(container_id=rec.id)

    @rpc
    def StartContainer(self, request: pb.StartContainerRequest, context: Any) -> pb.StartContainerResponse:
        self.node.start_container(request.container_id)
        return pb.StartContainerResponse()

    @rpc
    def StopContainer(self, request: pb.StopContainerRequest, context: Any) -> pb.StopContainerResponse:
        self.node.stop_container(request.container_id, float(request.timeout))
        return pb.StopContainerResponse()

    @rpc
    def RemoveContainer(self, request: pb.RemoveContainerRequest, context: Any) -> pb.RemoveContainerResponse:
        self.node.remove_container(request.container_id)
        return pb.RemoveContainerResponse()

    @rpc
    def ContainerStatus(self, request: pb.ContainerStatusRequest, context: Any) -> pb.ContainerStatusResponse:
        rec, st = self.node.container(request.container_id)
        info: dict[str, str] = {}
        if request.verbose:
            info["info"] = json.dumps({"pid": st.pid, "shimPid": st.shim_pid, "sandboxId": rec.sandbox_id})
        return pb.ContainerStatusResponse(status=container_status_pb(rec, st), info=info)

    @rpc
    def ListContainers(self, request: pb.ListContainersRequest, context: Any) -> pb.ListContainersResponse:
        f = request.filter
        out = []
        for rec in self.node.list_containers(sandbox_id=None):
            if f.id and not rec.id.startswith(f.id):
                continue
            if f.pod_sandbox_id and not rec.sandbox_id.startswith(f.pod_sandbox_id):
                continue
            cfg = rec.pb_config()
            if not labels_match(cfg.labels, f.label_selector):
                continue
            state = CONTAINER_STATES.get(self.node.containers.status(rec.id).state, pb.CONTAINER_UNKNOWN)
            if f.HasField("state") and state != f.state.state:
                continue
            out.append(
                pb.Container(
                    id=rec.id,
                    pod_sandbox_id=rec.sandbox_id,
                    metadata=cfg.metadata,
                    image=pb.ImageSpec(image=rec.image_name),
                    image_ref=rec.image_id,
                    image_id=rec.image_id,
                    state=state,
                    created_at=rec.created_at,
                    labels=cfg.labels,
                    annotations=cfg.annotations,
                )
            )
        return pb.ListContainersResponse(containers=out)

    @rpc
    def ListContainerStats(self, request: pb.ListContainerStatsRequest, context: Any) -> pb.ListContainerStatsResponse:
        """Usage of the running containers the filter selects (``runtime/stats.py``)."""
        f, out, running = request.filter, [], set()
        for rec in self.node.list_containers(sandbox_id=f.pod_sandbox_id or None):
            cfg = rec.pb_config()
            if (f.id and not rec.id.startswith(f.id)) or not labels_match(cfg.labels, f.label_selector):
                continue
            st = self.node.containers.status(rec.id)
            if st.state != "running":
                continue
            running.add(rec.id)
            try:
                parent = self.node.sandbox(rec.sandbox_id).cgroup_parent
            except CriError:
                continue
            u = self.usage.sample(rec.id, f"{parent.rstrip('/')}/{rec.id}" if parent else None, st.pid)
            cpu = pb.CpuUsage(timestamp=u.timestamp_ns, usage_core_nano_seconds=pb.UInt64Value(value=u.cpu_ns))
            if u.nano_cores is not None:
                cpu.usage_nano_cores.value = u.nano_cores
            memory = pb.MemoryUsage(
                timestamp=u.timestamp_ns,
                working_set_bytes=pb.UInt64Value(value=u.working_set_bytes),
                usage_bytes=pb.UInt64Value(value=u.usage_bytes),
                rss_bytes=pb.UInt64Value(value=u.rss_bytes),
            )
            attrs = pb.ContainerAttributes(
                id=rec.id, metadata=cfg.metadata, labels=cfg.labels, annotations=cfg.annotations
            )
            out.append(pb.ContainerStats(attributes=attrs, cpu=cpu, memory=memory))
        if not f.id and not f.pod_sandbox_id and not f.label_selector:
            self.usage.forget(running)
        return pb.ListContainerStatsResponse(stats=out)

    @rpc
    def ExecSync(self, request: pb.ExecSyncRequest, context: Any) -> pb.ExecSyncResponse:
        out, err, code = self.node.exec_sync(request.container_id, list(request.cmd), float(request.timeout))
        return pb.ExecSyncResponse(stdout=out, stderr=err, exit_code=code)

    def ExecStream(
        self, request_iterator: Iterator[pb.ExecStreamRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ExecStreamResponse]:
        # A generator: ``rpc`` would only guard its creation, so errors are mapped here.
        t0 = time.monotonic()
        try:
            yield from exec_stream(self.node, request_iterator, context)
        except CriError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        except Exception as exc:
            log.exception("ExecStream failed")
            context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        finally:
            self.stats.record("ExecStream", time.monotonic() - t0)


class ImageServicer(pbg.ImageServiceServicer):
    def __init__(self, node: NodeRuntime, stats: RpcStats | None = None) -> None:
        self.node = node
        self.stats = stats or RpcStats()

    @rpc
    def ListImages(self, request: pb.ListImagesRequest, context: Any) -> pb.ListImagesResponse:
        want = request.filter.image.image
        imgs = self.node.images.list_images()
        if want:
            found = self.node.resolve_image(want)
            imgs = [found] if found else []
        return pb.ListImagesResponse(images=[image_pb(i) for i in imgs])

    @rpc
    def ImageStatus(self, request: pb.ImageStatusRequest, context: Any) -> pb.ImageStatusResponse:
        info = self.node.resolve_image(request.image.image)
        if info is None:
            return pb.ImageStatusResponse()  # CRI: an absent image is an empty answer, not an error
        extra = {"info": json.dumps({"config": info.config, "layers": info.layers})} if request.verbose else {}
        return pb.ImageStatusResponse(image=image_pb(info), info=extra)

    @rpc
    def PullImage(self, request: pb.PullImageRequest, context: Any) -> pb.PullImageResponse:
        a = request.auth
        # An identity token is an OAuth2 refresh token, not a bearer the registry takes: without
        # the refresh flow (not done) it is not sent at all rather than sent as the wrong thing.
        creds = Credentials.from_auth(a.username, a.password, a.auth, a.registry_token)
        info = self.node.pull_image(request.image.image, creds)
        return pb.PullImageResponse(image_ref=info.config_digest)

    @rpc
    def RemoveImage(self, request: pb.RemoveImageRequest, context: Any) -> pb.RemoveImageResponse:
        info = self.node.resolve_image(request.image.image)
        if info is not None:
            # Every tag of the same image goes, as CRI asks.
            for other in self.node.images.list_images():
                if other.config_digest == info.config_digest:
                    self.node.images.remove_image(other.name)
            self.node.images.prune()  # what failed pulls left: blobs and caches no image names
        return pb.RemoveImageResponse()

    @rpc
    def ImageFsInfo(self, request: pb.ImageFsInfoRequest, context: Any) -> pb.ImageFsInfoResponse:
        used, inodes = self.node.images.usage()
        usage = pb.FilesystemUsage(
            timestamp=time.time_ns(),
            fs_id=pb.FilesystemIdentifier(mountpoint=str(self.node.images.root)),
            used_bytes=pb.UInt64Value(value=used),
            inodes_used=pb.UInt64Value(value=inodes),
        )
        return pb.ImageFsInfoResponse(image_filesystems=[usage])


def serve(node: NodeRuntime, socket_path: Path | str, max_workers: int = 64) -> grpc.Server:
    """Start serving on `unix:<socket_path>` (a stale socket file is replaced); returns the
    started server (call .stop(grace) to end it). Streams (exec, port-forward) hold a worker
    each while they last, hence more workers than the unary calls alone would need."""
    path = Path(socket_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="cri"))
    stats = RpcStats()
    pbg.add_RuntimeServiceServicer_to_server(RuntimeServicer(node, stats), server)
    pbg.add_ImageServiceServicer_to_server(ImageServicer(node, stats), server)
    portforward.add_to_server(node, server)
    if server.add_insecure_port(f"unix:{path}") == 0:
        raise OSError(f"cannot listen on unix:{path}")
    server.start()
    os.chmod(path, 0o600)  # root's kubelet only: the socket runs containers as root
    return server
