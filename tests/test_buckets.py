"""Bucket arithmetic of the hierarchical wheel, and its Lua mirror."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from wheel.core import buckets
from wheel.core.buckets import (
    DAY_LEAD_MS,
    DAY_MS,
    HOUR_LEAD_MS,
    HOUR_MS,
    MEMBER_DUE_BYTES,
    MINUTE_MS,
    Bucket,
    Level,
    encode_member,
    minute_of,
    parse_member,
    place,
)
from wheel.storage import scripts

DAY = 20_000
"""An epoch day (2024-10-04) the tables are built around."""
START = DAY * DAY_MS
"""When day :data:`DAY` starts."""
HOUR = START // HOUR_MS
"""The first hour of day :data:`DAY`."""
MINUTE = START // MINUTE_MS
"""The first minute of day :data:`DAY`."""

PlaceFn = Callable[[int, int], tuple[str, int]]


def _d(number: int) -> Bucket:
    return Bucket(Level.DAY, number)


def _h(number: int) -> Bucket:
    return Bucket(Level.HOUR, number)


def _m(number: int) -> Bucket:
    return Bucket(Level.MINUTE, number)


PLACE_TABLE = [
    # Far ahead: the day bucket.
    (START + 5 * HOUR_MS, START - 30 * DAY_MS, _d(DAY)),
    (START, START - 2 * DAY_MS, _d(DAY)),
    (START + DAY_MS - 1, START - DAY_MS, _d(DAY)),
    (START + 400 * DAY_MS, START, _d(DAY + 400)),
    # The day bucket is cascaded an hour before the day starts.
    (START, START - DAY_LEAD_MS - 1, _d(DAY)),
    (START, START - DAY_LEAD_MS, _h(HOUR)),
    (START + 10 * HOUR_MS, START - DAY_LEAD_MS - 1, _d(DAY)),
    (START + 10 * HOUR_MS, START - DAY_LEAD_MS, _h(HOUR + 10)),
    (START + DAY_MS - 1, START - DAY_LEAD_MS, _h(HOUR + 23)),
    # The hour bucket is cascaded five minutes before the hour starts.
    (START, START - HOUR_LEAD_MS - 1, _h(HOUR)),
    (START, START - HOUR_LEAD_MS, _m(MINUTE)),
    (START + HOUR_MS - 1, START - HOUR_LEAD_MS - 1, _h(HOUR)),
    (START + HOUR_MS - 1, START - HOUR_LEAD_MS, _m(MINUTE + 59)),
    (
        START + 2 * HOUR_MS,
        START + 2 * HOUR_MS - HOUR_LEAD_MS - 1,
        _h(HOUR + 2),
    ),
    (
        START + 2 * HOUR_MS,
        START + 2 * HOUR_MS - HOUR_LEAD_MS,
        _m(MINUTE + 120),
    ),
    # Later hours of a day already cascaded into hours stay hours.
    (START + 5 * HOUR_MS, START + HOUR_MS, _h(HOUR + 5)),
    (START + DAY_MS - 1, START + 20 * HOUR_MS, _h(HOUR + 23)),
    # The next day before its own cascade is a day bucket again.
    (START + DAY_MS, START + DAY_MS - DAY_LEAD_MS - 1, _d(DAY + 1)),
    (START + DAY_MS, START + DAY_MS - DAY_LEAD_MS, _h(HOUR + 24)),
    # Soon, now, or past: a minute bucket.
    (START + 30_000, START, _m(MINUTE)),
    (START + MINUTE_MS, START, _m(MINUTE + 1)),
    (START + HOUR_MS - 1, START, _m(MINUTE + 59)),
    (START, START, _m(MINUTE)),
    (START - 1, START, _m(MINUTE - 1)),
    (START - 7 * DAY_MS, START, _m(MINUTE - 7 * 1440)),
    (0, 0, _m(0)),
]


def _check_place(due_ms: int, now_ms: int, bucket: Bucket) -> None:
    """Asserts that ``bucket`` is the right home of ``due_ms`` at now."""
    assert bucket.start_ms <= due_ms < bucket.end_ms
    day = Bucket(Level.DAY, due_ms // DAY_MS)
    hour = Bucket(Level.HOUR, due_ms // HOUR_MS)
    if bucket.level is Level.DAY:
        assert day.cascade_ms > now_ms
    elif bucket.level is Level.HOUR:
        assert day.cascade_ms <= now_ms < hour.cascade_ms
    else:
        assert day.cascade_ms <= now_ms
        assert hour.cascade_ms <= now_ms


def _boundary_pairs(seed: int, count: int) -> list[tuple[int, int]]:
    """Random (due, now) pairs within a few ms of the wheel's boundaries."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        day_ms = rng.randrange(19_000, 23_000) * DAY_MS
        due_ms = day_ms + rng.choice(
            [
                0,
                rng.randrange(24) * HOUR_MS,
                rng.randrange(1440) * MINUTE_MS,
                DAY_MS,
                rng.randrange(DAY_MS),
            ]
        )
        due_ms += rng.randint(-2, 2)
        day = Bucket(Level.DAY, due_ms // DAY_MS)
        hour = Bucket(Level.HOUR, due_ms // HOUR_MS)
        now_ms = rng.choice(
            [
                day.cascade_ms,
                hour.cascade_ms,
                day.start_ms,
                hour.start_ms,
                due_ms,
                due_ms - rng.randrange(3 * DAY_MS),
                due_ms + rng.randrange(DAY_MS),
            ]
        )
        pairs.append((due_ms, now_ms + rng.randint(-2, 2)))
    return pairs


@pytest.fixture(scope="module")
def lua_place() -> PlaceFn:
    """``place`` of ``lua/_prelude.lua``, run by Lua 5.1 as in Redis."""
    lua51 = pytest.importorskip("lupa.lua51")
    runtime = lua51.LuaRuntime()
    # Nothing place() needs touches redis or struct; the stubs make an
    # accidental call fail loudly rather than read a nil global.
    runtime.execute(
        "redis = setmetatable({}, {__index = function() error('redis') end})"
    )
    runtime.execute(
        "struct = setmetatable({}, {__index = function() error('struct') end})"
    )
    source = scripts._constants() + scripts._read("_prelude")
    function: PlaceFn = runtime.execute(source + "\nreturn place")
    return function


def _lua_bucket(lua_place: PlaceFn, due_ms: int, now_ms: int) -> Bucket:
    level, number = lua_place(due_ms, now_ms)
    assert float(number).is_integer()
    return Bucket(Level(level), int(number))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MINUTE_MS", 60_000),
        ("HOUR_MS", 3_600_000),
        ("DAY_MS", 86_400_000),
        ("HOUR_LEAD_MS", 300_000),
        ("DAY_LEAD_MS", 3_600_000),
        ("MEMBER_DUE_BYTES", 6),
    ],
)
def test_constants(name: str, value: int) -> None:
    """The wheel's widths and leads are the documented ones."""
    assert getattr(buckets, name) == value


def test_day_lead_leaves_time_for_every_hour_cascade() -> None:
    """A day is cascaded before its first hour's own cascade time."""
    assert DAY_LEAD_MS > HOUR_LEAD_MS
    day = Bucket(Level.DAY, DAY)
    assert all(h.cascade_ms > day.cascade_ms for h in day.children())


@pytest.mark.parametrize(("due_ms", "now_ms", "bucket"), PLACE_TABLE)
def test_place(due_ms: int, now_ms: int, bucket: Bucket) -> None:
    """A timer goes to the coarsest bucket not yet cascaded, else a minute."""
    assert place(due_ms, now_ms) == bucket
    _check_place(due_ms, now_ms, bucket)


def test_place_rule_on_random_boundary_pairs() -> None:
    """Around every boundary, place() holds the due time and obeys the rule."""
    for due_ms, now_ms in _boundary_pairs(seed=1, count=5000):
        _check_place(due_ms, now_ms, place(due_ms, now_ms))


@pytest.mark.parametrize(
    ("bucket", "start_ms", "end_ms", "cascade_ms", "member"),
    [
        (_m(0), 0, MINUTE_MS, 0, "m0"),
        (_m(MINUTE), START, START + MINUTE_MS, START, f"m{MINUTE}"),
        (_h(0), 0, HOUR_MS, -HOUR_LEAD_MS, "h0"),
        (
            _h(HOUR + 3),
            START + 3 * HOUR_MS,
            START + 4 * HOUR_MS,
            START + 3 * HOUR_MS - HOUR_LEAD_MS,
            f"h{HOUR + 3}",
        ),
        (_d(1), DAY_MS, 2 * DAY_MS, DAY_MS - DAY_LEAD_MS, "d1"),
        (_d(DAY), START, START + DAY_MS, START - DAY_LEAD_MS, "d20000"),
    ],
)
def test_bucket_span_and_member(
    bucket: Bucket, start_ms: int, end_ms: int, cascade_ms: int, member: str
) -> None:
    """A bucket spans [start, end), cascades at start minus its lead."""
    assert bucket.start_ms == start_ms
    assert bucket.end_ms == end_ms
    assert bucket.cascade_ms == cascade_ms
    assert bucket.member == member


@pytest.mark.parametrize(
    ("bucket", "child", "first", "count"),
    [
        (_h(0), Level.MINUTE, 0, 60),
        (_h(HOUR + 1), Level.MINUTE, MINUTE + 60, 60),
        (_d(0), Level.HOUR, 0, 24),
        (_d(DAY), Level.HOUR, HOUR, 24),
    ],
)
def test_children(
    bucket: Bucket, child: Level, first: int, count: int
) -> None:
    """A coarse bucket cascades into the consecutive buckets it covers."""
    children = bucket.children()
    assert children == [Bucket(child, first + i) for i in range(count)]
    assert children[0].start_ms == bucket.start_ms
    assert children[-1].end_ms == bucket.end_ms


@pytest.mark.parametrize(
    ("bucket", "child", "span"),
    [
        (_h(7), Level.MINUTE, 60),
        (_d(7), Level.HOUR, 24),
        (_d(7), Level.MINUTE, 1440),
        (_m(7), Level.MINUTE, 1),
    ],
)
def test_span(bucket: Bucket, child: Level, span: int) -> None:
    """A bucket covers its width over the child's width of child buckets."""
    assert bucket.span(child) == span


@pytest.mark.parametrize(
    ("due_ms", "number"),
    [
        (0, 0),
        (1, 0),
        (MINUTE_MS - 1, 0),
        (MINUTE_MS, 1),
        (1_700_000_000_000, 28_333_333),
        (1_700_000_039_999, 28_333_333),
        (1_700_000_040_000, 28_333_334),
        (-1, -1),
    ],
)
def test_minute_of(due_ms: int, number: int) -> None:
    """A due time's minute bucket is its epoch minute (floor)."""
    assert minute_of(due_ms) == Bucket(Level.MINUTE, number)


@pytest.mark.parametrize(
    ("member", "bucket"),
    [
        ("m0", _m(0)),
        ("m29000000", _m(29_000_000)),
        ("h480000", _h(480_000)),
        ("d20000", _d(20_000)),
    ],
)
def test_parse_member(member: str, bucket: Bucket) -> None:
    """An index member names its level and number; member inverts it."""
    assert parse_member(member) == bucket
    assert parse_member(member).member == member


@pytest.mark.parametrize("member", ["x5", "m", "h1.5", "", "mm3"])
def test_parse_member_refuses_garbage(member: str) -> None:
    """A member that is no bucket raises instead of naming a wrong one."""
    with pytest.raises((ValueError, IndexError)):
        parse_member(member)


@pytest.mark.parametrize(
    ("due_ms", "tail"),
    [
        (0, b"\x00\x00\x00\x00\x00\x00"),
        (1, b"\x00\x00\x00\x00\x00\x01"),
        (1_700_000_000_000, bytes.fromhex("018bcfe56800")),
        (2**48 - 1, b"\xff" * 6),
    ],
)
def test_encode_member(due_ms: int, tail: bytes) -> None:
    """A coarse member is the 16-byte id then the due ms, 6 bytes big end."""
    timer_id = bytes(range(16))
    member = encode_member(timer_id, due_ms)
    assert member == timer_id + tail
    assert len(member) == 16 + MEMBER_DUE_BYTES
    assert int.from_bytes(member[16:], "big") == due_ms


def test_encode_member_refuses_a_due_beyond_six_bytes() -> None:
    """A due time that does not fit in 48 bits raises, not wraps."""
    with pytest.raises(OverflowError):
        encode_member(bytes(16), 2**48)


@pytest.mark.parametrize(("due_ms", "now_ms", "bucket"), PLACE_TABLE)
def test_lua_place_agrees_on_the_table(
    lua_place: PlaceFn, due_ms: int, now_ms: int, bucket: Bucket
) -> None:
    """The Lua place() answers every table case as Python does."""
    assert _lua_bucket(lua_place, due_ms, now_ms) == bucket


def test_lua_place_agrees_on_random_boundary_pairs(
    lua_place: PlaceFn,
) -> None:
    """The Lua place() matches Python on thousands of near-boundary pairs."""
    for due_ms, now_ms in _boundary_pairs(seed=2, count=5000):
        assert _lua_bucket(lua_place, due_ms, now_ms) == place(due_ms, now_ms)


def test_lua_place_agrees_up_to_the_largest_due(lua_place: PlaceFn) -> None:
    """Lua's float division stays exact up to the 48-bit due limit."""
    rng = random.Random(3)
    top = 2**48 - 1
    for _ in range(2000):
        width = rng.choice([MINUTE_MS, HOUR_MS, DAY_MS])
        due_ms = min(top, rng.randrange(top // width) * width)
        due_ms = max(0, min(top, due_ms + rng.randint(-2, 2)))
        now_ms = due_ms - rng.choice([0, HOUR_LEAD_MS, DAY_LEAD_MS, DAY_MS])
        now_ms += rng.randint(-2, 2)
        assert _lua_bucket(lua_place, due_ms, now_ms) == place(due_ms, now_ms)
