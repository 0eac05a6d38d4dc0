"""The order in which a listing walks one shard's pending timers.

Pure: positions, which buckets a page reads, and how what it read
becomes the page. ``wheel.storage.listing`` does the reading.

**The order.** A shard's pending timers are walked by *position*, a
tuple compared element by element:

* a timer in a minute bucket or the ready stream: ``(due, ITEM, 0, id)``:
  due order, ties by id. Moving from a minute bucket to the ready stream
  (the ticker's advance) does not change it;
* a timer in an hour or day bucket ``C``: ``(key, rank, number, b"",
  i + 1)`` for the ``i``-th member of the list, where ``key`` is when the
  ticker cascades ``C`` (its start less the lead: 5 minutes for an hour,
  an hour for a day). Members are appended at the tail and only the
  cascade removes them, from the head, so a position in the list holds
  while the head is unchanged.

A bucket's key is at least as early as any timer it can hold and the
cascade moves timers only later in this order (into the bucket's
children), so a cascade is harmless unless the walk is inside the
bucket's span (``key <= t < end``) and has read some of it: then the
timers it read would come again. The cursor keeps the head of each such
*open* bucket; a page that finds one changed refuses to go on
(:class:`~wheel.core.paging.CursorStale`).

Minute buckets are named from a clock estimate (``create.lua``), so a
timer may sit in the bucket of the minute next to its due; the walk
allows :data:`MISNAMED_MS` for that. Each source's items are read in
order and the page ends where an unread source might begin, so sources
that overlap never lose or repeat a timer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from wheel.core.buckets import MINUTE_MS, Bucket, Level

DAY, HOUR, ITEM, END = 0, 1, 2, 3
"""Ranks of positions that share an instant: a day bucket, an hour
bucket, a timer, and "everything at this instant"."""
_RANK = {Level.DAY: DAY, Level.HOUR: HOUR}
MISNAMED_MS = MINUTE_MS
"""How far a timer's due may lie outside the minute its bucket names
(the estimate of Redis' clock the bucket was named with is that close)."""
LOOK_BACK_MS = MINUTE_MS + 2 * MISNAMED_MS
"""Index members scored this much before the cursor are still read: a
minute bucket that holds timers after the cursor scores no earlier."""


class Position(NamedTuple):
    """A place in a shard's walk; everything at or before it is done."""

    t: int
    rank: int
    number: int = 0
    tail: bytes = b""
    offset: int = 0


START = Position(-(2**62), END)
"""Before every position."""


def item_position(due_ms: int, timer_id: bytes) -> Position:
    """The position of a timer in a minute bucket or the ready stream."""
    return Position(due_ms, ITEM, 0, timer_id)


def before_coarse(bucket: Bucket) -> Position:
    """The position just before an hour or day bucket's first member."""
    return Position(bucket.cascade_ms, _RANK[bucket.level], bucket.number)


def coarse_position(bucket: Bucket, index: int) -> Position:
    """The position of the member at list ``index`` of a coarse bucket."""
    return before_coarse(bucket)._replace(offset=index + 1)


def up_to(t_ms: int) -> Position:
    """The position after everything at or before instant ``t_ms``."""
    return Position(t_ms, END)


def inside(bucket: Bucket, position: Position) -> bool:
    """Whether ``position`` is within a coarse bucket's list."""
    return position[:3] == before_coarse(bucket)[:3]


@dataclass(frozen=True, slots=True)
class Source:
    """A bucket a page reads: where its unread timers may begin, and
    where to start reading it."""

    bucket: Bucket
    lower: Position
    start: Position


@dataclass(frozen=True, slots=True)
class Filter:
    """The due range of a listing: ``due_after <= due < due_before``."""

    due_after: int | None = None
    due_before: int | None = None

    def admits(self, due_ms: int) -> bool:
        """Whether a timer due at ``due_ms`` is in the range."""
        if self.due_after is not None and due_ms < self.due_after:
            return False
        return self.due_before is None or due_ms < self.due_before

    def first(self) -> Position:
        """Where a shard's walk may start: nothing earlier is in range."""
        if self.due_after is None:
            return START
        # A day bucket holding a timer due then is keyed at most a day
        # and its lead earlier.
        return up_to(self.due_after - 25 * 3_600_000 - 1)


def index_floor(position: Position) -> float:
    """The lowest index score a page needs to look at."""
    if position.t <= START.t:
        return float("-inf")
    return position.t - LOOK_BACK_MS


def source_of(
    bucket: Bucket, score: int, position: Position, due: Filter
) -> Source | None:
    """The source a bucket of the index is for a page at ``position``,
    or None when it holds nothing after it (or nothing in range)."""
    if bucket.level is Level.MINUTE:
        # The index score is the earliest due in the bucket (or earlier).
        if position.t >= bucket.end_ms + MISNAMED_MS:
            return None
        if due.due_after is not None and (
            bucket.end_ms + MISNAMED_MS <= due.due_after
        ):
            return None
        if due.due_before is not None and score >= due.due_before:
            return None
        lower = Position(score, ITEM)
        return Source(bucket, lower, max(position, lower))
    first = before_coarse(bucket)
    if position > first and not inside(bucket, position):
        return None
    if due.due_after is not None and bucket.end_ms <= due.due_after:
        return None
    if due.due_before is not None and bucket.start_ms >= due.due_before:
        return None
    return Source(bucket, first, max(position, first))


def plan(
    index: Iterable[tuple[Bucket, int]], position: Position, due: Filter
) -> list[Source]:
    """The buckets a page reads, in the order of where they may begin."""
    sources = [
        source
        for bucket, score in index
        if (source := source_of(bucket, score, position, due)) is not None
    ]
    return sorted(sources, key=lambda s: (s.lower, s.bucket.member))


class Candidate(NamedTuple):
    """A timer copy the walk found: where, which, due when."""

    position: Position
    timer_id: bytes
    due_ms: int


@dataclass
class Reading:
    """What one look at a shard found (``walk.lua``'s reply, decoded)."""

    index: list[tuple[Bucket, int]]
    index_full: bool
    read: dict[Bucket, tuple[list[Candidate], bool]]
    """Per bucket read: its candidates after the start, and whether it
    may hold more after the last one."""
    stream: list[Candidate]
    heads: dict[Bucket, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Step:
    """What a page takes from one shard."""

    taken: list[Candidate]
    position: Position
    done: bool
    """The shard has nothing after ``position`` (in range)."""


def frontier(
    reading: Reading, position: Position, due: Filter
) -> Position | None:
    """Up to where the reading is complete (None: to the end).

    Every source whose timers were not all read bounds it: an unread one
    (not reached, or not planned: it appeared since) by where it may
    begin, by the index as the look saw it; a partly read one by its
    last timer read. So does the end of the index slice when the slice
    was cut short.
    """
    bounds: list[Position] = []
    for bucket, score in reading.index:
        source = source_of(bucket, score, position, due)
        if source is None:
            continue
        got = reading.read.get(bucket)
        if got is None:
            bounds.append(source.lower)
        elif got[1]:
            bounds.append(got[0][-1].position if got[0] else source.start)
    if reading.index_full and reading.index:
        bounds.append(up_to(reading.index[-1][1] - 1))
    return min(bounds) if bounds else None


def step(
    reading: Reading, position: Position, limit: int, due: Filter
) -> Step:
    """The timers a page takes from one shard's reading, in walk order
    (only those due in range), and where the shard's walk stands after
    them."""
    bound = frontier(reading, position, due)
    if due.due_before is not None:
        stop = up_to(due.due_before - 1)
        if bound is None or bound > stop:
            bound = stop
    found = [
        candidate
        for got, _ in reading.read.values()
        for candidate in got
        if candidate.position > position
    ]
    found += [c for c in reading.stream if c.position > position]
    found = sorted(
        c
        for c in found
        if (bound is None or c.position <= bound) and due.admits(c.due_ms)
    )
    if len(found) >= limit:
        taken = found[:limit]
        return Step(taken, taken[-1].position, done=False)
    if bound is None:
        return Step(found, position, done=True)
    end_of_range = due.due_before is not None and bound == up_to(
        due.due_before - 1
    )
    return Step(found, max(bound, position), done=end_of_range)


def open_buckets(
    position: Position, candidates: Iterable[Bucket]
) -> list[Bucket]:
    """The coarse buckets whose cascade would repeat timers the walk has
    read: begun (or passed), with children still ahead."""
    return [
        bucket
        for bucket in candidates
        if position > before_coarse(bucket) and position.t < bucket.end_ms
    ]
