"""Cron schedules in a time zone: occurrences, DST rules, validation."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from wheel.core import walltime
from wheel.core.cron import (
    HORIZON_YEARS,
    MAX_COUNT,
    FieldProblem,
    InvalidSchedule,
    iter_occurrences,
    next_occurrences,
    parse_schedule,
    validate_schedule,
    zone_of,
)

AMS = "Europe/Amsterdam"
NYC = "America/New_York"
_ONE_MS = timedelta(milliseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(text: str) -> int:
    """Epoch ms of an RFC 3339 instant with its offset."""
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None, text
    return (moment - _EPOCH) // _ONE_MS


def local(instant_ms: int, zone: str) -> str:
    """An instant as the wall time and offset of ``zone``, to the second."""
    moment = _EPOCH + instant_ms * _ONE_MS
    return moment.astimezone(ZoneInfo(zone)).isoformat(timespec="seconds")


def upcoming(
    cron: str, zone: str, after: str, count: int, **window: str
) -> list[str]:
    """The next ``count`` occurrences after ``after``, as local times."""
    bounds = {f"{name}_ms": ms(value) for name, value in window.items()}
    spec = parse_schedule(cron, zone, **bounds)
    return [local(x, zone) for x in next_occurrences(spec, ms(after), count)]


# (cron, zone, after, expected): Amsterdam springs 02:00 -> 03:00 on
# 2025-03-30 and falls 03:00 -> 02:00 on 2025-10-26; New York springs
# 02:00 -> 03:00 on 2025-03-09 and falls 02:00 -> 01:00 on 2025-11-02.
SPRING_GAP = [
    pytest.param(
        "30 2 * * *",
        AMS,
        "2025-03-29T12:00:00+01:00",
        ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"],
        id="ams-daily-in-the-gap-fires-at-03:00",
    ),
    pytest.param(
        "0,30 2 * * *",
        AMS,
        "2025-03-29T12:00:00+01:00",
        ["2025-03-30T03:00:00+02:00", "2025-03-31T02:00:00+02:00"],
        id="ams-two-skipped-wall-times-fire-once",
    ),
    pytest.param(
        "30 2,3 * * *",
        AMS,
        "2025-03-29T12:00:00+01:00",
        [
            "2025-03-30T03:00:00+02:00",
            "2025-03-30T03:30:00+02:00",
            "2025-03-31T02:30:00+02:00",
        ],
        id="ams-the-gap-fire-leaves-03:30-alone",
    ),
    pytest.param(
        "0 2,3 * * *",
        AMS,
        "2025-03-29T12:00:00+01:00",
        ["2025-03-30T03:00:00+02:00", "2025-03-31T02:00:00+02:00"],
        id="ams-02:00-and-03:00-are-one-fire",
    ),
    pytest.param(
        "*/15 * * * *",
        AMS,
        "2025-03-30T01:40:00+01:00",
        [
            "2025-03-30T01:45:00+01:00",
            "2025-03-30T03:00:00+02:00",
            "2025-03-30T03:15:00+02:00",
        ],
        id="ams-every-15-minutes-keeps-real-time",
    ),
    pytest.param(
        "30 * * * *",
        AMS,
        "2025-03-30T00:40:00+01:00",
        [
            "2025-03-30T01:30:00+01:00",
            "2025-03-30T03:00:00+02:00",
            "2025-03-30T03:30:00+02:00",
        ],
        id="ams-hourly-02:30-fires-right-after-the-gap",
    ),
    pytest.param(
        "30 2 * * *",
        NYC,
        "2025-03-08T12:00:00-05:00",
        ["2025-03-09T03:00:00-04:00", "2025-03-10T02:30:00-04:00"],
        id="nyc-daily-in-the-gap-fires-at-03:00",
    ),
    pytest.param(
        "0 30 2 * * *",
        NYC,
        "2025-03-08T12:00:00-05:00",
        ["2025-03-09T03:00:00-04:00", "2025-03-10T02:30:00-04:00"],
        id="nyc-seconds-field-in-the-gap-fires-at-03:00",
    ),
    pytest.param(
        "*/20 * 2 * * *",
        NYC,
        "2025-03-08T12:00:00-05:00",
        [
            "2025-03-09T03:00:00-04:00",
            "2025-03-10T02:00:00-04:00",
            "2025-03-10T02:00:20-04:00",
        ],
        id="nyc-every-20-seconds-of-the-missing-hour-fire-once",
    ),
]

AUTUMN_OVERLAP = [
    pytest.param(
        "30 2 * * *",
        AMS,
        "2025-10-25T12:00:00+02:00",
        ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"],
        id="ams-daily-repeated-wall-time-fires-once",
    ),
    pytest.param(
        "0,20,40 2 * * *",
        AMS,
        "2025-10-25T12:00:00+02:00",
        [
            "2025-10-26T02:00:00+02:00",
            "2025-10-26T02:20:00+02:00",
            "2025-10-26T02:40:00+02:00",
            "2025-10-27T02:00:00+01:00",
        ],
        id="ams-fixed-minutes-fire-in-the-first-pass-only",
    ),
    pytest.param(
        "*/20 2 * * *",
        AMS,
        "2025-10-25T12:00:00+02:00",
        [
            "2025-10-26T02:00:00+02:00",
            "2025-10-26T02:20:00+02:00",
            "2025-10-26T02:40:00+02:00",
            "2025-10-27T02:00:00+01:00",
        ],
        id="ams-a-step-minute-pinned-to-an-hour-fires-in-the-first-pass",
    ),
    pytest.param(
        "0 */2 * * *",
        AMS,
        "2025-10-26T00:30:00+02:00",
        [
            "2025-10-26T02:00:00+02:00",
            "2025-10-26T02:00:00+01:00",
            "2025-10-26T04:00:00+01:00",
        ],
        id="ams-a-step-hour-keeps-real-time",
    ),
    pytest.param(
        "*/30 * * * *",
        AMS,
        "2025-10-26T01:40:00+02:00",
        [
            "2025-10-26T02:00:00+02:00",
            "2025-10-26T02:30:00+02:00",
            "2025-10-26T02:00:00+01:00",
            "2025-10-26T02:30:00+01:00",
            "2025-10-26T03:00:00+01:00",
        ],
        id="ams-every-30-minutes-keeps-real-time",
    ),
    pytest.param(
        "0 * * * *",
        AMS,
        "2025-10-26T00:30:00+02:00",
        [
            "2025-10-26T01:00:00+02:00",
            "2025-10-26T02:00:00+02:00",
            "2025-10-26T02:00:00+01:00",
            "2025-10-26T03:00:00+01:00",
        ],
        id="ams-hourly-fires-every-real-hour",
    ),
    pytest.param(
        "30 1 * * *",
        NYC,
        "2025-11-01T12:00:00-04:00",
        ["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"],
        id="nyc-daily-repeated-wall-time-fires-once",
    ),
    pytest.param(
        "0 30 1 * * *",
        NYC,
        "2025-11-01T12:00:00-04:00",
        ["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"],
        id="nyc-seconds-field-repeated-wall-time-fires-once",
    ),
    pytest.param(
        "0 1 * * SUN",
        NYC,
        "2025-11-01T12:00:00-04:00",
        ["2025-11-02T01:00:00-04:00", "2025-11-09T01:00:00-05:00"],
        id="nyc-weekly-on-the-change-night-fires-once",
    ),
    pytest.param(
        "*/30 * * * *",
        NYC,
        "2025-11-02T00:40:00-04:00",
        [
            "2025-11-02T01:00:00-04:00",
            "2025-11-02T01:30:00-04:00",
            "2025-11-02T01:00:00-05:00",
            "2025-11-02T01:30:00-05:00",
            "2025-11-02T02:00:00-05:00",
        ],
        id="nyc-every-30-minutes-keeps-real-time",
    ),
    pytest.param(
        "*/20 * * * *",
        NYC,
        "2025-11-02T01:30:00-04:00",
        [
            "2025-11-02T01:40:00-04:00",
            "2025-11-02T01:00:00-05:00",
            "2025-11-02T01:20:00-05:00",
            "2025-11-02T01:40:00-05:00",
            "2025-11-02T02:00:00-05:00",
        ],
        id="nyc-from-inside-the-first-pass-finds-the-repeats",
    ),
    pytest.param(
        "*/20 * * * *",
        NYC,
        "2025-11-02T01:30:00-05:00",
        ["2025-11-02T01:40:00-05:00", "2025-11-02T02:00:00-05:00"],
        id="nyc-from-inside-the-repeat",
    ),
    pytest.param(
        "45 1 * * *",
        NYC,
        "2025-11-02T01:30:00-05:00",
        ["2025-11-03T01:45:00-05:00"],
        id="nyc-from-inside-the-repeat-a-fired-wall-time-waits-a-day",
    ),
]

FIXED_OFFSETS = [
    pytest.param(
        "30 2 * * *",
        "UTC",
        "2025-03-29T12:00:00+00:00",
        ["2025-03-30T02:30:00+00:00", "2025-03-31T02:30:00+00:00"],
        id="utc",
    ),
    pytest.param(
        "30 2 * * *",
        "Etc/GMT-1",
        "2025-10-25T12:00:00+01:00",
        ["2025-10-26T02:30:00+01:00", "2025-10-27T02:30:00+01:00"],
        id="etc-gmt-minus-1-is-utc-plus-1",
    ),
]


@pytest.mark.parametrize(("cron", "zone", "after", "expected"), SPRING_GAP)
def test_spring_gap(
    cron: str, zone: str, after: str, expected: list[str]
) -> None:
    """A wall time in the spring-forward gap fires once, right after it."""
    assert upcoming(cron, zone, after, len(expected)) == expected


@pytest.mark.parametrize(("cron", "zone", "after", "expected"), AUTUMN_OVERLAP)
def test_autumn_overlap(
    cron: str, zone: str, after: str, expected: list[str]
) -> None:
    """A repeated wall time fires once; an interval schedule each hour."""
    assert upcoming(cron, zone, after, len(expected)) == expected


@pytest.mark.parametrize(("cron", "zone", "after", "expected"), FIXED_OFFSETS)
def test_fixed_offset_zones_have_no_dst(
    cron: str, zone: str, after: str, expected: list[str]
) -> None:
    """UTC and Etc/GMT zones fire at the wall time on change nights."""
    assert upcoming(cron, zone, after, len(expected)) == expected


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        pytest.param(
            "0 0 29 2 *",
            "2025-01-01T00:00:00+00:00",
            ["2028-02-29", "2032-02-29", "2036-02-29"],
            id="leap-day",
        ),
        pytest.param(
            "0 0 31 * *",
            "2025-01-31T00:00:00+00:00",
            ["2025-03-31", "2025-05-31", "2025-07-31", "2025-08-31"],
            id="the-31st-skips-short-months",
        ),
        pytest.param(
            "0 0 L * *",
            "2024-01-15T00:00:00+00:00",
            ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"],
            id="last-day-of-the-month",
        ),
        pytest.param(
            "0 0 L 2 *",
            "2025-03-01T00:00:00+00:00",
            ["2026-02-28", "2027-02-28", "2028-02-29"],
            id="last-day-of-february",
        ),
        pytest.param(
            "0 0 LW * *",
            "2025-05-01T00:00:00+00:00",
            ["2025-05-30", "2025-06-30", "2025-07-31", "2025-08-29"],
            id="last-weekday",
        ),
        pytest.param(
            "0 0 * * 5L",
            "2025-01-01T00:00:00+00:00",
            ["2025-01-31", "2025-02-28", "2025-03-28"],
            id="last-friday",
        ),
        pytest.param(
            "0 0 * 2 MON#5",
            "2025-01-01T00:00:00+00:00",
            ["2044-02-29"],
            id="fifth-monday-of-february",
        ),
        pytest.param(
            "0 0 1 * MON",
            "2025-09-01T00:00:00+00:00",
            [
                "2025-09-08",
                "2025-09-15",
                "2025-09-22",
                "2025-09-29",
                "2025-10-01",
            ],
            id="restricted-day-fields-match-either",
        ),
        pytest.param(
            "0 0 1-7 * */7",
            "2025-01-01T00:00:00+00:00",
            ["2025-01-05", "2025-02-02", "2025-03-02"],
            id="a-star-day-field-makes-both-match",
        ),
    ],
)
def test_month_ends_and_leap_days(
    cron: str, after: str, expected: list[str]
) -> None:
    """Month ends, leap days and day rules fire on the right dates."""
    dates = [day[:10] for day in upcoming(cron, "UTC", after, len(expected))]
    assert dates == expected


def test_leap_day_in_a_zone() -> None:
    """A leap-day schedule fires at local midnight of 29 February."""
    assert upcoming("0 0 29 2 *", AMS, "2025-01-01T00:00:00+01:00", 1) == [
        "2028-02-29T00:00:00+01:00"
    ]


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        pytest.param(
            "*/10 * * * * *",
            "2025-01-01T00:00:05+00:00",
            ["00:00:10", "00:00:20", "00:00:30"],
            id="every-10-seconds",
        ),
        pytest.param(
            "30 * * * * *",
            "2025-01-01T00:00:00+00:00",
            ["00:00:30", "00:01:30"],
            id="second-30-of-every-minute",
        ),
        pytest.param(
            "15,45 30 9 * * *",
            "2025-01-01T00:00:00+00:00",
            ["09:30:15", "09:30:45", "09:30:15"],
            id="seconds-list",
        ),
        pytest.param(
            "0 0 12 * * *",
            "2025-01-01T00:00:00+00:00",
            ["12:00:00", "12:00:00"],
            id="six-fields-at-second-0",
        ),
        pytest.param(
            "* * * * *",
            "2025-01-01T12:00:00.001+00:00",
            ["12:01:00", "12:02:00"],
            id="five-fields-fire-at-second-0",
        ),
        pytest.param(
            "*/10 * * * * *",
            "2025-01-01T00:00:10.500+00:00",
            ["00:00:20", "00:00:30"],
            id="strictly-after-a-ms-instant",
        ),
        pytest.param(
            "*/10 * * * * *",
            "2025-01-01T00:00:09.999+00:00",
            ["00:00:10", "00:00:20"],
            id="the-next-whole-second",
        ),
        pytest.param(
            "*/10 * * * * *",
            "2025-01-01T00:00:10+00:00",
            ["00:00:20", "00:00:30"],
            id="an-occurrence-at-after-is-not-after",
        ),
    ],
)
def test_seconds_field(cron: str, after: str, expected: list[str]) -> None:
    """Six fields read seconds first; five fire at second 0."""
    times = [
        moment[11:19] for moment in upcoming(cron, "UTC", after, len(expected))
    ]
    assert times == expected


@pytest.mark.parametrize(
    ("window", "after", "count", "expected"),
    [
        pytest.param(
            {"start_at": "2025-06-01T10:30:00+00:00"},
            "2025-01-01T00:00:00+00:00",
            2,
            ["11:00", "12:00"],
            id="start-at-in-the-future",
        ),
        pytest.param(
            {"start_at": "2025-06-01T10:00:00+00:00"},
            "2025-01-01T00:00:00+00:00",
            2,
            ["10:00", "11:00"],
            id="start-at-is-inclusive",
        ),
        pytest.param(
            {"start_at": "2025-06-01T10:00:00+00:00"},
            "2025-06-01T12:30:00+00:00",
            2,
            ["13:00", "14:00"],
            id="start-at-in-the-past",
        ),
        pytest.param(
            {"end_at": "2025-06-01T12:00:00+00:00"},
            "2025-06-01T09:30:00+00:00",
            5,
            ["10:00", "11:00", "12:00"],
            id="end-at-is-inclusive",
        ),
        pytest.param(
            {"end_at": "2025-06-01T11:59:59.999+00:00"},
            "2025-06-01T09:30:00+00:00",
            5,
            ["10:00", "11:00"],
            id="end-at-stops-the-list",
        ),
        pytest.param(
            {"end_at": "2025-06-01T12:00:00+00:00"},
            "2025-06-01T12:00:00+00:00",
            5,
            [],
            id="after-end-at",
        ),
        pytest.param(
            {
                "start_at": "2025-06-01T10:00:00+00:00",
                "end_at": "2025-06-01T10:00:00+00:00",
            },
            "2025-01-01T00:00:00+00:00",
            5,
            ["10:00"],
            id="a-one-instant-window",
        ),
    ],
)
def test_start_at_and_end_at(
    window: dict[str, str], after: str, count: int, expected: list[str]
) -> None:
    """Occurrences stay within start_at and end_at, both inclusive."""
    times = [
        moment[11:16]
        for moment in upcoming("0 * * * *", "UTC", after, count, **window)
    ]
    assert times == expected


def test_count_is_bounded() -> None:
    """next_occurrences refuses a count past MAX_COUNT."""
    spec = parse_schedule("* * * * *")
    assert len(next_occurrences(spec, 0, MAX_COUNT)) == MAX_COUNT
    with pytest.raises(ValueError, match="count"):
        next_occurrences(spec, 0, MAX_COUNT + 1)


def test_a_schedule_ends_past_the_horizon() -> None:
    """Iteration ends when nothing matches within the horizon."""
    spec = parse_schedule("* * */20 * 1L")
    assert list(iter_occurrences(spec, ms("2025-01-01T00:00:00+00:00"))) == []


@pytest.mark.parametrize(
    ("cron", "zone", "field", "message"),
    [
        ("61 * * * *", "UTC", "cron", "has a bad minute field `61`"),
        ("* 24 * * *", "UTC", "cron", "has a bad hour field `24`"),
        ("* * 0 * *", "UTC", "cron", "has a bad day-of-month field `0`"),
        ("* * * 13 *", "UTC", "cron", "has a bad month field `13`"),
        ("* * * * 8", "UTC", "cron", "has a bad day-of-week field `8`"),
        ("60 * * * * *", "UTC", "cron", "has a bad second field `60`"),
        ("*/0 * * * *", "UTC", "cron", "has a bad minute field `*/0`"),
        ("5-1 * * * *", "UTC", "cron", "has a bad minute field `5-1`"),
        ("* * * JANUARY *", "UTC", "cron", "has a bad month field"),
        ("@daily", "UTC", "cron", "has 1 field; it takes 5"),
        ("* * *", "UTC", "cron", "has 3 fields; it takes 5"),
        ("* * * * * * *", "UTC", "cron", "has 7 fields; it takes 5"),
        ("", "UTC", "cron", "is empty"),
        ("1," * 150 + "1 * * * *", "UTC", "cron", "is longer than 200"),
        ("0 0 30 2 *", "UTC", "cron", "never fires"),
        ("0 0 31 4,6,9,11 *", "UTC", "cron", "never fires"),
        ("* * * * *", "Mars/Olympus_Mons", "timezone", "is not an IANA"),
        ("* * * * *", "europe/amsterdam", "timezone", "is not an IANA"),
        ("* * * * *", "", "timezone", "is not an IANA"),
        ("* * * * *", "Europe", "timezone", "is not an IANA"),
        ("* * * * *", "../etc/passwd", "timezone", "is not an IANA"),
        ("* * * * *", "/etc/localtime", "timezone", "is not an IANA"),
        ("* * * * *", "localtime", "timezone", "is not an IANA"),
        ("* * * * *", "Factory", "timezone", "is not an IANA"),
        ("* * * * *", "posix/Europe/Paris", "timezone", "is not an IANA"),
        ("* * * * *", "Europe/Paris\x00", "timezone", "is not an IANA"),
    ],
)
def test_invalid_definitions_name_the_field(
    cron: str, zone: str, field: str, message: str
) -> None:
    """Each refusal names the field and says what is wrong with it."""
    with pytest.raises(InvalidSchedule) as refused:
        parse_schedule(cron, zone)
    [problem] = refused.value.problems
    assert problem.field == field
    assert problem.message.startswith(message), problem.message


def test_every_problem_is_reported() -> None:
    """A definition with several faults lists each, field by field."""
    with pytest.raises(InvalidSchedule) as refused:
        parse_schedule("61 25 * * *", "Nowhere/Town", 10, 5)
    assert [p.field for p in refused.value.problems] == [
        "cron",
        "cron",
        "timezone",
        "end_at",
    ]
    assert str(refused.value).startswith("`cron` has a bad minute field")


@pytest.mark.parametrize(
    ("start_at_ms", "end_at_ms", "problem"),
    [
        (10, 5, FieldProblem("end_at", "is before `start_at`")),
        (-1, None, FieldProblem("start_at", "is out of range")),
        (None, 10**15, FieldProblem("end_at", "is out of range")),
    ],
)
def test_invalid_windows(
    start_at_ms: int | None, end_at_ms: int | None, problem: FieldProblem
) -> None:
    """end_at before start_at, or an instant out of range, is refused."""
    with pytest.raises(InvalidSchedule) as refused:
        parse_schedule("* * * * *", "UTC", start_at_ms, end_at_ms)
    assert refused.value.problems == (problem,)


@pytest.mark.parametrize(
    "zone", ["UTC", "Etc/GMT+5", "America/Argentina/Buenos_Aires", NYC]
)
def test_iana_zones_are_accepted(zone: str) -> None:
    """Names of the IANA database load, fixed-offset ones too."""
    assert zone_of(zone) is not None
    assert parse_schedule("* * * * *", zone).timezone == zone


def test_the_expression_is_kept_with_single_spaces() -> None:
    """Whitespace between fields is normalised to one space."""
    assert parse_schedule("  */5\t*  * * *\n").cron == "*/5 * * * *"


NOW = "2025-06-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("cron", "window", "problem"),
    [
        pytest.param(
            "0 0 1 1 *",
            {"end_at": "2025-01-01T00:00:00+00:00"},
            FieldProblem("end_at", "is in the past"),
            id="end-at-in-the-past",
        ),
        pytest.param(
            "0 0 1 1 *",
            {"end_at": "2025-12-31T00:00:00+00:00"},
            FieldProblem(
                "end_at",
                "is before the first occurrence, 2026-01-01T00:00:00.000Z",
            ),
            id="end-at-before-the-first-occurrence",
        ),
        pytest.param(
            "0 0 1 1 *",
            {
                "start_at": "2026-02-01T00:00:00+00:00",
                "end_at": "2026-12-31T00:00:00+00:00",
            },
            FieldProblem(
                "end_at",
                "is before the first occurrence, 2027-01-01T00:00:00.000Z",
            ),
            id="no-occurrence-in-the-window",
        ),
        pytest.param(
            "* * */20 * 1L",
            {},
            FieldProblem(
                "cron",
                f"never fires: no occurrence within {HORIZON_YEARS} years",
            ),
            id="nothing-within-the-horizon",
        ),
    ],
)
def test_a_schedule_that_never_fires_is_refused(
    cron: str, window: dict[str, str], problem: FieldProblem
) -> None:
    """validate_schedule refuses a schedule with no occurrence from now."""
    bounds = {f"{name}_ms": ms(value) for name, value in window.items()}
    with pytest.raises(InvalidSchedule) as refused:
        validate_schedule(cron, "UTC", **bounds, now_ms=ms(NOW))
    assert refused.value.problems == (problem,)


def test_a_rare_schedule_within_the_horizon_is_valid() -> None:
    """A schedule whose first occurrence is 19 years away is accepted."""
    spec = validate_schedule("0 0 * 2 MON#5", now_ms=ms(NOW))
    assert spec.cron == "0 0 * 2 MON#5"


# Brute force: every minute of the day around each change, read in the
# zone, against the cron; skipped wall times fire at the change.
CHANGES = [
    (AMS, "2025-03-30T01:00:00+00:00"),
    (AMS, "2025-10-26T01:00:00+00:00"),
    (NYC, "2025-03-09T07:00:00+00:00"),
    (NYC, "2025-11-02T06:00:00+00:00"),
    ("Australia/Lord_Howe", "2025-04-05T15:00:00+00:00"),  # half an hour
    ("Australia/Lord_Howe", "2025-10-04T15:30:00+00:00"),
    ("America/Santiago", "2025-04-06T03:00:00+00:00"),  # at midnight
    ("America/Santiago", "2025-09-07T04:00:00+00:00"),
]
CRONS = [
    "30 2 * * *",
    "0 0 * * *",
    "59 23 * * *",
    "*/15 * * * *",
    "0 * * * *",
    "15,45 * * * *",
    "0,20,40 1-2 * * *",
    "*/20 1-2 * * *",
]


def _matches(cron: str, wall: datetime) -> bool:
    return next(CronSim(cron, wall - timedelta(seconds=1))) == wall


def _brute_force(cron: str, zone: ZoneInfo, change: datetime) -> list[int]:
    interval = cron.split()[-4].startswith("*")  # the hour field
    start, end = change - timedelta(hours=6), change + timedelta(hours=6)
    minute = timedelta(minutes=1)
    found = set()
    moment = start
    while moment < end:
        shown = moment.astimezone(zone)
        wall = shown.replace(tzinfo=None)
        if _matches(cron, wall) and (interval or shown.fold == 0):
            found.add((moment - _EPOCH) // _ONE_MS)
        moment += minute
    wall = start.astimezone(zone).replace(tzinfo=None)
    while wall < end.astimezone(zone).replace(tzinfo=None):
        real = wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
        if real.replace(tzinfo=None) != wall and _matches(cron, wall):
            found.add((change - _EPOCH) // _ONE_MS)
        wall += minute
    return sorted(found)


@pytest.mark.parametrize(("zone", "change"), CHANGES)
@pytest.mark.parametrize("cron", CRONS)
def test_occurrences_agree_with_a_minute_by_minute_scan(
    cron: str, zone: str, change: str
) -> None:
    """Around each change, occurrences are what a brute scan finds."""
    moment = datetime.fromisoformat(change)
    start_ms = ms(change) - 6 * 3_600_000
    end_ms = ms(change) + 6 * 3_600_000
    spec = parse_schedule(cron, zone)
    found = list(
        itertools.takewhile(
            lambda x: x < end_ms, iter_occurrences(spec, start_ms - 1)
        )
    )
    assert found == _brute_force(cron, ZoneInfo(zone), moment)


@pytest.mark.parametrize(
    ("wall", "zone", "expected"),
    [
        ("2025-03-30T02:30", AMS, ["2025-03-30T01:00:00+00:00"]),
        (
            "2025-10-26T02:30",
            AMS,
            ["2025-10-26T00:30:00+00:00", "2025-10-26T01:30:00+00:00"],
        ),
        ("2025-07-01T02:30", AMS, ["2025-07-01T00:30:00+00:00"]),
        (
            "2025-10-05T02:15",
            "Australia/Lord_Howe",
            ["2025-10-04T15:30:00+00:00"],
        ),
    ],
)
def test_wall_time_instants(wall: str, zone: str, expected: list[str]) -> None:
    """A wall time is one instant, the gap's end, or two in an overlap."""
    instants = walltime.instants_of(
        datetime.fromisoformat(wall), ZoneInfo(zone)
    )
    assert list(instants) == [ms(x) for x in expected]
