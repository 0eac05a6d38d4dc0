"""One shard's page of pending timers: the wheel walk's Redis side.

Three calls per shard: a look at the bucket index (to learn which
buckets to name), ``walk.lua`` (the cursor's open buckets checked, the
index slice, the buckets and the ready stream read in one consistent
look) and ``get.lua`` (the records of the timers taken, which say which
copies are current). :mod:`wheel.core.walk` decides what is read and
what the page takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from wheel.core import walk
from wheel.core.buckets import Bucket, Level
from wheel.core.paging import CursorInvalid, CursorStale
from wheel.core.states import Code, TimerState
from wheel.storage.keys import ShardKeys
from wheel.storage.replies import Record, as_int, as_text, bucket_of
from wheel.storage.scripts import SCRIPTS
from wheel.storage.shards import ShardQueue

MEMBER_BYTES = 22
"""An hour or day bucket's member: id (16 bytes) and due (6)."""


class Open(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """A coarse bucket the walk has read into, and its head then."""

    level: str
    number: int
    head: bytes


class WheelCursor(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """Where a listing of pending timers stands: a shard, a position in
    its walk, and the open coarse buckets with their heads."""

    shard: int
    t: int
    rank: int
    number: int
    tail: bytes
    index: int
    open: list[Open]

    @classmethod
    def start(cls, shard: int, due: walk.Filter) -> WheelCursor:
        """The start of a shard's walk."""
        first = due.first()
        return cls(shard, *first, open=[])

    def position(self) -> walk.Position:
        """The walk position, checked.

        Raises:
            CursorInvalid: a field no walk makes.
        """
        if not walk.DAY <= self.rank <= walk.END or self.index < 0:
            raise CursorInvalid("is not a cursor this API gave")
        if len(self.tail) not in (0, 16) or len(self.open) > 8:
            raise CursorInvalid("is not a cursor this API gave")
        for opened in self.open:
            if opened.level not in ("h", "d") or len(opened.head) > 64:
                raise CursorInvalid("is not a cursor this API gave")
        return walk.Position(
            self.t, self.rank, self.number, self.tail, self.index
        )


@dataclass(frozen=True, slots=True)
class WheelStep:
    """A shard's share of a page: the pending timers found, and the
    cursor after them (None when the shard is done)."""

    found: list[tuple[bytes, Record]]
    cursor: WheelCursor | None
    looked: int
    """Index members looked at (the page's bucket budget)."""


class WheelWalk:
    """Walks the pending timers of a deployment's shards."""

    def __init__(self, queue: ShardQueue) -> None:
        self.queue = queue
        self.connection = queue.connection

    async def step(
        self,
        cursor: WheelCursor,
        want: int,
        look: int,
        due: walk.Filter,
        url_prefix: str | None,
    ) -> WheelStep:
        """Up to ``want`` pending timers of the cursor's shard after it,
        looking at most ``look`` index members.

        Raises:
            CursorStale: a bucket the cursor had read into was cascaded.
        """
        shard = self.queue.keys.shard(cursor.shard)
        position = cursor.position()
        floor = walk.index_floor(position)
        index = await self._index(shard, floor, look)
        sources = walk.plan(index, position, due)
        reading = await self._read(shard, cursor, sources, floor, look, want)
        taken = walk.step(reading, position, want, due)
        found = await self._current(shard, taken.taken, url_prefix)
        if taken.done:
            return WheelStep(found, None, len(reading.index))
        heads = {Bucket(Level(o.level), o.number): o.head for o in cursor.open}
        heads.update(reading.heads)
        opened = [
            Open(bucket.level.value, bucket.number, heads[bucket])
            for bucket in walk.open_buckets(taken.position, heads)
        ]
        after = WheelCursor(cursor.shard, *taken.position, open=opened)
        return WheelStep(found, after, len(reading.index))

    async def _index(
        self, shard: ShardKeys, floor: float, look: int
    ) -> list[tuple[Bucket, int]]:
        reply = await self.connection.call(
            shard.index,
            "ZRANGE",
            shard.index,
            _score(floor),
            "+inf",
            "BYSCORE",
            "LIMIT",
            0,
            look,
            "WITHSCORES",
        )
        return _slice(reply)

    async def _read(
        self,
        shard: ShardKeys,
        cursor: WheelCursor,
        sources: list[walk.Source],
        floor: float,
        look: int,
        want: int,
    ) -> walk.Reading:
        position = cursor.position()
        keys: list[bytes] = [shard.index, shard.ready]
        args: list[Any] = [len(cursor.open)]
        for opened in cursor.open:
            bucket = Bucket(Level(opened.level), opened.number)
            keys.append(shard.bucket(bucket))
            args.append(opened.head)
        stream_from = "-" if position.t < 0 else position.t
        args += [_score(floor), look, want, stream_from]
        for source in sources:
            keys.append(shard.bucket(source.bucket))
            args += _read_from(source, position)
        reply = await self.connection.script(
            SCRIPTS["walk"], keys, args, deadline_s=2.0
        )
        if Code(as_text(reply[1])) is Code.STALE:
            raise CursorStale(
                "the wheel cascaded a bucket this cursor had read into"
            )
        return _reading(reply, sources, position, look)

    async def _current(
        self,
        shard: ShardKeys,
        taken: list[walk.Candidate],
        url_prefix: str | None,
    ) -> list[tuple[bytes, Record]]:
        """The taken copies that are their timer's current one."""
        records = await self.queue.get_many(shard, [c.timer_id for c in taken])
        found = []
        for candidate, record in zip(taken, records, strict=True):
            if record is None or record.state is not TimerState.PENDING:
                continue
            if (record.next_ms or record.due_ms) != candidate.due_ms:
                continue  # a copy left behind by a reschedule
            if url_prefix is not None and not record.url.startswith(
                url_prefix
            ):
                continue
            found.append((candidate.timer_id, record))
        return found


def _score(value: float) -> str:
    return "-inf" if value == float("-inf") else str(int(value))


def _slice(reply: list[Any]) -> list[tuple[Bucket, int]]:
    return [
        (bucket_of(reply[i]), int(float(reply[i + 1])))
        for i in range(0, len(reply), 2)
    ]


def _read_from(source: walk.Source, position: walk.Position) -> list[Any]:
    """``walk.lua``'s three values saying where to read a bucket from."""
    if source.bucket.level is not Level.MINUTE:
        index = position.offset if walk.inside(source.bucket, position) else 0
        return ["c", index, ""]
    if position < source.lower:
        return ["m", "", ""]
    if position.rank == walk.ITEM:
        return ["m", position.t, position.tail]
    if position.rank == walk.END:
        return ["m", position.t, ""]
    # At an hour or day bucket: its instant's timers come after it.
    return ["m", position.t - 1, ""]


def _reading(
    reply: list[Any],
    sources: list[walk.Source],
    position: walk.Position,
    look: int,
) -> walk.Reading:
    index_reply, stream_reply, reads = reply[2], reply[3], reply[4]
    index = _slice(index_reply)
    read: dict[Bucket, tuple[list[walk.Candidate], bool]] = {}
    heads: dict[Bucket, bytes] = {}
    for source, got in zip(sources, reads, strict=False):
        head, more, items = got[0], bool(as_int(got[1])), got[2:]
        bucket = source.bucket
        if bucket.level is Level.MINUTE:
            candidates = [
                walk.Candidate(
                    walk.item_position(int(float(items[i + 1])), items[i]),
                    items[i],
                    int(float(items[i + 1])),
                )
                for i in range(0, len(items), 2)
            ]
        else:
            if head:
                # An empty bucket returned nothing: no head to keep.
                heads[bucket] = head
            first = position.offset if walk.inside(bucket, position) else 0
            candidates = [
                walk.Candidate(
                    walk.coarse_position(bucket, first + j),
                    member[:16],
                    int.from_bytes(member[16:MEMBER_BYTES], "big"),
                )
                for j, member in enumerate(items)
            ]
        read[bucket] = (candidates, more)
    stream = [
        walk.Candidate(
            walk.item_position(
                as_int(stream_reply[i + 2]), stream_reply[i + 1]
            ),
            stream_reply[i + 1],
            as_int(stream_reply[i + 2]),
        )
        for i in range(0, len(stream_reply), 3)
    ]
    return walk.Reading(index, len(index) >= look, read, stream, heads)
