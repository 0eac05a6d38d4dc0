"""Ticker: holds shard leases and moves due timers into ready streams."""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis

from wheel.keys import Keys
from wheel.lifecycle import process_name, supervise
from wheel.scripts import Scripts
from wheel.settings import Settings
from wheel.wheelmath import assign_shards

log = logging.getLogger("wheel.ticker")

ROLE = "ticker"
PEEK_SLOTS = 8
"""How many of the earliest slots of a shard one advance call looks at."""
MIN_SLEEP_S = 0.01


class Ticker:
    """Moves due timers of the shards it leases into their ready streams.

    Live tickers register in a heartbeat set and split the shards between
    them (:func:`~wheel.wheelmath.assign_shards`); each takes the leases of
    its share, renews them every third of the lease TTL and releases the
    ones it no longer should hold. The lease only saves work: the advance
    script is atomic, so two tickers on one shard never lose or duplicate
    a timer.
    """

    def __init__(
        self, redis: Redis, settings: Settings, name: str | None = None
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix, settings.shards)
        self.scripts = Scripts(redis)
        self.name = name or process_name()
        self.held: set[int] = set()
        self.moved_total = 0
        self._lease_ttl_ms = int(settings.lease_ttl * 1000)
        self._beat_every_s = settings.lease_ttl / 3
        self._next_beat_at = 0.0

    async def beat(self) -> None:
        """Register as alive, then take, keep or release leases."""
        live = await self.scripts.beat(
            self.keys.heartbeats(ROLE), self.name, self._lease_ttl_ms
        )
        wanted = assign_shards(self.name, live, self.settings.shards)
        taking = sorted(wanted)
        # Concurrent calls: the batcher sends them in one round trip.
        _, acquired = await asyncio.gather(
            asyncio.gather(
                *(
                    self.scripts.release(self.keys.shard(k).lease, self.name)
                    for k in sorted(self.held - wanted)
                )
            ),
            asyncio.gather(
                *(
                    self.scripts.acquire(
                        self.keys.shard(k).lease,
                        self.name,
                        self._lease_ttl_ms,
                    )
                    for k in taking
                )
            ),
        )
        held = {k for k, ok in zip(taking, acquired, strict=True) if ok}
        if held != self.held:
            log.info(
                "leases changed",
                extra={
                    "ticker": self.name,
                    "held": sorted(held),
                    "live_tickers": len(live),
                },
            )
        self.held = held

    async def advance(self) -> float:
        """Move due timers of every held shard; seconds until worth again."""
        if not self.held:
            return self.settings.tick_interval
        shards = sorted(self.held)
        batcher = self.scripts.batcher
        peeks = await asyncio.gather(
            *(
                batcher.execute(
                    "ZRANGE", self.keys.shard(k).slots, 0, PEEK_SLOTS - 1
                )
                for k in shards
            )
        )
        busy = [
            (k, [int(m) for m in peek])
            for k, peek in zip(shards, peeks, strict=True)
            if peek
        ]
        if not busy:
            return self.settings.tick_interval
        results = await asyncio.gather(
            *(
                self.scripts.advance(
                    self.keys.shard(k),
                    self.name,
                    minutes,
                    self.settings.batch_size,
                )
                for k, minutes in busy
            )
        )
        wait_s = self.settings.tick_interval
        for (k, _), result in zip(busy, results, strict=True):
            if result.moved < 0:
                log.warning("lease lost", extra={"shard": k})
                self.held.discard(k)
                continue
            self.moved_total += result.moved
            if result.moved >= self.settings.batch_size:
                wait_s = 0.0
            elif result.next_due_ms >= 0:
                due_in_s = (result.next_due_ms - result.now_ms) / 1000
                wait_s = min(wait_s, max(due_in_s, MIN_SLEEP_S))
        return wait_s

    async def step(self) -> float:
        """One beat (when due) and one advance; seconds to wait after."""
        now = time.monotonic()
        if now >= self._next_beat_at:
            await self.beat()
            self._next_beat_at = now + self._beat_every_s
        wait_s = await self.advance()
        return min(wait_s, max(0.0, self._next_beat_at - time.monotonic()))

    async def release_all(self) -> None:
        """Give up every lease and leave the registry at once."""
        await asyncio.gather(
            *(
                self.scripts.release(self.keys.shard(k).lease, self.name)
                for k in sorted(self.held)
            ),
            self.redis.zrem(self.keys.heartbeats(ROLE), self.name),
        )
        self.held = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set, then release every lease."""
        log.info("ticker started", extra={"ticker": self.name})
        try:
            await supervise("ticker", self.step, stop)
        finally:
            released = len(self.held)
            try:
                await asyncio.shield(self.release_all())
            except Exception:
                log.exception("could not release leases")
            log.info(
                "ticker stopped",
                extra={
                    "ticker": self.name,
                    "released": released,
                    "moved": self.moved_total,
                },
            )
