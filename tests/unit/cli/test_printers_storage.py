"""kubectl's columns for PVs, PVCs and StorageClasses (kray/cli/printers_more.py)."""

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
