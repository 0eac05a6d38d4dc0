"""Reader: where a worker's new entries come from.

The reader reads the ready streams of the shards this worker owns (its
rendezvous share among live workers), never asking for more entries than
it has free permits: capacity is taken before ``XREADGROUP`` and what the
read did not fill is given back. Reads do not block (one blocking read
per shard would hold one connection per shard); the doorbell says which
shards just got entries, and every owned shard is polled now and then
in case a ring was missed. A shard whose read came back full is read
again at once.

Each shard's read and claim run on their own, so a Redis node that is
down, paused or slow holds up only the shards it holds: the loop goes on
reading the others. Shards whose node has completions waiting to be
written (:attr:`Firer.stuck <wheel.engine.firer.Firer.stuck>`) are not
read until those are written: more work there would only pile up
outcomes that node cannot take yet.

A read whose reply is lost may have taken entries all the same: they
are pending under this worker, and no other worker reads them until
the reclaimer's hold lapses. So the next read of that shard (or of one
whose claim or reclaim failed, :attr:`Firer.lost
<wheel.engine.firer.Firer.lost>`) first reads back this worker's own
pending entries there and dispatches those the firer does not hold: a
lost reply costs a poll, not the hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Sequence

from wheel.engine.capacity import Capacity
from wheel.engine.firer import Firer
from wheel.runtime.lifecycle import ErrorLog
from wheel.settings import Settings
from wheel.storage.doorbell import POLL_S
from wheel.storage.errors import RedisUnavailable
from wheel.storage.keys import ShardKeys
from wheel.storage.shards import Entry, ShardQueue

log = logging.getLogger(__name__)

RECOVERY_PAGES = 8
"""Most pages of its own pending entries one read back takes (the rest
wait for the next read of the shard)."""


class Reader:
    """Reads the owned shards' ready streams into the firer."""

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
        self.owned: frozenset[int] = frozenset()
        self._hot: dict[int, None] = {}
        self._reading: dict[int, asyncio.Task[int]] = {}
        self._wake = asyncio.Event()
        firer.on_unstuck = self._wake.set
        self._polled_at = 0.0
        self._errors = ErrorLog(log)
        self.read_total = 0

    def own(self, shards: frozenset[int]) -> None:
        """Set the shards to read; new ones are read at once, those given
        away no more (a shard kept hot by full reads would otherwise be
        read here and by its new owner for as long as its backlog lasts),
        except to read back what a lost reply left pending there under
        this worker (no other worker's read would find it)."""
        gained = shards - self.owned
        self.owned = shards
        for shard in list(self._hot):
            if not self._wanted(shard):
                del self._hot[shard]
        self.ring(sorted(gained))

    def _wanted(self, shard: int) -> bool:
        """Whether ``shard`` is to be read: owned, or left to read back."""
        return shard in self.owned or shard in self.firer.lost

    @property
    def has_work(self) -> bool:
        """Whether some shard is marked worth a read."""
        return bool(self._hot)

    def ring(self, shards: Sequence[int] | None) -> None:
        """Mark ``shards`` (None: every owned shard, and those left to
        read back) as worth a read."""
        if shards is None:
            shards = sorted(self.owned | self.firer.lost)
        for shard in shards:
            if self._wanted(shard):
                self._hot[shard] = None
        if self._hot:
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Read until ``stop``, then wait for the reads under way (their
        claims hand webhooks to the firer, which the worker then waits
        for; a read cancelled with this call is cancelled too)."""
        try:
            while not stop.is_set():
                try:
                    await self._wait_for_work()
                    if stop.is_set():
                        return
                    await self._launch()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._errors.note("read", exc)
                    await asyncio.sleep(0.5)
        finally:
            if self._reading:
                await asyncio.gather(
                    *self._reading.values(), return_exceptions=True
                )

    def _readable(self) -> list[int]:
        """Hot shards not being read, on nodes with no stuck completion."""
        ready = [k for k in self._hot if k not in self._reading]
        stuck = self.firer.stuck
        if not stuck:
            return ready
        node_of = self.queue.connection.node_of
        keys = self.queue.keys
        return [k for k in ready if node_of(keys.shard(k).ready) not in stuck]

    async def _wait_for_work(self) -> None:
        due_poll = self._polled_at + POLL_S - time.monotonic()
        if not self._readable() and due_poll > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), due_poll)
        if time.monotonic() >= self._polled_at + POLL_S:
            self._polled_at = time.monotonic()
            self.ring(None)

    async def step(self) -> int:
        """Read the readable hot shards once, as far as permits allow, and
        wait for those reads and their claims; entries read."""
        return sum(await asyncio.gather(*await self._launch()))

    async def _launch(self) -> list[asyncio.Task[int]]:
        """Take permits and start a read of each readable hot shard."""
        if not self._readable():
            return []
        batch = self.settings.batch_size
        wanted = batch * len(self._readable())
        permits = await self.capacity.take(wanted)
        # Let permits freed in this loop turn join the read.
        await asyncio.sleep(0)
        permits += self.capacity.take_now(wanted - permits)
        hot = self._readable()[:permits]
        if not hot:
            self.capacity.give(permits)
            return []
        for k in hot:
            del self._hot[k]
        share, extra = divmod(permits, len(hot))
        counts = [
            min(batch, share + (1 if i < extra else 0))
            for i in range(len(hot))
        ]
        self.capacity.give(permits - sum(counts))
        tasks = []
        for k, count in zip(hot, counts, strict=True):
            task = asyncio.create_task(self._read(k, count))
            self._reading[k] = task
            task.add_done_callback(functools.partial(self._read_done, k))
            tasks.append(task)
        return tasks

    def _read_done(self, k: int, task: asyncio.Task[int]) -> None:
        # A read's own errors are noted in _read; what escapes it (the
        # firer's dispatch) is noted here, never left to the loop.
        if self._reading.get(k) is task:
            del self._reading[k]
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._errors.note("read", exc)
        self._wake.set()

    async def _read(self, k: int, count: int) -> int:
        """Read one shard with ``count`` permits and hand what came to the
        firer; entries read. Never raises: an error is logged and the
        permits go back."""
        shard = self.queue.keys.shard(k)
        reading_back = k in self.firer.lost
        if not reading_back and k not in self.owned:
            # Given away, and read back meanwhile: nothing to do here.
            self.capacity.give(count)
            return 0
        try:
            if reading_back:
                entries = await self._read_back(shard, count)
            else:
                entries = await self.queue.read(shard, self.consumer, count)
        except Exception as exc:
            self.capacity.give(count)
            if isinstance(exc, RedisUnavailable) and exc.maybe_applied:
                self.firer.lost.add(k)
            self._errors.note("read", exc)
            return 0
        self.capacity.give(count - len(entries))
        # After a read back, new entries may be waiting too.
        if (reading_back or len(entries) == count) and self._wanted(k):
            self._hot[k] = None
        self.read_total += len(entries)
        await self.firer.dispatch(shard, entries)
        return len(entries)

    async def _read_back(self, shard: ShardKeys, count: int) -> list[Entry]:
        """Up to ``count`` of this worker's pending entries on ``shard``
        that the firer does not hold, oldest first; the shard leaves
        :attr:`Firer.lost <wheel.engine.firer.Firer.lost>` once none is
        left over."""
        k = shard.shard
        # A page holds what the firer is busy with and then some.
        page = count + len(self.firer.held)
        found: list[Entry] = []
        after: bytes | None = b"0"
        pages = 0
        # Stops: the history is read to its end, more than ``count`` are
        # found (the rest wait for the next read back), or the pages ran
        # out (the same).
        while (
            after is not None
            and len(found) <= count
            and pages < RECOVERY_PAGES
        ):
            pages += 1
            entries, after = await self.queue.read_own(
                shard, self.consumer, page, after
            )
            found += [
                e for e in entries if not self.firer.holds(k, e.entry_id)
            ]
        if after is None and len(found) <= count:
            self.firer.lost.discard(k)
        if found:
            log.info(
                "read back entries a lost reply left pending",
                extra={"shard": k, "count": min(count, len(found))},
            )
        return found[:count]
