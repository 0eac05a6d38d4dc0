"""Reclaimer: takes over what dead workers left.

The reclaimer sweeps *every* shard, owned or not, with ``XAUTOCLAIM``
(following its cursor), so entries a dead worker held are fired again
about ``WHEEL_RECLAIM_IDLE`` after it took them.
"""

from __future__ import annotations

import logging
import time

from wheel.engine.capacity import Capacity
from wheel.engine.firer import Firer
from wheel.settings import Settings
from wheel.storage.keys import ShardKeys
from wheel.storage.shards import ShardQueue

log = logging.getLogger(__name__)

RECLAIM_COUNT = 32
"""Most entries one XAUTOCLAIM takes over (and permits it reserves)."""
MAX_ROUNDS = 1000
"""Most XAUTOCLAIM calls on one shard in one sweep."""


class Reclaimer:
    """Takes over entries idle past the claim hold, on every shard."""

    def __init__(
        self,
        queue: ShardQueue,
        capacity: Capacity,
        firer: Firer,
        settings: Settings,
        consumer: str,
    ) -> None:
        self.queue = queue
        self.capacity = capacity
        self.firer = firer
        self.settings = settings
        self.consumer = consumer
        self._cursors: dict[int, bytes] = {}
        self.reclaimed_total = 0

    @property
    def interval_s(self) -> float:
        """How often a sweep starts."""
        return min(self.settings.reclaim_idle / 4, 30.0)

    async def sweep(self) -> float:
        """One pass over every shard; seconds until the next.

        Shards are swept one at a time, each with the permits that are free
        at that moment (at most :data:`RECLAIM_COUNT`): the sweep never
        queues for capacity ahead of the reader, and never holds many
        permits idle while it waits for Redis (that stalled reading for a
        round trip per shard, every sweep).
        """
        started = time.monotonic()
        for shard in self.queue.keys.all_shards():
            await self._shard(shard)
        log.debug(
            "reclaim sweep",
            extra={"took_s": round(time.monotonic() - started, 3)},
        )
        return self.interval_s

    async def _shard(self, shard: ShardKeys) -> None:
        for _ in range(MAX_ROUNDS):
            permits = self.capacity.take_now(RECLAIM_COUNT)
            if not permits:
                return  # busy: the next sweep comes back to it
            cursor = self._cursors.get(shard.shard, b"0-0")
            try:
                cursor, entries = await self.queue.reclaim(
                    shard, self.consumer, cursor, permits
                )
            except BaseException:
                self.capacity.give(permits)
                raise
            self._cursors[shard.shard] = cursor
            self.capacity.give(permits - len(entries))
            if entries:
                self.reclaimed_total += len(entries)
                log.warning(
                    "reclaimed entries",
                    extra={"shard": shard.shard, "count": len(entries)},
                )
                await self.firer.dispatch(shard, entries)
            if cursor == b"0-0":
                return
