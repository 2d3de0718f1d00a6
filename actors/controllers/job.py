"""The Job controller: run a Job's pods to completion (Kubernetes' batch/v1 semantics, simplified).

Level-based: every pass re-reads the Job and the pods it controls from the cache, decides how
many pods should be running (parallelism, remaining completions, Indexed-mode indexes), creates
or deletes the difference, and writes status with the resourceVersion it read. Terminal
conditions (Complete / Failed with BackoffLimitExceeded, DeadlineExceeded or PodFailurePolicy)
are sticky: a finished Job only has its leftover pods removed and, with ttlSecondsAfterFinished,
is deleted once the TTL runs out.

Counts come from the pods present (Succeeded/Failed phases, plus container restarts for
restartPolicy OnFailure) and never go down, so deleting a finished pod does not un-count it.
Creations and deletions not yet visible in the cache are remembered ("expectations", as in
Kubernetes) so a stale cache never makes the controller create the same pods twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from kray.actors.framework import (
    Clock,
    ControllerBuilder,
    EventRecorder,
    Manager,
    Reader,
    Request,
    Result,
    Writer,
    controller_of,
    set_condition,
    set_controller_reference,
)
from kray.client.errors import NotFound
from kray.crds.batch import (
    COMPLETE,
    COMPLETION_INDEX,
    COMPLETION_INDEX_ENV,
    CONTROLLER_UID_LABEL,
    FAILED,
    JOB_NAME_LABEL,
    REASON_BACKOFF_LIMIT,
    REASON_DEADLINE,
    REASON_POD_FAILURE_POLICY,
    SUSPENDED,
    Job,
    JobStatus,
    PodFailurePolicyRule,
    format_indexes,
)
from kray.crds.core import Pod
from kray.crds.core.container import EnvVar
from kray.crds.meta import ObjectMeta

log = logging.getLogger(__name__)

# How long a creation/deletion may stay invisible in the cache before it is no longer trusted.
EXPECTATIONS_TIMEOUT = 300.0
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def is_terminal(pod: Pod) -> bool:
    return pod.status is not None and pod.status.phase in ("Succeeded", "Failed")


def pod_index(pod: Pod) -> int | None:
    raw = (pod.metadata.annotations or {}).get(COMPLETION_INDEX) or (pod.metadata.labels or {}).get(COMPLETION_INDEX)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def match_failure_rule(rules: list[PodFailurePolicyRule], pod: Pod) -> PodFailurePolicyRule | None:
    """The first rule matching a failed pod (Kubernetes' podFailurePolicy evaluation order)."""
    status = pod.status
    for rule in rules:
        if rule.on_exit_codes is not None:
            req = rule.on_exit_codes
            for cs in (status.container_statuses if status else None) or []:
                term = cs.state.terminated if cs.state else None
                if term is None or term.exit_code == 0:  # only failures count, as in Kubernetes
                    continue
                if req.container_name and cs.name != req.container_name:
                    continue
                if (term.exit_code in req.values) == (req.operator == "In"):
                    return rule
        for pattern in rule.on_pod_conditions or []:
            cond = status.condition(pattern.type) if status else None
            if cond is not None and cond.status == pattern.status:
                return rule
    return None


@dataclass
class _Expectations:
    """Pods this controller created or deleted that the cache has not shown yet."""

    creates: dict[str, tuple[int | None, float]] = field(default_factory=dict)  # name -> (index, when)
    deletes: dict[str, float] = field(default_factory=dict)

    def prune(self, pods: dict[str, Pod], now: float) -> None:
        self.creates = {n: v for n, v in self.creates.items() if n not in pods and now - v[1] < EXPECTATIONS_TIMEOUT}
        self.deletes = {
            n: t
            for n, t in self.deletes.items()
            if n in pods and pods[n].metadata.deletion_timestamp is None and now - t < EXPECTATIONS_TIMEOUT
        }


class JobReconciler:
    def __init__(self, reader: Reader, writer: Writer, clock: Clock, recorder: EventRecorder | None = None) -> None:
        self.reader = reader
        self.writer = writer
        self.clock = clock
        self.recorder = recorder
        self._expect: dict[str, _Expectations] = {}  # by Job uid

    async def _event(self, obj: Job | Pod, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            await self.recorder.event(obj, "Warning" if type_ == "Warning" else "Normal", reason, message)

    async def reconcile(self, request: Request) -> Result:
        try:
            job = await self.reader.get(Job, request.name, request.namespace)
        except NotFound:
            return Result()
        uid = job.metadata.uid or ""
        if job.metadata.deletion_timestamp is not None:
            self._expect.pop(uid, None)
            return Result()  # the garbage collector removes its pods
        now = self.clock.now()
        all_pods = [
            p
            for p in await self.reader.list(Pod, job.namespace)
            if (ref := controller_of(p)) is not None and ref.uid == uid
        ]
        expect = self._expect.setdefault(uid, _Expectations())
        expect.prune({p.name: p for p in all_pods}, self.clock.monotonic())
        # Pods we already deleted (or that are going away) are neither active nor to be deleted again.
        active = [
            p
            for p in all_pods
            if not is_terminal(p) and p.metadata.deletion_timestamp is None and p.name not in expect.deletes
        ]
        succeeded = [p for p in all_pods if p.status is not None and p.status.phase == "Succeeded"]
        failed = [p for p in all_pods if p.status is not None and p.status.phase == "Failed"]

        status = (job.status or JobStatus()).model_copy(deep=True)
        finished = job.finished()
        if finished is not None:
            if finished == FAILED:
                await self._delete_pods(job, active, expect)
            return await self._after_finished(job, status, now)

        # ---- failures: podFailurePolicy, then the back-off limit ----
        rules = job.spec.pod_failure_policy.rules if job.spec.pod_failure_policy else []
        fail_reason: tuple[str, str] | None = None
        counted_failed = 0
        for pod in failed:
            rule = match_failure_rule(rules, pod)
            if rule is None or rule.action in ("Count", "FailIndex"):
                counted_failed += 1
            elif rule.action == "FailJob" and fail_reason is None:
                fail_reason = (
                    REASON_POD_FAILURE_POLICY,
                    f"Pod {pod.namespace}/{pod.name} failed with a rule of the Job's podFailurePolicy (FailJob)",
                )
        if job.spec.template.spec.restart_policy == "OnFailure":
            # Containers restart in place: each restart is a failure against backoffLimit.
            for p in active:
                counted_failed += sum(
                    cs.restart_count for cs in (p.status.container_statuses if p.status else None) or []
                )
        status.failed = max(status.failed or 0, counted_failed)
        if fail_reason is None and status.failed > job.spec.backoff_limit:
            fail_reason = (REASON_BACKOFF_LIMIT, "Job has reached the specified backoff limit")

        # ---- suspension and the active deadline ----
        if job.spec.suspend:
            await self._delete_pods(job, active, expect)
            changed = set_condition(status, SUSPENDED, "True", "JobSuspended", "Job suspended", now=now)
            status.start_time = None  # resuming restarts the clock (and activeDeadlineSeconds)
            status.active, status.ready = 0, 0
            if changed:
                await self._event(job, "Normal", "Suspended", "Job suspended")
            await self._write_status(job, status)
            return Result()
        suspended = status.condition(SUSPENDED)
        if suspended is not None and suspended.status == "True":
            set_condition(status, SUSPENDED, "False", "JobResumed", "Job resumed", now=now)
            await self._event(job, "Normal", "Resumed", "Job resumed")
        if status.start_time is None:
            status.start_time = now
        requeue: float | None = None
        deadline = job.spec.active_deadline_seconds
        if fail_reason is None and deadline is not None:
            left = deadline - (now - status.start_time).total_seconds()
            if left <= 0:
                fail_reason = (REASON_DEADLINE, "Job was active longer than specified deadline")
            else:
                requeue = left

        if fail_reason is not None:
            await self._delete_pods(job, active, expect)
            reason, message = fail_reason
            set_condition(status, FAILED, "True", reason, message, now=now)
            self._count(status, job, succeeded, [], failed_total=status.failed)
            await self._event(job, "Warning", reason, message)
            await self._write_status(job, status)
            return await self._after_finished(job, status, now)

        # ---- progress: create or delete pods towards the wanted count ----
        if job.spec.completion_mode == "Indexed":
            done = await self._sync_indexed(job, active, succeeded, expect)
        else:
            done = await self._sync_non_indexed(job, active, succeeded, expect)
        self._count(status, job, succeeded, active, failed_total=status.failed, pending=len(expect.creates))
        if done:
            set_condition(
                status, COMPLETE, "True", "CompletionsReached", "Reached expected number of succeeded pods", now=now
            )
            status.completion_time = now
            status.active, status.ready = 0, 0
            await self._event(job, "Normal", "Completed", "Job completed")
            await self._write_status(job, status)
            return await self._after_finished(job, status, now)
        await self._write_status(job, status)
        return Result(requeue_after=requeue) if requeue else Result()

    # ---- the two completion modes ----

    async def _sync_non_indexed(self, job: Job, active: list[Pod], succeeded: list[Pod], expect: _Expectations) -> bool:
        parallelism = job.spec.parallelism if job.spec.parallelism is not None else 1
        completions = job.spec.completions
        n_active = len(active) + len(expect.creates)
        if completions is None:
            # Work-queue mode: once any pod succeeded no new pods start; done when none is running.
            if succeeded:
                return n_active == 0
            wanted = parallelism
        else:
            if len(succeeded) >= completions:
                await self._delete_pods(job, active, expect)
                return True
            wanted = min(parallelism, completions - len(succeeded))
        if n_active < wanted:
            for _ in range(wanted - n_active):
                await self._create_pod(job, None, expect)
        elif len(active) > wanted:
            # The youngest go first: they have done the least work.
            oldest_first = sorted(active, key=lambda p: (p.metadata.creation_timestamp or _EPOCH, p.name))
            await self._delete_pods(job, oldest_first[wanted:], expect)
        return False

    async def _sync_indexed(self, job: Job, active: list[Pod], succeeded: list[Pod], expect: _Expectations) -> bool:
        completions = job.spec.completions or 0
        parallelism = job.spec.parallelism if job.spec.parallelism is not None else 1
        done = {i for p in succeeded if (i := pod_index(p)) is not None and 0 <= i < completions}
        if len(done) >= completions:
            await self._delete_pods(job, active, expect)
            return True
        by_index: dict[int, list[Pod]] = {}
        stray: list[Pod] = []
        for p in active:
            i = pod_index(p)
            if i is None or not 0 <= i < completions or i in done:
                stray.append(p)  # no index, out of range, or its index already succeeded
            else:
                by_index.setdefault(i, []).append(p)
        for pods in by_index.values():
            stray.extend(sorted(pods, key=lambda p: p.name)[1:])  # one pod per index
        await self._delete_pods(job, stray, expect)
        running = set(by_index) | {i for i, _ in expect.creates.values() if i is not None}
        slots = parallelism - len(running)
        for i in range(completions):
            if slots <= 0:
                break
            if i not in done and i not in running:
                await self._create_pod(job, i, expect)
                slots -= 1
        return False

    # ---- writes ----

    def _pod_for(self, job: Job, index: int | None) -> Pod:
        template = job.spec.template
        meta = (template.metadata or ObjectMeta()).model_copy(deep=True)
        labels = {**(meta.labels or {}), JOB_NAME_LABEL: job.name, "job-name": job.name}
        labels[CONTROLLER_UID_LABEL] = labels["controller-uid"] = job.metadata.uid or ""
        annotations = dict(meta.annotations or {})
        spec = template.spec.model_copy(deep=True)
        prefix = f"{job.name}-"
        if index is not None:
            labels[COMPLETION_INDEX] = annotations[COMPLETION_INDEX] = str(index)
            spec.hostname = f"{job.name}-{index}"
            prefix = f"{job.name}-{index}-"
            for c in spec.all_containers():
                c.env = [e for e in c.env or [] if e.name != COMPLETION_INDEX_ENV]
                c.env.append(EnvVar(name=COMPLETION_INDEX_ENV, value=str(index)))
        pod = Pod(
            metadata=ObjectMeta(
                generate_name=prefix,
                namespace=job.namespace,
                labels=labels,
                annotations=annotations or None,
                finalizers=meta.finalizers,
            ),
            spec=spec,
        )
        set_controller_reference(job, pod)
        return pod

    async def _create_pod(self, job: Job, index: int | None, expect: _Expectations) -> None:
        created = await self.writer.create(self._pod_for(job, index))
        expect.creates[created.name] = (index, self.clock.monotonic())
        await self._event(job, "Normal", "SuccessfulCreate", f"Created pod: {created.name}")

    async def _delete_pods(self, job: Job, pods: list[Pod], expect: _Expectations) -> None:
        for pod in pods:
            try:
                await self.writer.delete(Pod, pod.name, pod.namespace)
            except NotFound:
                pass
            expect.deletes[pod.name] = self.clock.monotonic()
            await self._event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {pod.name}")

    def _count(
        self,
        status: JobStatus,
        job: Job,
        succeeded: list[Pod],
        active: list[Pod],
        *,
        failed_total: int | None,
        pending: int = 0,
    ) -> None:
        status.active = len(active) + pending
        status.ready = sum(
            1 for p in active if p.status and (c := p.status.condition("Ready")) is not None and c.status == "True"
        )
        if job.spec.completion_mode == "Indexed":
            done = {i for p in succeeded if (i := pod_index(p)) is not None}
            status.completed_indexes = format_indexes(done)
            status.succeeded = len(done)
        else:
            status.succeeded = max(status.succeeded or 0, len(succeeded))
        status.failed = failed_total

    async def _write_status(self, job: Job, status: JobStatus) -> None:
        if job.status == status:
            return
        updated = job.model_copy(deep=True)
        updated.status = status
        await self.writer.update_status(updated)  # stale resourceVersion -> 409 -> requeued

    async def _after_finished(self, job: Job, status: JobStatus, now: datetime) -> Result:
        """ttlSecondsAfterFinished: delete the Job (and, through the GC, its pods) when it runs out."""
        self._expect.pop(job.metadata.uid or "", None)
        ttl = job.spec.ttl_seconds_after_finished
        if ttl is None:
            return Result()
        cond = status.condition(COMPLETE) or status.condition(FAILED)
        finished_at = (cond.last_transition_time if cond else None) or status.completion_time or now
        left = ttl - (now - finished_at).total_seconds()
        if left > 0:
            return Result(requeue_after=left)
        try:
            await self.writer.delete(Job, job.name, job.namespace)
        except NotFound:
            pass
        return Result()


def setup(manager: Manager, **options: object) -> None:
    """Register the Job controller (options: ``workers``: int, default 1)."""
    workers = options.get("workers", 1)
    reconciler = JobReconciler(manager.reader, manager.writer, manager.clock, manager.event_recorder("job-controller"))
    builder = ControllerBuilder(manager).named("job").for_(Job).owns(Pod)
    builder.with_workers(workers if isinstance(workers, int) else 1).complete(reconciler)
