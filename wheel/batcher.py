"""Automatic pipelining: commands issued in one event-loop turn share one
round trip.

Under load many requests await Redis at once. Sent one by one, each pays
redis-py's per-command overhead and a socket write; collected into one
pipeline they pay it once. Measured with 64 concurrent callers of a small
script, this is about four times the calls per second of plain ``EVALSHA``
(``benchmarks/README.md``). A lone caller waits one loop turn, nothing
more.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

MAX_BATCH = 1000
"""Most commands in one pipeline; a longer queue flushes at once."""


class Batcher:
    """Sends commands queued in the same loop turn as one pipeline.

    Results and errors are delivered per command, as if each had been sent
    alone; a connection error fails every command of its pipeline.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    def execute(self, *command: Any) -> asyncio.Future[Any]:
        """Queue ``command``; the future resolves to its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((command, future))
        if len(self._queue) >= MAX_BATCH:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._queue:
            return
        batch, self._queue = self._queue, []
        task = asyncio.create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(
        self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]
    ) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for command, _ in batch:
            pipe.execute_command(*command)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
