"""Occurrences: deterministic ids, instants planned ahead, misfires."""

from __future__ import annotations

import random
import uuid

import pytest

from wheel.core.cron import next_occurrences, parse_schedule
from wheel.core.ids import HOUR_MS, finished_hour, shard_of, to_text
from wheel.core.occurrences import (
    _RAND_B_MASK,
    ALL_CAP,
    OVERDUE_COUNT_CAP,
    CatchUp,
    Misfire,
    _on_shard,
    catch_up,
    occurrence_id,
    scheduled_ms_of,
)

SCHEDULE = bytes.fromhex("0190a3b27c4d8e5f9a6b1c2d3e4f5a6b")
OTHER = bytes.fromhex("0190a3b27c4d8e5f9a6b1c2d3e4f5a6c")
T0_MS = 1_750_000_020_000  # 2025-06-15T15:07:00Z, a whole minute
MINUTE_MS = 60_000
INSTANTS = [0, 1, 1_700_000_000_000, T0_MS, 2**48 - 1]
SHARD_COUNTS = [1, 2, 3, 7, 16, 256, 16384]


@pytest.mark.parametrize("scheduled_ms", INSTANTS)
@pytest.mark.parametrize("shards", [1, 16])
def test_an_occurrence_id_is_a_v8_uuid_led_by_its_instant(
    scheduled_ms: int, shards: int
) -> None:
    """The id is a UUIDv8 (RFC variant) whose first 48 bits are the ms."""
    occurrence = occurrence_id(SCHEDULE, scheduled_ms, shards)
    value = uuid.UUID(bytes=occurrence)
    assert len(occurrence) == 16
    assert value.version == 8
    assert value.variant == uuid.RFC_4122
    assert scheduled_ms_of(occurrence) == scheduled_ms
    assert finished_hour(occurrence) == scheduled_ms // HOUR_MS


def test_the_same_occurrence_gets_the_same_id() -> None:
    """Deriving an id twice gives the same bytes."""
    assert occurrence_id(SCHEDULE, T0_MS) == occurrence_id(SCHEDULE, T0_MS)
    assert occurrence_id(SCHEDULE, T0_MS, 16) == occurrence_id(
        bytes(SCHEDULE), T0_MS, 16
    )


def test_the_derivation_is_pinned() -> None:
    """The id of a known input never changes: a deploy must not change it,
    or an occurrence created before it would be created again."""
    assert to_text(occurrence_id(SCHEDULE, 1_750_000_000_000)) == (
        "01977420-dc00-86a9-a613-c16a31efc1a1"
    )


def test_distinct_instants_get_distinct_ids() -> None:
    """Every instant of a schedule has its own id."""
    instants = range(T0_MS, T0_MS + 20_000 * 1000, 1000)
    ids = {occurrence_id(SCHEDULE, instant) for instant in instants}
    assert len(ids) == len(instants)


def test_distinct_schedules_get_distinct_ids() -> None:
    """The same instant of different schedules has different ids."""
    rng = random.Random(18)
    schedules = {rng.randbytes(16) for _ in range(20_000)}
    ids = {occurrence_id(schedule, T0_MS) for schedule in schedules}
    assert len(ids) == len(schedules)
    assert occurrence_id(SCHEDULE, T0_MS) != occurrence_id(OTHER, T0_MS)


@pytest.mark.parametrize("shards", SHARD_COUNTS)
def test_an_occurrence_lands_on_its_schedules_shard(shards: int) -> None:
    """shard_of maps every occurrence to its schedule's shard."""
    rng = random.Random(shards)
    for _ in range(200):
        schedule = rng.randbytes(16)
        instant = rng.randrange(2**48)
        occurrence = occurrence_id(schedule, instant, shards)
        assert shard_of(occurrence, shards) == shard_of(schedule, shards)
        assert scheduled_ms_of(occurrence) == instant
        assert uuid.UUID(bytes=occurrence).version == 8


@pytest.mark.parametrize("shards", SHARD_COUNTS[1:])
@pytest.mark.parametrize("low", [0, 1, _RAND_B_MASK - 1, _RAND_B_MASK])
def test_steering_stays_inside_the_low_field(shards: int, low: int) -> None:
    """Moving an id to a shard changes only its low 62 bits, at any edge."""
    high = 0x0190A3B27C4D_8E5F << 64 | 0b10 << 62
    for shard in {0, 1, shards // 2, shards - 1}:
        number = _on_shard(high | low, shard, shards)
        assert number % shards == shard
        assert number >> 62 == high >> 62
        assert abs((number & _RAND_B_MASK) - low) < shards


@pytest.mark.parametrize(
    ("schedule", "scheduled_ms", "shards", "match"),
    [
        (SCHEDULE[:15], T0_MS, 1, "16 bytes"),
        (SCHEDULE, -1, 1, "48 bits"),
        (SCHEDULE, 2**48, 1, "48 bits"),
        (SCHEDULE, T0_MS, 0, "shards"),
    ],
)
def test_bad_id_inputs_are_refused(
    schedule: bytes, scheduled_ms: int, shards: int, match: str
) -> None:
    """An id needs a 16-byte schedule id, a 48-bit instant, a shard count."""
    with pytest.raises(ValueError, match=match):
        occurrence_id(schedule, scheduled_ms, shards)


def test_next_occurrences_stop_at_end_at() -> None:
    """The occurrences of a schedule never pass its end_at."""
    spec = parse_schedule("* * * * *", end_at_ms=T0_MS + 3 * MINUTE_MS)
    instants = next_occurrences(spec, T0_MS, 8)
    assert [instant - T0_MS for instant in instants] == [
        MINUTE_MS,
        2 * MINUTE_MS,
        3 * MINUTE_MS,
    ]


def _minutes(*offsets: int) -> tuple[int, ...]:
    return tuple(T0_MS + offset * MINUTE_MS for offset in offsets)


# An every-minute schedule; its occurrence at minute 10 is handed over
# at `now` (minutes and ms after T0). Expected: fired minutes, overdue,
# missed, next minute.
EVERY_MINUTE = "* * * * *"
CATCH_UP = (
    [
        pytest.param(
            policy,
            10 * MINUTE_MS + 5,
            ((10,), 0, 0, 11),
            id=f"on-time-{policy}",
        )
        for policy in Misfire
    ]
    + [
        pytest.param(
            policy,
            11 * MINUTE_MS - 1,
            ((10,), 0, 0, 11),
            id=f"late-but-the-next-not-due-{policy}",
        )
        for policy in Misfire
    ]
    + [
        pytest.param(
            Misfire.SKIP,
            11 * MINUTE_MS,
            ((10,), 0, 0, 11),
            id="the-next-due-exactly-now-is-on-time",
        ),
        pytest.param(
            Misfire.ONCE,
            15 * MINUTE_MS + 30_000,
            ((10,), 6, 5, 16),
            id="once-fires-the-occurrence-on-the-wheel",
        ),
        pytest.param(
            Misfire.SKIP,
            15 * MINUTE_MS + 30_000,
            ((), 6, 6, 16),
            id="skip-fires-nothing-and-resumes",
        ),
        pytest.param(
            Misfire.ALL,
            15 * MINUTE_MS + 30_000,
            ((10, 11, 12, 13, 14, 15), 6, 0, 16),
            id="all-fires-every-overdue-one",
        ),
        pytest.param(
            Misfire.ONCE,
            15 * MINUTE_MS,
            ((10,), 5, 4, 15),
            id="an-occurrence-due-at-now-is-not-overdue",
        ),
        pytest.param(
            Misfire.ALL,
            260 * MINUTE_MS + 30_000,
            (tuple(range(10, 10 + ALL_CAP)), 251, 251 - ALL_CAP, 261),
            id="all-is-capped-oldest-first",
        ),
    ]
)


@pytest.mark.parametrize(("policy", "now_offset_ms", "expected"), CATCH_UP)
def test_catch_up(
    policy: Misfire,
    now_offset_ms: int,
    expected: tuple[tuple[int, ...], int, int, int],
) -> None:
    """The policy picks what fires after downtime; the schedule resumes."""
    fired, overdue, missed, following = expected
    spec = parse_schedule(EVERY_MINUTE)
    scheduled_ms = T0_MS + 10 * MINUTE_MS
    result = catch_up(spec, scheduled_ms, T0_MS + now_offset_ms, policy)
    assert result == CatchUp(
        _minutes(*fired), overdue, missed, _minutes(following)[0]
    )


@pytest.mark.parametrize(
    ("policy", "fired", "missed"),
    [
        (Misfire.ONCE, (10,), 3),
        (Misfire.SKIP, (), 4),
        (Misfire.ALL, (10, 11, 12, 13), 0),
    ],
)
def test_catch_up_at_the_end_of_a_schedule(
    policy: Misfire, fired: tuple[int, ...], missed: int
) -> None:
    """Downtime past end_at counts only occurrences up to it; none follows."""
    spec = parse_schedule(EVERY_MINUTE, end_at_ms=T0_MS + 13 * MINUTE_MS)
    result = catch_up(
        spec, T0_MS + 10 * MINUTE_MS, T0_MS + 30 * MINUTE_MS, policy
    )
    assert result == CatchUp(_minutes(*fired), 4, missed, None)


def test_the_last_occurrence_has_no_follower() -> None:
    """The occurrence at end_at fires; nothing follows it."""
    spec = parse_schedule(EVERY_MINUTE, end_at_ms=T0_MS)
    assert catch_up(spec, T0_MS, T0_MS + 5) == CatchUp((T0_MS,), 0, 0, None)


def test_overdue_counting_is_bounded() -> None:
    """A long outage counts up to the cap; the next one is still right."""
    spec = parse_schedule("* * * * * *")
    now_ms = T0_MS + 86_400_000 + 500
    result = catch_up(spec, T0_MS, now_ms, Misfire.SKIP)
    assert result == CatchUp(
        (), OVERDUE_COUNT_CAP, OVERDUE_COUNT_CAP, now_ms + 500
    )


def test_catch_up_across_the_autumn_overlap() -> None:
    """Overdue instants follow the DST rules: both passes of an interval."""
    spec = parse_schedule("*/30 * * * *", "Europe/Amsterdam")
    first_0200_ms = 1_761_436_800_000  # 2025-10-26T02:00+02:00
    now_ms = first_0200_ms + 150 * MINUTE_MS  # 03:30+01:00, on the dot
    result = catch_up(spec, first_0200_ms, now_ms, Misfire.ALL)
    half_hours = [first_0200_ms + k * 30 * MINUTE_MS for k in range(6)]
    assert result == CatchUp(tuple(half_hours[:5]), 5, 0, now_ms)


def test_a_policy_may_be_given_by_name() -> None:
    """catch_up takes the policy's wire name as well as the enum."""
    spec = parse_schedule(EVERY_MINUTE)
    now_ms = T0_MS + 5 * MINUTE_MS + 1
    assert catch_up(spec, T0_MS, now_ms, "skip") == catch_up(
        spec, T0_MS, now_ms, Misfire.SKIP
    )


def test_an_occurrence_not_yet_due_is_refused() -> None:
    """catch_up is for an occurrence whose time has come."""
    spec = parse_schedule(EVERY_MINUTE)
    with pytest.raises(ValueError, match="not due"):
        catch_up(spec, T0_MS, T0_MS - 1)
