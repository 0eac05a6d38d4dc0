"""Worker: fires the webhooks of due timers from every shard's ready stream.

Each shard's stream is read by its own blocking ``XREADGROUP`` (never one
call over several shards, so the same code runs on Redis Cluster). A batch
is claimed by one script, each webhook is POSTed, and a completion script
records the outcome and acks the entry in one step. Entries left by a dead
worker are taken over with ``XAUTOCLAIM`` once idle for longer than
``reclaim_idle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from wheel.capacity import Capacity
from wheel.clock import RedisClock, redis_time_ms
from wheel.keys import GROUP, Keys, ShardKeys
from wheel.lifecycle import process_name, supervise
from wheel.scripts import Scripts
from wheel.settings import Settings
from wheel.webhook import Delivery, WebhookSender
from wheel.wheelmath import outcome_of, slot_of

log = logging.getLogger("wheel.worker")

# XREADGROUP's reply (RESP2): [(stream, [(entry id, {field: value})])].
StreamReply = list[tuple[str, list[tuple[str, dict[str, str]]]]]

ROLE = "worker"
READ_BLOCK_MS = 1000
COMPLETE_TRIES = 5


class Worker:
    """A consumer of group ``workers`` on every shard's ready stream."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        sender: WebhookSender,
        name: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.sender = sender
        self.keys = Keys(settings.key_prefix, settings.shards)
        self.scripts = Scripts(redis)
        self.name = name or process_name()
        self.clock = RedisClock()
        self.capacity = Capacity(settings.worker_concurrency)
        self.rng = rng or random.Random()
        self.inflight: set[asyncio.Task[None]] = set()
        self.counts = {"fired": 0, "retried": 0, "failed": 0, "stale": 0}
        self._hold_ms = int(settings.reclaim_idle * 1000)
        self._retention_ms = int(settings.retention * 1000)

    async def prepare(self) -> None:
        """Create the consumer groups (from id 0) and learn Redis' time."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in self.keys.all_shards():
            pipe.xgroup_create(shard.ready, GROUP, id="0", mkstream=True)
        for reply in await pipe.execute(raise_on_error=False):
            if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
                raise reply
        self.clock.observe(redis_time_ms(await self.redis.time()))

    async def read(self, shard: ShardKeys, block_ms: int | None) -> int:
        """Read and dispatch one batch of new entries of ``shard``."""
        free = await self.capacity.wait_free()
        count = min(free, self.settings.batch_size)
        try:
            reply = await self.redis.xreadgroup(
                GROUP,
                self.name,
                {shard.ready: ">"},
                count=count,
                block=block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream or group vanished (a flushed or restarted Redis
            # without persistence): create it again and carry on.
            await self.prepare()
            return 0
        streams = cast(StreamReply, reply or [])
        entries = [
            (entry_id, fields["id"])
            for _, messages in streams
            for entry_id, fields in messages
        ]
        await self.dispatch(shard, entries)
        return len(entries)

    async def reclaim(self, shard: ShardKeys) -> int:
        """Take over entries idle for longer than ``reclaim_idle``."""
        reply = await self.redis.xautoclaim(
            shard.ready,
            GROUP,
            self.name,
            min_idle_time=self._hold_ms,
            start_id="0-0",
            count=self.settings.batch_size,
        )
        entries = [
            (entry_id, fields["id"])
            for entry_id, fields in reply[1]
            if fields is not None
        ]
        if len(entries) < len(reply[1]):
            await self._ack_deleted(shard)
        if entries:
            log.warning(
                "reclaimed entries",
                extra={"shard": shard.shard, "count": len(entries)},
            )
        await self.dispatch(shard, entries)
        return len(entries)

    async def _ack_deleted(self, shard: ShardKeys) -> None:
        """Ack this consumer's pending entries that left the stream.

        Redis 6.2's XAUTOCLAIM hands such entries over without their ids
        (Redis 7 drops them itself), so find them among our own.
        """
        pending = await self.redis.xpending_range(
            shard.ready,
            GROUP,
            min="-",
            max="+",
            count=self.settings.batch_size,
            consumername=self.name,
        )
        ids = [p["message_id"] for p in pending]
        pipe = self.redis.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xrange(shard.ready, entry_id, entry_id, count=1)
        found = await pipe.execute()
        gone = [i for i, f in zip(ids, found, strict=True) if not f]
        if gone:
            await self.redis.xack(shard.ready, GROUP, *gone)

    async def dispatch(
        self, shard: ShardKeys, entries: list[tuple[str, str]]
    ) -> None:
        """Claim ``(entry id, timer id)`` pairs and start their webhooks.

        Entries are claimed only as webhook slots free up, so a claimed
        timer's webhook always starts at once: its claim never ages while
        it waits in this process.
        """
        while entries:
            taken = await self.capacity.take_up_to(len(entries))
            batch, entries = entries[:taken], entries[taken:]
            try:
                claims = await self.scripts.claim(
                    shard,
                    batch,
                    self.settings.max_attempts,
                    self._hold_ms,
                    self._retention_ms,
                )
            except BaseException:
                await self.capacity.give(taken)
                raise
            unused = 0
            for (entry_id, timer_id), claim in zip(batch, claims, strict=True):
                if claim.verdict != "fire":
                    unused += 1
                    if claim.verdict == "dead":
                        self.counts["failed"] += 1
                    continue
                task = asyncio.create_task(
                    self._fire(
                        shard, entry_id, timer_id, claim.url, claim.attempt
                    )
                )
                self.inflight.add(task)
                task.add_done_callback(self.inflight.discard)
            if unused:
                await self.capacity.give(unused)

    async def _fire(
        self,
        shard: ShardKeys,
        entry_id: str,
        timer_id: str,
        url: str,
        attempt: int,
    ) -> None:
        try:
            delivery = await self.sender.send(url, timer_id)
            await self._complete(shard, entry_id, timer_id, attempt, delivery)
        except Exception:
            # The entry stays pending and is reclaimed later; the loop
            # must not die with it.
            log.exception("webhook completion failed", extra={"id": timer_id})
        finally:
            await self.capacity.give(1)

    async def _complete(
        self,
        shard: ShardKeys,
        entry_id: str,
        timer_id: str,
        attempt: int,
        delivery: Delivery,
    ) -> None:
        outcome, delay_ms = outcome_of(
            delivery.ok,
            attempt,
            self.settings.max_attempts,
            self.settings.retry_base,
            self.settings.retry_max,
            self.rng,
        )
        for tries in range(1, COMPLETE_TRIES + 1):
            try:
                code, now_ms = await self.scripts.complete(
                    shard,
                    entry_id,
                    timer_id,
                    attempt,
                    outcome,
                    delivery.result,
                    self._retention_ms,
                    delay_ms,
                    slot_of(self.clock.now_ms() + delay_ms),
                )
            except RedisError:
                if tries == COMPLETE_TRIES:
                    raise
                await asyncio.sleep(0.1 * 2**tries)
                continue
            self.clock.observe(now_ms)
            if code != -1:
                break
        self._count(code, outcome, timer_id, delivery)

    def _count(
        self, code: int, outcome: str, timer_id: str, delivery: Delivery
    ) -> None:
        if code == -1:
            # Redis' clock kept outrunning the slot estimate: the entry
            # stays pending and is reclaimed, so nothing is lost.
            log.warning("retry slot refused", extra={"id": timer_id})
            return
        if code == 0:
            self.counts["stale"] += 1
            log.warning("stale completion ignored", extra={"id": timer_id})
            return
        key = {"ok": "fired", "retry": "retried", "fail": "failed"}[outcome]
        self.counts[key] += 1
        if outcome != "ok":
            log.info(
                "webhook failed",
                extra={
                    "id": timer_id,
                    "result": delivery.result,
                    "outcome": outcome,
                },
            )

    async def drain_once(self) -> int:
        """Read every shard once without blocking and finish the webhooks.

        For tests and tools: returns how many entries were read.
        """
        read = 0
        for shard in self.keys.all_shards():
            read += await self.read(shard, block_ms=None)
        await self.wait_inflight(None)
        return read

    async def wait_inflight(self, timeout_s: float | None) -> bool:
        """Wait for in-flight webhooks; False when some were left."""
        if not self.inflight:
            return True
        _, pending = await asyncio.wait(set(self.inflight), timeout=timeout_s)
        return not pending

    async def _beat(self) -> float:
        await self.scripts.beat(
            self.keys.heartbeats(ROLE),
            self.name,
            int(self.settings.heartbeat_ttl * 1000),
        )
        return self.settings.heartbeat_ttl / 3

    async def _reclaim_all(self) -> float:
        for shard in self.keys.all_shards():
            while await self.reclaim(shard) >= self.settings.batch_size:
                pass
        return min(self.settings.reclaim_idle / 4, 30.0)

    async def _read_loop(self, shard: ShardKeys, stop: asyncio.Event) -> None:
        async def step() -> float:
            await self.read(shard, READ_BLOCK_MS)
            return 0.0

        await supervise(f"read shard {shard.shard}", step, stop)

    async def run(self, stop: asyncio.Event) -> None:
        """Fire webhooks until ``stop``; then finish in-flight ones."""
        started = time.monotonic()
        await self.prepare()
        log.info(
            "worker started",
            extra={"worker": self.name, "shards": self.settings.shards},
        )
        loops = [
            asyncio.create_task(self._read_loop(shard, stop))
            for shard in self.keys.all_shards()
        ]
        loops.append(
            asyncio.create_task(supervise("heartbeat", self._beat, stop))
        )
        loops.append(
            asyncio.create_task(supervise("reclaim", self._reclaim_all, stop))
        )
        try:
            await stop.wait()
        finally:
            # Readers notice the stop within one blocking read; what they
            # read meanwhile is dispatched and finished like the rest.
            await asyncio.wait(loops, timeout=READ_BLOCK_MS / 1000 + 1)
            for task in loops:
                task.cancel()
            finished = await self.wait_inflight(self.settings.shutdown_grace)
            left = len(self.inflight)
            for task in list(self.inflight):
                task.cancel()
            with contextlib.suppress(RedisError):
                await self.redis.zrem(self.keys.heartbeats(ROLE), self.name)
            log.info(
                "worker stopped",
                extra={
                    "worker": self.name,
                    "uptime_s": round(time.monotonic() - started, 1),
                    "abandoned": 0 if finished else left,
                    **self.counts,
                },
            )
