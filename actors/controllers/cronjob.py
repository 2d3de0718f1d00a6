"""The CronJob controller: create Jobs on a cron schedule (kube-controller-manager's cronjob v2).

Every pass re-reads the CronJob and the Jobs it controls from the cache and:

1. brings ``status.active`` in line with the Jobs (a finished one leaves it, with SawCompletedJob;
   one gone missing leaves it, with MissingJob), and ``lastSuccessfulTime`` with the latest
   completion; finished Jobs beyond ``successfulJobsHistoryLimit``/``failedJobsHistoryLimit``
   are deleted oldest first (Background propagation: the garbage collector removes their pods);
2. unless suspended, finds the most recent scheduled time not yet acted on, between
   ``lastScheduleTime`` (or the creation time) and now, and starts a Job for it: skipped when
   past ``startingDeadlineSeconds`` (MissSchedule) or, with ``Forbid``, while a Job is active;
   with ``Replace`` the active Jobs are deleted first;
3. asks to be woken when the next scheduled time comes (``Result(requeue_after=...)``), from
   the injected clock.

The Job for a scheduled time is named ``<cronjob>-<minutes since the epoch>``: a controller that
restarts between creating it and writing status finds it exists (409) and does not start a second.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, cast

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
    set_controller_reference,
)
from kray.client.errors import AlreadyExists, NotFound
from kray.crds.batch import COMPLETE, CRONJOB_SCHEDULED_TIMESTAMP, FAILED, CronJob, CronJobStatus, Job
from kray.crds.core import ObjectReference
from kray.crds.cron import CronError, Schedule, load_zone
from kray.crds.meta import ObjectMeta

log = logging.getLogger(__name__)

# Added to every wake-up so the pass lands just after the scheduled time (Kubernetes' 100ms).
NEXT_SCHEDULE_DELTA = 0.1
# More missed start times than this since the last one: the TooManyMissedTimes warning.
MANY_MISSED = 100
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class JobWriter(Writer, Protocol):
    """The delete option the controller uses (``AsyncClient`` has it)."""

    async def delete(  # type: ignore[override]
        self, kind: Any, name: str, namespace: str | None = None, *, propagation_policy: str | None = None
    ) -> Any: ...


class _StaleCache(Exception):
    """The cached CronJob is older than the API server's: try again with the newer one."""


class InvalidScheduleError(ValueError):
    """A schedule that parses but never fires twice (``0 0 30 2 *``)."""


def job_name(cronjob: str, scheduled: datetime) -> str:
    """Kubernetes' deterministic name: the scheduled time in minutes since the epoch."""
    return f"{cronjob}-{int(scheduled.timestamp()) // 60}"


def most_recent_schedule_time(
    cj: CronJob, now: datetime, schedule: Schedule, *, include_deadline: bool
) -> tuple[datetime, datetime | None, int]:
    """Kubernetes' ``mostRecentScheduleTime``: (the earliest time considered, the latest scheduled
    time in (earliest, now] or None, an estimate of how many were missed). Raises
    ``InvalidScheduleError`` for a schedule that does not fire at least twice."""
    status = cj.status or CronJobStatus()
    earliest = status.last_schedule_time or cj.metadata.creation_timestamp or now
    deadline = cj.spec.starting_deadline_seconds
    if include_deadline and deadline is not None:
        earliest = max(earliest, now - timedelta(seconds=deadline))  # nothing older is started
    t1 = schedule.next(earliest)
    t2 = schedule.next(t1) if t1 is not None else None
    if t1 is None or t2 is None:
        raise InvalidScheduleError("time difference between two schedules is less than 1 second")
    if now < t1:
        return earliest, None, 0
    if now < t2:
        return earliest, t1, 1
    between = round((t2 - t1).total_seconds())
    if between < 1:
        raise InvalidScheduleError("time difference between two schedules is less than 1 second")
    missed = int((now - t1).total_seconds()) // between + 1
    # Jump close to now (an estimate from the first interval), then walk the schedule to it.
    start = t1 + timedelta(seconds=(missed - 2) * between)
    most_recent: datetime | None = None
    for begin in (start, earliest):
        t = schedule.next(begin)
        while t is not None and t <= now:
            most_recent = t
            t = schedule.next(t)
        if most_recent is not None:
            break
    return earliest, most_recent, missed


def is_finished(job: Job) -> str | None:
    return job.finished()


def _start_key(job: Job) -> tuple[int, datetime, str]:
    """Kubernetes' byJobStartTime: by status.startTime (unstarted last), then name."""
    start = job.status.start_time if job.status else None
    return (0 if start is not None else 1, start or _EPOCH, job.name)


def _ref(job: Job) -> ObjectReference:
    return ObjectReference(
        kind="Job",
        api_version=job.api_version_str(),
        namespace=job.namespace,
        name=job.name,
        uid=job.metadata.uid,
        resource_version=job.metadata.resource_version,
    )


class CronJobReconciler:
    def __init__(self, reader: Reader, writer: JobWriter, clock: Clock, recorder: EventRecorder | None = None) -> None:
        self.reader = reader
        self.writer = writer
        self.clock = clock
        self.recorder = recorder

    async def _event(self, cj: CronJob, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            await self.recorder.event(cj, "Warning" if type_ == "Warning" else "Normal", reason, message)

    async def reconcile(self, request: Request) -> Result:
        try:
            cj = await self.reader.get(CronJob, request.name, request.namespace)
        except NotFound:
            return Result()
        uid = cj.metadata.uid or ""
        jobs = [
            j
            for j in await self.reader.list(Job, cj.namespace)
            if (ref := controller_of(j)) is not None and ref.uid == uid
        ]
        updated = cj.model_copy(deep=True)
        updated.status = (cj.status or CronJobStatus()).model_copy(deep=True)
        await self._cleanup_finished(updated, jobs)
        try:
            requeue = await self._sync(updated, jobs)
        except _StaleCache:
            return Result(requeue=True)  # the informer's update event also wakes us
        if updated.status != (cj.status or CronJobStatus()):
            await self.writer.update_status(updated)  # stale resourceVersion -> 409 -> requeued
        return Result(requeue_after=requeue) if requeue is not None and requeue > 0 else Result()

    # ---- history ----

    async def _cleanup_finished(self, cj: CronJob, jobs: list[Job]) -> None:
        succeeded = [j for j in jobs if is_finished(j) == COMPLETE and j.metadata.deletion_timestamp is None]
        failed = [j for j in jobs if is_finished(j) == FAILED and j.metadata.deletion_timestamp is None]
        for group, limit in (
            (succeeded, cj.spec.successful_jobs_history_limit),
            (failed, cj.spec.failed_jobs_history_limit),
        ):
            excess = len(group) - limit
            for job in sorted(group, key=_start_key)[: max(0, excess)]:
                await self._delete_job(cj, job)

    async def _delete_job(self, cj: CronJob, job: Job) -> bool:
        try:
            await self.writer.delete(Job, job.name, job.namespace, propagation_policy="Background")
        except NotFound:
            pass
        except Exception as exc:
            await self._event(cj, "Warning", "FailedDelete", f"Deleted job: {exc}")
            log.warning("cronjob %s/%s: could not delete job %s: %s", cj.namespace, cj.name, job.name, exc)
            return False
        self._drop_active(cj, job.metadata.uid)
        await self._event(cj, "Normal", "SuccessfulDelete", f"Deleted job {job.name}")
        return True

    @staticmethod
    def _drop_active(cj: CronJob, uid: str | None) -> None:
        assert cj.status is not None
        cj.status.active = [r for r in cj.status.active or [] if r.uid != uid] or None

    # ---- the schedule ----

    async def _sync(self, cj: CronJob, jobs: list[Job]) -> float | None:
        """syncCronJob: status from the Jobs, then maybe a new Job; returns the wake-up delay."""
        assert cj.status is not None
        status = cj.status
        active_uids = {r.uid for r in status.active or []}
        for job in jobs:
            finished = is_finished(job)
            if job.metadata.uid in active_uids and finished is not None:
                self._drop_active(cj, job.metadata.uid)
                message = f"Saw completed job: {job.name}, condition: {finished}"
                await self._event(cj, "Normal", "SawCompletedJob", message)
            elif job.metadata.uid not in active_uids and finished is None and job.metadata.deletion_timestamp is None:
                live = cast(CronJob, await self.writer.get(CronJob, cj.name, cj.namespace))
                if any(r.uid == job.metadata.uid for r in (live.status.active if live.status else None) or []):
                    raise _StaleCache()  # our own status write is not in the cache yet
                # Created before a restart lost the status write, or made by hand with us as owner.
                message = f"Saw a job that the controller did not create or forgot: {job.name}"
                await self._event(cj, "Warning", "UnexpectedJob", message)
            if finished == COMPLETE and job.status is not None and job.status.completion_time is not None:
                done = job.status.completion_time
                if status.last_successful_time is None or done > status.last_successful_time:
                    status.last_successful_time = done
        present = {j.metadata.uid for j in jobs}
        for ref in list(status.active or []):
            if ref.uid in present:
                continue
            try:  # a live read: the cache may simply not have seen the Job yet
                await self.writer.get(Job, ref.name or "", ref.namespace or cj.namespace)
            except NotFound:
                await self._event(cj, "Normal", "MissingJob", f"Active job went missing: {ref.name}")
                self._drop_active(cj, ref.uid)

        if cj.metadata.deletion_timestamp is not None:
            return None
        try:
            schedule = cj.spec.parsed_schedule()
        except CronError as exc:
            if cj.spec.time_zone is not None:
                try:
                    load_zone(cj.spec.time_zone)
                except CronError as zone_exc:
                    message = f"invalid timeZone: {cj.spec.time_zone!r}: {zone_exc}"
                    await self._event(cj, "Warning", "UnknownTimeZone", message)
                    return None
            message = f"unparseable schedule: {cj.spec.schedule!r} : {exc}"
            await self._event(cj, "Warning", "UnparseableSchedule", message)
            return None
        if cj.spec.suspend:
            return None

        now = self.clock.now()
        try:
            _, scheduled, missed = most_recent_schedule_time(cj, now, schedule, include_deadline=True)
        except InvalidScheduleError as exc:
            await self._event(cj, "Warning", "InvalidSchedule", f"invalid schedule: {cj.spec.schedule} : {exc}")
            return None
        deadline = cj.spec.starting_deadline_seconds
        if scheduled is None and deadline is not None:
            # Nothing within the deadline; say so if a start time was missed beyond it.
            _, late, _ = most_recent_schedule_time(cj, now, schedule, include_deadline=False)
            if late is not None:
                await self._miss(cj, late)
        if scheduled is None:
            return self._next_delay(cj, now, schedule)
        if missed > MANY_MISSED:
            await self._event(
                cj,
                "Warning",
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
            )
        if deadline is not None and scheduled + timedelta(seconds=deadline) < now:
            await self._miss(cj, scheduled)
            return self._next_delay(cj, now, schedule)
        name = job_name(cj.name, scheduled)
        if any(r.name == name for r in status.active or []) or status.last_schedule_time == scheduled:
            return self._next_delay(cj, now, schedule)  # already acted on
        if cj.spec.concurrency_policy == "Forbid" and status.active:
            await self._event(
                cj,
                "Normal",
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            )
            return self._next_delay(cj, now, schedule)
        if cj.spec.concurrency_policy == "Replace":
            by_uid = {j.metadata.uid: j for j in jobs}
            for ref in list(status.active or []):
                running = by_uid.get(ref.uid)
                if running is None:
                    try:
                        running = cast(Job, await self.writer.get(Job, ref.name or "", ref.namespace or cj.namespace))
                    except NotFound:
                        self._drop_active(cj, ref.uid)
                        continue
                if not await self._delete_job(cj, running):
                    raise RuntimeError(f"could not replace job {running.namespace}/{running.name}")

        created = await self._create_job(cj, scheduled, name)
        if created is None:
            return None  # someone else's Job has the name: leave it
        if not any(r.uid == created.metadata.uid for r in status.active or []):
            status.active = [*(status.active or []), _ref(created)]
        status.last_schedule_time = scheduled
        return self._next_delay(cj, now, schedule)

    async def _miss(self, cj: CronJob, scheduled: datetime) -> None:
        when = scheduled.astimezone(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")  # Go's RFC1123Z
        await self._event(cj, "Warning", "MissSchedule", f"Missed scheduled time to start a job: {when}")

    async def _create_job(self, cj: CronJob, scheduled: datetime, name: str) -> Job | None:
        template = cj.spec.job_template
        meta = template.metadata or ObjectMeta()
        zone = load_zone(cj.spec.time_zone) if cj.spec.time_zone else timezone.utc
        stamp = scheduled.astimezone(zone).isoformat().replace("+00:00", "Z")
        annotations = {**(meta.annotations or {}), CRONJOB_SCHEDULED_TIMESTAMP: stamp}
        job = Job(
            metadata=ObjectMeta(
                name=name,
                namespace=cj.namespace,
                labels=dict(meta.labels) if meta.labels else None,
                annotations=annotations,
            ),
            spec=template.spec.model_copy(deep=True),
        )
        set_controller_reference(cj, job)
        try:
            created = await self.writer.create(job)
        except AlreadyExists:
            # Created before a restart (or by another actor): ours if it names us as controller.
            existing = cast(Job, await self.writer.get(Job, name, cj.namespace))
            ref = controller_of(existing)
            if ref is None or ref.uid != cj.metadata.uid:
                return None
            return existing
        await self._event(cj, "Normal", "SuccessfulCreate", f"Created job {created.name}")
        return created

    def _next_delay(self, cj: CronJob, now: datetime, schedule: Schedule) -> float | None:
        """nextScheduleTimeDuration: seconds until the next scheduled time, plus a little."""
        try:
            earliest, most_recent, _ = most_recent_schedule_time(cj, now, schedule, include_deadline=False)
        except InvalidScheduleError:
            return None
        upcoming = schedule.next(most_recent or earliest)
        if upcoming is None:
            return None
        return (upcoming - now).total_seconds() + NEXT_SCHEDULE_DELTA


def setup(manager: Manager, **options: object) -> None:
    """Register the CronJob controller (options: ``workers``: int, default 1)."""
    workers = options.get("workers", 1)
    reconciler = CronJobReconciler(
        manager.reader, cast(JobWriter, manager.writer), manager.clock, manager.event_recorder("cronjob-controller")
    )
    builder = ControllerBuilder(manager).named("cronjob").for_(CronJob).owns(Job)
    builder.with_workers(workers if isinstance(workers, int) else 1).complete(reconciler)
