"""The fleet's per-minute counters: what workers did, minute by minute.

Workers add what they did each minute (fired, retried, failed, deferred,
and a lateness histogram) to one small hash per minute, in one pipeline
a second (:class:`MinuteCounters`); the hashes expire after two hours.
:func:`read_minutes` reads them back for the dashboard.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter
from dataclasses import dataclass

from wheel.core.buckets import MINUTE_MS
from wheel.storage.connection import Connection
from wheel.storage.errors import RedisUnavailable
from wheel.storage.keys import Keys

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
        items = list(counts.items())
        # Not sent again after a lost reply: it may have counted.
        calls = [
            self.connection.call(key, "HINCRBY", key, field, n, resend=False)
            for (minute, field), n in items
            for key in (self.keys.stats(minute),)
        ]
        calls += [
            self.connection.call(key, "EXPIRE", key, KEEP_S)
            for key in {self.keys.stats(minute) for minute, _ in counts}
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed: BaseException | None = None
        for index, result in enumerate(results):
            if not isinstance(result, BaseException):
                continue
            failed = failed or result
            if index < len(items) and not (
                isinstance(result, RedisUnavailable) and result.maybe_applied
            ):
                # Not counted: kept for the next flush rather than lost.
                self._counts[items[index][0]] += items[index][1]
        if failed is not None:
            raise failed
        return 1.0


@dataclass(frozen=True, slots=True)
class Minute:
    """What the fleet did in one minute."""

    start_ms: int
    counts: dict[str, int]


async def read_minutes(
    connection: Connection, keys: Keys, now_ms: int
) -> list[Minute]:
    """What the fleet did in each of the last minutes, oldest first."""
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
