"""Fleet-wide figures for the dashboard, ``/stats`` and the gauges.

:func:`fleet` reads everything the dashboard shows: per-shard figures
(:meth:`~wheel.storage.inspect.Inspector.survey`), the heartbeat
registries, the leases, the last 30 minutes and the backlog of the next
day.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from wheel.core import rendezvous
from wheel.core.buckets import HOUR_MS, MINUTE_MS
from wheel.storage.inspect import Inspector
from wheel.storage.minute_stats import (
    LATENESS_BOUNDS_MS,
    LATENESS_MINUTES,
    Minute,
    read_minutes,
)
from wheel.storage.registry import Registry
from wheel.storage.replies import Survey
from wheel.storage.shards import ShardQueue


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


@dataclass(frozen=True, slots=True)
class Member:
    """A live ticker or worker."""

    name: str
    last_beat_ms: int
    shards: int


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
    inspector = Inspector(queue)
    now_ms = await registry.now_ms(keys.meta)
    (
        surveys,
        owners,
        tickers,
        workers,
        minutes,
        backlogs,
    ) = await asyncio.gather(
        asyncio.gather(*(inspector.survey(shard) for shard in shards)),
        asyncio.gather(*(queue.lease_owner(shard) for shard in shards)),
        registry.members("ticker"),
        registry.members("worker"),
        read_minutes(queue.connection, keys, now_ms),
        asyncio.gather(
            *(
                inspector.backlog(s, now_ms, now_ms + 24 * HOUR_MS)
                for s in shards
            )
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
