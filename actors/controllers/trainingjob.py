"""The TrainingJob operator: run a distributed PyTorch job as one gang of pods.

Written only against ``kray.api`` (the public extension surface), as any third-party operator
would be: it is the showcase of kray's extension story. What it creates is in
``trainingjob_pods`` (pure builders); this module decides *when*.

Level-based: every pass re-reads the job and its pods from the cache and converges.

- Ensure the headless Service, the PodGroup and the rendezvous ConfigMap exist, then one pod
  per replica. Pods carry the gang attempt (``status.restarts`` when they were made) as a
  label; pods of an older attempt are leftovers of a restart, deleted and never counted.
- Publish the Master's pod IP in the rendezvous ConfigMap once it is known (workers read
  ``MASTER_ADDR`` from there; see ``trainingjob_pods``).
- Running once every replica's pod runs; Succeeded when the Master succeeds (or all do).
  While the scheduler cannot place the gang, Running is False with reason GangUnschedulable
  and its word for a pod. The PodGroup's status (phase, counts) is the PodGroup controller's.
- A failed replica restarts the whole gang: status first (restarts + 1, condition Restarting,
  written with the resourceVersion read, so two passes can never both count one failure), then
  the pods go, then an Event naming the first rank to fail. Past ``backoffLimit``, or for a
  replica whose restartPolicy says not to, the job Fails; ``activeDeadlineSeconds`` fails it
  too. A pod that vanishes from a running gang (evicted, preempted, deleted) counts as failed.
- Finished jobs: pods cleaned per ``cleanPodPolicy`` (the ranks it stops settled in the counts);
  ``ttlSecondsAfterFinished`` deletes the job (the garbage collector takes what it owns).
- ``suspend`` deletes the pods and keeps the rest; resuming starts a fresh gang.
"""

from __future__ import annotations

from datetime import datetime

from kray.api import (
    Clock,
    ControllerBuilder,
    EventRecorder,
    Manager,
    Reader,
    Request,
    Result,
    Writer,
    controller_of,
    owned_by,
    set_condition,
)
from kray.client.errors import NotFound
from kray.crds.core import ConfigMap, Pod, Service
from kray.crds.scheduling import PodGroup
from kray.crds.training import (
    CREATED,
    FAILED,
    MASTER,
    REASON_BACKOFF_LIMIT,
    REASON_CREATED,
    REASON_DEADLINE,
    REASON_GANG_UNSCHEDULABLE,
    REASON_REPLICA_FAILED,
    REASON_RESTARTING,
    REASON_RESUMED,
    REASON_RUNNING,
    REASON_SUCCEEDED,
    REASON_SUSPENDED,
    RESTARTING,
    RUNNING,
    SUCCEEDED,
    SUSPENDED,
    TrainingJob,
    TrainingJobStatus,
)

from .trainingjob_pods import (
    MASTER_ADDR_KEY,
    attempt_of,
    exit_code,
    first_failed,
    phase,
    pod_for,
    pod_group_for,
    pod_name,
    rendezvous_for,
    rendezvous_name,
    replica_counts,
    replica_of,
    service_for,
    settle_counts,
    unschedulable_reason,
    wanted_replicas,
)


def is_retryable(policy: str, code: int | None) -> bool:
    """Whether a replica's failure may restart the gang (Kubeflow's ExitCode rule: 128+ is a
    signal, e.g. OOM-killed or preempted, worth retrying; 1-127 is the program's own error)."""
    if policy == "Never":
        return False
    if policy == "ExitCode":
        return code is None or code >= 128
    return True


class TrainingJobReconciler:
    def __init__(self, reader: Reader, writer: Writer, clock: Clock, recorder: EventRecorder | None = None) -> None:
        self.reader = reader
        self.writer = writer
        self.clock = clock
        self.recorder = recorder
        # The restart count each job was last written with: a cache showing less is stale, and
        # acting on it would create pods for an attempt that is already over.
        self._restarts: dict[str, int] = {}

    async def _event(self, job: TrainingJob, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            await self.recorder.event(job, "Warning" if type_ == "Warning" else "Normal", reason, message)

    async def reconcile(self, request: Request) -> Result:
        try:
            job = await self.reader.get(TrainingJob, request.name, request.namespace)
        except NotFound:
            return Result()
        uid = job.metadata.uid or ""
        if job.metadata.deletion_timestamp is not None:
            self._restarts.pop(uid, None)
            return Result()  # the garbage collector removes what it owns
        status = (job.status or TrainingJobStatus()).model_copy(deep=True)
        if status.restarts < self._restarts.get(uid, 0):
            return Result(requeue_after=0.05)  # our own status write is not in the cache yet
        now = self.clock.now()
        pods = [
            p
            for p in await self.reader.list(Pod, job.namespace)
            if (ref := controller_of(p)) is not None and ref.uid == uid
        ]
        current = [p for p in pods if attempt_of(p) == status.restarts and p.metadata.deletion_timestamp is None]
        leftovers = [p for p in pods if p not in current]

        if job.finished() is not None:
            await self._clean_pods(job, pods)
            if job.spec.run_policy.clean_pod_policy == "None" and current:
                # Ranks still finishing after the verdict (the Master's success decides) run on
                # untouched: count them as they end.
                self._count(job, status, current)
                await self._write_status(job, status)
            return await self._after_finished(job, status, now)

        if set_condition(status, CREATED, "True", REASON_CREATED, f"TrainingJob {job.name} is created.", now=now):
            await self._event(job, "Normal", REASON_CREATED, f"TrainingJob {job.name} is created.")

        if job.spec.run_policy.suspend:
            suspending = set_condition(status, SUSPENDED, "True", REASON_SUSPENDED, "TrainingJob suspended", now=now)
            set_condition(status, RUNNING, "False", REASON_SUSPENDED, "TrainingJob suspended", now=now)
            status.start_time = None  # resuming restarts the clock, and activeDeadlineSeconds with it
            status.master_addr = None
            self._count(job, status, [])
            # Status first (Running False): the pods going away must never look like a lost rank.
            await self._write_status(job, status)
            await self._delete(pods)
            await self._publish_master(job, None)
            if suspending:
                await self._event(job, "Normal", "Suspended", "TrainingJob suspended")
            return Result()
        if status.is_true(SUSPENDED):
            set_condition(status, SUSPENDED, "False", REASON_RESUMED, "TrainingJob resumed", now=now)
            await self._event(job, "Normal", "Resumed", "TrainingJob resumed")
        if status.start_time is None:
            status.start_time = now

        # ---- the deadline ----
        requeue: float | None = None
        deadline = job.spec.run_policy.active_deadline_seconds
        if deadline is not None:
            left = deadline - (now - status.start_time).total_seconds()
            if left <= 0:
                message = f"TrainingJob {job.name} was active longer than {deadline}s"
                return await self._fail(job, status, current, REASON_DEADLINE, message, now)
            requeue = left

        # ---- failures: restart the gang, or give up ----
        failed = [p for p in current if phase(p) == "Failed"]
        if failed:
            pod = first_failed(job, failed)
            rtype, index = replica_of(pod) or (MASTER, 0)
            code = exit_code(job, pod)
            what = f"{rtype} {index} (pod {pod.name}) failed with exit code {code}"
            return await self._on_failure(job, status, current, rtype, code, what, now)

        # ---- success: the Master (or every replica) finished ----
        succeeded = {replica_of(p) for p in current if phase(p) == "Succeeded"}
        wanted = wanted_replicas(job)
        if (MASTER, 0) in succeeded or set(wanted) <= succeeded:
            self._count(job, status, current)
            settle_counts(status, succeeded=True, stopped=job.spec.run_policy.clean_pod_policy != "None")
            message = f"TrainingJob {job.name} successfully completed."
            set_condition(status, SUCCEEDED, "True", REASON_SUCCEEDED, message, now=now)
            set_condition(status, RUNNING, "False", REASON_SUCCEEDED, message, now=now)
            status.completion_time = now
            await self._write_status(job, status)
            await self._event(job, "Normal", REASON_SUCCEEDED, message)
            await self._clean_pods(job, pods)
            return await self._after_finished(job, status, now)

        # A pod of a gang that was running is gone (evicted, preempted, deleted by hand): a new
        # rank could never join the old process group, so that is a failure of the gang too.
        if status.is_true(RUNNING):
            live = {replica_of(p) for p in current}
            lost = [r for r in wanted if r not in live]
            if lost:
                rtype, index = lost[0]
                what = f"{rtype} {index} (pod {pod_name(job, rtype, index)}) of the running gang was deleted"
                return await self._on_failure(job, status, current, rtype, None, what, now)

        # ---- converge the gang's objects ----
        await self._ensure_children(job)
        await self._delete([p for p in leftovers if p.metadata.deletion_timestamp is None])
        present = {p.name for p in pods}  # a leftover still holds its name until it is gone
        for rtype, index in wanted:
            pod = pod_for(job, rtype, index, status.restarts)
            if pod.name not in present:
                await self.writer.create(pod)  # AlreadyExists is a Conflict: a quiet requeue

        master = next((p for p in current if replica_of(p) == (MASTER, 0)), None)
        master_ip = master.status.pod_ip if master is not None and master.status else None
        await self._publish_master(job, master_ip)
        status.master_addr = master_ip

        running = {replica_of(p) for p in current if phase(p) == "Running"}
        if set(wanted) <= running | succeeded and running:
            message = f"TrainingJob {job.name} is running."
            set_condition(status, RUNNING, "True", REASON_RUNNING, message, now=now)
            if status.is_true(RESTARTING):
                set_condition(status, RESTARTING, "False", REASON_RUNNING, message, now=now)
        elif blocked := [(p.name, why) for p in current if (why := unschedulable_reason(p))]:
            # Say why nothing runs yet: gang scheduling binds no pod until every one fits.
            name, why = min(blocked)
            stuck = f"{len(blocked)} of {len(wanted)} pods of the gang cannot be scheduled"
            before = status.condition(RUNNING)
            was_stuck = before is not None and (before.message or "").startswith(stuck)
            set_condition(status, RUNNING, "False", REASON_GANG_UNSCHEDULABLE, f"{stuck}; pod {name}: {why}", now=now)
            # An Event once the whole gang is stuck, not per scheduling retry (a member tried
            # before its siblings existed is rejected as a matter of course: no Event for that).
            if len(blocked) == len(wanted) and not was_stuck:
                await self._event(job, "Warning", REASON_GANG_UNSCHEDULABLE, f"{stuck}; pod {name}: {why}")
        self._count(job, status, current)
        await self._write_status(job, status)
        return Result(requeue_after=requeue) if requeue else Result()

    # ---- failure handling ----

    async def _on_failure(
        self,
        job: TrainingJob,
        status: TrainingJobStatus,
        current: list[Pod],
        rtype: str,
        code: int | None,
        what: str,
        now: datetime,
    ) -> Result:
        """A replica failed (``code`` None: it vanished): restart the gang, or fail the job."""
        rs = job.spec.replica_specs.get(rtype)
        policy = rs.restart_policy if rs is not None else "OnFailure"
        limit = job.spec.run_policy.backoff_limit
        if not is_retryable(policy, code):
            return await self._fail(
                job, status, current, REASON_REPLICA_FAILED, f"{what}; restartPolicy {policy}: not restarted", now
            )
        if status.restarts >= limit:
            message = f"{what}; the gang was restarted {status.restarts} times, backoffLimit is {limit}"
            return await self._fail(job, status, current, REASON_BACKOFF_LIMIT, message, now)
        self._count(job, status, current)
        status.restarts += 1
        message = f"{what}; restarting the gang (restart {status.restarts} of {limit})"
        set_condition(status, RESTARTING, "True", REASON_RESTARTING, message, now=now)
        set_condition(status, RUNNING, "False", REASON_RESTARTING, message, now=now)
        status.master_addr = None
        # Status first: once it says "attempt n + 1" no later pass can count this failure again;
        # if the write conflicts nothing else happened and the next pass decides afresh.
        await self._write_status(job, status)
        self._restarts[job.metadata.uid or ""] = status.restarts
        await self._publish_master(job, None)  # the old Master's IP must not reach the new workers
        await self._delete(current)
        await self._event(job, "Warning", "Restarting", message)
        return Result()

    async def _fail(
        self, job: TrainingJob, status: TrainingJobStatus, current: list[Pod], reason: str, message: str, now: datetime
    ) -> Result:
        self._count(job, status, current)
        settle_counts(status, succeeded=False, stopped=job.spec.run_policy.clean_pod_policy != "None")
        set_condition(status, FAILED, "True", reason, message, now=now)
        set_condition(status, RUNNING, "False", reason, message, now=now)
        if status.condition(RESTARTING) is not None:
            set_condition(status, RESTARTING, "False", reason, message, now=now)
        status.completion_time = now
        await self._write_status(job, status)
        await self._event(job, "Warning", reason, message)
        await self._clean_pods(job, current)
        return await self._after_finished(job, status, now)

    # ---- children ----

    async def _ensure_children(self, job: TrainingJob) -> None:
        """Create the Service, PodGroup and rendezvous ConfigMap if missing. One of that name
        that the job does not own is left alone (and reported): it is someone else's."""
        for desired in (service_for(job), pod_group_for(job), rendezvous_for(job)):
            try:
                existing = await self.reader.get(type(desired), desired.name, job.namespace)
            except NotFound:
                await self.writer.create(desired)
                continue
            if not owned_by(existing, job):
                message = f"{desired.kind} {desired.name} exists and is not owned by this job"
                await self._event(job, "Warning", "NameConflict", message)

    async def _publish_master(self, job: TrainingJob, master_ip: str | None) -> None:
        try:
            cm = await self.reader.get(ConfigMap, rendezvous_name(job), job.namespace)
        except NotFound:
            return  # created by _ensure_children; published on a later pass
        if not owned_by(cm, job) or (cm.data or {}).get(MASTER_ADDR_KEY) == master_ip:
            return
        updated = cm.model_copy(deep=True)
        data = {k: v for k, v in (updated.data or {}).items() if k != MASTER_ADDR_KEY}
        if master_ip:
            data[MASTER_ADDR_KEY] = master_ip
        updated.data = data
        await self.writer.update(updated)  # a stale resourceVersion -> 409 -> requeued

    async def _delete(self, pods: list[Pod]) -> None:
        for pod in pods:
            if pod.metadata.deletion_timestamp is not None:
                continue
            try:
                await self.writer.delete(Pod, pod.name, pod.namespace)
            except NotFound:
                pass

    async def _clean_pods(self, job: TrainingJob, pods: list[Pod]) -> None:
        """cleanPodPolicy: None keeps every pod (for their logs), Running removes the ones still
        running (a finished job must not hold GPUs), All removes every one."""
        policy = job.spec.run_policy.clean_pod_policy
        if policy == "None":
            return
        doomed = pods if policy == "All" else [p for p in pods if phase(p) in ("Pending", "Running", "Unknown")]
        await self._delete(doomed)

    async def _after_finished(self, job: TrainingJob, status: TrainingJobStatus, now: datetime) -> Result:
        self._restarts.pop(job.metadata.uid or "", None)
        ttl = job.spec.run_policy.ttl_seconds_after_finished
        if ttl is None:
            return Result()
        finished_at = status.completion_time or now
        left = ttl - (now - finished_at).total_seconds()
        if left > 0:
            return Result(requeue_after=left)
        try:
            await self.writer.delete(TrainingJob, job.name, job.namespace)
        except NotFound:
            pass
        return Result()

    # ---- status ----

    def _count(self, job: TrainingJob, status: TrainingJobStatus, current: list[Pod]) -> None:
        status.replica_statuses = replica_counts(job, current)

    async def _write_status(self, job: TrainingJob, status: TrainingJobStatus) -> None:
        if job.status == status:
            return
        updated = job.model_copy(deep=True)
        updated.status = status
        await self.writer.update_status(updated)  # stale resourceVersion -> 409 -> requeued


def setup(manager: Manager, **options: object) -> None:
    """Register the TrainingJob operator (options: ``workers``: int, default 1)."""
    workers = options.get("workers", 1)
    reconciler = TrainingJobReconciler(
        manager.reader, manager.writer, manager.clock, manager.event_recorder("trainingjob-operator")
    )
    builder = ControllerBuilder(manager).named("trainingjob").for_(TrainingJob)
    builder = builder.owns(Pod).owns(Service).owns(PodGroup).owns(ConfigMap)
    builder.with_workers(workers if isinstance(workers, int) else 1).complete(reconciler)


build = setup  # deploy_controller("trainingjob-operator", "kray.actors.controllers.trainingjob:build", config)
