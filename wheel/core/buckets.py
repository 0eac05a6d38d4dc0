"""Pure arithmetic of the hierarchical wheel: which bucket holds a timer.

Three levels of bucket per shard:

* **minute** buckets (sorted sets scored by the time a timer is next due)
  hold what is due soon; the ticker moves due ids from them into the
  ready stream;
* **hour** and **day** buckets (lists of ``id + due`` members) hold timers
  further away at a few bytes each; the ticker *cascades* an hour bucket
  into its minute buckets :data:`HOUR_LEAD_MS` before the hour starts,
  and a day bucket into its hour buckets :data:`DAY_LEAD_MS` before the
  day starts, so a cascade is always finished before anything in it is
  due.

A timer goes into the coarsest bucket that will not yet have been
cascaded when the timer is created: :func:`place`. The Lua scripts make
the same choice with Redis' clock (``create.lua``, ``complete.lua``);
the caller only names the keys in advance from its clock estimate, and a
script that disagrees falls back to a minute bucket, which is always
correct (a minute bucket's index score is its earliest due time, so its
name does not decide when it is looked at).

Each non-empty bucket has a member in the shard's index (a sorted set):
``m<minute>`` scored by its earliest due ms, ``h<hour>`` and ``d<day>``
scored by their cascade time. The ticker acts on index members whose
score has come.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
HOUR_LEAD_MS = 5 * MINUTE_MS
"""How long before its start an hour bucket is cascaded into minutes."""
DAY_LEAD_MS = HOUR_MS
"""How long before its start a day bucket is cascaded into hours; more
than :data:`HOUR_LEAD_MS`, so each hour of the day is cascaded again in
time."""

MEMBER_DUE_BYTES = 6
"""A coarse bucket member is the 16-byte id and the due ms in 6 bytes."""


class Level(StrEnum):
    """A level of the wheel; the value is its letter in keys and index."""

    MINUTE = "m"
    HOUR = "h"
    DAY = "d"


_WIDTH_MS = {Level.MINUTE: MINUTE_MS, Level.HOUR: HOUR_MS, Level.DAY: DAY_MS}
_LEAD_MS = {Level.MINUTE: 0, Level.HOUR: HOUR_LEAD_MS, Level.DAY: DAY_LEAD_MS}
_CHILD = {Level.HOUR: Level.MINUTE, Level.DAY: Level.HOUR}


class Bucket(msgspec.Struct, frozen=True):
    """One bucket of a shard: a level and its epoch number at that level."""

    level: Level
    number: int

    @property
    def start_ms(self) -> int:
        """When the bucket's span begins (epoch ms)."""
        return self.number * _WIDTH_MS[self.level]

    @property
    def end_ms(self) -> int:
        """When the bucket's span ends (exclusive)."""
        return self.start_ms + _WIDTH_MS[self.level]

    @property
    def cascade_ms(self) -> int:
        """When a coarse bucket is cascaded (its index score)."""
        return self.start_ms - _LEAD_MS[self.level]

    @property
    def member(self) -> str:
        """The bucket's member in the shard index, e.g. ``h493210``."""
        return f"{self.level.value}{self.number}"

    def children(self) -> list[Bucket]:
        """The finer buckets a coarse bucket cascades into."""
        child = _CHILD[self.level]
        width = _WIDTH_MS[child]
        first = self.start_ms // width
        return [Bucket(child, first + i) for i in range(self.span(child))]

    def span(self, child: Level) -> int:
        """How many ``child`` buckets this bucket covers."""
        return _WIDTH_MS[self.level] // _WIDTH_MS[child]


def minute_of(due_ms: int) -> Bucket:
    """The minute bucket of a due time."""
    return Bucket(Level.MINUTE, due_ms // MINUTE_MS)


def place(due_ms: int, now_ms: int) -> Bucket:
    """The bucket a timer due at ``due_ms`` goes into at ``now_ms``.

    The coarsest level whose bucket is cascaded strictly after now; the
    minute level otherwise.
    """
    level, number = place_numbers(due_ms, now_ms)
    return Bucket(Level(level), number)


def place_numbers(due_ms: int, now_ms: int) -> tuple[str, int]:
    """:func:`place` as (level letter, number), for the hot path."""
    day = due_ms // DAY_MS
    if day * DAY_MS - DAY_LEAD_MS > now_ms:
        return "d", day
    hour = due_ms // HOUR_MS
    if hour * HOUR_MS - HOUR_LEAD_MS > now_ms:
        return "h", hour
    return "m", due_ms // MINUTE_MS


def parse_member(member: str) -> Bucket:
    """The bucket of an index member such as ``m29000000``."""
    return Bucket(Level(member[0]), int(member[1:]))


def encode_member(timer_id: bytes, due_ms: int) -> bytes:
    """A coarse bucket's member: the id and its due ms (6 bytes)."""
    return timer_id + due_ms.to_bytes(MEMBER_DUE_BYTES, "big")
