"""RegistryClient.pull and NodeRuntime.pull_image against the real registry of tests/registryserver.py."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
import zstandard

from kray.runtime.imagebuild import MT_CONFIG, MT_INDEX, MT_LAYER_GZIP, MT_MANIFEST, write_layout
from kray.runtime.imageref import parse_reference
from kray.runtime.images import ImageInfo, ImageStore
from kray.runtime.procrt import ProcessRuntime
from kray.runtime.records import CriError, InvalidArgument, NotFound, Unauthenticated, Unavailable
from kray.runtime.registry import Credentials, RegistryClient, host_platform
from kray.runtime.service import NodeRuntime
from tests.registryserver import HELPER_HEADER, SERVICE, Registry, free_port, start_registry

Kinds = tuple[str, str, str]  # the media types of a manifest, its config and its layer
App = dict[str, Any]  # the pushed team/app:v1: digest, manifest, layout
_D = "application/vnd.docker."
DOCKER = (f"{_D}distribution.manifest.v2+json", f"{_D}container.image.v1+json", f"{_D}image.rootfs.diff.tar.gzip")
DOCKER_LIST = f"{_D}distribution.manifest.list.v2+json"
OCI: Kinds = (MT_MANIFEST, MT_CONFIG, MT_LAYER_GZIP)
ATTESTATION: Kinds = (MT_MANIFEST, MT_CONFIG, "application/vnd.in-toto+json")  # as buildkit's
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
REFUSED = [("intoto", MT_CONFIG, ATTESTATION[2]), ("helm", HELM_CONFIG, MT_LAYER_GZIP)]
ALICE, WRONG = Credentials("alice", "s3cret"), Credentials("alice", "wrong")


def _registry(factory: pytest.TempPathFactory, auth: str) -> Iterator[Registry]:
    reg = start_registry(factory.mktemp(f"registry-{auth}"), auth)
    try:
        yield reg
    finally:
        reg.stop()
    assert reg.process is not None and reg.process.poll() is not None


@pytest.fixture(scope="module")
def anon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from _registry(tmp_path_factory, "none")


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from _registry(tmp_path_factory, "basic")


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from _registry(tmp_path_factory, "token")


class Store(ImageStore):
    """An ImageStore that pulls with `client` and records each download (a new digest's write_blob)."""

    def __init__(self, root: Path, client: RegistryClient) -> None:
        super().__init__(root, use_overlay=False)
        self.client, self.fetched = client, list[str]()

    def write_blob(self, digest: str, chunks: Iterable[bytes]) -> Path:
        if not self.has_blob(digest):
            self.fetched.append(digest)
        return super().write_blob(digest, chunks)

    def pull(self, image: str, name: str | None = None, creds: Credentials | None = None) -> ImageInfo:
        return self.client.pull(parse_reference(image), name or image, self, creds)

    def assert_untouched(self) -> None:
        assert self.list_images() == []
        assert [p.name for p in self.blobs.iterdir() if p.name.startswith(".")] == []  # no temp files


@pytest.fixture
def client() -> Iterator[RegistryClient]:
    with closing(RegistryClient(timeout=10)) as c:
        yield c


@pytest.fixture
def store(tmp_path: Path, client: RegistryClient) -> Store:
    return Store(tmp_path / "store", client)


def requests_of(client: RegistryClient, part: str = "/blobs/") -> list[str]:
    """The paths (containing `part`) of every request `client` sends from now on."""
    seen: list[str] = []
    client.http.event_hooks["request"].append(lambda r: seen.append(r.url.path) if part in r.url.path else None)
    return seen


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layered_layout(tmp: Path) -> tuple[Path, str]:
    """Two layers: the second overrides /etc/greeting and whites out /etc/oldfile."""
    lower = {"etc/greeting": "one", "etc/oldfile": "old", "keep": "k"}
    for i, files in enumerate([lower, {"etc/greeting": "two", "etc/.wh.oldfile": ""}]):
        for rel, text in files.items():
            (tmp / f"l{i}" / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / f"l{i}" / rel).write_text(text)
    config = {"Cmd": ["/bin/app"], "Env": ["MODE=t"]}
    return tmp / "layout", write_layout(tmp / "layout", [tmp / "l0", tmp / "l1"], config=config)


@pytest.fixture(scope="module")
def app(anon: Registry, tmp_path_factory: pytest.TempPathFactory) -> App:
    layout, digest = layered_layout(tmp_path_factory.mktemp("app"))
    assert anon.push_layout(layout, "team/app", "v1") == digest
    manifest = json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())
    return {"digest": digest, "manifest": manifest, "layout": layout}


def push_image(
    reg: Registry, repo: str, ref: str | None, files: dict[str, str], kinds: Kinds = OCI, arch: str = ""
) -> tuple[str, dict[str, Any]]:
    """Push a one-layer image built by hand, tagged `ref` or by digest only: (digest, manifest)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tf.addfile(info, io.BytesIO(text.encode()))
    zstd = kinds[2].endswith("+zstd")
    layer = zstandard.ZstdCompressor().compress(buf.getvalue()) if zstd else gzip.compress(buf.getvalue(), mtime=0)
    cfg = {"architecture": arch or "amd64", "os": "linux", "config": {"Cmd": [f"/{arch}"]}}
    config = json.dumps(cfg | {"rootfs": {"type": "layers", "diff_ids": [sha(buf.getvalue())]}}).encode()
    cdesc = {"mediaType": kinds[1], "digest": reg.push_blob(repo, config), "size": len(config)}
    ldesc = {"mediaType": kinds[2], "digest": reg.push_blob(repo, layer), "size": len(layer)}
    manifest = {"schemaVersion": 2, "mediaType": kinds[0], "config": cdesc, "layers": [ldesc]}
    body = json.dumps(manifest).encode()
    return reg.push_manifest(repo, ref or sha(body), body, kinds[0]), manifest


def push_index(reg: Registry, repo: str, media: str, children: list[tuple[dict[str, Any], str, str]]) -> str:
    """Push `repo`:v1, an index over manifests push_image pushed, given as (manifest, os, arch)."""
    entries = []
    for manifest, os_, arch in children:
        body = json.dumps(manifest).encode()
        desc = {"mediaType": manifest["mediaType"], "digest": sha(body), "size": len(body)}
        entries.append(desc | {"platform": {"os": os_, "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": media, "manifests": entries}).encode()
    return reg.push_manifest(repo, "v1", index, media)


# 1-3: a layered image, pulled twice, under other names, by digest; what is not there ----------
def test_layered_pull_unpacks_with_override_and_whiteout(anon: Registry, app: App, store: Store) -> None:
    name = f"{anon.host}/team/app:v1"
    info = store.pull(name)
    assert info.name == name and info.digest == app["digest"]
    assert info.layers == [ld["digest"] for ld in app["manifest"]["layers"]] and len(info.layers) == 2
    assert info.config_digest == app["manifest"]["config"]["digest"]
    assert info.config["Cmd"] == ["/bin/app"] and info.config["Env"] == ["MODE=t"]
    assert info.repo_digest == f"{anon.host}/team/app@{app['digest']}" and store.image_status(name) == info
    root = store.unpack(name)
    assert (root / "etc" / "greeting").read_text() == "two" and not (root / "etc" / "oldfile").exists()
    assert (root / "keep").read_text() == "k" and list(root.rglob(".wh.*")) == []


def test_second_pull_and_other_names_download_nothing(anon: Registry, app: App, store: Store) -> None:
    name = f"{anon.host}/team/app:v1"
    first = store.pull(name)
    assert sorted(store.fetched) == sorted([first.digest, first.config_digest, *first.layers])
    store.fetched.clear()
    gets = requests_of(store.client)
    assert store.pull(name) == first
    alias = store.pull(name, "alias/app:copy")
    assert anon.push_layout(app["layout"], "team/app2", "v2") == app["digest"]
    other = store.pull(f"{anon.host}/team/app2:v2", "app2")
    assert store.fetched == [] and gets == []
    assert alias.digest == other.digest == first.digest and alias.layers == other.layers == first.layers
    assert other.repo_digest == f"{anon.host}/team/app2@{first.digest}"
    assert [i.name for i in store.list_images()] == sorted([name, "alias/app:copy", "app2:latest"])


def test_pull_by_digest(anon: Registry, app: App, store: Store) -> None:
    name = f"{anon.host}/team/app@{app['digest']}"
    info = store.pull(name)
    assert info.digest == app["digest"] and info.repo_digest == name and info.name == name
    assert store.client.resolve(parse_reference(f"{anon.host}/team/app:v1"), None) == app["digest"]


@pytest.mark.parametrize("path", ["team/app@sha256:" + "0" * 64, "team/app:nope", "team/nothere:v1"])
def test_missing_is_not_found(anon: Registry, app: App, store: Store, path: str) -> None:
    with pytest.raises(NotFound, match=r"MANIFEST_UNKNOWN|manifest unknown"):
        store.pull(f"{anon.host}/{path}")
    store.assert_untouched()


# 4 + 5: indexes and Docker media types ---------------------------------------------------------
@pytest.mark.parametrize(("media", "kinds"), [(MT_INDEX, OCI), (DOCKER_LIST, DOCKER)])
def test_index_picks_host_platform(anon: Registry, store: Store, media: str, kinds: Kinds) -> None:
    repo, (os_, arch) = ("multi/oci" if kinds == OCI else "multi/docker"), host_platform()
    other = "arm64" if arch != "arm64" else "amd64"
    attest, attest_m = push_image(anon, repo, None, {"a": "x"}, ATTESTATION)
    wrong, wrong_m = push_image(anon, repo, None, {"arch": other}, kinds, other)
    right, right_m = push_image(anon, repo, None, {"arch": arch}, kinds, arch)
    # the attestation and the other platform come first: a pull that took the first entry fails
    children = [(attest_m, "unknown", "unknown"), (wrong_m, os_, other), (right_m, os_, arch)]
    index = push_index(anon, repo, media, children)
    info = store.pull(f"{anon.host}/{repo}:v1")
    assert info.digest == right and info.layers == [right_m["layers"][0]["digest"]]
    assert info.config["Cmd"] == [f"/{arch}"] and info.repo_digest == f"{anon.host}/{repo}@{right}"
    assert (store.unpack(info.name) / "arch").read_text() == arch
    assert not {index, attest, wrong} & {*store.fetched}


def test_index_without_host_platform_is_not_found(anon: Registry, store: Store) -> None:
    _, manifest = push_image(anon, "multi/s390x", None, {"arch": "s390x"}, arch="s390x")
    push_index(anon, "multi/s390x", MT_INDEX, [(manifest, "linux", "s390x")])
    with pytest.raises(NotFound, match="linux/s390x"):
        store.pull(f"{anon.host}/multi/s390x:v1")
    store.assert_untouched()


def test_docker_manifest(anon: Registry, store: Store) -> None:
    digest, manifest = push_image(anon, "team/docker", "v1", {"etc/os": "docker"}, DOCKER)
    info = store.pull(f"{anon.host}/team/docker:v1")
    assert info.digest == digest and info.config_digest == manifest["config"]["digest"]
    assert (store.unpack(info.name) / "etc" / "os").read_text() == "docker"


def test_zstd_layer(anon: Registry, store: Store) -> None:
    digest, _ = push_image(anon, "team/zstd", "v1", {"etc/os": "zstd"}, (MT_MANIFEST, MT_CONFIG, ZSTD_LAYER))
    info = store.pull(f"{anon.host}/team/zstd:v1")
    assert info.digest == digest
    assert (store.unpack(info.name) / "etc" / "os").read_text() == "zstd"


# 6: refusals that leave the store as it was ---------------------------------------------------
@pytest.mark.parametrize(("repo", "config", "layer"), REFUSED)
def test_unpullable_types_are_refused(anon: Registry, store: Store, repo: str, config: str, layer: str) -> None:
    named = layer if config == MT_CONFIG else config
    push_image(anon, f"refuse/{repo}", "v1", {"f": repo}, (MT_MANIFEST, config, layer))
    with pytest.raises(InvalidArgument) as exc:
        store.pull(f"{anon.host}/refuse/{repo}:v1")
    assert named in str(exc.value)
    store.assert_untouched()
    assert list(store.blobs.iterdir()) == [] and store.fetched == []


def test_corrupt_blob_in_registry_is_refused(anon: Registry, store: Store) -> None:
    _, manifest = push_image(anon, "refuse/corrupt", "v1", {"data": "precious " * 50})
    layer = manifest["layers"][0]["digest"]
    hexd = layer.split(":")[1]
    path = anon.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data"
    good = path.read_bytes()
    path.write_bytes(bytes(b ^ 0xFF for b in good))  # same length, other bytes
    with pytest.raises(Unavailable, match="does not match"):
        store.pull(f"{anon.host}/refuse/corrupt:v1")
    store.assert_untouched()
    assert not store.has_blob(layer)
    path.write_bytes(good)  # the registry mended: the same client and store pull it now
    assert store.pull(f"{anon.host}/refuse/corrupt:v1").layers == [layer]


# 7 + 8: Basic and token auth --------------------------------------------------------------------
def test_basic_auth(basic: Registry, tmp_path: Path, client: RegistryClient) -> None:
    layout, digest = layered_layout(tmp_path / "src")
    basic.push_layout(layout, "team/app", "v1")
    b64 = base64.b64encode(b"alice:s3cret").decode()
    cases: list[tuple[Credentials | None, type[CriError] | None, str]] = [(None, Unauthenticated, "imagePullSecrets")]
    cases += [(WRONG, Unauthenticated, "401"), (ALICE, None, ""), (Credentials.from_auth("", "", b64, ""), None, "")]
    for i, (creds, error, text) in enumerate(cases):
        store = Store(tmp_path / f"store{i}", client)
        if error is None:
            assert store.pull(f"{basic.host}/team/app:v1", creds=creds).digest == digest
        else:
            with pytest.raises(error, match=text):
                store.pull(f"{basic.host}/team/app:v1", creds=creds)
            store.assert_untouched()


def test_token_auth(token: Registry, tmp_path: Path, store: Store) -> None:
    layout, digest = layered_layout(tmp_path / "src")
    token.push_layout(layout, "team/app", "v1")
    token.push_layout(layout, "private/app", "v1")
    token.token_requests.clear()
    public, private = f"{token.host}/team/app:v1", f"{token.host}/private/app:v1"
    assert store.pull(public).digest == digest
    anon_req = {"scope": "repository:team/app:pull", "service": SERVICE, "user": ""}
    assert token.token_requests == [anon_req]  # one token for the manifest and every blob
    store.pull(public, "again")
    assert token.token_requests == [anon_req]  # the cached token again
    with pytest.raises(Unauthenticated, match="imagePullSecrets"):
        store.pull(private)
    assert store.image_status(private) is None and token.realm is not None
    with pytest.raises(Unauthenticated, match=token.realm):
        store.pull(private, creds=WRONG)
    token.token_requests.clear()
    assert store.pull(private, creds=ALICE).digest == digest
    assert token.token_requests == [{"scope": "repository:private/app:pull", "service": SERVICE, "user": "alice"}]


@pytest.mark.parametrize(("auth", "first"), [("basic", "alice"), ("token", "alice"), ("token", "registry_token")])
def test_cached_auth_is_not_reused_by_other_credentials(
    request: pytest.FixtureRequest, tmp_path: Path, client: RegistryClient, auth: str, first: str
) -> None:
    reg: Registry = request.getfixturevalue(auth)
    layout, _ = layered_layout(tmp_path / "src")
    reg.push_layout(layout, "private/cached", "v1")
    good, later = ALICE, WRONG
    if first == "registry_token":
        assert reg.realm is not None
        query = {"service": SERVICE, "scope": "repository:private/cached:pull"}
        jwt = httpx.get(reg.realm, params=query, auth=("alice", "s3cret"), headers={HELPER_HEADER: "1"}).json()["token"]
        good, later = Credentials(registry_token=jwt), None
    Store(tmp_path / "pod-a", client).pull(f"{reg.host}/private/cached:v1", creds=good)
    with pytest.raises(Unauthenticated):  # another pod's pull, on the node's one client
        Store(tmp_path / "pod-b", client).pull(f"{reg.host}/private/cached:v1", creds=later)


def test_unreachable_registry(store: Store) -> None:
    with pytest.raises(Unavailable, match="cannot reach"):
        store.pull(f"127.0.0.1:{free_port()}/team/app:v1")
    store.assert_untouched()


# 10: NodeRuntime.pull_image, no root (the process runtime) -------------------------------------
def test_node_runtime_pull_image(anon: Registry, app: App, tmp_path: Path, client: RegistryClient) -> None:
    images = ImageStore(tmp_path / "images", use_overlay=False)
    node = NodeRuntime(ProcessRuntime(tmp_path / "oci"), images, None, tmp_path / "state", registry=client)
    try:
        sent = requests_of(client, part="")
        name = f"{anon.host}/team/app:v1"
        info = node.pull_image(name)
        assert info.digest == app["digest"] and images.image_status(name) == info and sent
        # an import named like a registry image that nobody serves: pull_image asks no registry
        offline = f"127.0.0.1:{free_port()}/local/app:v1"
        imported = node.pull_image(f"oci:{app['layout']}:{offline}")
        assert imported.name == offline and imported.repo_digest == "" and imported.digest == app["digest"]
        sent.clear()
        assert node.pull_image(offline) == imported and sent == []
        with pytest.raises(InvalidArgument, match="lowercase"):
            node.pull_image("Bad/Name")
        assert sorted(i.name for i in images.list_images()) == sorted([name, offline])
    finally:
        node.close()
