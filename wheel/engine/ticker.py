"""Ticker: holds shard leases and moves due timers toward the workers.

Live tickers register in a heartbeat set and share the shards by
rendezvous hashing (a joining or leaving ticker moves about ``1/T`` of
them); each takes the leases of its share, renews them every third of
the lease TTL and releases the ones it should no longer hold. The lease
only saves work: every move is one atomic script, so two tickers on one
shard never lose or duplicate a timer.

Each tick peeks at the earliest index members of its shards (one plain
``ZRANGE`` each, batched) and calls a script only where something is
due: ``advance`` for minute buckets whose earliest timer is due,
``cascade`` for hour and day buckets whose cascade time has come. A shard
with nothing due costs no script call. Shards that got entries ring the
workers' doorbell, on their own node.

Faults stay where they are: the shards are ticked in one loop per Redis
node, so a node that is down, paused or slow delays only the shards it
holds; the heartbeat, clocks and leases are renewed by a loop of their
own, and a failed heartbeat keeps the last known membership (the leases
of reachable shards are still renewed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from wheel.core import rendezvous
from wheel.core.buckets import Bucket, Level
from wheel.core.states import Code
from wheel.engine.roller import Roller
from wheel.runtime import metrics
from wheel.runtime.lifecycle import ErrorLog, process_name, supervise
from wheel.settings import Settings
from wheel.storage.doorbell import ring
from wheel.storage.keys import ShardKeys
from wheel.storage.registry import Registry
from wheel.storage.shards import ShardQueue

log = logging.getLogger(__name__)

ROLE = "ticker"
PEEK = 8
"""Index members one tick looks at per shard."""
MIN_SLEEP_S = 0.002
FULL_PAUSE_S = 0.05
"""How long a shard whose ready stream is full is left alone."""
CASCADE_LIMIT = 2000
"""Most members one cascade call moves."""


class Ticker:
    """Moves due timers of the shards it leases into their ready streams."""

    def __init__(
        self,
        queue: ShardQueue,
        registry: Registry,
        settings: Settings,
        name: str | None = None,
    ) -> None:
        self.queue = queue
        self.registry = registry
        self.settings = settings
        self.name = name or process_name()
        self.held: set[int] = set()
        self.moved_total = 0
        self.cascaded_total = 0
        self._lease_ttl_ms = int(settings.lease_ttl * 1000)
        self._beat_every_s = settings.lease_ttl / 3
        self._paused_until: dict[int, float] = {}
        self._index: dict[int, dict[Bucket, int]] = {}
        """Per shard, the index members and scores last seen."""
        self._peeked_at: dict[int, float] = {}
        self._errors = ErrorLog(log)
        self._live: list[str] | None = None
        self._held_until: dict[int, float] = {}
        self.roller = Roller(queue, settings, self.by_node)
        """Hands the held shards' due schedule occurrences over."""

    async def beat(self) -> float:
        """Register as alive, then take, keep or release leases; seconds
        until the next beat.

        The heartbeat, then the clocks and leases together, each take at
        most half the beat interval, so a Redis node that does not answer
        never delays the renewal of the leases on the others (they last
        three intervals). Each part fails alone: a heartbeat that fails
        keeps the last known membership (before any, this ticker tries
        every shard: a lease held by another just stays theirs); a lease
        whose renewal fails stays counted as held until it would have
        expired.
        """
        # Half the interval for the heartbeat, half for the leases: a beat
        # never outlasts its interval, whichever node does not answer.
        part_s = self._beat_every_s / 2
        started = time.monotonic()
        try:
            self._live = await self.registry.beat(
                ROLE, self.name, self._lease_ttl_ms, deadline_s=part_s
            )
        except Exception as exc:
            self._errors.note("heartbeat", exc)
        live = self._live or [self.name]
        wanted = rendezvous.assign(self.name, live, self.settings.shards)
        keys = self.queue.keys
        taking = sorted(wanted)
        renewed_at = time.monotonic()

        async def clocks() -> None:
            try:
                failed = await self.queue.sync_clocks(deadline_s=part_s)
            except Exception as exc:
                failed = [exc]
            if failed:
                self._errors.note("clock", failed[0])

        _, released, acquired = await asyncio.gather(
            clocks(),
            asyncio.gather(
                *(
                    self.queue.release(
                        keys.shard(k), self.name, deadline_s=part_s
                    )
                    for k in sorted(self.held - wanted)
                ),
                return_exceptions=True,
            ),
            asyncio.gather(
                *(
                    self.queue.acquire(
                        keys.shard(k),
                        self.name,
                        self._lease_ttl_ms,
                        deadline_s=part_s,
                    )
                    for k in taking
                ),
                return_exceptions=True,
            ),
        )
        held = set()
        for k, ok in zip(taking, acquired, strict=True):
            if ok is True:
                self._held_until[k] = renewed_at + self.settings.lease_ttl
            if ok is True or (
                isinstance(ok, Exception)
                and self._held_until.get(k, 0.0) > time.monotonic()
            ):
                held.add(k)
        failed = [
            r for r in (*released, *acquired) if isinstance(r, Exception)
        ]
        if failed:
            self._errors.note("lease", failed[0])
        if held != self.held:
            log.info(
                "leases changed",
                extra={
                    "ticker": self.name,
                    "held": len(held),
                    "gained": len(held - self.held),
                    "lost": len(self.held - held),
                    "live_tickers": len(live),
                },
            )
        self.held = held
        return max(0.0, started + self._beat_every_s - time.monotonic())

    def by_node(self) -> dict[str, list[ShardKeys]]:
        """The held shards, grouped by the Redis node that holds them."""
        groups: dict[str, list[ShardKeys]] = {}
        node_of = self.queue.connection.node_of
        for k in sorted(self.held):
            shard = self.queue.keys.shard(k)
            groups.setdefault(node_of(shard.index), []).append(shard)
        return groups

    async def tick(self) -> float:
        """Move what is due in every held shard, every node at once;
        seconds until worth again (tests and tools; :meth:`run` ticks
        each node in a loop of its own)."""
        waits = await asyncio.gather(
            *(self.tick_shards(group) for group in self.by_node().values())
        )
        return min(waits, default=self.settings.tick_interval)

    async def tick_shards(self, group: Sequence[ShardKeys]) -> float:
        """Move what is due in ``group`` (shards of one node); seconds
        until worth again.

        Each shard's index is peeked at most every tick interval; in
        between, the members and scores the last peek (and the advances
        since) left tell which buckets are due, so a busy wheel costs a
        script call where something is due and nothing elsewhere.
        """
        now = time.monotonic()
        shards = [
            shard
            for shard in group
            if shard.shard in self.held
            and self._paused_until.get(shard.shard, 0.0) <= now
        ]
        if not shards:
            return self.settings.tick_interval
        stale = [
            shard
            for shard in shards
            if self._peeked_at.get(shard.shard, 0.0)
            + self.settings.tick_interval
            <= now
        ]
        if stale:
            peeks = await asyncio.gather(
                *(self.queue.peek(shard, PEEK) for shard in stale),
                return_exceptions=True,
            )
            for shard, peek in zip(stale, peeks, strict=True):
                if isinstance(peek, BaseException):
                    self._errors.note("peek", peek)
                    self._index.pop(shard.shard, None)
                    continue
                self._index[shard.shard] = dict(peek)
                self._peeked_at[shard.shard] = now
        wait_s = self.settings.tick_interval
        work = []
        for shard in shards:
            index = self._index.get(shard.shard)
            if index is None:
                continue
            now_ms = self.queue.clocks.now_ms(shard.shard)
            due = [
                bucket for bucket, score in index.items() if score <= now_ms
            ]
            later = [score for score in index.values() if score > now_ms]
            if later:
                ahead_s = (min(later) - now_ms) / 1e3
                wait_s = min(wait_s, max(ahead_s, MIN_SLEEP_S))
            if due:
                work.append(self._work(shard, due))
        until_peek = min(
            self._peeked_at.get(s.shard, 0.0) + self.settings.tick_interval
            for s in shards
        )
        wait_s = min(wait_s, max(MIN_SLEEP_S, until_peek - now))
        rung: list[ShardKeys] = []
        if work:
            for again, ahead_ms, moved_to in await asyncio.gather(*work):
                if again:
                    wait_s = 0.0
                elif ahead_ms is not None:
                    wait_s = min(wait_s, max(ahead_ms / 1000, MIN_SLEEP_S))
                if moved_to is not None:
                    rung.append(moved_to)
        if rung:
            # One message for every shard that got entries this tick, on
            # their own node: a doorbell key elsewhere could be down.
            try:
                await ring(self.queue.connection, self.queue.keys, rung)
            except Exception as exc:
                self._errors.note("doorbell", exc)
        if any(
            until > now
            for k, until in self._paused_until.items()
            if k in self.held
        ):
            wait_s = min(wait_s, FULL_PAUSE_S)
        return wait_s

    async def _work(
        self, shard: ShardKeys, due: list[Bucket]
    ) -> tuple[bool, int | None, ShardKeys | None]:
        """Advance and cascade one shard's due buckets: whether more is due
        now, the earliest due time left in the advanced buckets, and the
        shard when its ready stream got entries (to ring for)."""
        minutes = [b.number for b in due if b.level is Level.MINUTE]
        coarse = [b for b in due if b.level is not Level.MINUTE]
        index = self._index.setdefault(shard.shard, {})
        again = False
        try:
            for bucket in coarse:
                cascaded = await self.queue.cascade(
                    shard, self.name, bucket, CASCADE_LIMIT
                )
                if cascaded.code is Code.NOT_OURS:
                    return self._lost(shard), None, None
                self.cascaded_total += cascaded.moved
                again = again or cascaded.left > 0 or cascaded.moved > 0
                # New minute buckets entered the index: look again.
                self._peeked_at.pop(shard.shard, None)
            if minutes:
                advanced = await self.queue.advance(shard, self.name, minutes)
                if advanced.code is Code.NOT_OURS:
                    return self._lost(shard), None, None
                if advanced.code is Code.FULL:
                    # The workers are behind: leave the timers on the
                    # wheel, in order, until the stream drains.
                    self._paused_until[shard.shard] = (
                        time.monotonic() + FULL_PAUSE_S
                    )
                    return False, None, shard
                moved_to = None
                if advanced.moved:
                    self.moved_total += advanced.moved
                    metrics.TIMERS_MOVED.inc(advanced.moved)
                    moved_to = shard
                again = again or advanced.more
                # The advanced buckets' earliest left is their new score
                # (a bucket emptied leaves the index): the next look.
                for bucket in due:
                    if bucket.level is Level.MINUTE:
                        index.pop(bucket, None)
                if advanced.next_ms is not None:
                    for bucket in due:
                        if bucket.level is Level.MINUTE:
                            index[bucket] = advanced.next_ms
                    return (
                        again,
                        advanced.next_ms - advanced.now_ms,
                        moved_to,
                    )
                return again, None, moved_to
        except Exception as exc:
            self._errors.note(f"shard {shard.shard}", exc)
            self._peeked_at.pop(shard.shard, None)
            return False, None, None
        return again, None, None

    def _lost(self, shard: ShardKeys) -> bool:
        log.warning(
            "lease lost", extra={"ticker": self.name, "shard": shard.shard}
        )
        self.held.discard(shard.shard)
        return False

    async def release_all(self) -> None:
        """Give up every lease and leave the registry at once."""
        keys = self.queue.keys
        await asyncio.gather(
            *(
                self.queue.release(keys.shard(k), self.name)
                for k in sorted(self.held)
            ),
            self.registry.leave(ROLE, self.name),
        )
        self.held = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set, then release every lease.

        A beat loop renews membership and leases; a tick loop per Redis
        node ticks that node's held shards, started and ended as the
        shards held (or the slot map) change.
        """
        log.info("ticker started", extra={"ticker": self.name})
        loops: dict[str, asyncio.Task[None]] = {}
        groups: dict[str, list[ShardKeys]] = {}

        async def node_loop(node: str) -> None:
            async def step() -> float:
                return await self.tick_shards(groups.get(node, []))

            await supervise(f"tick {node}", step, stop, self._errors)

        async def beat_and_regroup() -> float:
            try:
                wait_s = await self.beat()
            finally:
                groups.clear()
                groups.update(self.by_node())
                for node in groups:
                    if node not in loops or loops[node].done():
                        loops[node] = asyncio.create_task(node_loop(node))
                for node in [n for n in loops if n not in groups]:
                    loops.pop(node).cancel()
            return wait_s

        rolling = asyncio.create_task(self.roller.run(stop))
        try:
            await supervise("beat", beat_and_regroup, stop, self._errors)
        finally:
            rolling.cancel()
            await asyncio.gather(rolling, return_exceptions=True)
            for task in loops.values():
                task.cancel()
            await asyncio.gather(*loops.values(), return_exceptions=True)
            released = len(self.held)
            try:
                await asyncio.shield(self.release_all())
            except Exception as exc:
                log.warning(
                    "could not release leases", extra={"error": str(exc)}
                )
            log.info(
                "ticker stopped",
                extra={
                    "ticker": self.name,
                    "released": released,
                    "moved": self.moved_total,
                    "cascaded": self.cascaded_total,
                },
            )
