"""Cursor-paged listing of schedules, with bounded work a page.

Schedules are listed shard by shard, in shard order, and within a shard
in id order (the shard's set of every schedule), an order that holds
while the listing runs: a schedule that exists from the first page to
the last is listed exactly once; one created or deleted meanwhile may
appear or not. A page visits at most :data:`SHARDS_PER_PAGE` shards (one
``ZRANGE``, one read of the records and one of their last occurrences
each), so it may hold fewer than ``limit`` schedules, or none, while
more follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from wheel.core import paging
from wheel.core.paging import CursorInvalid
from wheel.storage.replies import Record, ScheduleRecord
from wheel.storage.schedules import ScheduleStore

SHARDS_PER_PAGE = 8
"""Most shards one page visits."""


class ScheduleCursor(
    msgspec.Struct, array_like=True, forbid_unknown_fields=True
):
    """A shard and the last schedule id listed there (empty: none yet)."""

    shard: int
    after: bytes


@dataclass(frozen=True, slots=True)
class ListedSchedule:
    """One schedule of a page, with its last occurrence's timer (None:
    none yet, or expired)."""

    record: ScheduleRecord
    last: Record | None


class ScheduleListing:
    """Pages of schedules, for ``GET /schedules``."""

    def __init__(self, store: ScheduleStore) -> None:
        self.store = store
        self.queue = store.queue

    def fingerprint(self) -> bytes:
        """What a cursor of this listing is stamped with."""
        settings = self.queue.settings
        return paging.fingerprint(
            "schedules", settings.key_prefix, settings.shards
        )

    async def page(
        self, limit: int, text: str | None
    ) -> tuple[list[ListedSchedule], str | None]:
        """One page of at most ``limit`` schedules after cursor ``text``
        (None: the first page), and the next page's cursor (None: the
        listing is complete).

        Raises:
            CursorInvalid: the cursor is malformed or another listing's.
        """
        listing = self.fingerprint()
        shards = self.queue.settings.shards
        state = (
            ScheduleCursor(0, b"")
            if text is None
            else paging.decode(text, listing, ScheduleCursor)
        )
        if not 0 <= state.shard < shards or len(state.after) not in (0, 16):
            raise CursorInvalid("is not a cursor this API gave")
        found: list[ListedSchedule] = []
        for _ in range(SHARDS_PER_PAGE):
            want = limit - len(found)
            shard = self.queue.keys.shard(state.shard)
            listed = await self.store.ids_after(shard, state.after, want)
            found += await self.read(state.shard, listed)
            if len(listed) >= want:
                cursor = ScheduleCursor(state.shard, listed[-1])
                return found, paging.encode(listing, cursor)
            if state.shard + 1 >= shards:
                return found, None
            state = ScheduleCursor(state.shard + 1, b"")
        return found, paging.encode(listing, state)

    async def read(
        self, shard_number: int, schedule_ids: list[bytes]
    ) -> list[ListedSchedule]:
        """The schedules of one shard with their last occurrences (those
        gone meanwhile left out): two round trips."""
        if not schedule_ids:
            return []
        shard = self.queue.keys.shard(shard_number)
        records = [
            record
            for record in await self.store.get_many(shard, schedule_ids)
            if record is not None
        ]
        lasts = [r.last_id for r in records if r.last_id is not None]
        timers = dict(
            zip(lasts, await self.queue.get_many(shard, lasts), strict=True)
        )
        return [
            ListedSchedule(
                record,
                None if record.last_id is None else timers[record.last_id],
            )
            for record in records
        ]
