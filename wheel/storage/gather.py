"""Gathering: requests made in one turn of the event loop share one call.

A worker's webhooks end one by one, but many end close together; each
completion is a script call, and Redis spends more per call (parsing it,
starting the script, reading its clock) than on the few commands the
completion itself runs. A :class:`Gatherer` collects the requests for one
key (a shard) made before the event loop next runs its callbacks and
hands them to one call, up to ``most`` at a time. It adds no wait: the
call is sent in the same turn a lone request would have been.

Every request gets its own result, or the call's exception: a failed call
fails each of its requests, and each caller decides for itself whether to
try again (then in whatever group forms at that time). A request whose
caller gave up before its group left is not sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


class Gatherer(Generic[K, T, R]):
    """Runs ``call(key, items)`` for the items given together, per key.

    ``call`` returns one result per item, in order.
    """

    def __init__(
        self,
        call: Callable[[K, Sequence[T]], Awaitable[Sequence[R]]],
        most: int = 64,
    ) -> None:
        self._call = call
        self._most = most
        self._open: dict[K, list[tuple[T, asyncio.Future[R]]]] = {}
        self._calls: set[asyncio.Task[None]] = set()

    async def submit(self, key: K, item: T) -> R:
        """The result of ``item``, from a call it shares with others."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        group = self._open.get(key)
        if group is None:
            group = self._open[key] = []
            loop.call_soon(self._send, key)
        group.append((item, future))
        return await future

    def _send(self, key: K) -> None:
        group = [
            (item, future)
            for item, future in self._open.pop(key)
            if not future.done()
        ]
        for start in range(0, len(group), self._most):
            task = asyncio.ensure_future(
                self._run(key, group[start : start + self._most])
            )
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _run(
        self, key: K, group: list[tuple[T, asyncio.Future[R]]]
    ) -> None:
        # Never raises: what the call raises is each request's to handle.
        try:
            results = await self._call(key, [item for item, _ in group])
            if len(results) != len(group):
                raise RuntimeError(
                    f"{len(results)} results for {len(group)} requests"
                )
        except asyncio.CancelledError:
            for _, future in group:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(group, results, strict=True):
            if not future.done():
                future.set_result(result)
