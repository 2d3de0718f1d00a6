"""Shared builders for the shard tests: an in-memory cluster (ApiServer over MemoryKV via ASGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.actors.apiserver import ApiServer
from kray.actors.store import MemoryKV, ObjectStore
from kray.client import AsyncClient
from kray.crds.registry import REGISTRY

TOKEN = "shard-token"
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


@dataclass
class Cluster:
    kv: MemoryKV
    store: ObjectStore
    api: ApiServer
    client: AsyncClient


@asynccontextmanager
async def memory_cluster() -> AsyncIterator[Cluster]:
    kv = MemoryKV()
    store = ObjectStore(kv, REGISTRY)
    api = ApiServer(store, REGISTRY, token=TOKEN, clock=lambda: NOW)
    await api.start()
    transport = httpx.ASGITransport(app=api.app)
    client = AsyncClient(server="http://kray.test", token=TOKEN, transport=transport)
    try:
        yield Cluster(kv, store, api, client)
    finally:
        api.stop()
        await client.aclose()
        await kv.close()


def node_body(name: str, cpu: str = "4", memory: str = "8Gi", pods: str = "110", gpus: int = 0, **extra: Any) -> dict:
    alloc = {"cpu": cpu, "memory": memory, "pods": pods, **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **extra.get("labels", {})}},
        "spec": {"taints": extra.get("taints")} if extra.get("taints") else {},
        "status": {
            "allocatable": alloc,
            "capacity": alloc,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod_body(name: str, cpu: str = "1", memory: str = "1Gi", gpus: int = 0, ns: str = "default", **extra: Any) -> dict:
    req = {"cpu": cpu, "memory": memory, **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": extra.get("labels", {})},
        "spec": {"containers": [{"name": "c", "image": "train:1", "resources": {"requests": req}}]},
    }
    if extra.get("node_name"):
        body["spec"]["nodeName"] = extra["node_name"]
    return body


def binding(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"kind": "Node", "name": node}}
