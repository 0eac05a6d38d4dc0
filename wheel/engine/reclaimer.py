"""Reclaimer: takes over what dead workers left.

The reclaimer sweeps *every* shard, owned or not, with ``XAUTOCLAIM``
(following its cursor), so entries a dead worker held are fired again
about ``WHEEL_RECLAIM_IDLE`` after it took them. A shard that fails is
skipped (and the other shards of its Redis node, for that sweep): a node
that is down delays only its own shards. The same sweep deletes the
consumers of dead workers once they hold no pending entries, so the
groups do not collect one consumer per worker restart.
"""

from __future__ import annotations

import asyncio
import logging
import time

from wheel.engine.capacity import Capacity
from wheel.engine.firer import Firer
from wheel.runtime.lifecycle import ErrorLog
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
        self.live: frozenset[str] | None = None
        """Live workers' names (from the heartbeats); None while unknown,
        and then no consumer is deleted."""
        self._errors = ErrorLog(log)

    @property
    def interval_s(self) -> float:
        """How often a sweep starts."""
        return min(self.settings.reclaim_idle / 4, 30.0)

    async def sweep(self) -> float:
        """One pass over every shard; seconds until the next.

        Shards are swept one at a time, each with the permits that are
        free at that moment (at most :data:`RECLAIM_COUNT`): the sweep
        never queues for capacity ahead of the reader, and never holds
        many permits idle while it waits for Redis (that stalled reading
        for a round trip per shard, every sweep).
        """
        started = time.monotonic()
        failed: set[str] = set()
        dropped = 0
        node_of = self.queue.connection.node_of
        for shard in self.queue.keys.all_shards():
            node = node_of(shard.ready)
            if node in failed:
                continue
            try:
                await self._shard(shard)
            except Exception as exc:
                failed.add(node)
                self._errors.note(f"reclaim on {node}", exc)
                continue
            # Housekeeping: its failure must not hold up reclaiming the
            # node's other shards.
            try:
                dropped += await self._drop_dead_consumers(shard)
            except Exception as exc:
                self._errors.note(f"consumer clean-up on {node}", exc)
        log.debug(
            "reclaim sweep",
            extra={
                "took_s": round(time.monotonic() - started, 3),
                "failed_nodes": sorted(failed),
                "consumers_dropped": dropped,
            },
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
                # It may have moved entries to this worker all the same.
                self.firer.lost.add(shard.shard)
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

    async def _drop_dead_consumers(self, shard: ShardKeys) -> int:
        """Delete the shard's consumers of workers that are not alive and
        hold nothing (the script checks that again, atomically); how
        many went."""
        live = self.live
        if live is None:
            return 0
        dead = [
            consumer.name
            for consumer in await self.queue.consumers(shard)
            if consumer.name not in live and not consumer.pending
        ]
        gone = await asyncio.gather(
            *(self.queue.drop_consumer(shard, name) for name in dead)
        )
        return sum(gone)
