"""Cron schedules in a time zone: validation, and their occurrences.

A schedule is a cron expression read in an IANA time zone, optionally
bounded by ``start_at`` and ``end_at``. Its occurrences are UTC instants
in epoch milliseconds (what Redis stores), ascending, never repeated.

**Syntax** (cronsim matches it, with Debian cron's rules):

- 5 fields, ``minute hour day-of-month month day-of-week``; or 6 fields
  with the **seconds first**, ``second minute hour day-of-month month
  day-of-week``, as Quartz, Spring and QStash users write
  ``*/10 * * * * *``. A 5-field expression fires at second 0.
- A field is ``*``, a value, a range ``a-b``, a step ``*/n`` or
  ``a-b/n``, or a list of those. Months are 1-12 or ``JAN``-``DEC``;
  days of the week 0-7 (0 and 7 are Sunday) or ``SUN``-``SAT``. The day
  of the month may be ``L`` (the last) or ``LW`` (the last weekday); the
  day of the week ``5L`` (the last Friday) or ``MON#2`` (the second).
- When both day fields are restricted, a day matching either fires
  (``0 0 1 * MON``: the 1st and every Monday); when one starts with
  ``*``, both must match.

**Daylight saving** (the README states these rules):

1. A wall time inside the spring-forward gap fires once, right after
   the gap: ``30 2 * * *`` on the night 02:00 -> 03:00 fires at 03:00.
   Several skipped wall times of one schedule make that one fire, and a
   schedule that fires at 03:00 anyway fires there once.
2. A wall time repeated in the autumn fires once, at its first pass
   (``30 2 * * *`` fires at the first 02:30 only; ``*/20 2 * * *`` at
   the first 02:00, 02:20 and 02:40), unless the schedule is an
   *interval* schedule: one whose hour field starts with ``*``
   (``*/15 * * * *``, ``0 * * * *``, ``0 */2 * * *``, ``*/10 * * * *
   *``). Those run in real time and fire at every instant whose wall
   time matches, the repeated hour included, so every 15 minutes stays
   every 15 minutes and hourly stays hourly. (Debian's cron also counts
   a minute field starting with ``*`` as an interval; here a schedule
   pinned to an hour is a time of day, and fires once.)
3. UTC and fixed-offset zones (``Etc/GMT-2``) have no gap and no
   overlap: their schedules are unaffected.

No wall time a schedule names is ever lost: each fires exactly once,
but for an interval schedule's repeated hour.

**Bounds.** cronsim gives up when no wall time matches within
:data:`HORIZON_YEARS` years of where a search starts: a schedule with no
occurrence in that window is refused as never firing, and iteration ends
there. Such a search costs about 10 ms; a step to the next occurrence of
an ordinary expression costs microseconds.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from wheel.core import walltime
from wheel.core.delays import rfc3339

DEFAULT_TIMEZONE = "UTC"
HORIZON_YEARS = 50
"""cronsim's search horizon: no match within it ends a search."""
MAX_CRON_CHARS = 200
MAX_COUNT = 1000
"""The most occurrences one :func:`next_occurrences` call computes."""
LAST_INSTANT_MS = 221_845_392_000_000  # 9000-01-01T00:00:00Z
"""Instants past this are out of range (datetime stops at year 9999)."""

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
FIELDS_WITH_SECONDS = ("second", *FIELDS)
_ALLOWED = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L or LW",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT, with nL or n#k",
}
# An IANA name: Area/Location segments. Keeps paths ("../x", "/etc/x")
# away from zoneinfo's file lookup.
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*")
# Files of the zone directory that are not zones of the IANA database,
# or are another copy of it.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
_MAX_ZONE_CHARS = 64
_PROBE_WALL = datetime(2000, 1, 1)


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One invalid field: ``message`` completes "`field` ...", e.g.
    ``FieldProblem("timezone", "is not an IANA time zone name")``."""

    field: str
    message: str


class InvalidSchedule(ValueError):
    """A schedule refused, with every problem found (a 422's errors)."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__(
            "; ".join(f"`{p.field}` {p.message}" for p in problems)
        )
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A valid schedule definition; build it with :func:`parse_schedule`.

    ``cron`` is the expression with single spaces. ``start_at_ms`` and
    ``end_at_ms`` bound the occurrences, both inclusive. ``interval``
    tells an interval schedule (DST rule 2).
    """

    cron: str
    timezone: str
    start_at_ms: int | None
    end_at_ms: int | None
    zone: ZoneInfo = field(compare=False, repr=False)
    interval: bool = field(compare=False)


def parse_schedule(
    cron: str,
    timezone: str = DEFAULT_TIMEZONE,
    start_at_ms: int | None = None,
    end_at_ms: int | None = None,
) -> ScheduleSpec:
    """The schedule of a definition; :class:`InvalidSchedule` otherwise.

    Checks the syntax, the zone and the window; not whether it fires
    from now on (:func:`validate_schedule` does), so a stored schedule
    whose window has passed still loads.
    """
    problems: list[FieldProblem] = []
    fields = cron.split()
    cron_problems = _cron_problems(cron, fields)
    problems.extend(FieldProblem("cron", message) for message in cron_problems)
    zone = zone_of(timezone)
    if zone is None:
        problems.append(
            FieldProblem("timezone", "is not an IANA time zone name")
        )
    for name, value in (("start_at", start_at_ms), ("end_at", end_at_ms)):
        if value is not None and not 0 <= value <= LAST_INSTANT_MS:
            problems.append(FieldProblem(name, "is out of range"))
    if (
        start_at_ms is not None
        and end_at_ms is not None
        and end_at_ms < start_at_ms
    ):
        problems.append(FieldProblem("end_at", "is before `start_at`"))
    if problems:
        raise InvalidSchedule(problems)
    assert zone is not None
    hour = fields[-4]
    return ScheduleSpec(
        cron=" ".join(fields),
        timezone=timezone,
        start_at_ms=start_at_ms,
        end_at_ms=end_at_ms,
        zone=zone,
        interval=hour.startswith("*"),
    )


def validate_schedule(
    cron: str,
    timezone: str = DEFAULT_TIMEZONE,
    start_at_ms: int | None = None,
    end_at_ms: int | None = None,
    *,
    now_ms: int,
) -> ScheduleSpec:
    """A new or edited schedule, refused unless it fires after ``now_ms``.

    Refuses what :func:`parse_schedule` refuses, and a schedule with no
    occurrence after ``now_ms`` (and ``start_at``) up to ``end_at``: on
    ``end_at`` when the window closes first, on ``cron`` when nothing
    matches within :data:`HORIZON_YEARS` years.
    """
    spec = parse_schedule(cron, timezone, start_at_ms, end_at_ms)
    if next_occurrences(spec, now_ms, 1):
        return spec
    if spec.end_at_ms is not None and spec.end_at_ms <= now_ms:
        raise InvalidSchedule([FieldProblem("end_at", "is in the past")])
    unbounded = dataclasses.replace(spec, end_at_ms=None)
    first = next_occurrences(unbounded, now_ms, 1)
    if first and spec.end_at_ms is not None:
        message = f"is before the first occurrence, {rfc3339(first[0])}"
        raise InvalidSchedule([FieldProblem("end_at", message)])
    message = f"never fires: no occurrence within {HORIZON_YEARS} years"
    raise InvalidSchedule([FieldProblem("cron", message)])


def next_occurrences(
    spec: ScheduleSpec, after_ms: int, count: int
) -> list[int]:
    """The next ``count`` occurrences strictly after ``after_ms``.

    Epoch ms, ascending, within ``start_at``/``end_at``; fewer when the
    schedule ends. ``count`` is at most :data:`MAX_COUNT`.
    """
    if not 0 <= count <= MAX_COUNT:
        raise ValueError(f"count must be 0 to {MAX_COUNT}")
    return list(itertools.islice(iter_occurrences(spec, after_ms), count))


def iter_occurrences(spec: ScheduleSpec, after_ms: int) -> Iterator[int]:
    """Every occurrence strictly after ``after_ms``, lazily, ascending.

    Applies the DST rules: cronsim yields naive wall times in wall-clock
    order and :mod:`wheel.core.walltime` turns each into its instants.
    Only an overlap takes instants out of wall-clock order (the repeat
    of 02:15 comes after the first pass of 02:45); those repeats wait in
    a queue until the wall times move past them.
    """
    lower_ms = max(after_ms, -1)
    if spec.start_at_ms is not None:
        lower_ms = max(lower_ms, spec.start_at_ms - 1)
    end_ms = LAST_INSTANT_MS
    if spec.end_at_ms is not None:
        end_ms = min(end_ms, spec.end_at_ms)
    if lower_ms >= end_ms:
        return
    start = walltime.earliest_wall(lower_ms, spec.zone, spec.interval)
    last_ms = lower_ms
    repeats: list[int] = []
    for wall in _walls(spec.cron, start):
        instants = walltime.instants_of(wall, spec.zone)
        while repeats and repeats[0] < instants[0]:
            repeat_ms = repeats.pop(0)
            if repeat_ms > last_ms:
                yield repeat_ms
                last_ms = repeat_ms
        if instants[0] > end_ms:
            return  # queued repeats are later still
        if instants[0] > last_ms:
            yield instants[0]
            last_ms = instants[0]
        if spec.interval and len(instants) == 2:
            repeats.append(instants[1])
    for repeat_ms in repeats:
        if last_ms < repeat_ms <= end_ms:
            yield repeat_ms
            last_ms = repeat_ms


def zone_of(name: str) -> ZoneInfo | None:
    """The zone of an IANA name (``Europe/Amsterdam``, ``UTC``), or None.

    Refuses what zoneinfo would read but is no zone of the database: the
    host's ``localtime``, ``posixrules``, ``Factory``, and the
    ``posix/`` and ``right/`` copies.
    """
    if (
        len(name) > _MAX_ZONE_CHARS
        or not _ZONE_NAME.fullmatch(name)
        or name in _NOT_ZONES
        or name.startswith(("posix/", "right/"))
    ):
        return None
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        # ZoneInfoNotFoundError is a KeyError; a directory's name or a
        # file that is not TZif raises ValueError or OSError.
        return None


def _cron_problems(cron: str, fields: list[str]) -> list[str]:
    """What is wrong with an expression, one message per problem."""
    if len(cron) > MAX_CRON_CHARS:
        return [f"is longer than {MAX_CRON_CHARS} characters"]
    if not fields:
        return ["is empty"]
    if len(fields) not in (5, 6):
        plural = "" if len(fields) == 1 else "s"
        return [
            f"has {len(fields)} field{plural}; it takes 5 "
            f"({' '.join(FIELDS)}) "
            f"or 6 with the seconds first ({' '.join(FIELDS_WITH_SECONDS)})"
        ]
    names = FIELDS if len(fields) == 5 else FIELDS_WITH_SECONDS
    problems = []
    # Each field alone, the others "*": names the bad one, which
    # cronsim's own message does only in words.
    for index, (name, token) in enumerate(zip(names, fields, strict=True)):
        probe = ["*"] * len(fields)
        probe[index] = token
        if not _parses(" ".join(probe)):
            problems.append(
                f"has a bad {name} field `{token}` (allowed: {_ALLOWED[name]})"
            )
    if not problems and not _parses(" ".join(fields)):
        # Every field is fine alone: the days fit no month (0 0 30 2 *).
        problems.append(
            "never fires: no month it allows has the day of the month it names"
        )
    return problems


def _parses(expression: str) -> bool:
    try:
        CronSim(expression, _PROBE_WALL)
    except (CronSimError, ValueError):
        return False
    return True


def _walls(cron: str, start: datetime) -> Iterator[datetime]:
    """The naive wall times matching ``cron`` after ``start``.

    Ends when cronsim finds none within its horizon, or at year 9999.
    """
    matches = CronSim(cron, start.replace(tzinfo=None))
    while True:
        try:
            yield next(matches)
        except (StopIteration, OverflowError):
            return
