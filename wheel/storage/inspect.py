"""Operator reads across shards: dead letters, surveys, the backlog.

Nothing here changes a timer; the dashboard, ``/stats``, ``/metrics``,
``GET /dead-letters`` and ``timer-wheel dead-letters`` read through it.
"""

from __future__ import annotations

import asyncio

from redis.exceptions import ResponseError

from wheel.core.buckets import Level
from wheel.storage.errors import no_group
from wheel.storage.keys import GROUP, ShardKeys
from wheel.storage.replies import (
    DeadLetter,
    Survey,
    as_int,
    bucket_of,
    dead_letter_of,
    entry_of,
)
from wheel.storage.shards import DEAD_LETTER_MAXLEN, ShardQueue


class Inspector:
    """Reads the shards of one deployment for operators."""

    def __init__(self, queue: ShardQueue) -> None:
        self.queue = queue
        self.connection = queue.connection
        self.keys = queue.keys

    async def dead_letters(
        self, shard: ShardKeys, limit: int
    ) -> list[DeadLetter]:
        """The shard's newest dead letters, newest first."""
        reply = await self.connection.call(
            shard.dead, "XREVRANGE", shard.dead, "+", "-", "COUNT", limit
        )
        return [dead_letter_of(entry) for entry in reply]

    async def newest_dead_letters(self, limit: int) -> list[DeadLetter]:
        """The newest ``limit`` dead letters of every shard, newest first."""
        letters = await asyncio.gather(
            *(
                self.dead_letters(shard, limit)
                for shard in self.keys.all_shards()
            )
        )
        merged = [letter for shard in letters for letter in shard]
        merged.sort(key=lambda letter: (letter.at_ms, letter.entry_id))
        return merged[::-1][:limit]

    async def find_dead_letter(self, timer_id: bytes) -> DeadLetter | None:
        """The dead letter of ``timer_id``, if its shard still keeps it."""
        shard = self.queue.shard_of(timer_id)
        for letter in await self.dead_letters(shard, DEAD_LETTER_MAXLEN * 2):
            if letter.timer_id == timer_id:
                return letter
        return None

    async def survey(self, shard: ShardKeys) -> Survey:
        """Cheap figures of one shard, in one round trip (gauges, stats)."""
        count, ready, pending, first, oldest, dead = await asyncio.gather(
            self.connection.call(shard.count, "GET", shard.count),
            self.connection.call(shard.ready, "XLEN", shard.ready),
            self._pending(shard),
            self.connection.call(
                shard.index, "ZRANGE", shard.index, 0, 0, "WITHSCORES"
            ),
            self.connection.call(
                shard.ready, "XRANGE", shard.ready, "-", "+", "COUNT", 1
            ),
            self.connection.call(shard.dead, "XLEN", shard.dead),
        )
        earliest = None
        if first and bucket_of(first[0]).level is Level.MINUTE:
            earliest = int(float(first[1]))
        if oldest:
            sched = entry_of(oldest[0]).sched_ms
            earliest = sched if earliest is None else min(earliest, sched)
        return Survey(
            int(count or 0), as_int(ready), pending, earliest, as_int(dead)
        )

    async def _pending(self, shard: ShardKeys) -> int:
        try:
            reply = await self.connection.call(
                shard.ready, "XPENDING", shard.ready, GROUP
            )
        except ResponseError as exc:
            if no_group(exc):
                return 0
            raise
        return as_int(reply[0])

    async def backlog(
        self, shard: ShardKeys, start_ms: int, end_ms: int
    ) -> list[tuple[int, int]]:
        """(scheduled ms, timers) of the shard's buckets acting before
        ``end_ms``: a minute bucket counts at its earliest due time, a
        coarse one at its start (for the dashboard's backlog chart)."""
        reply = await self.connection.call(
            shard.index,
            "ZRANGE",
            shard.index,
            "-inf",
            end_ms,
            "BYSCORE",
            "WITHSCORES",
        )
        found = [
            (bucket_of(reply[i]), int(float(reply[i + 1])))
            for i in range(0, len(reply), 2)
        ]
        sizes = await asyncio.gather(
            *(
                self.connection.call(
                    shard.bucket(bucket),
                    "ZCARD" if bucket.level is Level.MINUTE else "LLEN",
                    shard.bucket(bucket),
                )
                for bucket, _ in found
            )
        )
        return [
            (
                max(
                    start_ms, score if b.level is Level.MINUTE else b.start_ms
                ),
                as_int(size),
            )
            for (b, score), size in zip(found, sizes, strict=True)
        ]
