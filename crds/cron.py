"""CronJob schedules: the standard 5-field cron syntax, parsed and evaluated as Kubernetes does.

Kubernetes parses ``spec.schedule`` with robfig/cron v3's ``ParseStandard``; this is that
parser and its ``Next`` in Python (pure, no I/O), with the same error wording:

- fields ``minute hour day-of-month month day-of-week``; each a comma-separated list of ``*``
  (or ``?``), ``N``, ``A-B``, optionally ``/step``; ``N/step`` means ``N-max/step``;
- month names ``JAN``-``DEC`` and weekday names ``SUN``-``SAT`` (any case); Sunday is 0, and
  also 7 as in Vixie cron (robfig refuses 7; kray accepts it);
- day-of-month and day-of-week: when either is a bare ``*``/``?`` both must match, otherwise
  either may (cron's OR rule, robfig's star-bit reading: ``*/2`` is a restriction, not a star);
- the macros ``@yearly`` ``@annually`` ``@monthly`` ``@weekly`` ``@daily`` ``@midnight``
  ``@hourly``, and ``CRON_TZ=<zone>`` or ``TZ=<zone>`` in front (an IANA zone, via zoneinfo).

Times are evaluated in the schedule's zone (UTC by default) the way robfig does it: months and
days step on the wall clock, hours and minutes on absolute time, so across a DST change a
wall-clock time that does not exist is skipped that day and one that occurs twice fires twice.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo

UTC = timezone.utc
_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
MONTH_NAMES = {n: i + 1 for i, n in enumerate(_MONTHS)}
DOW_NAMES = {n: i for i, n in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}

DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# A zone name as Kubernetes accepts it for spec.timeZone (each '/'-separated part).
_ZONE_PART = re.compile(r"^[A-Za-z._+\-0-9]+$")


class CronError(ValueError):
    """An expression that does not parse; the message is robfig/cron's."""


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int] | None = None


_FIELDS = (
    _Bounds(0, 59),  # minute
    _Bounds(0, 23),  # hour
    _Bounds(1, 31),  # day of month
    _Bounds(1, 12, MONTH_NAMES),  # month
    _Bounds(0, 7, DOW_NAMES),  # day of week (7 = Sunday)
)


def load_zone(name: str) -> tzinfo:
    """An IANA time zone; ``CronError("unknown time zone X")`` (Go's wording) when there is none."""
    if not name or name.lower() == "local":
        raise CronError(f"unknown time zone {name}")
    if any(p in ("", ".", "..") or p.startswith("-") or not _ZONE_PART.match(p) for p in name.split("/")):
        raise CronError(f"unknown time zone {name}")
    if name == "UTC":
        return UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"unknown time zone {name}") from None


def _number(text: str) -> int:
    """Go's ``strconv.Atoi`` and robfig's ``mustParseInt``, messages included."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise CronError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax')
    value = int(text)
    if value < 0:
        raise CronError(f"negative number ({value}) not allowed: {text}")
    return value


def _int_or_name(text: str, bounds: _Bounds) -> int:
    if bounds.names and text.lower() in bounds.names:
        return bounds.names[text.lower()]
    return _number(text)


def _range(expr: str, bounds: _Bounds) -> tuple[set[int], bool]:
    """One comma-separated term: its values and whether it was a bare star (robfig's starBit)."""
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    star = False
    if low_high[0] in ("*", "?"):
        if len(low_high) > 1:
            raise CronError(f"too many hyphens: {expr}")
        start, end, star = bounds.low, bounds.high, True
    else:
        start = _int_or_name(low_high[0], bounds)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _int_or_name(low_high[1], bounds)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _number(range_and_step[1])
        if len(low_high) == 1:  # "N/step" means "N-max/step"
            end = bounds.high
        if step > 1:
            star = False
    else:
        raise CronError(f"too many slashes: {expr}")
    if start < bounds.low:
        raise CronError(f"beginning of range ({start}) below minimum ({bounds.low}): {expr}")
    if end > bounds.high:
        raise CronError(f"end of range ({end}) above maximum ({bounds.high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    return set(range(start, end + 1, step)), star


def _field(text: str, bounds: _Bounds) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for term in text.split(","):
        got, is_star = _range(term, bounds)
        values |= got
        star = star or is_star
    return frozenset(values), star


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: the allowed values of each field, and the zone it runs in."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    dom_star: bool
    dow_star: bool
    zone: tzinfo = UTC

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.weekday() + 1) % 7 in self.weekdays
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def _wall(self, d: date, hour: int = 0) -> datetime:
        """The first instant at ``d`` ``hour``:00 on the zone's wall clock (a gap moves it on)."""
        return datetime(d.year, d.month, d.day, hour, tzinfo=self.zone).astimezone(UTC).astimezone(self.zone)

    def next(self, after: datetime) -> datetime | None:
        """The first time strictly after ``after`` (aware) the schedule fires, in UTC; None if
        it never does within five years (e.g. ``0 0 30 2 *``), as robfig's zero time."""
        t = (after.astimezone(UTC).replace(second=0, microsecond=0) + _MINUTE).astimezone(self.zone)
        year_limit = t.year + 5
        while t.year <= year_limit:
            if t.month not in self.months:
                first = date(t.year + t.month // 12, t.month % 12 + 1, 1)
                t = self._wall(first)
            elif not self._day_matches(t):
                t = self._wall(t.date() + timedelta(days=1))
            elif t.hour not in self.hours:
                t = self._add(t, -timedelta(minutes=t.minute) + _HOUR)
            elif t.minute not in self.minutes:
                t = self._add(t, _MINUTE)
            else:
                return t.astimezone(UTC)
        return None

    def _add(self, t: datetime, delta: timedelta) -> datetime:
        """Absolute-time arithmetic (aware datetime ``+`` is wall-clock arithmetic in Python)."""
        return (t.astimezone(UTC) + delta).astimezone(self.zone)


def parse(spec: str, zone: tzinfo | str | None = None) -> Schedule:
    """Parse a schedule (robfig's ``ParseStandard``); ``zone`` is the default zone (UTC), which a
    ``CRON_TZ=``/``TZ=`` prefix overrides. Raises ``CronError`` with robfig's message."""
    text = spec.strip()
    if not text:
        raise CronError("empty spec string")
    tz: tzinfo = load_zone(zone) if isinstance(zone, str) else (zone or UTC)
    if text.startswith(("TZ=", "CRON_TZ=")):
        head, _, text = text.partition(" ")
        name = head.partition("=")[2]
        try:
            tz = load_zone(name)
        except CronError as exc:
            raise CronError(f"provided bad location {name}: {exc}") from None
        text = text.strip()
    if text.startswith("@"):
        if text.startswith("@every"):
            raise CronError(f"unsupported descriptor (kray has no @every): {text}")
        if text not in DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {text}")
        text = DESCRIPTORS[text]
    fields = text.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: {text}" if fields else "empty spec string")
    minutes, _ = _field(fields[0], _FIELDS[0])
    hours, _ = _field(fields[1], _FIELDS[1])
    days, dom_star = _field(fields[2], _FIELDS[2])
    months, _ = _field(fields[3], _FIELDS[3])
    weekdays, dow_star = _field(fields[4], _FIELDS[4])
    if 7 in weekdays:
        weekdays = (weekdays - {7}) | {0}
    return Schedule(minutes, hours, days, months, weekdays, dom_star, dow_star, tz)
