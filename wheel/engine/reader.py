"""Reader: where a worker's new entries come from.

The reader reads the ready streams of the shards this worker owns (its
rendezvous share among live workers), never asking for more entries than
it has free permits: capacity is taken before ``XREADGROUP`` and what the
read did not fill is given back. Reads do not block (one blocking read
per shard would hold one connection per shard); the doorbell says which
shards just got entries, and every owned shard is polled now and then
in case a ring was missed. A shard whose read came back full is read
again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from wheel.engine.capacity import Capacity
from wheel.engine.firer import Firer
from wheel.runtime.lifecycle import ErrorLog
from wheel.settings import Settings
from wheel.storage.doorbell import POLL_S
from wheel.storage.shards import ShardQueue

log = logging.getLogger(__name__)


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
        self._rung = asyncio.Event()
        self._polled_at = 0.0
        self._errors = ErrorLog(log)
        self.read_total = 0

    def own(self, shards: frozenset[int]) -> None:
        """Set the shards to read; new ones are read at once, lost ones
        no more (a shard kept hot by full reads would otherwise be read
        here and by its new owner for as long as its backlog lasts)."""
        gained = shards - self.owned
        self.owned = shards
        for shard in list(self._hot):
            if shard not in shards:
                del self._hot[shard]
        self.ring(sorted(gained))

    @property
    def has_work(self) -> bool:
        """Whether some owned shard is marked worth a read."""
        return bool(self._hot)

    def ring(self, shards: Sequence[int] | None) -> None:
        """Mark ``shards`` (None: every owned shard) as worth a read."""
        for shard in self.owned if shards is None else shards:
            if shard in self.owned:
                self._hot[shard] = None
        if self._hot:
            self._rung.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Read until ``stop``."""
        while not stop.is_set():
            try:
                await self._wait_for_work(stop)
                if stop.is_set():
                    return
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._errors.note("read", exc)
                await asyncio.sleep(0.5)

    async def _wait_for_work(self, stop: asyncio.Event) -> None:
        # Completions that cannot be written yet come first: reading
        # more would only pile up outcomes Redis cannot take.
        if not self.firer.written.is_set():
            await self.firer.written.wait()
        due_poll = self._polled_at + POLL_S - time.monotonic()
        if not self._hot and due_poll > 0:
            self._rung.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rung.wait(), due_poll)
        if time.monotonic() >= self._polled_at + POLL_S:
            self._polled_at = time.monotonic()
            self.ring(None)

    async def step(self) -> int:
        """Read the hot shards once, as far as permits allow; entries read."""
        if not self._hot:
            return 0
        batch = self.settings.batch_size
        permits = await self.capacity.take(batch * len(self._hot))
        # Let permits freed in this loop turn join the read.
        await asyncio.sleep(0)
        permits += self.capacity.take_now(batch * len(self._hot) - permits)
        hot = list(self._hot)[:permits]
        for k in hot:
            del self._hot[k]
        share, extra = divmod(permits, len(hot))
        counts = [
            min(batch, share + (1 if i < extra else 0))
            for i in range(len(hot))
        ]
        self.capacity.give(permits - sum(counts))
        picked = [self.queue.keys.shard(k) for k in hot]
        results = await asyncio.gather(
            *(
                self.queue.read(shard, self.consumer, count)
                for shard, count in zip(picked, counts, strict=True)
            ),
            return_exceptions=True,
        )
        read = 0
        dispatches = []
        for shard, count, entries in zip(picked, counts, results, strict=True):
            if isinstance(entries, BaseException):
                self.capacity.give(count)
                self._errors.note("read", entries)
                continue
            self.capacity.give(count - len(entries))
            if len(entries) == count and shard.shard in self.owned:
                self._hot[shard.shard] = None
            read += len(entries)
            dispatches.append(self.firer.dispatch(shard, entries))
        await asyncio.gather(*dispatches)
        self.read_total += read
        return read
