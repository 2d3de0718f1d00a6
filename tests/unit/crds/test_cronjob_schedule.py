"""The cron parser (``kray.crds.cron``) and the CronJob kind's validation."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import kray.crds  # noqa: F401  (registers the built-in kinds)
from kray.crds import REGISTRY
from kray.crds.batch import CronJob
from kray.crds.cron import CronError, parse
from kray.crds.validation import ValidationFailed, validate_object

UTC = timezone.utc


def at(*args: int, tz: Any = UTC) -> datetime:
    return datetime(*args, tzinfo=tz)  # type: ignore[misc]


def runs(spec: str, start: datetime, n: int, zone: str | None = None) -> list[datetime]:
    schedule = parse(spec, zone)
    out, t = [], start
    for _ in range(n):
        nxt = schedule.next(t)
        assert nxt is not None
        out.append(nxt)
        t = nxt
    return out


@pytest.mark.parametrize(
    ("spec", "start", "want"),
    [
        ("* * * * *", at(2024, 1, 1, 10, 0), [at(2024, 1, 1, 10, 1), at(2024, 1, 1, 10, 2)]),
        ("* * * * *", at(2024, 1, 1, 10, 0, 30), [at(2024, 1, 1, 10, 1), at(2024, 1, 1, 10, 2)]),
        ("*/15 * * * *", at(2024, 1, 1, 10, 7), [at(2024, 1, 1, 10, 15), at(2024, 1, 1, 10, 30)]),
        (
            "5/20 * * * *",
            at(2024, 1, 1, 10, 0),
            [at(2024, 1, 1, 10, 5), at(2024, 1, 1, 10, 25), at(2024, 1, 1, 10, 45)],
        ),
        (
            "10-20/5 3 * * *",
            at(2024, 1, 1, 3, 12),
            [at(2024, 1, 1, 3, 15), at(2024, 1, 1, 3, 20), at(2024, 1, 2, 3, 10)],
        ),
        ("0,30 1,13 * * *", at(2024, 1, 1), [at(2024, 1, 1, 1), at(2024, 1, 1, 1, 30), at(2024, 1, 1, 13)]),
        ("0 0 1 JAN,jul *", at(2024, 2, 1), [at(2024, 7, 1), at(2025, 1, 1)]),
        ("0 9 * * MON-FRI", at(2024, 1, 5, 10), [at(2024, 1, 8, 9), at(2024, 1, 9, 9)]),  # Fri 10:00 -> Mon
        ("0 0 * * 0", at(2024, 1, 1), [at(2024, 1, 7)]),  # 2024-01-07 is a Sunday
        ("0 0 * * 7", at(2024, 1, 1), [at(2024, 1, 7), at(2024, 1, 14)]),  # 7 is Sunday too
        ("0 0 * * sun", at(2024, 1, 1), [at(2024, 1, 7)]),
        ("0 0 * * 5-7", at(2024, 1, 1), [at(2024, 1, 5), at(2024, 1, 6), at(2024, 1, 7), at(2024, 1, 12)]),
        ("0 0 29 2 *", at(2024, 3, 1), [at(2028, 2, 29)]),  # leap days only
        ("0 0 31 * *", at(2024, 4, 1), [at(2024, 5, 31), at(2024, 7, 31)]),
        ("59 23 31 12 *", at(2024, 12, 31, 23, 59), [at(2025, 12, 31, 23, 59)]),
    ],
)
def test_next_times(spec: str, start: datetime, want: list[datetime]) -> None:
    assert runs(spec, start, len(want)) == want


def test_day_of_month_or_day_of_week() -> None:
    # Both restricted: either may match (1st and 15th of the month, and every Friday).
    got = runs("0 0 1,15 * FRI", at(2024, 1, 1), 5)
    assert got == [at(2024, 1, 5), at(2024, 1, 12), at(2024, 1, 15), at(2024, 1, 19), at(2024, 1, 26)]
    # One is a star: the other alone decides (AND with "every day").
    assert runs("0 0 13 * *", at(2024, 1, 1), 2) == [at(2024, 1, 13), at(2024, 2, 13)]
    assert runs("0 0 * * FRI", at(2024, 1, 1), 2) == [at(2024, 1, 5), at(2024, 1, 12)]
    assert runs("0 0 ? * FRI", at(2024, 1, 1), 1) == [at(2024, 1, 5)]
    # "*/2" is a restriction, not a star (robfig's reading): odd days OR Mondays.
    assert runs("0 0 */2 * MON", at(2024, 1, 1, 1), 4) == [
        at(2024, 1, 3),
        at(2024, 1, 5),
        at(2024, 1, 7),
        at(2024, 1, 8),
    ]


@pytest.mark.parametrize(
    ("macro", "start", "want"),
    [
        ("@yearly", at(2024, 3, 3), at(2025, 1, 1)),
        ("@annually", at(2024, 3, 3), at(2025, 1, 1)),
        ("@monthly", at(2024, 3, 3), at(2024, 4, 1)),
        ("@weekly", at(2024, 1, 1), at(2024, 1, 7)),
        ("@daily", at(2024, 1, 1, 5), at(2024, 1, 2)),
        ("@midnight", at(2024, 1, 1, 5), at(2024, 1, 2)),
        ("@hourly", at(2024, 1, 1, 5, 1), at(2024, 1, 1, 6)),
    ],
)
def test_macros(macro: str, start: datetime, want: datetime) -> None:
    assert parse(macro).next(start) == want


def test_time_zone_and_prefixes() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    want = at(2024, 1, 1, 9, tz=berlin).astimezone(UTC)  # 08:00 UTC in winter
    assert parse("0 9 * * *", "Europe/Berlin").next(at(2024, 1, 1)) == want
    assert parse("CRON_TZ=Europe/Berlin 0 9 * * *").next(at(2024, 1, 1)) == want
    assert parse("TZ=Europe/Berlin 0 9 * * *").next(at(2024, 1, 1)) == want
    assert parse("0 9 * * *").next(at(2024, 1, 1)) == at(2024, 1, 1, 9)  # UTC by default
    # Summer: the same wall time is an hour earlier in UTC.
    assert parse("0 9 * * *", "Europe/Berlin").next(at(2024, 7, 1)) == at(2024, 7, 1, 7)


def test_dst_spring_forward_skips_the_missing_time() -> None:
    ny = ZoneInfo("America/New_York")
    # 2024-03-10 02:30 does not exist in New York (02:00 -> 03:00): that day is skipped.
    got = runs("30 2 * * *", at(2024, 3, 9, 12), 3, "America/New_York")
    assert [t.astimezone(ny).date().day for t in got] == [11, 12, 13]
    assert got[0] == at(2024, 3, 11, 6, 30)  # 02:30 EDT
    # An hourly schedule has one run fewer that day: 01:00 EST, then 03:00 EDT.
    hourly = runs("0 * * * *", at(2024, 3, 10, 5, 30), 2, "America/New_York")
    assert hourly == [at(2024, 3, 10, 6), at(2024, 3, 10, 7)]
    assert [t.astimezone(ny).hour for t in hourly] == [1, 3]


def test_dst_fall_back_runs_the_repeated_time_twice() -> None:
    # 2024-11-03 01:30 happens twice in New York (EDT, then EST), and robfig runs it both times.
    got = runs("30 1 * * *", at(2024, 11, 2, 12), 3, "America/New_York")
    assert got == [at(2024, 11, 3, 5, 30), at(2024, 11, 3, 6, 30), at(2024, 11, 4, 6, 30)]
    # A daily midnight job runs once a day: 24 hours apart, then 25 across the change.
    daily = runs("0 0 * * *", at(2024, 11, 2, 3), 3, "America/New_York")
    assert [b - a for a, b in itertools.pairwise(daily)] == [timedelta(hours=24), timedelta(hours=25)]


def test_never_firing_schedule() -> None:
    assert parse("0 0 30 2 *").next(at(2024, 1, 1)) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty spec string"),
        ("   ", "empty spec string"),
        ("* * * *", "expected exactly 5 fields, found 4: * * * *"),
        ("* * * * * *", "expected exactly 5 fields, found 6: * * * * * *"),
        ("60 * * * *", "end of range (60) above maximum (59): 60"),
        ("* 24 * * *", "end of range (24) above maximum (23): 24"),
        ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("* * 32 * *", "end of range (32) above maximum (31): 32"),
        ("* * * 13 *", "end of range (13) above maximum (12): 13"),
        ("* * * * 8", "end of range (8) above maximum (7): 8"),
        ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
        ("*/2/3 * * * *", "too many slashes: */2/3"),
        ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
        ("* * * FOO *", 'failed to parse int from FOO: strconv.Atoi: parsing "FOO": invalid syntax'),
        ("* * * * MON-FOO", 'failed to parse int from FOO: strconv.Atoi: parsing "FOO": invalid syntax'),
        ("1,,2 * * * *", 'failed to parse int from : strconv.Atoi: parsing "": invalid syntax'),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
        ("TZ=Nowhere/Land * * * * *", "provided bad location Nowhere/Land: unknown time zone Nowhere/Land"),
        ("CRON_TZ=../etc * * * * *", "provided bad location ../etc: unknown time zone ../etc"),
    ],
)
def test_invalid_expressions(spec: str, message: str) -> None:
    with pytest.raises(CronError) as err:
        parse(spec)
    assert str(err.value) == message


# ---- the kind ----


def cronjob(name: str = "backup", **spec: Any) -> dict[str, Any]:
    template = {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "x"}]}}}}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"jobTemplate": template, **spec},
    }


def test_defaults_and_registration() -> None:
    cj = validate_object(CronJob, cronjob(schedule="*/5 * * * *"))
    assert isinstance(cj, CronJob)
    assert (cj.spec.concurrency_policy, cj.spec.suspend) == ("Allow", False)
    assert (cj.spec.successful_jobs_history_limit, cj.spec.failed_jobs_history_limit) == (3, 1)
    info = REGISTRY.for_model(CronJob)
    assert (info.api_version, info.plural, info.short_names) == ("batch/v1", "cronjobs", ("cj",))
    assert [c.name for c in CronJob.PRINTER_COLUMNS] == [
        "Schedule",
        "Timezone",
        "Suspend",
        "Active",
        "Last Schedule",
        "Age",
    ]


@pytest.mark.parametrize(
    ("name", "spec", "field", "message"),
    [
        ("c", {"schedule": "61 * * * *"}, "spec.schedule", "end of range (61) above maximum (59): 61"),
        ("c", {}, "spec.schedule", "Required value"),
        ("c", {"schedule": "@every 5m"}, "spec.schedule", "no @every"),
        ("c", {"schedule": "* * * * *", "timeZone": "Mars/Olympus"}, "spec.timeZone", "unknown time zone Mars/Olympus"),
        ("c", {"schedule": "* * * * *", "timeZone": ""}, "spec.timeZone", "timeZone must be nil or non-empty string"),
        ("c", {"schedule": "* * * * *", "timeZone": "Local"}, "spec.timeZone", "explicit time zone"),
        (
            "c",
            {"schedule": "TZ=UTC * * * * *", "timeZone": "UTC"},
            "spec.schedule",
            "cannot use both timeZone field and TZ or CRON_TZ in schedule",
        ),
        ("c", {"schedule": "* * * * *", "concurrencyPolicy": "Sometimes"}, "spec.concurrencyPolicy", "Sometimes"),
        ("c", {"schedule": "* * * * *", "startingDeadlineSeconds": -1}, "spec.startingDeadlineSeconds", "0"),
        ("c", {"schedule": "* * * * *", "successfulJobsHistoryLimit": -1}, "spec.successfulJobsHistoryLimit", "0"),
        ("x" * 53, {"schedule": "* * * * *"}, "metadata.name", "must be no more than 52 characters"),
    ],
)
def test_validation_errors_name_the_field(name: str, spec: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        validate_object(CronJob, cronjob(name, **spec))
    fields = {e.field: e.message for e in err.value.errors}
    assert field in fields, fields
    assert message in fields[field]


def test_valid_time_zones() -> None:
    for zone in ("UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"):
        cj = validate_object(CronJob, cronjob(schedule="0 9 * * *", timeZone=zone))
        assert isinstance(cj, CronJob) and cj.spec.parsed_schedule().next(at(2024, 1, 1)) is not None
    assert validate_object(CronJob, cronjob("a" * 52, schedule="CRON_TZ=Asia/Tokyo 0 9 * * *")).name == "a" * 52
