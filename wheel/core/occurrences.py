"""A schedule's occurrences: their ids, and what fires after downtime
(the misfire policy).

**Ids.** An occurrence is a timer whose id derives from the schedule id
and the occurrence instant, so creating it twice yields the same timer.
It keeps the layout of :mod:`wheel.core.ids`: an RFC 9562 UUIDv8 whose
first 48 bits are the instant (epoch ms), so ``finished_hour`` files it
like any timer; its other 74 bits come from a BLAKE2b hash of (schedule
id, instant) instead of randomness. With ``shards`` given, the id lands
on its schedule's shard (``shard_of``), so one script on one slot can
hand over an occurrence and create the next. The same inputs give the
same id for a given shard count.

**Misfires.** The wheel holds one occurrence of a schedule at a time.
When the service gets to it (hands it to the workers) after a later
occurrence has come due too, the service was down: that occurrence and
every later one before now are *overdue*, and the policy says what
fires now:

- ``once`` (default): one catch-up fire, the occurrence already on the
  wheel (the earliest overdue), then back on schedule;
- ``skip``: nothing fires; the schedule resumes at the next occurrence
  from now on;
- ``all``: every overdue occurrence fires, oldest first, the first
  :data:`ALL_CAP` of them.

An occurrence merely late (the next one not yet due) fires under every
policy. ``missed`` counts the overdue occurrences that get no fire.
The catch-up of ``once`` is the occurrence whose timer already exists,
so it needs no new timer and a replay creates none.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from wheel.core.cron import ScheduleSpec, iter_occurrences, next_occurrences
from wheel.core.ids import shard_of

ALL_CAP = 100
"""The most overdue occurrences the ``all`` policy fires."""
OVERDUE_COUNT_CAP = 10_000
"""Overdue occurrences are counted up to this (one cron step each)."""

# The layout of wheel/core/ids.py: 48 bits of ms, version 8, 12 bits,
# the RFC variant, 62 bits.
_TIME_BITS = 48
_RAND_A_MASK = (1 << 12) - 1
_RAND_B_MASK = (1 << 62) - 1
_VERSION_8 = 8 << 76
_VARIANT_RFC = 0b10 << 62
_HASH_PERSON = b"wheel.occurrence"  # BLAKE2b's 16-byte domain separator


class Misfire(StrEnum):
    """What fires for the occurrences missed while the service was down."""

    ONCE = "once"
    SKIP = "skip"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One occurrence of a schedule: its timer id and its instant."""

    id: bytes
    scheduled_ms: int


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What to do when an occurrence comes due: see :func:`catch_up`.

    ``fire_ms``: the instants to fire now, ascending. ``overdue``: the
    occurrences that came due while the service was down (0 when it was
    not), counted up to :data:`OVERDUE_COUNT_CAP`. ``missed``: those of
    them that get no fire. ``next_ms``: the occurrence to put on the
    wheel next, None when the schedule has ended.
    """

    fire_ms: tuple[int, ...]
    overdue: int
    missed: int
    next_ms: int | None


def occurrence_id(
    schedule_id: bytes, scheduled_ms: int, shards: int = 1
) -> bytes:
    """The timer id (16 bytes) of a schedule's occurrence at an instant.

    Deterministic. With ``shards`` > 1 it lands on the schedule id's own
    shard: ``shard_of(result, shards) == shard_of(schedule_id, shards)``.
    """
    if len(schedule_id) != 16:
        raise ValueError("a schedule id is 16 bytes")
    if not 0 <= scheduled_ms < 1 << _TIME_BITS:
        raise ValueError("the instant does not fit 48 bits of ms")
    if shards < 1:
        raise ValueError("shards counts from 1")
    digest = hashlib.blake2b(
        schedule_id + scheduled_ms.to_bytes(8, "big"),
        digest_size=10,
        person=_HASH_PERSON,
    ).digest()
    bits = int.from_bytes(digest, "big")
    number = (
        scheduled_ms << 80
        | _VERSION_8
        | (bits >> 62 & _RAND_A_MASK) << 64
        | _VARIANT_RFC
        | bits & _RAND_B_MASK
    )
    if shards > 1:
        number = _on_shard(number, shard_of(schedule_id, shards), shards)
    return number.to_bytes(16, "big")


def _on_shard(number: int, shard: int, shards: int) -> int:
    """``number`` with its low field moved so that it maps to ``shard``.

    Up by less than ``shards`` when that fits the 62-bit field, else down
    by less than ``shards``: deterministic, unlike a fresh draw.
    """
    low = number & _RAND_B_MASK
    step = (shard - number) % shards
    low += step if low + step <= _RAND_B_MASK else step - shards
    return number & ~_RAND_B_MASK | low


def scheduled_ms_of(occurrence_id: bytes) -> int:
    """The instant (epoch ms) an occurrence id was derived from."""
    return int.from_bytes(occurrence_id[:6], "big")


def catch_up(
    spec: ScheduleSpec,
    scheduled_ms: int,
    now_ms: int,
    policy: Misfire | str = Misfire.ONCE,
) -> CatchUp:
    """What fires when the occurrence at ``scheduled_ms`` is handed over
    at ``now_ms``, and which occurrence follows it.

    When no later occurrence is due before ``now_ms``, the service was
    not down: that occurrence fires and the next one follows. Otherwise
    it and every occurrence before ``now_ms`` are overdue; the policy
    picks which fire, and the next is the first at or after ``now_ms``.
    """
    if now_ms < scheduled_ms:
        raise ValueError("the occurrence is not due")
    policy = Misfire(policy)
    later = iter_occurrences(spec, scheduled_ms)
    following = next(later, None)
    if following is None or following >= now_ms:
        return CatchUp((scheduled_ms,), 0, 0, following)
    overdue_ms = [scheduled_ms, following]
    overdue = 2
    next_ms: int | None = None
    for instant in later:
        if instant >= now_ms:
            next_ms = instant
            break
        if overdue == OVERDUE_COUNT_CAP:
            # Counting stops; the next occurrence is looked up from now.
            upcoming = next_occurrences(spec, now_ms - 1, 1)
            next_ms = upcoming[0] if upcoming else None
            break
        overdue += 1
        if len(overdue_ms) < ALL_CAP:
            overdue_ms.append(instant)
    if policy == Misfire.ONCE:
        fire_ms: tuple[int, ...] = (scheduled_ms,)
    elif policy == Misfire.SKIP:
        fire_ms = ()
    else:
        fire_ms = tuple(overdue_ms[:ALL_CAP])
    return CatchUp(fire_ms, overdue, overdue - len(fire_ms), next_ms)
