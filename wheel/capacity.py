"""Capacity: the webhook slots of one worker process."""

from __future__ import annotations

import asyncio


class Capacity:
    """Counts free webhook slots; readers wait for them."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._changed = asyncio.Condition()

    async def take_up_to(self, n: int) -> int:
        """Wait until a slot is free, then take up to ``n``; how many."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.free > 0)
            taken = min(n, self.free)
            self.free -= taken
            return taken

    async def wait_free(self) -> int:
        """Wait until a slot is free; how many are."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.free > 0)
            return self.free

    async def give(self, n: int = 1) -> None:
        """Return ``n`` slots."""
        async with self._changed:
            self.free += n
            self._changed.notify_all()
