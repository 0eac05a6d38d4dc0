"""Cursor-paged listings of timers by status, with bounded work a page.

Every listing goes shard by shard, in shard order, and within a shard in
an order that holds while the listing runs:

* ``pending``: the wheel walk of :mod:`wheel.core.walk` (due order for
  the next minutes and the ready stream, then each hour or day bucket in
  the order its timers were added, buckets in the order the ticker
  reaches them);
* ``firing``: the ready stream, in the order timers came due;
* ``failed``: the dead-letter stream, newest first;
* ``fired`` and ``cancelled``: the shard's hourly finished hashes by hour
  (of the id), each in Redis' ``HSCAN`` order.

A page visits at most :data:`SHARDS_PER_PAGE` shards and stops early
(with a cursor) rather than do more than its budget, so it may hold
fewer than ``limit`` timers, or none, while more follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wheel.core import paging, walk
from wheel.core.paging import CursorInvalid
from wheel.core.states import TimerState
from wheel.storage.finished_walk import (
    SCANS_PER_PAGE,
    FinishedWalk,
    HourCursor,
)
from wheel.storage.keys import ShardKeys
from wheel.storage.replies import Record
from wheel.storage.shards import ShardQueue
from wheel.storage.stream_walk import StreamCursor, StreamWalk
from wheel.storage.wheel_walk import WheelCursor, WheelWalk

MAX_LIMIT = 1000
SHARDS_PER_PAGE = 8
"""Most shards one page visits."""
INDEX_PER_PAGE = 128
"""Most bucket-index members one page looks at (pending)."""
INDEX_PER_SHARD = 64
"""... and at most this many per shard."""


@dataclass(frozen=True, slots=True)
class Query:
    """What a listing asks for."""

    status: TimerState
    limit: int
    due: walk.Filter = field(default_factory=walk.Filter)
    url_prefix: str | None = None

    def fingerprint(self, queue: ShardQueue) -> bytes:
        """What a cursor of this listing is stamped with."""
        return paging.fingerprint(
            self.status.value,
            self.due.due_after,
            self.due.due_before,
            self.url_prefix,
            queue.settings.key_prefix,
            queue.settings.shards,
        )


@dataclass(frozen=True, slots=True)
class Listed:
    """One timer of a page; ``url`` when the listing knows it."""

    timer_id: bytes
    record: Record
    url: str = ""


class Listing:
    """Pages of timers by status, for ``GET /timers``."""

    def __init__(self, queue: ShardQueue) -> None:
        self.queue = queue
        self.connection = queue.connection
        self.wheel = WheelWalk(queue)
        self.streams = StreamWalk(queue)
        self.finished = FinishedWalk(queue)

    async def page(
        self, query: Query, cursor: str | None
    ) -> tuple[list[Listed], str | None]:
        """One page of ``query`` after ``cursor`` (None: the first), and
        the cursor of the next page (None: the listing is complete).

        Raises:
            CursorInvalid: the cursor is malformed or another listing's.
            CursorStale: the wheel changed under a pending listing's
                cursor so that it cannot go on (start again).
        """
        listing = query.fingerprint(self.queue)
        if query.status is TimerState.PENDING:
            return await self._pending(query, listing, cursor)
        if query.status in (TimerState.FIRED, TimerState.CANCELLED):
            return await self._finished(query, listing, cursor)
        return await self._streams(query, listing, cursor)

    def _shard(self, number: int) -> ShardKeys:
        if not 0 <= number < self.queue.settings.shards:
            raise CursorInvalid("is not a cursor this API gave")
        return self.queue.keys.shard(number)

    # -- pending --------------------------------------------------------

    async def _pending(
        self, query: Query, listing: bytes, text: str | None
    ) -> tuple[list[Listed], str | None]:
        shards = self.queue.settings.shards
        state = (
            WheelCursor.start(0, query.due)
            if text is None
            else paging.decode(text, listing, WheelCursor)
        )
        self._shard(state.shard)
        found: list[Listed] = []
        budget = INDEX_PER_PAGE
        for _ in range(SHARDS_PER_PAGE):
            look = min(INDEX_PER_SHARD, budget)
            step = await self.wheel.step(
                state,
                query.limit - len(found),
                look,
                query.due,
                query.url_prefix,
            )
            budget -= step.looked
            found += [Listed(i, r, r.url) for i, r in step.found]
            if step.cursor is not None:
                return found, paging.encode(listing, step.cursor)
            if state.shard + 1 >= shards:
                return found, None
            state = WheelCursor.start(state.shard + 1, query.due)
            if len(found) >= query.limit or budget < INDEX_PER_SHARD // 4:
                break
        return found, paging.encode(listing, state)

    # -- firing and failed: streams --------------------------------------

    async def _streams(
        self, query: Query, listing: bytes, text: str | None
    ) -> tuple[list[Listed], str | None]:
        shards = self.queue.settings.shards
        state = (
            StreamCursor(0, b"")
            if text is None
            else paging.decode(text, listing, StreamCursor)
        )
        self._shard(state.shard)
        found: list[Listed] = []
        for _ in range(SHARDS_PER_PAGE):
            want = query.limit - len(found)
            shard = self.queue.keys.shard(state.shard)
            if query.status is TimerState.FIRING:
                read, last = await self.streams.firing(
                    shard, state.entry, want
                )
            else:
                read, last = await self.streams.failed(
                    shard, state.entry, want
                )
            found += [
                item
                for item in (Listed(*found_one) for found_one in read)
                if self._admits(query, item)
            ]
            if last is not None:
                return found, paging.encode(
                    listing, StreamCursor(state.shard, last)
                )
            if state.shard + 1 >= shards:
                return found, None
            state = StreamCursor(state.shard + 1, b"")
            if len(found) >= query.limit:
                break
        return found, paging.encode(listing, state)

    @staticmethod
    def _admits(query: Query, item: Listed) -> bool:
        if not query.due.admits(item.record.due_ms):
            return False
        return query.url_prefix is None or item.url.startswith(
            query.url_prefix
        )

    # -- fired and cancelled: the finished hashes ------------------------

    async def _finished(
        self, query: Query, listing: bytes, text: str | None
    ) -> tuple[list[Listed], str | None]:
        shards = self.queue.settings.shards
        state = (
            HourCursor.start(0)
            if text is None
            else paging.decode(text, listing, HourCursor)
        )
        self._shard(state.shard)
        if len(state.leftover) > 4 * MAX_LIMIT or any(
            len(i) != 16 for i in state.leftover
        ):
            raise CursorInvalid("is not a cursor this API gave")
        found: list[Listed] = []
        scans = SCANS_PER_PAGE
        for _ in range(SHARDS_PER_PAGE):
            shard = self.queue.keys.shard(state.shard)
            items, state, scans = await self.finished.step(
                shard,
                state,
                query.status,
                query.due,
                query.limit - len(found),
                scans,
            )
            found += [Listed(timer_id, record) for timer_id, record in items]
            if not state.done:
                return found, paging.encode(listing, state)
            if state.shard + 1 >= shards:
                return found, None
            state = HourCursor.start(state.shard + 1)
            if len(found) >= query.limit or scans <= 0:
                break
        return found, paging.encode(listing, state)
