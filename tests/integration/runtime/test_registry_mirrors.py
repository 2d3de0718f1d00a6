"""Registry mirrors against real registries: `busybox` (Docker Hub's name) pulled from a local
mirror with no internet, a mirror that lacks the image falling back to the registry itself, and
every source failing with the registry's own error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kray.runtime.imagebuild import write_layout
from kray.runtime.imageref import parse_reference
from kray.runtime.images import ImageStore
from kray.runtime.records import NotFound
from kray.runtime.registry import RegistryClient, parse_mirrors
from tests.registryserver import Registry, free_port, start_registry


def layout(tmp: Path, text: str) -> Path:
    src = tmp / f"src-{text}"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "origin").write_text(text)
    write_layout(tmp / text, [src], config={"Cmd": ["true"]})
    return tmp / text


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Registry]]:
    base = tmp_path_factory.mktemp("mirrors")
    mirror, upstream = start_registry(base / "mirror"), start_registry(base / "upstream", auth="token")
    try:
        mirror.push_layout(layout(base, "mirror"), "library/busybox", "1.36")
        mirror.push_layout(layout(base, "mirror-team"), "team/app", "v1")
        upstream.push_layout(layout(base, "upstream"), "team/app", "v1")
        upstream.push_layout(layout(base, "upstream-only"), "team/only", "v1")
        yield mirror, upstream
    finally:
        mirror.stop()
        upstream.stop()


def requests_to(client: RegistryClient) -> list[str]:
    seen: list[str] = []
    client.http.event_hooks["request"].append(lambda request: seen.append(str(request.url.netloc.decode())))
    return seen


def origin(store: ImageStore, name: str) -> str:
    return (store.unpack(name) / "etc" / "origin").read_text()


def test_docker_hub_names_come_from_the_mirror(registries: tuple[Registry, Registry], tmp_path: Path) -> None:
    mirror, _ = registries
    client = RegistryClient(mirrors=parse_mirrors(f"docker.io=http://{mirror.host}"))
    seen = requests_to(client)
    store = ImageStore(tmp_path / "store", use_overlay=False)
    info = client.pull(parse_reference("busybox:1.36"), "busybox:1.36", store)
    assert origin(store, "busybox:1.36") == "mirror" and set(seen) == {mirror.host}
    assert info.repo_digest.startswith("docker.io/library/busybox@sha256:")  # the image's own name


def test_mirror_first_then_the_registry(registries: tuple[Registry, Registry], tmp_path: Path) -> None:
    mirror, upstream = registries
    client = RegistryClient(mirrors={upstream.host: [f"http://127.0.0.1:{free_port()}", f"http://{mirror.host}"]})
    store = ImageStore(tmp_path / "store", use_overlay=False)
    client.pull(parse_reference(f"{upstream.host}/team/app:v1"), "app:v1", store)
    assert origin(store, "app:v1") == "mirror-team"  # a dead mirror skipped, the next one served it
    assert upstream.token_requests == []
    client.pull(parse_reference(f"{upstream.host}/team/only:v1"), "only:v1", store)
    assert origin(store, "only:v1") == "upstream-only"  # not on the mirror: the registry itself
    assert [r["scope"] for r in upstream.token_requests] == ["repository:team/only:pull"]


def test_every_source_failing_raises_the_registrys_error(registries: tuple[Registry, Registry], tmp_path: Path) -> None:
    mirror, upstream = registries
    client = RegistryClient(mirrors={upstream.host: [f"http://{mirror.host}"]})
    store = ImageStore(tmp_path / "store", use_overlay=False)
    with pytest.raises(NotFound, match=f"{upstream.host}/team/nothere:v1: 404 from {upstream.host}"):
        client.pull(parse_reference(f"{upstream.host}/team/nothere:v1"), "x:v1", store)
    assert store.list_images() == []


def test_parse_mirrors() -> None:
    assert parse_mirrors("docker.io=http://a:5000, https://b ;nvcr.io=c:5000") == {
        "docker.io": ["http://a:5000", "https://b"],
        "nvcr.io": ["c:5000"],
    }
    assert parse_mirrors("") == {}
    for bad in ("docker.io", "=http://a", "docker.io="):
        with pytest.raises(ValueError, match="REGISTRY=URL"):
            parse_mirrors(bad)
    client = RegistryClient(mirrors=parse_mirrors("docker.io=http://cache.local:5000,mirror.gcr.io"))
    assert client.mirrors == {"docker.io": ["cache.local:5000", "mirror.gcr.io"]}
    assert "cache.local:5000" in client.insecure and "mirror.gcr.io" not in client.insecure
    assert isinstance(client.http, httpx.Client)
