"""The kubelet's image manager: docker config parsing and credential matching as Kubernetes'
keyring does, the node's own docker config, and ImagePuller.ensure over FakeCri's fake registry
and the in-memory API server (pull policies, imagePullSecrets, image-name errors), then the
waiting reasons a pod shows through the whole kubelet sync."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import grpc
import pytest
from kubelet_harness import Env

from kray.actors.kubelet.images import (
    ImageNeverPull,
    ImagePuller,
    InvalidImageName,
    credentials_for,
    is_registry_image,
    node_docker_config,
    parse_docker_config,
)
from kray.crds import Pod
from kray.crds.core import Secret

REG = "reg.example.com"
APP = f"{REG}/team/app:1"


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def config(auths: dict[str, Any]) -> str:
    return json.dumps({"auths": auths})


def userpass(host: str, user: str, password: str = "pw") -> dict[str, Any]:
    return {host: {"username": user, "password": password}}


@pytest.fixture(autouse=True)
def no_node_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $DOCKER_CONFIG: the test machine's own ~/.docker never leaks in."""
    d = tmp_path / "docker"
    d.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(d))
    return d


# --- parse_docker_config ---------------------------------------------------------------------


def test_parse_auth_field_is_base64_user_and_password():
    [e] = parse_docker_config(config({REG: {"auth": b64("bot:pa:ss"), "email": "x@y"}}))
    assert (e.host, e.port, e.path) == (REG, "", "")
    assert (e.auth.username, e.auth.password, e.auth.server_address) == ("bot", "pa:ss", REG)


def test_parse_username_password_and_tokens():
    raw = config(
        {
            REG: {"username": "u", "password": "p"},
            "tok.example.com": {"identitytoken": "id-tok", "registrytoken": "reg-tok"},
        }
    )
    a, b = parse_docker_config(raw.encode())  # bytes too
    assert (a.auth.username, a.auth.password) == ("u", "p")
    assert (b.auth.identity_token, b.auth.registry_token, b.auth.username) == ("id-tok", "reg-tok", "")


def test_parse_username_wins_over_auth():
    [e] = parse_docker_config(config({REG: {"username": "u", "password": "p", "auth": b64("other:x")}}))
    assert (e.auth.username, e.auth.password) == ("u", "p")


@pytest.mark.parametrize(
    "key",
    ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io", "https://docker.io/v2"],
)
def test_parse_docker_hub_keys_become_docker_io(key: str):
    [e] = parse_docker_config(config(userpass(key, "hub")))
    assert (e.host, e.port, e.path) == ("docker.io", "", "")
    assert e.auth.server_address == key  # what the user wrote, for the runtime


@pytest.mark.parametrize(
    ("key", "host", "port", "path"),
    [
        ("http://reg.example.com:5000/team/", REG, "5000", "team"),
        ("https://REG.Example.com", REG, "", ""),
        ("reg.example.com:443/a/b", REG, "443", "a/b"),
        ("*.example.com", "*.example.com", "", ""),
        ("localhost:5000", "localhost", "5000", ""),
        ("index.docker.io/myorg", "docker.io", "", "myorg"),
    ],
)
def test_parse_keys_with_scheme_port_and_path(key: str, host: str, port: str, path: str):
    [e] = parse_docker_config(config(userpass(key, "u")))
    assert (e.host, e.port, e.path) == (host, port, path)


def test_parse_skips_non_object_entries_and_empty_config():
    assert parse_docker_config(config({REG: "nonsense", "b.io": {"username": "u"}}))[0].host == "b.io"
    assert parse_docker_config("{}") == []
    assert parse_docker_config('{"auths": null}') == []


def test_parse_legacy_dockercfg_is_unwrapped():
    raw = json.dumps({"https://reg.example.com": {"auth": b64("old:pw"), "email": "a@b"}})
    [e] = parse_docker_config(raw, wrapped=False)
    assert (e.host, e.auth.username, e.auth.password) == (REG, "old", "pw")
    assert parse_docker_config(raw) == []  # read as config.json it has no "auths"


def test_parse_bad_json_raises_value_error():
    with pytest.raises(ValueError):
        parse_docker_config("{not json")
    with pytest.raises(ValueError):
        parse_docker_config(config({REG: {"auth": "abc"}}))  # bad base64 padding


@pytest.mark.parametrize("raw", ["[]", "null", '"x"', '{"auths": ["x"]}'])
def test_parse_non_object_json_is_a_value_error(raw: str):
    with pytest.raises(ValueError):
        parse_docker_config(raw)


# --- credentials_for -------------------------------------------------------------------------


def users(image: str, *auths: dict[str, Any]) -> list[str]:
    merged: dict[str, Any] = {}
    for a in auths:
        merged.update(a)
    return [a.username for a in credentials_for(image, parse_docker_config(config(merged)))]


def test_match_exact_host():
    assert users(f"{REG}/app", userpass(REG, "a"), userpass("other.io", "b")) == ["a"]
    assert users("other.io/app:1", userpass(REG, "a")) == []


def test_match_port_must_match():
    both = (userpass(f"{REG}:5000", "p5000"), userpass(REG, "noport"))
    assert users(f"{REG}:5000/app", *both) == ["p5000"]
    assert users(f"{REG}/app", *both) == ["noport"]
    assert users(f"{REG}:443/app", *both) == []


def test_match_wildcard_labels():
    wild = userpass("*.example.com", "wild")
    assert users("a.example.com/app", wild) == ["wild"]
    assert users("example.com/app", wild) == []  # * is one label, not zero
    assert users("a.b.example.com/app", wild) == []  # nor two
    assert users("reg.example.com/app", userpass("reg.*.com", "mid")) == ["mid"]  # any label may be *
    assert users("reg.example.org/app", userpass("reg.*.com", "mid")) == []


def test_match_path_prefix_by_component():
    team = userpass(f"{REG}/team", "team")
    assert users(f"{REG}/team/app", team) == ["team"]
    assert users(f"{REG}/team", team) == ["team"]
    assert users(f"{REG}/teamx/app", team) == []
    assert users(f"{REG}/app", team) == []


def test_match_docker_hub_images():
    hub = userpass("https://index.docker.io/v1/", "hub")
    assert users("busybox", hub) == ["hub"]
    assert users("docker.io/library/busybox:1", hub) == ["hub"]
    assert users("index.docker.io/user/app", hub) == ["hub"]
    assert users("user/app", userpass("docker.io/user", "org")) == ["org"]
    assert users("busybox", userpass("docker.io/user", "org")) == []  # library/busybox
    assert users(f"{REG}/busybox", hub) == []


def test_match_most_specific_first():
    entries = (
        userpass("*.example.com", "wild"),
        userpass(REG, "host"),
        userpass(f"{REG}/team", "team"),
        userpass(f"{REG}/team/app", "app"),
    )
    assert users(f"{REG}/team/app:1", *entries) == ["app", "team", "host", "wild"]
    assert users(f"{REG}/other", *entries) == ["host", "wild"]


def test_match_invalid_image_has_no_credentials():
    assert users("Bad/Name", userpass("docker.io", "hub")) == []


def test_match_ipv6_registry():
    assert users("[::1]:5000/app", userpass("[::1]:5000", "v6")) == ["v6"]


def test_is_registry_image():
    assert is_registry_image("busybox") and is_registry_image(APP)
    for local in ("host", "oci:/srv/layout:busybox", "oci-archive:/tmp/b.tar", "/srv/image"):
        assert not is_registry_image(local)


# --- node_docker_config ----------------------------------------------------------------------


def test_node_config_from_docker_config_dir(no_node_config: Path):
    assert node_docker_config() == []  # no config.json: nothing, quietly
    (no_node_config / "config.json").write_text(config(userpass(REG, "node")))
    [e] = node_docker_config()
    assert (e.host, e.auth.username) == (REG, "node")


def test_node_config_bad_json_is_ignored_with_a_warning(no_node_config: Path, caplog: pytest.LogCaptureFixture):
    (no_node_config / "config.json").write_text("{broken")
    with caplog.at_level(logging.WARNING, logger="kray.actors.kubelet.images"):
        assert node_docker_config() == []
    assert "ignoring the node's docker config" in caplog.text and "config.json" in caplog.text


def test_node_config_non_object_is_ignored_with_a_warning(no_node_config: Path, caplog: pytest.LogCaptureFixture):
    (no_node_config / "config.json").write_text("[]")
    with caplog.at_level(logging.WARNING, logger="kray.actors.kubelet.images"):
        assert node_docker_config() == []
    assert "ignoring the node's docker config" in caplog.text


def test_node_config_defaults_to_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / ".docker").mkdir(parents=True)
    (tmp_path / "home" / ".docker" / "config.json").write_text(config(userpass(REG, "home")))
    assert [e.auth.username for e in node_docker_config()] == ["home"]


# --- ImagePuller.ensure ----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def normal(self, pod: Pod, reason: str, message: str) -> None:
        self.events.append(("Normal", reason, message))

    def warning(self, pod: Pod, reason: str, message: str) -> None:
        self.events.append(("Warning", reason, message))

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.events]


def make_pod(image: str, policy: str | None = None, secrets: tuple[str, ...] = ()) -> Pod:
    c: dict[str, Any] = {"name": "main", "image": image}
    if policy:
        c["imagePullPolicy"] = policy
    spec: dict[str, Any] = {"containers": [c], "imagePullSecrets": [{"name": s} for s in secrets]}
    return Pod.model_validate({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})


async def ensure(env: Env, pod: Pod) -> Recorder:
    rec = Recorder()
    await ImagePuller(env.client, env.cri, rec.warning).ensure(pod, pod.spec.containers[0], rec.normal)
    return rec


async def pull_secret(env: Env, name: str, auths: dict[str, Any], legacy: bool = False) -> None:
    if legacy:
        body = {"type": "kubernetes.io/dockercfg", "data": {".dockercfg": b64(json.dumps(auths))}}
    else:
        body = {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64(config(auths))}}
    await env.client.create(Secret.model_validate({"metadata": {"name": name, "namespace": "default"}, **body}))


async def test_never_and_absent_is_image_never_pull(env: Env):
    with pytest.raises(ImageNeverPull) as exc:
        await ensure(env, make_pod("x", "Never"))
    assert str(exc.value) == 'Container image "x" is not present with pull policy of Never'
    assert env.cri.count("PullImage") == 0


async def test_never_and_present_is_already_present(env: Env):
    env.cri.registry[APP] = "sha256:" + "1" * 64
    await ensure(env, make_pod(APP))  # IfNotPresent (a pinned tag): pulled once
    rec = await ensure(env, make_pod(APP, "Never"))
    assert rec.events == [("Normal", "Pulled", f'Container image "{APP}" already present on machine')]
    assert env.cri.count("PullImage") == 1


async def test_if_not_present_and_present_does_not_pull(env: Env):
    rec = await ensure(env, make_pod("busybox", "IfNotPresent"))
    assert rec.events == [("Normal", "Pulled", 'Container image "busybox" already present on machine')]
    assert env.cri.count("PullImage") == 0


async def test_if_not_present_and_absent_pulls_once(env: Env):
    digest = "sha256:" + "2" * 64
    env.cri.registry[APP] = digest
    rec = await ensure(env, make_pod(APP, "IfNotPresent"))
    assert rec.reasons() == ["Pulling", "Pulled"]
    assert rec.events[0][2] == f'Pulling image "{APP}"'
    assert rec.events[1][2].startswith(f'Successfully pulled image "{APP}" in ')
    assert rec.events[1][2].endswith("s. Image size: 1000 bytes.")
    st = (await env.cri.image_status(APP)).image
    assert not st.pinned and list(st.repo_digests) == [f"{REG}/team/app@{digest}"]
    assert env.cri.pull_auths == [(APP, "")]  # no credentials anywhere: anonymous
    await ensure(env, make_pod(APP, "IfNotPresent"))
    assert env.cri.count("PullImage") == 1


async def test_always_pulls_a_pulled_image_every_time(env: Env):
    env.cri.registry["registry.example/app"] = "sha256:" + "3" * 64
    pod = make_pod("registry.example/app")
    assert pod.spec.containers[0].image_pull_policy == "Always"  # defaulted: no tag means latest
    for _ in range(3):
        rec = await ensure(env, pod)
        assert rec.reasons() == ["Pulling", "Pulled"]
    assert env.cri.count("PullImage") == 3


async def test_always_does_not_pull_an_imported_image(env: Env):
    rec = await ensure(env, make_pod("busybox", "Always"))
    assert rec.events == [("Normal", "Pulled", 'Container image "busybox" already present on machine')]
    assert env.cri.count("PullImage") == 0


async def test_local_import_refs_are_never_pulled_when_present(env: Env):
    env.cri.images.add("oci:/srv/layout:app")
    rec = await ensure(env, make_pod("oci:/srv/layout:app", "Always"))
    assert rec.reasons() == ["Pulled"] and env.cri.count("PullImage") == 0


async def test_missing_image_is_the_runtime_error(env: Env):
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await ensure(env, make_pod("nothere:1"))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


async def test_invalid_image_name(env: Env):
    with pytest.raises(InvalidImageName) as exc:
        await ensure(env, make_pod("Bad/Name"))
    assert str(exc.value).startswith('Failed to apply default image tag "Bad/Name": ')
    assert "'Bad' must be lowercase" in str(exc.value)
    assert env.cri.count("PullImage") == 0


async def test_pull_secrets_tried_in_order_until_one_is_accepted(env: Env):
    env.cri.registry[APP] = "sha256:" + "4" * 64
    env.cri.registry_auth[APP] = ("new-bot", "right")
    await pull_secret(env, "stale", userpass(REG, "old-bot", "wrong"))
    await pull_secret(env, "fresh", userpass(REG, "new-bot", "right"))
    rec = await ensure(env, make_pod(APP, secrets=("stale", "fresh")))
    assert env.cri.pull_auths == [(APP, "old-bot"), (APP, "new-bot")]
    assert rec.reasons() == ["Pulling", "Pulled"] and APP in env.cri.pulled


async def test_legacy_dockercfg_secret(env: Env):
    env.cri.registry[APP] = "sha256:" + "5" * 64
    env.cri.registry_auth[APP] = ("legacy", "pw")
    await pull_secret(env, "old", {f"https://{REG}": {"auth": b64("legacy:pw")}}, legacy=True)
    await ensure(env, make_pod(APP, secrets=("old",)))
    assert env.cri.pull_auths == [(APP, "legacy")]


async def test_secret_credentials_then_the_nodes(env: Env, no_node_config: Path):
    env.cri.registry[APP] = "sha256:" + "6" * 64
    env.cri.registry_auth[APP] = ("node-bot", "pw")
    (no_node_config / "config.json").write_text(config(userpass(REG, "node-bot")))
    await pull_secret(env, "pod", userpass(REG, "pod-bot"))
    await ensure(env, make_pod(APP, secrets=("pod",)))
    assert env.cri.pull_auths == [(APP, "pod-bot"), (APP, "node-bot")]


async def test_all_credentials_refused_raises_the_last_error(env: Env):
    env.cri.registry[APP] = "sha256:" + "7" * 64
    env.cri.registry_auth[APP] = ("x", "y")
    await pull_secret(env, "a", userpass(REG, "a"))
    await pull_secret(env, "b", userpass(f"{REG}/team", "b"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await ensure(env, make_pod(APP, secrets=("a", "b")))
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert env.cri.pull_auths == [(APP, "b"), (APP, "a")]  # the path-specific entry first
    assert APP not in env.cri.pulled


async def test_anonymous_pull_of_a_private_image_is_unauthenticated(env: Env):
    env.cri.registry[APP] = "sha256:" + "8" * 64
    env.cri.registry_auth[APP] = ("x", "y")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await ensure(env, make_pod(APP))
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED and "asks for a user" in (exc.value.details() or "")


async def test_a_non_auth_error_stops_the_credential_loop(env: Env):
    # NOT_FOUND is not about credentials: trying the next ones would not help.
    await pull_secret(env, "a", userpass(REG, "a"))
    await pull_secret(env, "b", userpass(REG, "b"))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await ensure(env, make_pod(f"{REG}/gone:1", secrets=("a", "b")))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert env.cri.pull_auths == [(f"{REG}/gone:1", "a")]


async def test_missing_secret_warns_and_pulls_anonymously(env: Env):
    env.cri.registry[APP] = "sha256:" + "9" * 64
    rec = await ensure(env, make_pod(APP, secrets=("nope",)))
    assert (
        "Warning",
        "FailedToRetrieveImagePullSecret",
        "Unable to retrieve some image pull secrets (nope); attempting to pull the image may not succeed.",
    ) in rec.events
    assert sorted(rec.reasons()) == ["FailedToRetrieveImagePullSecret", "Pulled", "Pulling"]
    assert env.cri.pull_auths == [(APP, "")]


async def test_secrets_of_other_types_or_unmatched_hosts_are_ignored(env: Env):
    env.cri.registry[APP] = "sha256:" + "a" * 64
    opaque = {"metadata": {"name": "opaque", "namespace": "default"}, "data": {".dockerconfigjson": b64("{}")}}
    await env.client.create(Secret.model_validate(opaque))
    await pull_secret(env, "elsewhere", userpass("other.io", "other"))
    rec = await ensure(env, make_pod(APP, secrets=("opaque", "elsewhere")))
    assert "Warning" not in [t for t, _, _ in rec.events]
    assert env.cri.pull_auths == [(APP, "")]


async def test_unparsable_secret_warns_and_pulls_anonymously(env: Env):
    env.cri.registry[APP] = "sha256:" + "b" * 64
    body = {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64("{broken")}}
    await env.client.create(Secret.model_validate({"metadata": {"name": "bad", "namespace": "default"}, **body}))
    rec = await ensure(env, make_pod(APP, secrets=("bad",)))
    [(_, reason, message)] = [e for e in rec.events if e[0] == "Warning"]
    assert reason == "FailedToRetrieveImagePullSecret"
    assert message.startswith('image pull secret "bad" is not valid: ')
    assert env.cri.pull_auths == [(APP, "")]


async def test_non_object_secret_warns_and_pulls_anonymously(env: Env):
    env.cri.registry[APP] = "sha256:" + "c" * 64
    body = {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64("[]")}}
    await env.client.create(Secret.model_validate({"metadata": {"name": "list", "namespace": "default"}, **body}))
    rec = await ensure(env, make_pod(APP, secrets=("list",)))
    assert sorted(rec.reasons()) == ["FailedToRetrieveImagePullSecret", "Pulled", "Pulling"]


# --- through the kubelet -----------------------------------------------------------------------


def waiting(pod: Pod) -> dict[str, Any]:
    return pod.status.to_dict()["containerStatuses"][0]["state"]["waiting"]


async def test_kubelet_never_policy_and_invalid_name_waiting_reasons(env: Env):
    never = {"name": "main", "image": "absent:1", "imagePullPolicy": "Never"}
    await env.create("never", {"containers": [never]})
    await env.create("badname", {"containers": [{"name": "main", "image": "Bad/Name:1"}]})
    await env.step()
    w = waiting(await env.pod("never"))
    assert w == {
        "reason": "ErrImageNeverPull",
        "message": 'Container image "absent:1" is not present with pull policy of Never',
    }
    w = waiting(await env.pod("badname"))
    assert w["reason"] == "InvalidImageName" and "'Bad' must be lowercase" in w["message"]
    await env.step(advance=30)  # neither retries into a pull
    assert waiting(await env.pod("never"))["reason"] == "ErrImageNeverPull"
    assert waiting(await env.pod("badname"))["reason"] == "InvalidImageName"
    assert env.cri.count("PullImage") == 0 and env.cri.count("CreateContainer") == 0


async def test_kubelet_pulls_a_private_image_with_its_secret(env: Env):
    env.cri.registry[APP] = "sha256:" + "d" * 64
    env.cri.registry_auth[APP] = ("bot", "pw")
    await pull_secret(env, "regcred", userpass(REG, "bot"))
    c = {"name": "main", "image": APP, "command": ["sleep", "1000"]}
    await env.create("private", {"containers": [c], "imagePullSecrets": [{"name": "regcred"}]})
    await env.step()
    pod = await env.pod("private")
    assert pod.status.phase == "Running", pod.status
    assert env.cri.pull_auths == [(APP, "bot")]
