"""Fired and cancelled timers for a listing: a shard's hourly finished
hashes, by hour (the shard's finished-hours index), each in ``HSCAN``
order."""

from __future__ import annotations

import msgspec

from wheel.core.states import TimerState, state_code
from wheel.core.walk import Filter
from wheel.storage.keys import ShardKeys
from wheel.storage.replies import Record, as_int
from wheel.storage.shards import ShardQueue

SCANS_PER_PAGE = 32
"""Most ``HSCAN`` calls one page makes."""
HOURS_LOOK = 16
"""Finished hours one look at a shard's list of them reads."""
SCAN_COUNT = 64
"""``HSCAN`` COUNT: about how many fields one scan call reads."""
FIRST_HOUR = -(2**53)
DONE = 2**53
"""Hours before and after every real one."""


class HourCursor(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """A shard, the finished hour being scanned, where its scan stands,
    and timers of the last scan batch not yet returned."""

    shard: int
    hour: int
    scan: int
    leftover: list[bytes]

    def __post_init__(self) -> None:
        # A client holds the cursor: HSCAN refuses what is not one of
        # its own cursors (an unsigned 64-bit number).
        if not 0 <= self.scan < 2**64:
            raise ValueError("is not a scan cursor")

    @classmethod
    def start(cls, shard: int) -> HourCursor:
        """The start of a shard's walk."""
        return cls(shard, FIRST_HOUR, 0, [])

    @property
    def done(self) -> bool:
        """Whether the shard has no more finished hours."""
        return self.hour == DONE


class FinishedWalk:
    """Reads fired or cancelled timers a shard at a time."""

    def __init__(self, queue: ShardQueue) -> None:
        self.queue = queue
        self.connection = queue.connection

    async def step(
        self,
        shard: ShardKeys,
        state: HourCursor,
        status: TimerState,
        due: Filter,
        want: int,
        scans: int,
    ) -> tuple[list[tuple[bytes, Record]], HourCursor, int]:
        """Timers of the shard's finished hashes from the cursor on; the
        cursor after them (hour ``DONE``: the shard is done) and the
        scans left in the page's budget.

        ``(hour, 0)`` is the start of an hour; a scan batch holding more
        than the page takes keeps the rest in the cursor.
        """
        letter = state_code(status).encode()
        hour, scan = state.hour, state.scan
        found = await self._records(shard, state.leftover[:want], status, due)
        rest = state.leftover[want:]
        if rest:
            return found, HourCursor(shard.shard, hour, scan, rest), scans
        listed = await self.connection.call(
            shard.finished_hours,
            "ZRANGE",
            shard.finished_hours,
            max(hour, FIRST_HOUR),
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
                found += await self._records(shard, ids[:room], status, due)
                # A finished scan moves to the next hour.
                hour, scan = (hour, after) if after else (hour + 1, 0)
                if len(ids) > room:
                    cursor = HourCursor(shard.shard, hour, scan, ids[room:])
                    return found, cursor, scans
                if not after:
                    break
        if len(listed) >= HOURS_LOOK:
            return found, HourCursor(shard.shard, hour, 0, []), scans
        return found, HourCursor(shard.shard, DONE, 0, []), scans

    async def _records(
        self,
        shard: ShardKeys,
        timer_ids: list[bytes],
        status: TimerState,
        due: Filter,
    ) -> list[tuple[bytes, Record]]:
        records = await self.queue.get_many(shard, timer_ids)
        return [
            (timer_id, record)
            for timer_id, record in zip(timer_ids, records, strict=True)
            if record is not None
            and record.state is status
            and due.admits(record.due_ms)
        ]
