"""Probes (exec, tcpSocket, httpGet) and the container environment (downward API, ConfigMap/
Secret refs, envFrom, Service variables, $(VAR) expansion)."""

from __future__ import annotations

import asyncio
import base64
import socket
from pathlib import Path

from kubelet_harness import Env

from kray.actors.kubelet.envvars import expand
from kray.crds import ConfigMap, Pod, Secret, Service

SLEEP = {"name": "main", "image": "busybox", "command": ["sleep", "1000"]}


def cs(pod: Pod) -> dict:
    return pod.status.to_dict()["containerStatuses"][0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_liveness_exec_failure_restarts_container(env: Env):
    healthy = {"ok": True}
    env.cri.exec_handler = lambda name, cmd: (0 if healthy["ok"] else 1, b"")
    probe = {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 5, "failureThreshold": 2}
    await env.create("live", {"containers": [{**SLEEP, "livenessProbe": probe}]})
    await env.step()
    uid = (await env.pod("live")).metadata.uid
    await env.step(advance=5)
    assert len(env.cri.by_name(uid, "main")) == 1
    healthy["ok"] = False
    await env.step(advance=5)  # one failure: below the threshold
    assert len(env.cri.by_name(uid, "main")) == 1
    await env.step(advance=5)
    instances = env.cri.by_name(uid, "main")
    assert len(instances) == 2 and instances[0].exit_code == 143  # SIGTERM'd, then restarted
    pod = await env.pod("live")
    assert cs(pod)["restartCount"] == 1 and "running" in cs(pod)["state"]
    assert cs(pod)["lastState"]["terminated"]["exitCode"] == 143
    healthy["ok"] = True
    await env.step(advance=5)
    assert len(env.cri.by_name(uid, "main")) == 2


async def test_readiness_tcp_and_http_probes(env: Env):
    env.cri.pod_ip = "127.0.0.1"
    tcp_port, http_port = free_port(), free_port()
    tcp = {"tcpSocket": {"port": "svc"}, "periodSeconds": 2}
    http = {"httpGet": {"path": "/ready", "port": http_port}, "periodSeconds": 2}
    ports = [{"name": "svc", "containerPort": tcp_port}]
    await env.create("rd", {"containers": [{**SLEEP, "ports": ports, "readinessProbe": tcp}]})
    await env.create("rh", {"containers": [{**SLEEP, "readinessProbe": http}]})
    await env.step()
    for name in ("rd", "rh"):
        pod = await env.pod(name)
        assert pod.status.phase == "Running" and cs(pod)["ready"] is False
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "False"

    async def on_tcp(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    async def on_http(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        req = await r.readuntil(b"\r\n\r\n")
        code = b"200 OK" if req.startswith(b"GET /ready ") else b"404 Not Found"
        w.write(b"HTTP/1.1 " + code + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await w.drain()
        w.close()

    s1 = await asyncio.start_server(on_tcp, "127.0.0.1", tcp_port)
    s2 = await asyncio.start_server(on_http, "127.0.0.1", http_port)
    try:
        await env.step(advance=2)
        for name in ("rd", "rh"):
            pod = await env.pod(name)
            assert cs(pod)["ready"] is True, name
            assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
    finally:
        s1.close()
        s2.close()
        await s1.wait_closed()
        await s2.wait_closed()
    await env.step(advance=2)
    await env.step(advance=2)
    await env.step(advance=2)  # failureThreshold 3
    assert cs(await env.pod("rd"))["ready"] is False
    assert cs(await env.pod("rh"))["ready"] is False
    assert env.cri.count("StopContainer") == 0  # readiness never restarts


async def test_startup_probe_gates_liveness(env: Env):
    calls: list[str] = []

    def handler(name: str, cmd: list[str]) -> tuple[int, bytes]:
        calls.append(cmd[0])
        return (0 if cmd[0] == "live" else 1), b""

    env.cri.exec_handler = handler
    startup = {"exec": {"command": ["start"]}, "periodSeconds": 1, "failureThreshold": 100}
    live = {"exec": {"command": ["live"]}, "periodSeconds": 1}
    await env.create("st", {"containers": [{**SLEEP, "startupProbe": startup, "livenessProbe": live}]})
    await env.step()
    await env.step(advance=1)
    assert set(calls) == {"start"} and cs(await env.pod("st"))["started"] is False


async def test_env_downward_api_refs_services_and_expansion(env: Env):
    ns = "default"
    await env.client.create(
        ConfigMap.model_validate({"metadata": {"name": "cfg", "namespace": ns}, "data": {"MODE": "fast", "LEVEL": "3"}})
    )
    secret_data = {"TOKEN": base64.b64encode(b"s3cret").decode()}
    await env.client.create(Secret.model_validate({"metadata": {"name": "sec", "namespace": ns}, "data": secret_data}))
    svc = {
        "metadata": {"name": "redis-primary", "namespace": ns},
        "spec": {"clusterIP": "10.96.0.7", "ports": [{"name": "redis", "port": 6379, "protocol": "TCP"}]},
    }
    await env.client.create(Service.model_validate(svc))
    env_vars = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
        {"name": "NOPE", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "x", "optional": True}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "TOKEN"}}},
        {"name": "GREETING", "value": "hi $(POD_NAME) on $(NODE) $(UNDEFINED) $$(POD_NAME)"},
    ]
    c = {
        **SLEEP,
        "command": ["sh", "-c", "echo $(GREETING)"],
        "args": ["$(MODE)"],
        "env": env_vars,
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "sec"}}],
        "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "64Mi"}},
    }
    await env.create("envy", {"containers": [c]}, labels={"app": "demo"})
    await env.step()
    pod = await env.pod("envy")
    [inst] = env.cri.by_name(pod.metadata.uid, "main")
    got = {e.key: e.value for e in inst.config.envs}
    assert got["POD_NAME"] == "envy" and got["POD_NS"] == "default" and got["POD_UID"] == pod.metadata.uid
    assert got["APP"] == "demo" and got["POD_IP"] == pod.status.pod_ip and got["NODE"] == "n1"
    assert got["MEM"] == "64" and got["CPU"] == "250"
    assert got["MODE"] == "fast" and "NOPE" not in got and got["TOKEN"] == "s3cret"
    assert got["CFG_MODE"] == "fast" and got["CFG_LEVEL"] == "3"
    assert got["GREETING"] == "hi envy on n1 $(UNDEFINED) $(POD_NAME)"
    assert got["REDIS_PRIMARY_SERVICE_HOST"] == "10.96.0.7" and got["REDIS_PRIMARY_SERVICE_PORT"] == "6379"
    assert got["REDIS_PRIMARY_SERVICE_PORT_REDIS"] == "6379"
    assert got["REDIS_PRIMARY_PORT"] == "tcp://10.96.0.7:6379"
    assert got["REDIS_PRIMARY_PORT_6379_TCP_ADDR"] == "10.96.0.7"
    assert list(inst.config.command) == ["sh", "-c", "echo hi envy on n1 $(UNDEFINED) $(POD_NAME)"]
    assert list(inst.config.args) == ["fast"]


async def test_missing_configmap_is_a_config_error(env: Env):
    c = {**SLEEP, "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]}
    await env.create("cfgerr", {"containers": [c]})
    await env.step()
    w = cs(await env.pod("cfgerr"))["state"]["waiting"]
    assert w["reason"] == "CreateContainerConfigError" and 'configmap "absent" not found' in w["message"]


async def test_volumes_configmap_secret_emptydir(env: Env):
    ns = "default"
    await env.client.create(
        ConfigMap.model_validate({"metadata": {"name": "files", "namespace": ns}, "data": {"a.txt": "alpha"}})
    )
    vols = [{"name": "cfg", "configMap": {"name": "files"}}, {"name": "scratch", "emptyDir": {}}]
    mounts = [{"name": "cfg", "mountPath": "/cfg", "readOnly": True}, {"name": "scratch", "mountPath": "/scratch"}]
    await env.create("vols", {"volumes": vols, "containers": [{**SLEEP, "volumeMounts": mounts}]})
    await env.step()
    uid = (await env.pod("vols")).metadata.uid
    [inst] = env.cri.by_name(uid, "main")
    by_path = {m.container_path: m for m in inst.config.mounts}
    assert by_path["/cfg"].readonly and Path(by_path["/cfg"].host_path, "a.txt").read_text() == "alpha"
    assert by_path["/scratch"].host_path.endswith(f"{uid}/volumes/emptyDir/scratch")


def test_expand_rules():
    env = {"A": "1", "B": "x"}
    assert expand("$(A)-$(B)-$(C)", env) == "1-x-$(C)"
    assert expand("$$(A) $$ $(A", env) == "$(A) $ $(A"
