"""Fleet-wide figures for the dashboard and the API's gauges.

Workers add what they did each minute (fired, retried, failed, deferred,
and a lateness histogram) to one small hash per minute, in one pipeline
a second (:class:`MinuteCounters`); the hashes expire after two hours.
:func:`fleet` reads everything the dashboard shows: per-shard figures
(:meth:`~wheel.queue.ShardQueue.survey`), the heartbeat registries, the
leases, the last 30 minutes and the backlog of the next day.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter
from dataclasses import dataclass

from wheel import rendezvous
from wheel.buckets import HOUR_MS, MINUTE_MS
from wheel.connection import Connection
from wheel.keys import Keys
from wheel.queue import ShardQueue, Survey
from wheel.registry import Registry

LATENESS_BOUNDS_MS = (
    1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000,
    30_000, 60_000, 300_000, 3_600_000,
)  # fmt: skip
"""Upper bounds of the lateness histogram, like the Prometheus one."""
KEEP_S = 2 * 3600
MINUTES_SHOWN = 30
LATENESS_MINUTES = 5
FIELDS = ("fired", "retried", "failed", "deferred")


def lateness_field(late_ms: float) -> str:
    """The histogram field a lateness falls in."""
    return f"l{bisect.bisect_left(LATENESS_BOUNDS_MS, late_ms)}"


def percentile_ms(histogram: dict[int, int], fraction: float) -> float | None:
    """A percentile from bucket counts (by bucket index), interpolated
    linearly inside its bucket; None without observations."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for index in range(len(LATENESS_BOUNDS_MS) + 1):
        count = histogram.get(index, 0)
        if count and seen + count >= rank:
            low = LATENESS_BOUNDS_MS[index - 1] if index else 0.0
            high = (
                LATENESS_BOUNDS_MS[index]
                if index < len(LATENESS_BOUNDS_MS)
                else low * 2
            )
            return low + (high - low) * (rank - seen) / count
        seen += count
    return float(LATENESS_BOUNDS_MS[-1])


class MinuteCounters:
    """What one worker did, added to the fleet's per-minute hashes."""

    def __init__(self, connection: Connection, keys: Keys) -> None:
        self.connection = connection
        self.keys = keys
        self._counts: Counter[tuple[int, str]] = Counter()

    def add(self, field: str, n: int = 1) -> None:
        """Count ``n`` of ``field`` in the current minute."""
        self._counts[(int(time.time() * 1000) // MINUTE_MS, field)] += n

    def late(self, late_ms: float) -> None:
        """Count one first attempt started ``late_ms`` after its due time."""
        self.add(lateness_field(late_ms))

    async def flush(self) -> float:
        """Send the counts so far; seconds until the next flush."""
        counts, self._counts = self._counts, Counter()
        if not counts:
            return 1.0
        calls = [
            self.connection.call(key, "HINCRBY", key, field, n)
            for (minute, field), n in counts.items()
            for key in (self.keys.stats(minute),)
        ]
        calls += [
            self.connection.call(key, "EXPIRE", key, KEEP_S)
            for key in {self.keys.stats(minute) for minute, _ in counts}
        ]
        try:
            await asyncio.gather(*calls)
        except Exception:
            # Kept for the next flush rather than lost.
            self._counts.update(counts)
            raise
        return 1.0


@dataclass(frozen=True, slots=True)
class Member:
    """A live ticker or worker."""

    name: str
    last_beat_ms: int
    shards: int


@dataclass(frozen=True, slots=True)
class Minute:
    """What the fleet did in one minute."""

    start_ms: int
    counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class Fleet:
    """Everything the dashboard shows, read at one moment."""

    now_ms: int
    unfinished: int
    ready: int
    in_flight: int
    oldest_overdue_ms: int
    dead_letters: int
    tickers: list[Member]
    workers: list[Member]
    minutes: list[Minute]
    lateness: dict[int, int]
    backlog_hour: list[int]
    backlog_day: list[int]


async def fleet(queue: ShardQueue, registry: Registry) -> Fleet:
    """Read the fleet's figures (a few commands per shard, batched)."""
    keys = queue.keys
    shards = keys.all_shards()
    now_ms = await registry.now_ms(keys.meta)
    (
        surveys,
        owners,
        tickers,
        workers,
        minutes,
        backlogs,
    ) = await asyncio.gather(
        asyncio.gather(*(queue.survey(shard) for shard in shards)),
        asyncio.gather(*(queue.lease_owner(shard) for shard in shards)),
        registry.members("ticker"),
        registry.members("worker"),
        _minutes(queue.connection, keys, now_ms),
        asyncio.gather(
            *(queue.backlog(s, now_ms, now_ms + 24 * HOUR_MS) for s in shards)
        ),
    )
    held = Counter(owner for owner in owners if owner)
    live_workers = [name for name, _ in workers]
    lateness: Counter[int] = Counter()
    for minute in minutes[-LATENESS_MINUTES:]:
        for field, n in minute.counts.items():
            if field.startswith("l"):
                lateness[int(field[1:])] += n
    hour, day = [0] * 60, [0] * 24
    for at_ms, size in (item for shard in backlogs for item in shard):
        ahead = max(0, at_ms - now_ms)
        if ahead < HOUR_MS:
            hour[ahead // MINUTE_MS] += size
        if ahead < 24 * HOUR_MS:
            day[ahead // HOUR_MS] += size
    return Fleet(
        now_ms=now_ms,
        unfinished=sum(s.unfinished for s in surveys),
        ready=sum(s.ready for s in surveys),
        in_flight=sum(s.in_flight for s in surveys),
        oldest_overdue_ms=_oldest_overdue(surveys, now_ms),
        dead_letters=sum(s.dead_letters for s in surveys),
        tickers=[Member(n, at, held[n]) for n, at in tickers],
        workers=[
            Member(
                n,
                at,
                len(rendezvous.assign(n, live_workers, keys.shards)),
            )
            for n, at in workers
        ],
        minutes=minutes,
        lateness=dict(lateness),
        backlog_hour=hour,
        backlog_day=day,
    )


def _oldest_overdue(surveys: list[Survey], now_ms: int) -> int:
    due = [s.earliest_due_ms for s in surveys if s.earliest_due_ms]
    return max(0, now_ms - min(due)) if due else 0


async def _minutes(
    connection: Connection, keys: Keys, now_ms: int
) -> list[Minute]:
    current = now_ms // MINUTE_MS
    numbers = range(current - MINUTES_SHOWN + 1, current + 1)
    replies = await asyncio.gather(
        *(
            connection.call(keys.stats(n), "HGETALL", keys.stats(n))
            for n in numbers
        )
    )
    return [
        Minute(
            n * MINUTE_MS,
            {
                reply[i].decode(): int(reply[i + 1])
                for i in range(0, len(reply), 2)
            },
        )
        for n, reply in zip(numbers, replies, strict=True)
    ]
