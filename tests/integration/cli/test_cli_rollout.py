"""`kray rollout status|restart` for DaemonSets and StatefulSets against the real API server."""

from __future__ import annotations

from cli_it import kray

from kray.client import Client

TEMPLATE = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def test_rollout_status_and_restart_of_a_statefulset_and_a_daemonset(client: Client, ns: str) -> None:
    selector = {"matchLabels": {"app": "x"}}
    client.create_raw({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": ns},
                       "spec": {"replicas": 2, "selector": selector, "template": TEMPLATE}})  # fmt: skip
    client.create_raw({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": ns},
                       "spec": {"selector": selector, "template": TEMPLATE}})  # fmt: skip
    r = kray("rollout", "status", "sts/db", "-n", ns, "--no-watch")
    assert (r.exit_code, r.stdout) == (0, "Waiting for statefulset spec update to be observed...\n")
    r = kray("rollout", "status", "daemonset", "agent", "-n", ns, "--no-watch")
    assert (r.exit_code, r.stdout) == (0, "Waiting for daemon set spec update to be observed...\n")
    r = kray("rollout", "restart", "sts/db", "-n", ns)
    assert (r.exit_code, r.stdout) == (0, "statefulset.apps/db restarted\n")
    sts = client.get_raw(client.resolve("statefulsets.apps"), "db", ns)
    assert "kubectl.kubernetes.io/restartedAt" in sts["spec"]["template"]["metadata"]["annotations"]
    r = kray("rollout", "history", "ds/agent", "-n", ns)
    assert r.exit_code == 1 and "ReplicaSets" in r.stderr
