"""Firing and failed timers for a listing: a shard's ready stream (in
the order timers came due) and dead-letter stream (newest first)."""

from __future__ import annotations

import re

import msgspec

from wheel.core.states import TimerState
from wheel.storage.keys import ShardKeys
from wheel.storage.replies import Record, dead_letter_of, entry_of
from wheel.storage.shards import ShardQueue

_ENTRY_ID = re.compile(rb"(?:[0-9]{1,20}-[0-9]{1,20})?")

Found = tuple[bytes, Record, str]
"""A timer a walk found: id, record, url (when the walk knows it)."""


class StreamCursor(
    msgspec.Struct, array_like=True, forbid_unknown_fields=True
):
    """A shard and the last stream entry read (empty: from the start)."""

    shard: int
    entry: bytes

    def __post_init__(self) -> None:
        # A client holds the cursor: an entry id that is not one would
        # reach XRANGE and come back as Redis' error.
        if not _ENTRY_ID.fullmatch(self.entry):
            raise ValueError("is not a stream entry id")


class StreamWalk:
    """Reads firing and failed timers a shard's stream at a time."""

    def __init__(self, queue: ShardQueue) -> None:
        self.queue = queue
        self.connection = queue.connection

    async def firing(
        self, shard: ShardKeys, after: bytes, want: int
    ) -> tuple[list[Found], bytes | None]:
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
            (entry.timer_id, record, record.url)
            for entry, record in zip(entries, records, strict=True)
            if record is not None
            and record.state is TimerState.FIRING
            and record.claim_entry == entry.entry_id
        ]
        return found, (reply[-1][0] if len(reply) >= want else None)

    async def failed(
        self, shard: ShardKeys, before: bytes, want: int
    ) -> tuple[list[Found], bytes | None]:
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
            (letter.timer_id, record, letter.url)
            for letter, record in zip(letters, records, strict=True)
            if record is not None and record.state is TimerState.FAILED
        ]
        return found, (reply[-1][0] if len(reply) >= want else None)
