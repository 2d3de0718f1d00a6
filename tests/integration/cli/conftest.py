"""A real kray API server (MemoryKV store) served by uvicorn in a background thread.

The CLI talks to it over real HTTP, exactly as it talks to a cluster started by ``kray up``;
etcd-backed serving is tested elsewhere.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest

from kray.etcd_server import free_port

if TYPE_CHECKING:
    from kray.client import Client

TOKEN = "cli-test-token"


@dataclass
class Served:
    url: str
    token: str


@pytest.fixture(scope="session")
def api_server() -> Iterator[Served]:
    import uvicorn

    import kray.crds  # noqa: F401  (registers the built-in kinds the server serves)
    from kray.actors.apiserver.app import ApiServer
    from kray.actors.store.memory import MemoryKV
    from kray.actors.store.objects import ObjectStore

    port = free_port()
    api = ApiServer(ObjectStore(MemoryKV()), token=TOKEN, graceful_pod_deletion=False)
    config = uvicorn.Config(api.app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/readyz", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the API server did not come up")
        time.sleep(0.05)
    try:
        yield Served(url, TOKEN)
    finally:
        server.should_exit = True
        api.stop()
        thread.join(timeout=10)


@pytest.fixture
def cli_env(api_server: Served, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Environment pointing the CLI at the test server (and away from any real ~/.kray)."""
    env = {
        "KRAY_SERVER": api_server.url,
        "KRAY_TOKEN": api_server.token,
        "KRAY_CONFIG": str(tmp_path_factory.mktemp("cfg") / "config"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def client(cli_env: dict[str, str]) -> Iterator[Client]:
    """A sync client of the test server, for setting up what the CLI then reads."""
    from kray.client import Client

    with Client(server=cli_env["KRAY_SERVER"], token=cli_env["KRAY_TOKEN"]) as c:
        yield c


@pytest.fixture
def ns(client: Client) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.create_raw({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name
