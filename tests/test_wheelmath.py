"""Pure wheel arithmetic and the Redis clock estimate, without Redis."""

from __future__ import annotations

import random
import uuid
from collections import Counter

import pytest

from wheel.clock import RedisClock, redis_time_ms
from wheel.wheelmath import (
    SLOT_MS,
    assign_shards,
    backoff_s,
    ceil_seconds,
    delay_ms,
    outcome_of,
    shard_of,
    slot_of,
)


class FixedDraw(random.Random):
    """A random source whose ``random()`` always returns ``draw``."""

    def __init__(self, draw: float) -> None:
        super().__init__(0)
        self.draw = draw

    def random(self) -> float:
        return self.draw


@pytest.mark.parametrize(
    ("ms", "seconds"),
    [
        (-10_000, 0),
        (-1, 0),
        (0, 0),
        (1, 1),
        (999, 1),
        (1000, 1),
        (1001, 2),
        (1999, 2),
        (2000, 2),
        (14_400_001, 14_401),
        (14_401_000, 14_401),
        (31_536_000_000, 31_536_000),
    ],
)
def test_ceil_seconds(ms: int, seconds: int) -> None:
    """Milliseconds left round up to whole seconds and never go below 0."""
    assert ceil_seconds(ms) == seconds


@pytest.mark.parametrize(
    ("hours", "minutes", "seconds", "expected_ms"),
    [
        (0, 0, 0, 0),
        (0, 0, 1, 1000),
        (0, 1, 0, 60_000),
        (1, 0, 0, 3_600_000),
        (4, 0, 1, 14_401_000),
        (0, 90, 30, 5_430_000),
        (0, 0, 86_400, 86_400_000),
        (8760, 0, 0, 31_536_000_000),
        (10**12, 10**12, 10**12, 3_661_000 * 10**12),
    ],
)
def test_delay_ms(
    hours: int, minutes: int, seconds: int, expected_ms: int
) -> None:
    """Hours, minutes and seconds add up to a delay in exact ms."""
    assert delay_ms(hours, minutes, seconds) == expected_ms


@pytest.mark.parametrize(
    ("due_ms", "minute"),
    [
        (0, 0),
        (1, 0),
        (SLOT_MS - 1, 0),
        (SLOT_MS, 1),
        (SLOT_MS + 1, 1),
        (1_700_000_000_000, 28_333_333),
        (1_700_000_039_999, 28_333_333),
        (1_700_000_040_000, 28_333_334),
    ],
)
def test_slot_of(due_ms: int, minute: int) -> None:
    """A due time falls in the slot of its epoch minute (floor)."""
    assert slot_of(due_ms) == minute


@pytest.mark.parametrize(
    ("number", "shards", "shard"),
    [
        (0, 1, 0),
        (12345, 1, 0),
        (0, 4, 0),
        (5, 4, 1),
        (7, 4, 3),
        (2**128 - 1, 16, 15),
        (2**127 + 3, 10, (2**127 + 3) % 10),
    ],
)
def test_shard_of(number: int, shards: int, shard: int) -> None:
    """A timer's shard is its uuid's integer modulo the shard count."""
    assert shard_of(uuid.UUID(int=number), shards) == shard


def test_shard_of_is_stable_and_in_range() -> None:
    """The same id always maps to the same shard, within [0, shards)."""
    rng = random.Random(7)
    for _ in range(500):
        timer_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        shard = shard_of(timer_id, 16)
        assert 0 <= shard < 16
        assert shard_of(uuid.UUID(str(timer_id)), 16) == shard


def test_shard_of_spreads_random_ids() -> None:
    """Random uuid4s spread over every shard, none far above its share."""
    rng = random.Random(11)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(4000)]
    counts = Counter(shard_of(timer_id, 8) for timer_id in ids)
    assert set(counts) == set(range(8))
    assert max(counts.values()) < 2 * min(counts.values())


@pytest.mark.parametrize(
    ("attempt", "base_s", "cap_s", "nominal_s"),
    [
        (1, 1.0, 3600.0, 1.0),
        (2, 1.0, 3600.0, 2.0),
        (3, 1.0, 3600.0, 4.0),
        (5, 0.5, 3600.0, 8.0),
        (12, 1.0, 3600.0, 2048.0),
        (13, 1.0, 3600.0, 3600.0),
        (20, 1.0, 60.0, 60.0),
        (10_000, 1.0, 60.0, 60.0),
        (3, 10.0, 15.0, 15.0),
    ],
)
def test_backoff_bounds(
    attempt: int, base_s: float, cap_s: float, nominal_s: float
) -> None:
    """Backoff lies in [d/2, d] of the capped exponential d."""
    low = backoff_s(attempt, base_s, cap_s, FixedDraw(0.0))
    high = backoff_s(attempt, base_s, cap_s, FixedDraw(1.0))
    assert low == pytest.approx(nominal_s / 2)
    assert high == pytest.approx(nominal_s)
    rng = random.Random(attempt)
    for _ in range(200):
        delay = backoff_s(attempt, base_s, cap_s, rng)
        assert nominal_s / 2 <= delay <= nominal_s


def test_backoff_is_capped_for_huge_attempts() -> None:
    """A huge attempt number neither overflows nor exceeds the cap."""
    for attempt in (63, 64, 1000, 10**9):
        assert backoff_s(attempt, 1.0, 3600.0, random.Random(1)) <= 3600.0


def test_backoff_is_deterministic_with_a_seeded_random() -> None:
    """Two equally seeded random sources give the same backoff series."""
    first = [backoff_s(n, 1.0, 300.0, random.Random(42)) for n in range(1, 9)]
    again = [backoff_s(n, 1.0, 300.0, random.Random(42)) for n in range(1, 9)]
    assert first == again


def test_backoff_jitter_spreads_retries() -> None:
    """Jitter gives timers that failed together different delays."""
    rng = random.Random(3)
    delays = {backoff_s(4, 1.0, 3600.0, rng) for _ in range(50)}
    assert len(delays) > 40


@pytest.mark.parametrize("attempt", [0, -1, -100])
def test_backoff_rejects_attempts_below_one(attempt: int) -> None:
    """Attempts count from 1; a smaller one raises ValueError."""
    with pytest.raises(ValueError):
        backoff_s(attempt, 1.0, 60.0)


@pytest.mark.parametrize(
    ("tickers", "shards"),
    [(1, 1), (1, 16), (2, 16), (3, 16), (5, 16), (16, 16), (20, 16), (7, 4)],
)
def test_assign_shards_covers_every_shard_once(
    tickers: int, shards: int
) -> None:
    """Live tickers hold every shard exactly once, balanced within 1."""
    live = [f"ticker-{n:02d}" for n in range(tickers)]
    held = [assign_shards(me, live, shards) for me in live]
    every = Counter(shard for mine in held for shard in mine)
    assert set(every) == set(range(shards))
    assert set(every.values()) == {1}
    sizes = [len(mine) for mine in held]
    assert max(sizes) - min(sizes) <= 1


def test_assign_shards_ignores_order_and_duplicates() -> None:
    """The assignment depends on the set of live tickers only."""
    live = ["b", "a", "c"]
    for me in live:
        assert assign_shards(me, live, 10) == assign_shards(
            me, ["c", "a", "b", "a"], 10
        )


def test_assign_shards_gives_nothing_to_an_unlisted_ticker() -> None:
    """A ticker that is not among the live ones holds no shard."""
    assert assign_shards("new", ["a", "b"], 16) == frozenset()
    assert assign_shards("new", [], 16) == frozenset()


def test_clock_refuses_to_guess_before_observing() -> None:
    """An unsynced clock says so and raises instead of inventing a time."""
    clock = RedisClock(lambda: 0.0)
    assert not clock.synced
    with pytest.raises(RuntimeError):
        clock.now_ms()


def test_clock_advances_with_the_injected_monotonic_time() -> None:
    """Now is the last Redis time plus the local monotonic time since."""
    ticks = [1000.0]
    clock = RedisClock(lambda: ticks[0])
    clock.observe(1_700_000_000_000)
    assert clock.synced
    assert clock.now_ms() == 1_700_000_000_000
    ticks[0] = 1250.75
    assert clock.now_ms() == 1_700_000_000_250
    ticks[0] = 61_000.0
    assert clock.now_ms() == 1_700_000_060_000


def test_clock_resets_its_base_on_each_observation() -> None:
    """A new observation replaces the estimate, even a step backwards."""
    ticks = [0.0]
    clock = RedisClock(lambda: ticks[0])
    clock.observe(5_000)
    ticks[0] = 3_000.0
    clock.observe(7_000)
    assert clock.now_ms() == 7_000
    ticks[0] = 3_500.0
    assert clock.now_ms() == 7_500
    clock.observe(6_000)
    assert clock.now_ms() == 6_000


@pytest.mark.parametrize(
    ("reply", "epoch_ms"),
    [
        ((1_700_000_000, 0), 1_700_000_000_000),
        ((1_700_000_000, 999), 1_700_000_000_000),
        ((1_700_000_000, 123_456), 1_700_000_000_123),
        ([1_700_000_000, 999_999], 1_700_000_000_999),
        (("1700000001", "5000"), 1_700_000_001_005),
    ],
)
def test_redis_time_ms(reply: tuple[int, int], epoch_ms: int) -> None:
    """A TIME reply becomes epoch ms, microseconds truncated."""
    assert redis_time_ms(reply) == epoch_ms


@pytest.mark.parametrize(
    ("ok", "attempt", "expected"),
    [
        (True, 1, ("ok", 0)),
        (True, 5, ("ok", 0)),
        (False, 1, ("retry", 2000)),
        (False, 2, ("retry", 4000)),
        (False, 4, ("retry", 10_000)),
        (False, 5, ("fail", 0)),
        (False, 7, ("fail", 0)),
    ],
)
def test_outcome_of_an_attempt(
    ok: bool, attempt: int, expected: tuple[str, int]
) -> None:
    """A 2xx completes; failures retry with backoff until the last one."""
    assert outcome_of(ok, attempt, 5, 2.0, 10.0, FixedDraw(1.0)) == expected
