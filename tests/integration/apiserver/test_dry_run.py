"""Server-side dry runs (``dryRun=All``) against kray's API server on a real etcd: through the
official ``kubernetes`` client (what ``kubectl --dry-run=server`` and ``kubectl diff`` send) and
through ``kray create --dry-run=server``. Nothing may reach etcd."""

# The client's models type every field as optional.
# mypy: disable-error-code="union-attr"

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import kray.crds  # noqa: F401
from kray.actors.apiserver import ServerThread
from kray.cli.main import cli

pytestmark = pytest.mark.etcd

kubernetes = pytest.importorskip("kubernetes")
from k8s_api import TOKEN  # noqa: E402  (its fixtures come through conftest.py)
from kubernetes import client as k8s  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402


def _status(exc: pytest.ExceptionInfo[ApiException]) -> tuple[int, dict]:
    return exc.value.status, json.loads(exc.value.body)


def test_create_with_the_official_client_writes_nothing(v1: k8s.CoreV1Api, namespace: str) -> None:
    body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="cfg"), data={"a": "b"})
    answered = v1.create_namespaced_config_map(namespace, body, dry_run="All")
    assert answered.metadata.name == "cfg" and answered.data == {"a": "b"}
    assert answered.metadata.uid and answered.metadata.creation_timestamp is not None
    assert not answered.metadata.resource_version
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_config_map("cfg", namespace)
    assert exc.value.status == 404
    assert v1.list_namespaced_config_map(namespace).items == []
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_config_map(namespace, body, dry_run="Bogus")
    code, status = _status(exc)
    assert (code, status["kind"], status["reason"]) == (400, "Status", "BadRequest")
    assert "dryRun" in status["message"] and '"All"' in status["message"]
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_config_map(f"{namespace}-missing", body, dry_run="All")
    assert exc.value.status == 404


def test_patch_replace_and_delete_with_the_official_client(v1: k8s.CoreV1Api, namespace: str) -> None:
    created = v1.create_namespaced_config_map(
        namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="cfg"), data={"a": "1"})
    )
    rv = created.metadata.resource_version
    patched = v1.patch_namespaced_config_map("cfg", namespace, {"data": {"a": "2"}}, dry_run="All")
    assert patched.data == {"a": "2"} and patched.metadata.resource_version == rv
    created.data = {"a": "3"}
    replaced = v1.replace_namespaced_config_map("cfg", namespace, created, dry_run="All")
    assert replaced.data == {"a": "3"} and replaced.metadata.resource_version == rv
    v1.delete_namespaced_config_map("cfg", namespace, dry_run="All")
    got = v1.read_namespaced_config_map("cfg", namespace)
    assert got.data == {"a": "1"} and got.metadata.resource_version == rv


def test_graceful_pod_delete_with_the_official_client(v1: k8s.CoreV1Api, namespace: str) -> None:
    spec = k8s.V1PodSpec(node_name="n1", containers=[k8s.V1Container(name="main", image="busybox")])
    created = v1.create_namespaced_pod(namespace, k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="p"), spec=spec))
    answered = v1.delete_namespaced_pod("p", namespace, dry_run="All")
    assert answered.metadata.deletion_timestamp is not None
    assert answered.metadata.deletion_grace_period_seconds == 30
    got = v1.read_namespaced_pod("p", namespace)
    assert got.metadata.deletion_timestamp is None
    assert got.metadata.resource_version == created.metadata.resource_version


@pytest.fixture
def kray_env(server: ServerThread, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("KRAY_SERVER", server.url)
    monkeypatch.setenv("KRAY_TOKEN", TOKEN)
    monkeypatch.setenv("KRAY_CONFIG", str(tmp_path_factory.mktemp("cfg") / "config"))


def test_kray_create_dry_run_server(kray_env: None, v1: k8s.CoreV1Api, namespace: str) -> None:
    def kray(*args: str) -> tuple[int, str, str]:
        r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        return r.exit_code, r.stdout, r.stderr

    code, out, err = kray("create", "configmap", "x", "-n", namespace, "--from-literal=a=b", "--dry-run=server")
    assert (code, out) == (0, "configmap/x created (server dry run)\n"), err
    code, out, err = kray("create", "secret", "generic", "s", "-n", namespace, "--from-literal=k=v",
                          "--dry-run=server", "-o", "json")  # fmt: skip
    assert code == 0, err
    printed = json.loads(out)  # what the server answered: defaulted, with a uid
    assert printed["metadata"]["uid"] and printed["metadata"]["namespace"] == namespace
    assert v1.list_namespaced_config_map(namespace).items == []
    assert v1.list_namespaced_secret(namespace).items == []
    code, out, err = kray("create", "configmap", "x", "-n", f"{namespace}-gone", "--from-literal=a=b",
                          "--dry-run=server")  # fmt: skip
    assert (code, err) == (1, f'Error from server (NotFound): namespaces "{namespace}-gone" not found\n')
