"""What the TrainingJob operator creates, as pure functions of the job (no I/O, easy to test).

Per job: a headless Service ``<job>`` (DNS names for the pods, port masterPort), a PodGroup
``<job>`` (the gang: all replicas bind or none do), a ConfigMap ``<job>-rendezvous`` (where the
operator publishes the Master's IP), and one Pod per replica: ``<job>-master-0``,
``<job>-worker-<i>``.

How a worker finds the Master without cluster DNS: the Master's own ``MASTER_ADDR`` is its pod
IP (downward API ``status.podIP``); a worker's comes from the ConfigMap key ``MASTER_ADDR``
(``configMapKeyRef``, not optional). Until the operator has seen the Master's IP and written it,
the kubelet cannot configure the worker container (CreateContainerConfigError) and retries, as
Kubernetes' kubelet does; all pods are still created at once, which gang scheduling needs
(staging the workers after the Master would deadlock the PodGroup). The DNS name
``<job>-master-0.<job>`` is passed as ``KRAY_MASTER_SERVICE`` for programs that prefer it once
pod DNS records are served.
"""

from __future__ import annotations

from datetime import datetime, timezone

from kray.api import set_controller_reference
from kray.crds.core import ConfigMap, Pod, Service, ServiceSpec
from kray.crds.core.container import ContainerPort, EnvVar, EnvVarSource, KeySelector, ObjectFieldSelector
from kray.crds.core.pod import ContainerStateTerminated
from kray.crds.core.service import ServicePort
from kray.crds.meta import ObjectMeta
from kray.crds.scheduling import POD_GROUP_LABEL, PodGroup, PodGroupSpec
from kray.crds.training import (
    ATTEMPT_LABEL,
    JOB_NAME_LABEL,
    MASTER,
    REPLICA_INDEX_LABEL,
    REPLICA_TYPE_LABEL,
    REPLICA_TYPES,
    WORKER,
    ReplicaStatus,
    TrainingJob,
    TrainingJobStatus,
    main_container,
)

MASTER_ADDR_KEY = "MASTER_ADDR"
_NEVER = datetime.max.replace(tzinfo=timezone.utc)  # sorts a failure with no finish time last
MASTER_PORT_NAME = "tj-master"
# torchrun's own environment names (PET_ = "PyTorch Elastic Training"), so `torchrun` with no
# flags picks the topology up, plus the plain torch.distributed env:// names.
TORCH_ENV = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "WORLD_SIZE",
    "RANK",
    "NODE_RANK",
    "LOCAL_RANK",
    "PET_NNODES",
    "PET_NPROC_PER_NODE",
    "PET_NODE_RANK",
    "PET_MASTER_ADDR",
    "PET_MASTER_PORT",
    "KRAY_MASTER_SERVICE",
)


def rendezvous_name(job: TrainingJob) -> str:
    return f"{job.name}-rendezvous"


def pod_name(job: TrainingJob, replica_type: str, index: int) -> str:
    return f"{job.name}-{replica_type.lower()}-{index}"


def node_rank(replica_type: str, index: int) -> int:
    """Master is node 0; worker i is node i + 1."""
    return 0 if replica_type == MASTER else index + 1


def wanted_replicas(job: TrainingJob) -> list[tuple[str, int]]:
    """Every (replica type, index) the gang consists of, Master first."""
    return [(t, i) for t in (MASTER, WORKER) for i in range(job.spec.replicas(t))]


def job_labels(job: TrainingJob) -> dict[str, str]:
    return {JOB_NAME_LABEL: job.name}


def torch_env(job: TrainingJob, replica_type: str, index: int) -> list[EnvVar]:
    spec = job.spec
    rank = str(node_rank(replica_type, index))
    if replica_type == MASTER:
        # The Master rendezvouses at itself; its IP is known when the container starts.
        addr_from = EnvVarSource(field_ref=ObjectFieldSelector(field_path="status.podIP"))
    else:
        addr_from = EnvVarSource(config_map_key_ref=KeySelector(name=rendezvous_name(job), key=MASTER_ADDR_KEY))
    nnodes = str(spec.total_replicas())
    ep = spec.elastic_policy
    if ep is not None and (ep.min_replicas or ep.max_replicas):
        nnodes = f"{ep.min_replicas or spec.total_replicas()}:{ep.max_replicas or spec.total_replicas()}"
    port = str(spec.master_port)
    return [
        EnvVar(name="MASTER_ADDR", value_from=addr_from),
        EnvVar(name="MASTER_PORT", value=port),
        EnvVar(name="WORLD_SIZE", value=str(spec.world_size())),
        EnvVar(name="RANK", value=rank),
        EnvVar(name="NODE_RANK", value=rank),
        EnvVar(name="LOCAL_RANK", value="0"),  # torchrun sets the real one per process when nproc > 1
        EnvVar(name="PET_NNODES", value=nnodes),
        EnvVar(name="PET_NPROC_PER_NODE", value=str(spec.nproc_per_node)),
        EnvVar(name="PET_NODE_RANK", value=rank),
        EnvVar(name="PET_MASTER_ADDR", value="$(MASTER_ADDR)"),  # expanded by the kubelet
        EnvVar(name="PET_MASTER_PORT", value=port),
        EnvVar(name="KRAY_MASTER_SERVICE", value=f"{pod_name(job, MASTER, 0)}.{job.name}"),
    ]


def pod_for(job: TrainingJob, replica_type: str, index: int, attempt: int) -> Pod:
    rs = job.spec.replica_specs[replica_type]
    template = rs.template
    meta = (template.metadata or ObjectMeta()).model_copy(deep=True)
    labels = {
        **(meta.labels or {}),
        **job_labels(job),
        REPLICA_TYPE_LABEL: replica_type.lower(),
        REPLICA_INDEX_LABEL: str(index),
        ATTEMPT_LABEL: str(attempt),
        POD_GROUP_LABEL: job.name,  # joins the gang
    }
    spec = template.spec.model_copy(deep=True)
    # Restarts are gang-wide and done by the operator: a rank restarted alone in place could
    # never rejoin a process group whose other ranks are still in the old one.
    spec.restart_policy = "Never"
    name = pod_name(job, replica_type, index)
    spec.hostname, spec.subdomain = name, job.name  # <job>-master-0.<job> under the headless Service
    env = torch_env(job, replica_type, index)
    ours = {e.name for e in env}
    for c in spec.containers:
        # Ours come first so the user's own values can refer to them with $(MASTER_ADDR).
        c.env = [*(e.model_copy() for e in env), *(e for e in c.env or [] if e.name not in ours)]
    main = next(c for c in spec.containers if c.name == main_container(template).name)
    if replica_type == MASTER and not any(p.container_port == job.spec.master_port for p in main.ports or []):
        main.ports = [*(main.ports or []), ContainerPort(name=MASTER_PORT_NAME, container_port=job.spec.master_port)]
    pod = Pod(
        metadata=ObjectMeta(
            name=name,
            namespace=job.namespace,
            labels=labels,
            annotations=meta.annotations,
            finalizers=meta.finalizers,
        ),
        spec=spec,
    )
    set_controller_reference(job, pod)
    return pod


def service_for(job: TrainingJob) -> Service:
    svc = Service(
        metadata=ObjectMeta(name=job.name, namespace=job.namespace, labels=job_labels(job)),
        spec=ServiceSpec(
            cluster_ip="None",  # headless: names resolve to the pods themselves
            selector=job_labels(job),
            ports=[ServicePort(name=MASTER_PORT_NAME, port=job.spec.master_port)],
            # Ranks rendezvous before any pod is Ready (readiness means "training", not "serving").
            publish_not_ready_addresses=True,
        ),
    )
    set_controller_reference(job, svc)
    return svc


def pod_group_for(job: TrainingJob) -> PodGroup:
    pg = PodGroup(
        metadata=ObjectMeta(name=job.name, namespace=job.namespace, labels=job_labels(job)),
        spec=PodGroupSpec(min_member=max(job.spec.total_replicas(), 1)),
    )
    set_controller_reference(job, pg)
    return pg


def rendezvous_for(job: TrainingJob) -> ConfigMap:
    cm = ConfigMap(
        metadata=ObjectMeta(name=rendezvous_name(job), namespace=job.namespace, labels=job_labels(job)),
        data={},
    )
    set_controller_reference(job, cm)
    return cm


def replica_of(pod: Pod) -> tuple[str, int] | None:
    """(replica type, index) from a pod's labels; None for a pod the operator did not make."""
    labels = pod.metadata.labels or {}
    rtype = {MASTER.lower(): MASTER, WORKER.lower(): WORKER}.get(labels.get(REPLICA_TYPE_LABEL, ""))
    try:
        index = int(labels.get(REPLICA_INDEX_LABEL, ""))
    except ValueError:
        return None
    return (rtype, index) if rtype is not None else None


def unschedulable_reason(pod: Pod) -> str | None:
    """What the scheduler said about a pod it could not place (its PodScheduled=False
    condition), or None for a pod that is bound or not yet tried."""
    if pod.spec.node_name:
        return None
    cond = pod.status.condition("PodScheduled") if pod.status else None
    if cond is None or cond.status != "False":
        return None
    return f"{cond.reason or 'Unschedulable'}: {cond.message or 'no reason given'}"


def attempt_of(pod: Pod) -> int | None:
    try:
        return int((pod.metadata.labels or {}).get(ATTEMPT_LABEL, ""))
    except ValueError:
        return None


def _termination(job: TrainingJob, pod: Pod) -> ContainerStateTerminated | None:
    """How the replica ended: its main container's termination, or a sidecar's that failed."""
    rtype = (replica_of(pod) or (MASTER, 0))[0]
    rs = job.spec.replica_specs.get(rtype)
    main = main_container(rs.template).name if rs is not None else None
    statuses = (pod.status.container_statuses if pod.status else None) or []
    ordered = sorted(statuses, key=lambda cs: cs.name != main)  # the main container first
    for cs in ordered:
        term = cs.state.terminated if cs.state else None
        if term is not None and (term.exit_code != 0 or cs.name == main):
            return term
    return None


def exit_code(job: TrainingJob, pod: Pod) -> int | None:
    """The exit code of the replica's main container (None when it never terminated)."""
    term = _termination(job, pod)
    return term.exit_code if term is not None else None


def first_failed(job: TrainingJob, failed: list[Pod]) -> Pod:
    """The failure that caused the others: when one rank dies the rest of the gang fail right
    after it (their collective calls lose a peer), so the earliest to finish is the cause, and
    within the same second (the kubelet's precision) one killed by a signal (128+: SIGKILL,
    OOM) rather than one that exited with an error of its own."""

    def key(pod: Pod) -> tuple[datetime, bool, str]:
        term = _termination(job, pod)
        at = term.finished_at if term is not None and term.finished_at is not None else _NEVER
        return at, not (term is not None and term.exit_code >= 128), pod.name

    return min(failed, key=key)


def phase(pod: Pod) -> str:
    return (pod.status.phase if pod.status else None) or "Pending"


def replica_counts(job: TrainingJob, pods: list[Pod]) -> dict[str, ReplicaStatus]:
    """Active (pending or running), succeeded and failed pods per replica type."""
    counts = {t: ReplicaStatus() for t in REPLICA_TYPES if t in job.spec.replica_specs}
    for pod in pods:
        replica = replica_of(pod)
        if replica is None or replica[0] not in counts:
            continue
        rs, p = counts[replica[0]], phase(pod)
        if p == "Succeeded":
            rs.succeeded += 1
        elif p == "Failed":
            rs.failed += 1
        else:
            rs.active += 1
    return counts


def settle_counts(status: TrainingJobStatus, *, succeeded: bool, stopped: bool) -> None:
    """The counts at the verdict, when cleanPodPolicy (Running/All) is about to stop the ranks
    still active (``stopped``): they never report again, so they are settled now, as succeeded
    when the job succeeded (Kubeflow's rule: the Master's success is every rank's) and as no
    longer active when it failed. With None they run on, and later passes count them."""
    if not stopped:
        return
    for rs in (status.replica_statuses or {}).values():
        if succeeded:
            rs.succeeded += rs.active
        rs.active = 0
