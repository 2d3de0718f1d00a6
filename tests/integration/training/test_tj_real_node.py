"""TrainingJobs on one real node (`kray up`: kubelet, crun/runc containers, scheduler, operator).

One `kray up` for the whole module; each test makes its own job and removes it.

- gang: with cpu for only 2 of the job's 3 pods, none of them binds; freeing the cpu starts
  all 3 and the job succeeds;
- failure: a worker's container killed (SIGKILL from the host) mid-run restarts the whole gang,
  the job still succeeds, and status, Events and `kray describe` tell the story;
- backoffLimit 0: a worker exiting 3 fails the job at once, with the reason;
- deletion: deleting the job takes its Pods, Service, PodGroup and ConfigMap with it, and the
  pods' containers stop on the node.

Containers use `image: host` (the node's filesystem): no image to build or import.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from kray.etcd_server import EtcdServer, free_port

pytestmark = [pytest.mark.ray, pytest.mark.etcd, pytest.mark.root, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]
KRAY = str(Path(sys.executable).with_name("kray"))
EXAMPLE = ROOT / "examples/train/trainingjob.yaml"
POD_CIDR = "10.251.30.0/24"
T = TypeVar("T")
Obj = dict[str, Any]

if os.geteuid() != 0:
    pytest.skip("needs root: containers use namespaces and cgroups", allow_module_level=True)
try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed (pip install torch)")


@dataclass
class Node:
    env: dict[str, str]
    name: str
    root: Path  # --node-root: pods, container state
    tmp: Path

    def kray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KRAY, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def ok(self, *args: str) -> str:
        done = self.kray(*args)
        assert done.returncode == 0, f"kray {' '.join(args)}: {done.stderr}"
        return done.stdout

    def get(self, kind: str, name: str) -> Obj:
        got = self.kray("get", kind, name, "-o", "json")
        return json.loads(got.stdout) if got.returncode == 0 else {}

    def items(self, kind: str, selector: str) -> list[Obj]:
        got = self.kray("get", kind, "-l", selector, "-o", "json")
        return list(json.loads(got.stdout).get("items") or []) if got.returncode == 0 and got.stdout.strip() else []

    def apply(self, docs: list[Obj], name: str) -> None:
        path = self.tmp / f"{name}-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self.ok("apply", "-f", str(path))


def wait_for(what: str, check: Callable[[], T], timeout: float = 120.0, every: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def node(ray_cluster: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("tj-node")
    # An etcd of the module's own: the session's holds Nodes of other tests, long gone.
    etcd = EtcdServer(data_dir=tmp / "etcd", die_with_parent=True).start()
    name = f"tj-{uuid.uuid4().hex[:6]}"
    prefix = f"kt{uuid.uuid4().hex[:4]}"  # bridge/netns/veth names beside any other `kray up`
    env = {**os.environ, "KRAY_CONFIG": str(tmp / "config"), "KRAY_STATE_DIR": str(tmp / "state")}
    for var in ("KRAY_SERVER", "KRAY_TOKEN"):
        env.pop(var, None)
    n = Node(env=env, name=name, root=tmp / "nodes", tmp=tmp)
    try:
        up = n.kray(
            "up", "--ray-address", ray_cluster, "--etcd", etcd.endpoint, "--port", str(free_port()),
            "--node-name", name, "--pod-cidr", POD_CIDR, "--node-root", str(n.root), "--net-prefix", prefix,
            timeout=300,
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        # The program's ConfigMap from the example, shared by every job here.
        script = next(d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d["kind"] == "ConfigMap")
        n.apply([script], "script")
        yield n
    finally:
        down = n.kray("down", timeout=300)
        etcd.stop()
    assert down.returncode == 0, down.stderr
    assert prefix not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout


# ---- manifests -----------------------------------------------------------------------------


def train_job(name: str, *, steps: int, step_sleep: float = 0, cpu: str = "100m", backoff_limit: int = 2) -> Obj:
    """The example's TrainingJob, renamed, with its own step count, pace and cpu request."""
    job = copy.deepcopy(next(d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d["kind"] == "TrainingJob"))
    job["metadata"]["name"] = name
    job["spec"]["runPolicy"].update(backoffLimit=backoff_limit, activeDeadlineSeconds=240)
    for rtype in ("Master", "Worker"):
        rs = job["spec"]["replicaSpecs"][rtype]
        rs["template"] = copy.deepcopy(rs["template"])  # the YAML anchor shares one dict
        main = rs["template"]["spec"]["containers"][0]
        main["env"] = [
            {"name": "STEPS", "value": str(steps)},
            {"name": "LOG_EVERY", "value": "5"},
            {"name": "STEP_SLEEP", "value": str(step_sleep)},
        ]
        main["resources"] = {"requests": {"cpu": cpu, "memory": "256Mi"}}
    return job


def shell_job(name: str, *, master: str, worker: str, backoff_limit: int, workers: int = 1) -> Obj:
    def replicas(n: int, command: str) -> Obj:
        container = {"name": "main", "image": "host", "command": ["sh", "-c", command]}
        # A shell as PID 1 ignores SIGTERM: a short grace period keeps deletions quick.
        pod_spec = {"terminationGracePeriodSeconds": 1, "containers": [container]}
        return {"replicas": n, "restartPolicy": "OnFailure", "template": {"spec": pod_spec}}

    return {
        "apiVersion": "kray.io/v1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "runPolicy": {"backoffLimit": backoff_limit},
            "replicaSpecs": {"Master": replicas(1, master), "Worker": replicas(workers, worker)},
        },
    }


# ---- reading the cluster -------------------------------------------------------------------


def job_state(n: Node, name: str) -> str | None:
    """Succeeded / Failed once the job has ended, else None."""
    for c in (n.get("tj", name).get("status") or {}).get("conditions") or []:
        if c["type"] in ("Succeeded", "Failed") and c["status"] == "True":
            return str(c["type"])
    return None


def condition(obj: Obj, type_: str) -> Obj:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def job_pods(n: Node, name: str) -> list[Obj]:
    return n.items("pods", f"kray.io/job-name={name}")


def events_of(n: Node, name: str) -> list[Obj]:
    got = n.kray("get", "events", "-o", "json")
    items = json.loads(got.stdout).get("items") or [] if got.returncode == 0 else []
    return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]


def main_pid(n: Node, pod: Obj) -> int:
    """The host PID of a pod's first container's main process, from the container's state dir
    on the node (the shim writes the runtime's init.pid there)."""
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://")[-1]
    found = list(n.root.glob(f"**/containers/{cid}/init.pid"))
    assert len(found) == 1, f"no state for container {cid} under {n.root}: {found}"
    return int(found[0].read_text().strip())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def delete_job(n: Node, name: str) -> None:
    n.kray("delete", "tj", name, "--ignore-not-found")
    wait_for(f"the pods of {name} gone", lambda: not job_pods(n, name), timeout=120, every=1)


# ---- the tests -----------------------------------------------------------------------------


@needs_torch
def test_gang_starts_only_when_every_replica_fits(node: Node) -> None:
    n, name = node, "tj-gang"
    alloc = n.get("node", n.name)["status"]["allocatable"]["cpu"]  # the host's cores: "2" here
    millis = int(alloc[:-1]) if alloc.endswith("m") else int(float(alloc) * 1000)
    # 3 replicas of a quarter each fit on the node, but beside a placeholder holding the rest
    # of what 2 leave (a half) only 2 do: 2000m -> 500m each, a 1000m placeholder.
    replica_cpu = millis // 4
    placeholder_cpu = millis - 2 * replica_cpu
    placeholder = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "tj-placeholder"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": "host",
                    "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": f"{placeholder_cpu}m"}},
                }
            ],
        },
    }
    n.apply([placeholder], "placeholder")
    try:
        wait_for(
            "the placeholder Running",
            lambda: n.get("pod", "tj-placeholder").get("status", {}).get("phase") == "Running",
        )
        n.apply([train_job(name, steps=20, cpu=f"{replica_cpu}m")], name)

        def all_unschedulable() -> list[Obj] | None:
            pods = job_pods(n, name)
            blocked = [p for p in pods if condition(p, "PodScheduled").get("status") == "False"]
            return pods if len(pods) == 3 and len(blocked) == 3 else None

        wait_for("3 pods, none schedulable", all_unschedulable, timeout=60)

        def job_says_why() -> Obj | None:  # the operator reports it once all 3 are rejected
            running = condition(n.get("tj", name), "Running")
            return running if running.get("reason") == "GangUnschedulable" and "3 of 3" in running["message"] else None

        running = wait_for("the job to say the gang is unschedulable", job_says_why, timeout=60)
        assert running["status"] == "False", running
        assert "3 of 3 pods of the gang cannot be scheduled" in running["message"], running
        time.sleep(3)  # a negative check needs time: the gang must stay unbound, not start late
        pods = job_pods(n, name)
        assert len(pods) == 3
        for pod in pods:
            assert not pod["spec"].get("nodeName"), f"{pod['metadata']['name']} was bound"
            assert pod["status"]["phase"] == "Pending"
            scheduled = condition(pod, "PodScheduled")
            assert scheduled["reason"] == "Unschedulable", scheduled
            assert "cpu" in scheduled["message"] or name in scheduled["message"], scheduled
        gang = n.get("podgroup", name)
        # The PodGroup controller: all 3 members exist, none bound -> Scheduling (scheduler-plugins').
        assert gang["spec"]["minMember"] == 3 and gang["status"]["phase"] == "Scheduling", gang
        assert gang["status"]["scheduled"] == 0 and gang["status"]["running"] == 0, gang
        describe = n.ok("describe", "tj", name)
        assert "GangUnschedulable" in describe, describe
        pending = re.findall(rf"^\s+{name}-\S+\s+Pending\s+<none>\s+0\s+Unschedulable: ", describe, re.M)
        assert len(pending) == 3, describe  # the Pods section: each pod and why it waits

        n.kray("delete", "pod", "tj-placeholder", "--ignore-not-found")
        assert wait_for(f"{name} to finish", lambda: job_state(n, name), timeout=180, every=2) == "Succeeded", n.ok(
            "describe", "tj", name
        )
        pods = job_pods(n, name)
        assert {p["spec"].get("nodeName") for p in pods} == {n.name}
        assert (n.get("tj", name).get("status") or {}).get("restarts", 0) == 0
        wait_for("the PodGroup Finished", lambda: n.get("podgroup", name).get("status", {}).get("phase") == "Finished")
    finally:
        n.kray("delete", "pod", "tj-placeholder", "--ignore-not-found")
        delete_job(n, name)


@needs_torch
def test_killed_worker_restarts_the_gang_and_the_job_succeeds(node: Node) -> None:
    n, name = node, "tj-kill"
    n.apply([train_job(name, steps=30, step_sleep=0.3)], name)
    try:

        def training_worker() -> Obj | None:
            worker = n.get("pod", f"{name}-worker-0")
            logs = n.kray("logs", f"{name}-worker-0").stdout if worker else ""
            return worker if re.search(r"^step \d+ loss", logs, re.M) else None

        worker = wait_for("worker-0 training", training_worker, timeout=150, every=1)
        first_uid = worker["metadata"]["uid"]
        pid = main_pid(n, worker)
        os.kill(pid, signal.SIGKILL)

        assert wait_for(f"{name} to finish", lambda: job_state(n, name), timeout=200, every=2) == "Succeeded", n.ok(
            "describe", "tj", name
        )
        job = n.get("tj", name)
        status = job["status"]
        assert status["restarts"] == 1, status
        reasons = [e["reason"] for e in events_of(n, name)]
        assert "Restarting" in reasons and "TrainingJobSucceeded" in reasons, reasons
        restart_event = next(e for e in events_of(n, name) if e["reason"] == "Restarting")
        # The operator names the first failure it sees: the killed worker (SIGKILL: 137), or,
        # should the kubelet report a peer first, a rank that failed because it lost the worker.
        cause = re.search(r"\(pod (\S+)\) failed with exit code (\d+); restarting the gang", restart_event["message"])
        assert cause is not None and cause.group(1).startswith(f"{name}-"), restart_event
        assert cause.group(1) != f"{name}-worker-0" or cause.group(2) == "137", restart_event
        # The new gang's pods are new pods; every rank of the last attempt finished the run.
        assert n.get("pod", f"{name}-worker-0")["metadata"]["uid"] != first_uid
        for pod in ("master-0", "worker-0", "worker-1"):
            assert "final step 30" in n.ok("logs", f"{name}-{pod}")

        # The Master's success decides; cleanPodPolicy None lets the workers finish and be counted.
        def worker_counts() -> Obj | None:
            counts = n.get("tj", name)["status"]["replicaStatuses"]["Worker"]
            return counts if counts.get("succeeded") == 2 else None

        wait_for("both workers counted as succeeded", worker_counts, timeout=60)
        describe = n.ok("describe", "tj", name)
        assert re.search(r"Restarts:\s+1", describe), describe
        assert re.search(r"Warning\s+Restarting\s+.*restarting the gang \(restart 1 of 2\)", describe), describe
        assert re.search(r"Worker\s+0\s+2\s+0", describe), describe  # replica statuses: 2 succeeded
        assert len(re.findall(rf"^\s+{name}-\S+\s+Completed\s+{n.name}\s+1\s", describe, re.M)) == 3, describe
    finally:
        delete_job(n, name)


def test_backoff_limit_zero_fails_on_the_first_error(node: Node) -> None:
    n, name = node, "tj-fail"
    n.apply([shell_job(name, master="exec sleep 60", worker="exit 3", backoff_limit=0)], name)
    try:
        assert wait_for(f"{name} to finish", lambda: job_state(n, name), timeout=90, every=1) == "Failed"
        job = n.get("tj", name)
        failed = condition(job, "Failed")
        assert failed["reason"] == "BackoffLimitExceeded", failed
        assert f"{name}-worker-0" in failed["message"] and "exit code 3" in failed["message"], failed
        assert job["status"].get("restarts", 0) == 0
        assert job["status"]["replicaStatuses"]["Worker"]["failed"] == 1, job["status"]
        assert "BackoffLimitExceeded" in [e["reason"] for e in events_of(n, name)]
        # cleanPodPolicy Running (the default): the still running Master goes, the failed worker stays.
        wait_for("the master pod gone", lambda: not n.get("pod", f"{name}-master-0"), timeout=60)
        assert n.get("pod", f"{name}-worker-0")["status"]["phase"] == "Failed"
    finally:
        delete_job(n, name)


def test_deleting_the_job_removes_everything_it_made(node: Node) -> None:
    n, name = node, "tj-del"
    n.apply([shell_job(name, master="exec sleep 300", worker="exec sleep 300", backoff_limit=0, workers=2)], name)
    try:

        def running() -> list[Obj] | None:
            pods = job_pods(n, name)
            states = [p.get("status", {}).get("phase") for p in pods]
            return pods if len(pods) == 3 and states == ["Running"] * 3 else None

        pods = wait_for("3 pods Running", running, timeout=90)
        pids = [main_pid(n, p) for p in pods]
        assert all(alive(p) for p in pids)
        for kind, child in (("svc", name), ("podgroup", name), ("configmap", f"{name}-rendezvous")):
            owners = n.get(kind, child)["metadata"]["ownerReferences"]
            assert [o["name"] for o in owners] == [name], (kind, owners)

        n.ok("delete", "tj", name)
        children = (("svc", name), ("podgroup", name), ("configmap", f"{name}-rendezvous"), ("tj", name))

        def all_gone() -> bool:
            return not job_pods(n, name) and not any(n.get(kind, child) for kind, child in children)

        wait_for("the job and everything it owns gone", all_gone, timeout=120, every=1)
        wait_for("the containers stopped", lambda: not any(alive(p) for p in pids), timeout=60)
    finally:
        delete_job(n, name)
