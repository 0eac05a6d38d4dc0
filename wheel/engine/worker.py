"""Worker: the loop that fires webhooks, composed of a reader and a firer.

A worker registers in the workers' heartbeat set and reads the shards
of its rendezvous share (:class:`~wheel.engine.reader.Reader`), listening to
the tickers' doorbell; the :class:`~wheel.engine.firer.Firer` claims, sends and
completes; the :class:`~wheel.engine.reclaimer.Reclaimer` takes over what dead
workers left on every shard. Its Redis connections do not grow with the
shard count: reads never block, so they share the batched connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

from wheel.core import rendezvous
from wheel.engine.capacity import Capacity
from wheel.engine.firer import Firer
from wheel.engine.reader import Reader
from wheel.engine.reclaimer import Reclaimer
from wheel.runtime.lifecycle import ErrorLog, process_name, supervise
from wheel.settings import Settings
from wheel.storage.doorbell import Doorbell
from wheel.storage.minute_stats import MinuteCounters
from wheel.storage.registry import Registry
from wheel.storage.shards import ShardQueue
from wheel.webhooks.sender import WebhookSender

log = logging.getLogger(__name__)

ROLE = "worker"


LOOPS = ("read", "doorbell", "heartbeat", "reclaim", "stats")
"""The worker's background loops, as its errors name them."""


class Worker:
    """One consumer of group ``workers`` on the ready streams."""

    def __init__(
        self,
        queue: ShardQueue,
        registry: Registry,
        sender: WebhookSender,
        settings: Settings,
        name: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.queue = queue
        self.registry = registry
        self.settings = settings
        self.name = name or process_name()
        self.capacity = Capacity(settings.worker_concurrency)
        self.minutes = MinuteCounters(queue.connection, queue.keys)
        self.firer = Firer(
            queue,
            sender,
            self.capacity,
            settings,
            self.name,
            rng,
            self.minutes,
        )
        self.reader = Reader(
            queue, self.capacity, self.firer, settings, self.name
        )
        self.reclaimer = Reclaimer(
            queue, self.capacity, self.firer, settings, self.name
        )
        self._errors = ErrorLog(log)
        self.doorbell = Doorbell(
            queue.connection, queue.keys, self.reader.ring, self._errors.note
        )
        self._heartbeat_ms = int(settings.heartbeat_ttl * 1000)

    @property
    def counts(self) -> dict[str, int]:
        """What this worker did so far (for logs and tests)."""
        return self.firer.counts

    async def prepare(self) -> int:
        """Create the consumer groups (from id 0) of every shard it can
        reach; how many it could not. Best effort: a node that is down
        delays only its own shards (a read there creates the group when
        it finds none, as does the ticker's first write)."""
        results = await asyncio.gather(
            *(
                self.queue.ensure_group(s)
                for s in self.queue.keys.all_shards()
            ),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            self._errors.note("prepare", failed[0])
        return len(failed)

    async def beat(self) -> float:
        """Register as alive and take this worker's share of the shards.

        A beat that fails (the heartbeat's node is down) changes nothing:
        the worker goes on reading the shards it has.
        """
        live = await self.registry.beat(ROLE, self.name, self._heartbeat_ms)
        self.reader.own(
            rendezvous.assign(self.name, live, self.settings.shards)
        )
        self.reclaimer.live = frozenset(live)
        return self.settings.heartbeat_ttl / 3

    async def drain_once(self) -> int:
        """Read every shard once and finish the webhooks (tests, tools)."""
        self.reader.own(frozenset(range(self.settings.shards)))
        self.reader.ring(None)
        read = 0
        while self.reader.has_work:
            read += await self.reader.step()
        await self.firer.wait_idle(None)
        return read

    async def run(self, stop: asyncio.Event) -> None:
        """Fire webhooks until ``stop``; then finish in-flight ones."""
        started = time.monotonic()
        if not await self._until_connected(stop):
            return
        await self.prepare()
        try:
            await self.beat()
        except Exception as exc:
            # Read every shard until a beat says which are this worker's:
            # two workers reading one shard waste reads, never fire twice.
            self._errors.note("heartbeat", exc)
            self.reader.own(frozenset(range(self.settings.shards)))
        log.info(
            "worker started",
            extra={
                "worker": self.name,
                "shards_owned": len(self.reader.owned),
                "concurrency": self.settings.worker_concurrency,
            },
        )
        reading = asyncio.Event()
        # In the order of LOOPS.
        loops = [
            asyncio.create_task(self.reader.run(reading)),
            asyncio.create_task(self.doorbell.listen(reading)),
            asyncio.create_task(supervise("heartbeat", self.beat, reading)),
            asyncio.create_task(
                supervise("reclaim", self.reclaimer.sweep, reading)
            ),
            asyncio.create_task(
                supervise("stats", self.minutes.flush, reading)
            ),
        ]
        try:
            await stop.wait()
        finally:
            reading.set()
            await asyncio.wait(loops, timeout=1.0)
            for task in loops:
                task.cancel()
            for name, ended in zip(
                LOOPS,
                await asyncio.gather(*loops, return_exceptions=True),
                strict=True,
            ):
                if isinstance(ended, Exception):
                    self._errors.note(name, ended)
            self.firer.close()
            finished = await self.firer.wait_idle(self.settings.shutdown_grace)
            with contextlib.suppress(Exception):
                await self.minutes.flush()
            left = len(self.firer.tasks)
            for task in list(self.firer.tasks):
                task.cancel()
            dropped = await self._drop_own_consumers()
            try:
                await self.registry.leave(ROLE, self.name)
            except Exception as exc:
                log.warning("could not leave", extra={"error": str(exc)})
            log.info(
                "worker stopped",
                extra={
                    "worker": self.name,
                    "uptime_s": round(time.monotonic() - started, 1),
                    "abandoned": 0 if finished else left,
                    "read": self.reader.read_total,
                    "reclaimed": self.reclaimer.reclaimed_total,
                    "consumers_dropped": dropped,
                    **self.counts,
                },
            )

    async def _until_connected(self, stop: asyncio.Event) -> bool:
        """Wait until the topology is known (or ``stop``); whether it is."""

        async def once() -> float:
            await self.queue.connection.start()
            connected.set()
            return 0.0

        connected = asyncio.Event()
        waiter = asyncio.create_task(stop.wait())
        trying = asyncio.create_task(supervise("connect", once, connected))
        await asyncio.wait(
            {waiter, trying}, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        trying.cancel()
        return connected.is_set()

    async def _drop_own_consumers(self) -> int:
        """Delete this worker's consumer on every shard where it holds
        nothing (a graceful stop); how many were deleted."""
        results = await asyncio.gather(
            *(
                self.queue.drop_consumer(shard, self.name)
                for shard in self.queue.keys.all_shards()
            ),
            return_exceptions=True,
        )
        return sum(1 for r in results if r is True)
