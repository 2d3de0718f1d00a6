"""Blob downloads that break off: resumed with an HTTP Range request against the real registry
(through a proxy that cuts connections mid-body), bytes skipped when a server ignores the range,
and a clear error, with nothing left in the store, when it keeps breaking."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from kray.runtime.imagebuild import write_layout
from kray.runtime.imageref import parse_reference
from kray.runtime.images import ImageInfo, ImageStore
from kray.runtime.records import Unavailable
from kray.runtime.registry import RESUMES, RegistryClient
from tests.registryserver import Registry, start_registry


@dataclass
class Cutter:
    """What the proxy does to blob downloads: cut the first `cuts` of them halfway, and
    optionally hide Range headers from the registry (a server that ignores ranges)."""

    upstream: str
    proxy_host: str = ""
    cuts: int = 0
    ignore_range: bool = False
    seen: list[tuple[str, int]] = field(default_factory=list)  # (Range header or "", status)


def proxy(cutter: Cutter) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            wanted = headers.get("Range", "")
            if cutter.ignore_range:
                headers.pop("Range", None)
            with httpx.Client() as http:
                resp = http.get(f"http://{cutter.upstream}{self.path}", headers=headers)
            blob = "/blobs/" in self.path
            if blob:
                cutter.seen.append((wanted, resp.status_code))
            self.send_response(resp.status_code)
            for k, v in resp.headers.items():
                if k.lower() not in ("transfer-encoding", "connection", "content-encoding"):
                    self.send_header(k, v)
            self.end_headers()
            body = resp.content
            if blob and cutter.cuts > 0 and len(body) > 1:
                cutter.cuts -= 1
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    base = tmp_path_factory.mktemp("resume")
    src = base / "src"
    src.mkdir()
    (src / "weights").write_bytes(os.urandom(3 << 20))  # incompressible: the layer is ~3 MiB
    write_layout(base / "layout", [src], config={"Cmd": ["true"]})
    reg = start_registry(base / "server")
    try:
        reg.push_layout(base / "layout", "team/model", "v1")
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def cutter(registry: Registry) -> Iterator[Cutter]:
    c = Cutter(registry.host)
    server = proxy(c)
    c.proxy_host = f"127.0.0.1:{server.server_address[1]}"
    try:
        yield c
    finally:
        server.shutdown()
        server.server_close()


def pull(cutter: Cutter, tmp_path: Path) -> tuple[ImageStore, ImageInfo]:
    store = ImageStore(tmp_path / "store", use_overlay=False)
    ref = parse_reference(f"{cutter.proxy_host}/team/model:v1")
    return store, RegistryClient().pull(ref, "model:v1", store)


def test_a_broken_download_resumes_with_a_range(cutter: Cutter, tmp_path: Path) -> None:
    cutter.cuts = 2  # the first two blob downloads (config, layer) break halfway
    store, info = pull(cutter, tmp_path)
    ranged = [(r, status) for r, status in cutter.seen if r]
    assert len(ranged) == 2 and all(status == 206 for _, status in ranged), cutter.seen
    assert all(store.has_blob(d) for d in info.layers)


def test_a_server_ignoring_ranges_resends_and_the_head_is_skipped(cutter: Cutter, tmp_path: Path) -> None:
    cutter.cuts, cutter.ignore_range = 1, True
    store, info = pull(cutter, tmp_path)
    assert [status for r, status in cutter.seen if r] == [200]  # asked for a range, got everything again
    assert all(store.has_blob(d) for d in info.layers)  # (digests checked)


def test_a_download_that_keeps_breaking_is_an_error_and_leaves_nothing(cutter: Cutter, tmp_path: Path) -> None:
    cutter.cuts = 100
    with pytest.raises(Unavailable, match=f"broke off {RESUMES + 1} times"):
        pull(cutter, tmp_path)
    store = ImageStore(tmp_path / "store", use_overlay=False)
    assert store.list_images() == [] and list(store.blobs.iterdir()) == []
