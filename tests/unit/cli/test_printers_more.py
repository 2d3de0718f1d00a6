"""kubectl's columns for the later kinds: PVs, PVCs, StorageClasses, StatefulSets, DaemonSets, CronJobs."""

from __future__ import annotations

from kray.cli.printers import table_rows
from kray.client.paths import ResourceRef

PV = {
    "metadata": {"name": "pv1", "creationTimestamp": "2020-01-01T00:00:00Z"},
    "spec": {
        "capacity": {"storage": "10Gi"},
        "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": "local-path",
        "claimRef": {"namespace": "team", "name": "ckpt"},
    },
    "status": {"phase": "Bound"},
}
PVC = {
    "metadata": {"name": "ckpt", "namespace": "team", "creationTimestamp": "2020-01-01T00:00:00Z"},
    "spec": {"volumeName": "pv1", "storageClassName": "local-path"},
    "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOncePod"]},
}
SC = {
    "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": "kray.io/local-path",
    "volumeBindingMode": "WaitForFirstConsumer",
}


def ref(group: str, plural: str, kind: str, namespaced: bool) -> ResourceRef:
    return ResourceRef(group=group, version="v1", plural=plural, namespaced=namespaced, kind=kind)


def test_pv_pvc_and_storageclass_rows() -> None:
    header, [row] = table_rows(ref("", "persistentvolumes", "PersistentVolume", False), [PV], wide=True)
    assert header[:8] == [
        "NAME",
        "CAPACITY",
        "ACCESS MODES",
        "RECLAIM POLICY",
        "STATUS",
        "CLAIM",
        "STORAGECLASS",
        "REASON",
    ]
    assert row[:8] == ["pv1", "10Gi", "RWO,ROX", "Retain", "Bound", "team/ckpt", "local-path", ""]
    assert header[-1] == "VOLUMEMODE" and row[-1] == "Filesystem"
    header, [row] = table_rows(ref("", "persistentvolumeclaims", "PersistentVolumeClaim", True), [PVC])
    assert dict(zip(header, row, strict=True)) | {"AGE": ""} == {
        "NAME": "ckpt", "STATUS": "Bound", "VOLUME": "pv1", "CAPACITY": "10Gi", "ACCESS MODES": "RWOP",
        "STORAGECLASS": "local-path", "AGE": "",
    }  # fmt: skip
    header, [row] = table_rows(ref("storage.k8s.io", "storageclasses", "StorageClass", False), [SC])
    assert row[:5] == ["local-path (default)", "kray.io/local-path", "Delete", "WaitForFirstConsumer", "false"]


def test_statefulset_and_daemonset_rows() -> None:
    template = {"spec": {"containers": [{"name": "app", "image": "busybox"}], "nodeSelector": {"gpu": "a100"}}}
    sts = {"metadata": {"name": "web"}, "spec": {"replicas": 3, "template": template}, "status": {"readyReplicas": 2}}
    header, [row] = table_rows(ref("apps", "statefulsets", "StatefulSet", True), [sts], wide=True)
    assert (
        header == ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"] and row[1] == "2/3" and row[3:] == ["app", "busybox"]
    )
    status = {"desiredNumberScheduled": 4, "currentNumberScheduled": 4, "numberReady": 3, "updatedNumberScheduled": 2,
              "numberAvailable": 3}  # fmt: skip
    ds = {"metadata": {"name": "agent"}, "spec": {"template": template, "selector": {"matchLabels": {"a": "b"}}},
          "status": status}  # fmt: skip
    header, [row] = table_rows(ref("apps", "daemonsets", "DaemonSet", True), [ds], wide=True)
    assert row[1:7] == ["4", "4", "3", "2", "3", "gpu=a100"] and row[-1] == "a=b"


def test_cronjob_row_counts_active_jobs() -> None:
    cj = {
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "timeZone": "Europe/Paris", "suspend": True, "jobTemplate": {"spec": {}}},
        "status": {"active": [{"name": "nightly-1"}, {"name": "nightly-2"}]},
    }
    header, [row] = table_rows(ref("batch", "cronjobs", "CronJob", True), [cj])
    assert header[1:6] == ["SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE"]
    assert row[1:6] == ["0 3 * * *", "Europe/Paris", "True", "2", "<none>"]
