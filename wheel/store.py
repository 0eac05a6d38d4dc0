"""The Redis-facing API of the endpoints: create and read timers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

from wheel.clock import RedisClock, redis_time_ms
from wheel.keys import Keys
from wheel.scripts import Scripts
from wheel.settings import Settings
from wheel.wheelmath import shard_of, slot_of


@dataclass(frozen=True, slots=True)
class Timer:
    """A timer as the API reports it."""

    id: str
    due_ms: int
    now_ms: int
    status: str
    attempts: int

    @property
    def left_ms(self) -> int:
        """Milliseconds until due; 0 once due."""
        return max(0, self.due_ms - self.now_ms)


class Store:
    """Creates and reads timers; one Redis round trip each."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix, settings.shards)
        self.scripts = Scripts(redis)
        self.clock = RedisClock()

    async def sync_clock(self) -> None:
        """Learn Redis' time (needed before the first create)."""
        self.clock.observe(redis_time_ms(await self.redis.time()))

    async def create(self, url: str, delay_ms: int) -> Timer:
        """Store a new timer due ``delay_ms`` from Redis' now."""
        if not self.clock.synced:
            await self.sync_clock()
        timer_id = uuid.uuid4()
        shard = self.keys.shard(shard_of(timer_id, self.settings.shards))
        text_id = str(timer_id)
        # At most one retry: a refused slot means the clock estimate was
        # off, and the refusal carries Redis' time to correct it.
        for _ in range(2):
            minute = slot_of(self.clock.now_ms() + delay_ms)
            created = await self.scripts.create(
                shard, text_id, url, minute, delay_ms
            )
            self.clock.observe(created.now_ms)
            if created.code == 1:
                return Timer(
                    text_id, created.due_ms, created.now_ms, "pending", 0
                )
            if created.code == 0:
                raise RuntimeError(f"timer id collision: {text_id}")
        raise RuntimeError("Redis' clock moves too far to pick a slot")

    async def get(self, timer_id: uuid.UUID) -> Timer | None:
        """The timer ``timer_id``, or None when unknown or expired."""
        shard = self.keys.shard(shard_of(timer_id, self.settings.shards))
        now_ms, record = await self.scripts.get(shard, str(timer_id))
        self.clock.observe(now_ms)
        if record is None:
            return None
        return Timer(
            str(timer_id),
            record.due_ms,
            record.now_ms,
            record.state,
            record.attempts,
        )
