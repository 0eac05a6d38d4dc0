"""Capacity: the webhook permits of one worker process.

A permit is taken *before* an entry is read from Redis and given back when
its webhook is done (or when the entry needs no webhook), so a worker
never holds more entries than it can fire at once: an entry read but not
started would age in its pending list until another worker reclaimed it
and fired it a second time. A freed permit goes to one waiter, oldest
first, instead of waking every reader to race for it.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Capacity:
    """Counts free webhook permits and hands them to waiters in order."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = size
        self._waiters: deque[tuple[asyncio.Future[int], int]] = deque()

    @property
    def busy(self) -> int:
        """Permits taken."""
        return self.size - self.free

    async def take(self, most: int) -> int:
        """Wait until a permit is free, then take up to ``most``; how many."""
        if self.free > 0 and not self._waiters:
            return self.take_now(most)
        future: asyncio.Future[int] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiters.append((future, most))
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.give(future.result())
            raise

    def take_now(self, most: int) -> int:
        """Take up to ``most`` free permits without waiting (maybe 0)."""
        taken = min(most, self.free)
        self.free -= taken
        return taken

    def give(self, n: int = 1) -> None:
        """Return ``n`` permits; they go to the oldest waiters first."""
        self.free += n
        while self.free > 0 and self._waiters:
            future, most = self._waiters.popleft()
            if future.done():
                continue
            future.set_result(self.take_now(most))
