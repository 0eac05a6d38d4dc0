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

import msgspec

from wheel.core import paging, walk
from wheel.core.paging import CursorInvalid
from wheel.core.states import TimerState, state_code
from wheel.storage.keys import ShardKeys
from wheel.storage.replies import Record, as_int, dead_letter_of, entry_of
from wheel.storage.shards import ShardQueue
from wheel.storage.wheel_walk import WheelCursor, WheelWalk

MAX_LIMIT = 1000
SHARDS_PER_PAGE = 8
"""Most shards one page visits."""
INDEX_PER_PAGE = 128
"""Most bucket-index members one page looks at (pending)."""
INDEX_PER_SHARD = 64
"""... and at most this many per shard."""
SCANS_PER_PAGE = 32
"""Most ``HSCAN`` calls one page makes (fired, cancelled)."""
HOURS_LOOK = 16
"""Finished hours one look at a shard's list of them reads."""
SCAN_COUNT = 64
"""``HSCAN`` COUNT: about how many fields one scan call reads."""


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


class StreamCursor(
    msgspec.Struct, array_like=True, forbid_unknown_fields=True
):
    """A shard and the last stream entry read (empty: from the start)."""

    shard: int
    entry: bytes


class HourCursor(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """A shard, the finished hour being scanned, where its scan stands,
    and timers of the last scan batch not yet returned."""

    shard: int
    hour: int
    scan: int
    leftover: list[bytes]


class Listing:
    """Pages of timers by status, for ``GET /timers``."""

    def __init__(self, queue: ShardQueue) -> None:
        self.queue = queue
        self.connection = queue.connection
        self.wheel = WheelWalk(queue)

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
                read, last = await self._firing(shard, state.entry, want)
            else:
                read, last = await self._failed(shard, state.entry, want)
            found += [item for item in read if self._admits(query, item)]
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

    async def _firing(
        self, shard: ShardKeys, after: bytes, want: int
    ) -> tuple[list[Listed], bytes | None]:
        """Firing timers of the ready stream after entry ``after``; the
        last entry read when more may follow."""
        start = b"(" + after if after else b"-"
        reply = await self.connection.call(
            shard.ready, "XRANGE", shard.ready, start, "+", "COUNT", want
        )
        entries = [entry_of(item) for item in reply if item[1]]
        records = await self.queue.get_many(
            shard, [e.timer_id for e in entries]
        )
        found = [
            Listed(entry.timer_id, record, record.url)
            for entry, record in zip(entries, records, strict=True)
            if record is not None
            and record.state is TimerState.FIRING
            and record.claim_entry == entry.entry_id
        ]
        return found, (reply[-1][0] if len(reply) >= want else None)

    async def _failed(
        self, shard: ShardKeys, before: bytes, want: int
    ) -> tuple[list[Listed], bytes | None]:
        """Failed timers of the dead-letter stream before entry
        ``before``, newest first; the last entry read when more may
        follow."""
        end = b"(" + before if before else b"+"
        reply = await self.connection.call(
            shard.dead, "XREVRANGE", shard.dead, end, "-", "COUNT", want
        )
        letters = [dead_letter_of(item) for item in reply]
        records = await self.queue.get_many(
            shard, [letter.timer_id for letter in letters]
        )
        found = [
            Listed(letter.timer_id, record, letter.url)
            for letter, record in zip(letters, records, strict=True)
            if record is not None and record.state is TimerState.FAILED
        ]
        return found, (reply[-1][0] if len(reply) >= want else None)

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
            HourCursor(0, _FIRST_HOUR, 0, [])
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
            items, state, scans = await self._hours(
                shard, state, query, query.limit - len(found), scans
            )
            found += items
            if state.hour != _DONE:
                return found, paging.encode(listing, state)
            if state.shard + 1 >= shards:
                return found, None
            state = HourCursor(state.shard + 1, _FIRST_HOUR, 0, [])
            if len(found) >= query.limit or scans <= 0:
                break
        return found, paging.encode(listing, state)

    async def _hours(
        self,
        shard: ShardKeys,
        state: HourCursor,
        query: Query,
        want: int,
        scans: int,
    ) -> tuple[list[Listed], HourCursor, int]:
        """Timers of the shard's finished hashes from the cursor on; the
        cursor after them (hour ``_DONE``: the shard is done) and the
        scans left in the page's budget.

        ``(hour, 0)`` is the start of an hour; a scan batch holding more
        than the page takes keeps the rest in the cursor.
        """
        letter = state_code(query.status).encode()
        hour, scan = state.hour, state.scan
        found = await self._records(shard, state.leftover[:want], query)
        rest = state.leftover[want:]
        if rest:
            return found, HourCursor(shard.shard, hour, scan, rest), scans
        listed = await self.connection.call(
            shard.finished_hours,
            "ZRANGE",
            shard.finished_hours,
            max(hour, _FIRST_HOUR),
            "+inf",
            "BYSCORE",
            "LIMIT",
            0,
            HOURS_LOOK,
        )
        for member in listed:
            if as_int(member) > hour:
                hour, scan = as_int(member), 0
            while True:
                if scans <= 0 or len(found) >= want:
                    return found, HourCursor(shard.shard, hour, scan, []), 0
                scans -= 1
                key = shard.finished(hour)
                after, fields = await self.connection.call(
                    key, "HSCAN", key, scan, "COUNT", SCAN_COUNT
                )
                after = as_int(after)
                ids = [
                    fields[i]
                    for i in range(0, len(fields), 2)
                    if len(fields[i]) == 16 and fields[i + 1][:1] == letter
                ]
                room = want - len(found)
                found += await self._records(shard, ids[:room], query)
                # A finished scan moves to the next hour.
                hour, scan = (hour, after) if after else (hour + 1, 0)
                if len(ids) > room:
                    cursor = HourCursor(shard.shard, hour, scan, ids[room:])
                    return found, cursor, scans
                if not after:
                    break
        if len(listed) >= HOURS_LOOK:
            return found, HourCursor(shard.shard, hour, 0, []), scans
        return found, HourCursor(shard.shard, _DONE, 0, []), scans

    async def _records(
        self, shard: ShardKeys, timer_ids: list[bytes], query: Query
    ) -> list[Listed]:
        records = await self.queue.get_many(shard, timer_ids)
        return [
            Listed(timer_id, record)
            for timer_id, record in zip(timer_ids, records, strict=True)
            if record is not None
            and record.state is query.status
            and query.due.admits(record.due_ms)
        ]


_FIRST_HOUR = -(2**53)
_DONE = 2**53
"""Hours before and after every real one."""
