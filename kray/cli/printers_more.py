"""kubectl's columns for the kinds added after the first ones: TrainingJob, ResourceQuota,
PodDisruptionBudget, PersistentVolume, PersistentVolumeClaim, StorageClass, StatefulSet,
DaemonSet, CronJob (registered into printers.COLUMNS and printers.NAMES when printers is imported)."""

from __future__ import annotations

from .printers import COLUMNS, NAMES, NONE, Obj, _age, age


def _trainingjob_row(tj: Obj, wide: bool) -> list[str]:
    """STATE is the most recent condition that holds (Kubeflow's `kubectl get pytorchjobs`)."""
    conditions = [c for c in (tj.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    order = ("Created", "Suspended", "Running", "Restarting", "Succeeded", "Failed")
    conditions.sort(
        key=lambda c: (c.get("lastTransitionTime") or "", order.index(c["type"]) if c.get("type") in order else -1)
    )
    state = conditions[-1].get("type", "") if conditions else ""
    row = [state, _age(tj)]
    if wide:
        status = tj.get("status") or {}
        row += [str(status.get("restarts") or 0), status.get("masterAddr") or NONE]
    return row


COLUMNS[("kray.io", "trainingjobs")] = (["STATE", "AGE"], ["RESTARTS", "MASTER"], _trainingjob_row)


def _quota_row(rq: Obj, wide: bool) -> list[str]:
    """kubectl's REQUEST and LIMIT: ``used/hard`` of status.hard's resources, sorted; the
    ``limits.*`` ones in LIMIT."""
    status = rq.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    request: list[str] = []
    limit: list[str] = []
    for name in sorted(hard):
        (limit if name.startswith("limits.") else request).append(f"{name}: {used.get(name, '0')}/{hard[name]}")
    return [_age(rq), ", ".join(request), ", ".join(limit)]


COLUMNS[("", "resourcequotas")] = (["AGE", "REQUEST", "LIMIT"], [], _quota_row)


def _pdb_row(pdb: Obj, wide: bool) -> list[str]:
    """kubectl's PodDisruptionBudget columns: an unset bound prints N/A."""
    spec, status = pdb.get("spec") or {}, pdb.get("status") or {}
    return [
        str(spec["minAvailable"]) if spec.get("minAvailable") is not None else "N/A",
        str(spec["maxUnavailable"]) if spec.get("maxUnavailable") is not None else "N/A",
        str(status.get("disruptionsAllowed", 0)),
        _age(pdb),
    ]


COLUMNS[("policy", "poddisruptionbudgets")] = (
    ["MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"],
    [],
    _pdb_row,
)


_MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


def access_modes(modes: list[str] | None) -> str:
    """kubectl's short form: ``RWO,ROX``."""
    return ",".join(_MODES.get(m, m) for m in modes or [])


def _pv_row(pv: Obj, wide: bool) -> list[str]:
    spec, status = pv.get("spec") or {}, pv.get("status") or {}
    ref = spec.get("claimRef") or {}
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref.get("name") else ""
    row = [
        (spec.get("capacity") or {}).get("storage", ""),
        access_modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy") or "",
        status.get("phase") or "",
        claim,
        spec.get("storageClassName") or "",
        status.get("reason") or "",
        _age(pv),
    ]
    return row + ([spec.get("volumeMode") or "Filesystem"] if wide else [])


def _pvc_row(pvc: Obj, wide: bool) -> list[str]:
    spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
    row = [
        status.get("phase") or "",
        spec.get("volumeName") or "",
        (status.get("capacity") or {}).get("storage", ""),
        access_modes(status.get("accessModes")),
        spec.get("storageClassName") or "",
        _age(pvc),
    ]
    return row + ([spec.get("volumeMode") or "Filesystem"] if wide else [])


def _storageclass_row(sc: Obj, wide: bool) -> list[str]:
    return [
        sc.get("provisioner") or "",
        sc.get("reclaimPolicy") or "Delete",
        sc.get("volumeBindingMode") or "Immediate",
        "true" if sc.get("allowVolumeExpansion") else "false",
        _age(sc),
    ]


def storage_class_name(sc: Obj) -> str:
    """``local-path (default)`` for the default class, as kubectl prints it."""
    meta = sc.get("metadata") or {}
    default = (meta.get("annotations") or {}).get(DEFAULT_CLASS) == "true"
    return f"{meta.get('name', '')} (default)" if default else str(meta.get("name", "") or NONE)


COLUMNS[("", "persistentvolumes")] = (
    ["CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS", "REASON", "AGE"],
    ["VOLUMEMODE"],
    _pv_row,
)
COLUMNS[("", "persistentvolumeclaims")] = (
    ["STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE"],
    ["VOLUMEMODE"],
    _pvc_row,
)
COLUMNS[("storage.k8s.io", "storageclasses")] = (
    ["PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"],
    [],
    _storageclass_row,
)
NAMES[("storage.k8s.io", "storageclasses")] = storage_class_name


def _containers(obj: Obj) -> list[str]:
    """-o wide's CONTAINERS and IMAGES of a workload's pod template."""
    containers = ((((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []
    return [",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)]


def _selector(obj: Obj) -> str:
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or NONE


def _statefulset_row(sts: Obj, wide: bool) -> list[str]:
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    replicas = spec.get("replicas", 1)
    return [f"{status.get('readyReplicas') or 0}/{replicas}", _age(sts), *(_containers(sts) if wide else [])]


def _daemonset_row(ds: Obj, wide: bool) -> list[str]:
    status = ds.get("status") or {}
    node_selector = (((ds.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    row = [
        str(status.get(key) or 0)
        for key in ("desiredNumberScheduled", "currentNumberScheduled", "numberReady", "updatedNumberScheduled")
    ]
    row += [str(status.get("numberAvailable") or 0)]
    row += [",".join(f"{k}={v}" for k, v in sorted(node_selector.items())) or NONE, _age(ds)]
    return row + ([*_containers(ds), _selector(ds)] if wide else [])


COLUMNS[("apps", "statefulsets")] = (["READY", "AGE"], ["CONTAINERS", "IMAGES"], _statefulset_row)
COLUMNS[("apps", "daemonsets")] = (
    ["DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"],
    ["CONTAINERS", "IMAGES", "SELECTOR"],
    _daemonset_row,
)


def _cronjob_row(cj: Obj, wide: bool) -> list[str]:
    spec, status = cj.get("spec") or {}, cj.get("status") or {}
    last = status.get("lastScheduleTime")
    row = [
        spec.get("schedule") or "",
        spec.get("timeZone") or NONE,
        "True" if spec.get("suspend") else "False",
        str(len(status.get("active") or [])),
        age(last) if last else NONE,
        _age(cj),
    ]
    if wide:
        job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        row += [*_containers({"spec": {"template": job_spec.get("template") or {}}}), _selector({"spec": job_spec})]
    return row


COLUMNS[("batch", "cronjobs")] = (
    ["SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"],
    ["CONTAINERS", "IMAGES", "SELECTOR"],
    _cronjob_row,
)
