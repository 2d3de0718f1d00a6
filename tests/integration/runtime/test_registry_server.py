"""tests/registryserver.py against the real registry: push OCI layouts in each auth mode, pull them
back with the auth done by hand, and check what anonymous and wrong credentials get."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from kray.runtime.imagebuild import MT_INDEX, MT_MANIFEST, write_layout
from tests.registryserver import Registry, start_registry

ACCEPT = {"Accept": f"{MT_MANIFEST}, {MT_INDEX}"}


@contextmanager
def registry(tmp_path: Path, auth: str) -> Iterator[Registry]:
    reg = start_registry(tmp_path / "registry", auth)
    try:
        yield reg
    finally:
        reg.stop()
    assert reg.process is not None and reg.process.poll() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{reg.url}/v2/", timeout=2)


def make_layout(tmp_path: Path, name: str = "layout", text: str = "hello") -> tuple[Path, str]:
    src = tmp_path / f"{name}-src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "greeting").write_text(text)
    out = tmp_path / name
    return out, write_layout(out, [src], config={"Cmd": ["/bin/sh"], "Env": ["A=1"]})


def challenge(resp: httpx.Response) -> tuple[str, dict[str, str]]:
    scheme, _, rest = resp.headers["WWW-Authenticate"].partition(" ")
    return scheme, dict(re.findall(r'(\w+)="([^"]*)"', rest))


def bearer_token(resp: httpx.Response, auth: tuple[str, str] | None = None) -> str:
    """The 401 -> token endpoint -> token dance, as a pull client does it."""
    assert resp.status_code == 401
    scheme, params = challenge(resp)
    assert scheme == "Bearer"
    query = {"service": params["service"], "scope": params["scope"]}
    tok = httpx.get(params["realm"], params=query, auth=auth)
    assert tok.status_code == 200, tok.text
    body = tok.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    return str(body["token"])


def test_no_auth_push_and_pull(tmp_path: Path) -> None:
    layout, digest = make_layout(tmp_path)
    with registry(tmp_path, "none") as reg:
        assert reg.push_layout(layout, "team/busybox", "v1") == digest
        resp = httpx.get(f"{reg.url}/v2/team/busybox/manifests/v1", headers=ACCEPT)
        assert resp.status_code == 200
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.headers["Content-Type"] == MT_MANIFEST
        config = json.loads(resp.content)["config"]
        blob = httpx.get(f"{reg.url}/v2/team/busybox/blobs/{config['digest']}", follow_redirects=True)
        assert blob.status_code == 200 and len(blob.content) == config["size"]
        assert json.loads(blob.content)["config"]["Cmd"] == ["/bin/sh"]
        # distribution 2.8 hides OCI manifests from clients that do not Accept them
        assert httpx.get(f"{reg.url}/v2/team/busybox/manifests/v1").status_code == 404


def test_nested_index_push(tmp_path: Path) -> None:
    layout, amd = make_layout(tmp_path, "multi", "amd64")
    src = tmp_path / "arm-src"
    src.mkdir()
    (src / "arch").write_text("arm64")
    arm = write_layout(layout, [src], config={"Cmd": ["/arch"]})  # same blobs dir; index.json replaced below
    blobs = layout / "blobs" / "sha256"
    children = []
    for digest, arch in ((amd, "amd64"), (arm, "arm64")):
        size = (blobs / digest.split(":")[1]).stat().st_size
        children.append(
            {
                "mediaType": MT_MANIFEST,
                "digest": digest,
                "size": size,
                "platform": {"os": "linux", "architecture": arch},
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": children}).encode()
    index_digest = "sha256:" + hashlib.sha256(index).hexdigest()
    (blobs / index_digest.split(":")[1]).write_bytes(index)
    top = {"schemaVersion": 2, "manifests": [{"mediaType": MT_INDEX, "digest": index_digest, "size": len(index)}]}
    (layout / "index.json").write_text(json.dumps(top))
    with registry(tmp_path, "none") as reg:
        assert reg.push_layout(layout, "multi/arch", "latest") == index_digest
        resp = httpx.get(f"{reg.url}/v2/multi/arch/manifests/latest", headers=ACCEPT)
        assert resp.status_code == 200 and resp.headers["Docker-Content-Digest"] == index_digest
        assert resp.headers["Content-Type"] == MT_INDEX
        for digest in (amd, arm):
            child = httpx.get(f"{reg.url}/v2/multi/arch/manifests/{digest}", headers=ACCEPT)
            assert child.status_code == 200 and child.headers["Docker-Content-Digest"] == digest


def test_basic_auth(tmp_path: Path) -> None:
    layout, digest = make_layout(tmp_path)
    with registry(tmp_path, "basic") as reg:
        assert reg.scheme == "http"
        assert reg.push_layout(layout, "team/busybox", "v1") == digest
        url = f"{reg.url}/v2/team/busybox/manifests/v1"
        anon = httpx.get(url, headers=ACCEPT)
        assert anon.status_code == 401
        assert challenge(anon) == ("Basic", {"realm": "kray-test"})
        assert anon.json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert httpx.get(url, headers=ACCEPT, auth=("alice", "wrong")).status_code == 401
        resp = httpx.get(url, headers=ACCEPT, auth=(reg.username or "", reg.password or ""))
        assert resp.status_code == 200 and resp.headers["Docker-Content-Digest"] == digest


def test_token_auth_with_credentials(tmp_path: Path) -> None:
    layout, digest = make_layout(tmp_path)
    with registry(tmp_path, "token") as reg:
        assert reg.push_layout(layout, "private/busybox", "v1") == digest
        assert reg.token_requests == []  # the push helpers' own token requests are not recorded
        url = f"{reg.url}/v2/private/busybox/manifests/v1"
        first = httpx.get(url, headers=ACCEPT)
        scheme, params = challenge(first)
        assert scheme == "Bearer"
        assert params == {
            "realm": reg.realm,
            "service": "kray-test-registry",
            "scope": "repository:private/busybox:pull",
        }
        token = bearer_token(first, auth=("alice", "s3cret"))
        resp = httpx.get(url, headers=ACCEPT | {"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200 and resp.headers["Docker-Content-Digest"] == digest
        assert reg.token_requests == [
            {"service": "kray-test-registry", "scope": "repository:private/busybox:pull", "user": "alice"}
        ]
        assert reg.realm is not None
        wrong = httpx.get(reg.realm, params={"service": "kray-test-registry"}, auth=("alice", "nope"))
        assert wrong.status_code == 401
        assert len(reg.token_requests) == 1  # refused requests are not recorded


def test_token_auth_anonymous(tmp_path: Path) -> None:
    layout, digest = make_layout(tmp_path)
    with registry(tmp_path, "token") as reg:
        reg.push_layout(layout, "team/busybox", "v1")
        reg.push_layout(layout, "private/busybox", "v1")
        # public repo: an anonymous token pulls
        url = f"{reg.url}/v2/team/busybox/manifests/v1"
        token = bearer_token(httpx.get(url, headers=ACCEPT))
        resp = httpx.get(url, headers=ACCEPT | {"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200 and resp.headers["Docker-Content-Digest"] == digest
        # ... but does not push
        assert reg.realm is not None
        push_scope = {"service": "kray-test-registry", "scope": "repository:team/busybox:pull,push"}
        push_token = httpx.get(reg.realm, params=push_scope).json()["token"]
        upload = httpx.post(
            f"{reg.url}/v2/team/busybox/blobs/uploads/", headers={"Authorization": f"Bearer {push_token}"}
        )
        assert upload.status_code == 401
        # private repo: the anonymous token grants nothing
        url = f"{reg.url}/v2/private/busybox/manifests/v1"
        token = bearer_token(httpx.get(url, headers=ACCEPT))
        denied = httpx.get(url, headers=ACCEPT | {"Authorization": f"Bearer {token}"})
        assert denied.status_code == 401
        assert challenge(denied)[1]["error"] == "insufficient_scope"
        assert [r["user"] for r in reg.token_requests] == ["", "", ""]
