"""End to end on one real node: `kray up` with a kubelet, real crun containers, the scheduler,
the built-in controllers and the TrainingJob operator, driven through the `kray` CLI.

- a busybox Pod runs to Completed and `kray logs` shows its output;
- the kubelet actor is killed while a Pod runs: Ray restarts it and it re-adopts the running
  container (same container, no restart);
- the TrainingJob example (1 master + 2 workers, gloo on CPU, host image) ends Succeeded with
  every rank at the same final step and a falling loss;
- `kray down` leaves no netns, veth, bridge or container behind.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from kray.etcd_server import free_port
from tests.registryserver import start_registry

pytestmark = [pytest.mark.ray, pytest.mark.etcd, pytest.mark.root, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
KRAY = str(Path(sys.executable).with_name("kray"))

if os.geteuid() != 0:
    pytest.skip("needs root: containers use namespaces and cgroups", allow_module_level=True)
try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False


def kray(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KRAY, *args], env=env, capture_output=True, text=True, timeout=timeout)


def wait_for(what: str, check, timeout: float = 120.0, every: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def pod_json(env: dict[str, str], name: str, ns: str = "default") -> dict:  # type: ignore[type-arg]
    got = kray(env, "get", "pod", name, "-n", ns, "-o", "json")
    return json.loads(got.stdout) if got.returncode == 0 else {}


def test_pods_and_a_training_job_on_a_real_node(ray_cluster: str, private_etcd_endpoint: str, tmp_path: Path) -> None:
    etcd_endpoint = private_etcd_endpoint
    node = f"e2e-{uuid.uuid4().hex[:6]}"
    prefix = f"ke{uuid.uuid4().hex[:4]}"  # its own bridge and netns names, beside any running `kray up`
    env = {**os.environ, "KRAY_CONFIG": str(tmp_path / "config"), "KRAY_STATE_DIR": str(tmp_path / "state")}
    for var in ("KRAY_SERVER", "KRAY_TOKEN"):
        env.pop(var, None)
    up = kray(
        env, "up", "--ray-address", ray_cluster, "--etcd", etcd_endpoint, "--port", str(free_port()),
        "--node-name", node, "--pod-cidr", "10.251.7.0/24", "--node-root", str(tmp_path / "nodes"),
        "--net-prefix", prefix,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        assert f"node {node} Ready" in up.stderr
        image = subprocess.run(
            ["bash", str(ROOT / "scripts/build_test_image.sh"), str(tmp_path / "busybox.tar")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert kray(env, "image", "import", image.stdout.strip(), "--name", "busybox:latest").returncode == 0
        pull_from_a_registry(env, Path(image.stdout.strip()), tmp_path)

        # A Pod that prints and exits.
        manifest = tmp_path / "pods.yaml"
        manifest.write_text(PODS)
        applied = kray(env, "apply", "-f", str(manifest))
        assert applied.returncode == 0, applied.stderr
        wait_for("pod hello Completed", lambda: pod_json(env, "hello").get("status", {}).get("phase") == "Succeeded")
        hello = pod_json(env, "hello")
        assert hello["spec"]["nodeName"] == node
        assert hello["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
        logs = kray(env, "logs", "hello")
        assert logs.returncode == 0 and "hello from a kray pod" in logs.stdout
        assert logs.stdout.splitlines()[1] == "hello"  # `hostname` inside is the pod's name
        volume_outlives_its_pods(env, tmp_path)

        # Kill the kubelet while `sleeper` runs: the restarted kubelet adopts its container.
        def running_container() -> str | None:
            status = pod_json(env, "sleeper").get("status", {})
            states = status.get("containerStatuses") or [{}]
            return states[0].get("containerID") if "running" in states[0].get("state", {}) else None

        before = wait_for("sleeper Running", running_container)
        # `kray exec` runs inside the container (its own hostname and pid namespace) and passes
        # the command's exit code on.
        inside = kray(env, "exec", "sleeper", "--", "sh", "-c", "hostname; cat /proc/1/comm; exit 3")
        assert inside.returncode == 3 and inside.stdout.split() == ["sleeper", "sleep"], inside
        piped = subprocess.run(
            [KRAY, "exec", "-i", "sleeper", "--", "sh", "-c", "tr a-z A-Z; echo end >&2"],
            env=env, input="through kubelet and runtime\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert (piped.returncode, piped.stdout, piped.stderr) == (0, "THROUGH KUBELET AND RUNTIME\n", "end\n")
        # kray cp both ways (tar over exec), a folder with a nested file.
        src = tmp_path / "ckpt"
        (src / "shard").mkdir(parents=True)
        (src / "shard" / "w.bin").write_bytes(bytes(range(256)) * 100)
        assert kray(env, "cp", str(src), "sleeper:/tmp/restored").returncode == 0
        inside = kray(env, "exec", "sleeper", "--", "wc", "-c", "/tmp/restored/shard/w.bin")
        assert inside.stdout.split()[0] == "25600", inside
        back = kray(env, "cp", "sleeper:/tmp/restored", str(tmp_path / "back"))
        assert back.returncode == 0, back.stderr
        assert (tmp_path / "back" / "shard" / "w.bin").read_bytes() == (src / "shard" / "w.bin").read_bytes()
        wait_for("web Running", lambda: pod_json(env, "web").get("status", {}).get("phase") == "Running")
        assert fetch_forwarded(env, "web", ":http", b"GET /f HTTP/1.0\r\n\r\n").endswith(b"forwarded\n")
        # Usage from the containers' cgroups, through the kubelet's summary and metrics.k8s.io.
        top = kray(env, "top", "pod", "--containers")
        assert top.returncode == 0, top.stderr
        rows = {tuple(line.split()[:2]): line.split()[2:] for line in top.stdout.splitlines()[1:]}
        assert re.fullmatch(r"\d+m", rows[("sleeper", "main")][0]) and re.fullmatch(r"\d+Mi", rows[("web", "main")][1])
        nodes = kray(env, "top", "node").stdout.splitlines()
        assert len(nodes) == 2 and nodes[1].split()[0] == node, nodes
        import ray

        from kray.actors.kubelet.actor import actor_name
        from kray.controlplane import RAY_NAMESPACE

        ray.kill(ray.get_actor(actor_name(node), namespace=RAY_NAMESPACE), no_restart=False)
        wait_for(
            "the kubelet back",
            lambda: ray.get(ray.get_actor(actor_name(node), namespace=RAY_NAMESPACE).ready.remote(), timeout=30),
        )
        time.sleep(2)  # a few kubelet syncs
        after = pod_json(env, "sleeper")["status"]["containerStatuses"][0]
        assert after["containerID"] == before and after["restartCount"] == 0 and "running" in after["state"]

        if HAVE_TORCH:
            job = kray(env, "apply", "-f", str(ROOT / "examples/train/trainingjob.yaml"))
            assert job.returncode == 0, job.stderr

            def finished() -> str | None:
                rows = kray(env, "get", "tj", "train-example").stdout.splitlines()[1:]
                state = rows[0].split()[1] if rows else ""
                return state if state in ("Succeeded", "Failed") else None

            state = wait_for("the TrainingJob to finish", finished, timeout=240, every=2)
            assert state == "Succeeded", kray(env, "describe", "tj", "train-example").stdout
            finals = set()
            for pod in ("train-example-master-0", "train-example-worker-0", "train-example-worker-1"):
                out = kray(env, "logs", pod).stdout
                losses = [float(m) for m in re.findall(r"^step \d+ loss ([0-9.]+)", out, re.M)]
                assert len(losses) >= 2 and losses[-1] < losses[0], out
                finals.add(re.search(r"^final step (\d+)", out, re.M).group(1))  # type: ignore[union-attr]
            assert len(finals) == 1
            every = kray(env, "logs", "trainingjob/train-example", "--prefix").stdout
            assert len(re.findall(r"^\[pod/train-example-\S+\] final step", every, re.M)) == 3, every
    finally:
        down = kray(env, "down", timeout=300)
    assert down.returncode == 0, down.stderr
    leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in leftovers
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert prefix not in links


def pull_from_a_registry(env: dict[str, str], image_tar: Path, tmp_path: Path) -> None:
    """`kray image pull` from a real registry onto the node, and what a bad pull says."""
    layout = tmp_path / "layout"
    with tarfile.open(image_tar) as tf:
        tf.extractall(layout, filter="data")
    reg = start_registry(tmp_path / "registry", auth="basic")
    try:
        reg.push_layout(layout, "team/busybox", "1")
        ref = f"{reg.host}/team/busybox:1"  # the same image as busybox:latest: never `image rm` it here (CRI
        # RemoveImage takes every tag of an image, busybox:latest with it)
        pulled = kray(env, "image", "pull", ref, "--creds", "alice:s3cret")
        assert pulled.returncode == 0 and pulled.stdout.startswith(f"pulled {ref} (sha256:"), pulled
        assert ref in kray(env, "image", "ls").stdout
        denied = kray(env, "image", "pull", ref)
        assert denied.returncode != 0 and "user and password" in denied.stderr, denied
        missing = kray(env, "image", "pull", f"{reg.host}/team/nothere:1", "--creds", "alice:s3cret")
        assert missing.returncode != 0 and "404" in missing.stderr and "MANIFEST_UNKNOWN" in missing.stderr, missing
        assert kray(env, "image", "pull", ref, "--creds", "alice").returncode == 2
    finally:
        reg.stop()


def volume_outlives_its_pods(env: dict[str, str], tmp_path: Path) -> None:
    """A claim of a WaitForFirstConsumer local-path class: the scheduler picks the node, the PV
    controller provisions a directory there, the kubelet mounts it; what one pod writes the next
    reads; deleting the claim removes the directory and the PV."""
    assert "local-path" in kray(env, "get", "storageclass").stdout  # `kray up`'s default class
    base = tmp_path / "volumes"
    (tmp_path / "storage.yaml").write_text(STORAGE.format(base=base))
    assert kray(env, "apply", "-f", str(tmp_path / "storage.yaml")).returncode == 0
    wait_for("writer Succeeded", lambda: pod_json(env, "writer").get("status", {}).get("phase") == "Succeeded")
    claim = json.loads(kray(env, "get", "pvc", "ckpt", "-o", "json").stdout)
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["storageClassName"] == "scratch"
    pv = json.loads(kray(env, "get", "pv", claim["spec"]["volumeName"], "-o", "json").stdout)
    folder = Path(pv["spec"]["hostPath"]["path"])
    assert folder.parent == base and (folder / "state").read_text() == "step-42\n"
    assert kray(env, "delete", "pod", "writer").returncode == 0
    reader = STORAGE_READER.format(base=base)
    (tmp_path / "reader.yaml").write_text(reader)
    assert kray(env, "apply", "-f", str(tmp_path / "reader.yaml")).returncode == 0
    wait_for("reader Succeeded", lambda: pod_json(env, "reader").get("status", {}).get("phase") == "Succeeded")
    assert kray(env, "logs", "reader").stdout == "step-42\n"
    assert kray(env, "delete", "pod", "reader").returncode == 0
    assert kray(env, "delete", "pvc", "ckpt").returncode == 0
    gone = ["get", "pv", pv["metadata"]["name"]]
    wait_for("the PV and its folder gone", lambda: not folder.exists() and kray(env, *gone).returncode != 0, 60)
    statefulset_with_claims_and_dns(env, tmp_path)
    assert kray(env, "delete", "storageclass", "scratch").returncode == 0


def statefulset_with_claims_and_dns(env: dict[str, str], tmp_path: Path) -> None:
    """A StatefulSet of 2 behind a headless Service: web-0 then web-1 (OrderedReady), a claim each
    from volumeClaimTemplates, and web-1 resolving web-0.web.default.svc to web-0's pod IP."""
    (tmp_path / "sts.yaml").write_text(STATEFULSET)
    assert kray(env, "apply", "-f", str(tmp_path / "sts.yaml")).returncode == 0
    ready = ["get", "sts", "web", "-o", "jsonpath={.status.readyReplicas}"]
    wait_for("StatefulSet web 2/2 ready", lambda: kray(env, *ready).stdout == "2")
    web0, web1 = pod_json(env, "web-0"), pod_json(env, "web-1")
    assert web0["status"]["startTime"] <= web1["status"]["startTime"]
    claims = json.loads(kray(env, "get", "pvc", "-o", "json").stdout)["items"]
    assert sorted(c["metadata"]["name"] for c in claims) == ["data-web-0", "data-web-1"]
    assert all(c["status"]["phase"] == "Bound" for c in claims)
    ip0 = web0["status"]["podIP"]
    wait_for("web-1 resolving web-0", lambda: f"web-0 is {ip0}" in kray(env, "logs", "web-1").stdout, 60)
    assert kray(env, "delete", "sts", "web").returncode == 0
    assert kray(env, "delete", "svc", "web").returncode == 0
    wait_for("web pods gone", lambda: "web-" not in kray(env, "get", "pods").stdout, 60)
    for claim in ("data-web-0", "data-web-1"):  # retained by default, as Kubernetes: deleted by hand
        assert kray(env, "delete", "pvc", claim).returncode == 0


def fetch_forwarded(env: dict[str, str], pod: str, ports: str, request: bytes) -> bytes:
    """`kray port-forward` to the pod, then one request through it (retried until served)."""
    forward = subprocess.Popen([KRAY, "port-forward", pod, ports], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()
        assert line.startswith("Forwarding from 127.0.0.1:"), line
        local = int(line.split(":")[1].split()[0])
        deadline = time.monotonic() + 30
        while True:
            with socket.create_connection(("127.0.0.1", local), timeout=10) as sock:
                sock.sendall(request)
                answer = b"".join(iter(lambda: sock.recv(65536), b""))
            if answer or time.monotonic() > deadline:
                return answer
            time.sleep(0.3)  # the server in the pod is not listening yet
    finally:
        forward.terminate()
        forward.wait(10)


STORAGE = """
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: scratch}}
provisioner: kray.io/local-path
volumeBindingMode: WaitForFirstConsumer
parameters: {{path: {base}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: ckpt}}
spec:
  storageClassName: scratch
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: writer}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo step-42 > /ckpt/state"]
    volumeMounts: [{{name: ckpt, mountPath: /ckpt}}]
  volumes: [{{name: ckpt, persistentVolumeClaim: {{claimName: ckpt}}}}]
"""
STORAGE_READER = """
apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox:latest
    command: [cat, /ckpt/state]
    volumeMounts: [{{name: ckpt, mountPath: /ckpt, readOnly: true}}]
  volumes: [{{name: ckpt, persistentVolumeClaim: {{claimName: ckpt}}}}]
"""
STATEFULSET = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: None, selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:latest
        command:
        - sh
        - -c
        - |
          hostname > /data/who
          if [ "$(hostname)" = web-1 ]; then
            for i in $(seq 60); do
              ip=$(nslookup web-0.web.default.svc.cluster.local 2>/dev/null | awk '/^Address/ {a=$NF} END {print a}')
              case "$ip" in *.*.*.*) echo "web-0 is $ip"; break;; esac
              sleep 0.5
            done
          fi
          exec sleep 3600
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {storageClassName: scratch, accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
"""
PODS = """
apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox:latest
    command: [sh, -c, "echo hello from a kray pod; hostname"]
---
apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  containers:
  - name: main
    image: busybox:latest
    command: [sleep, "3600"]
---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: main
    image: busybox:latest
    # On the pod's loopback only: what port-forward reaches and the pod IP does not.
    command: [sh, -c, "mkdir -p /www && echo forwarded > /www/f && exec httpd -f -p 127.0.0.1:8080 -h /www"]
    ports: [{name: http, containerPort: 8080}]
"""
