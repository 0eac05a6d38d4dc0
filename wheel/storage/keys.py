"""The only place a Redis key is spelled.

Every key of shard ``k`` starts with the shard's hash tag (chosen by
:func:`wheel.storage.slots.spread_tags` so that shards spread evenly over a
cluster's slots), so a script that touches one shard touches one slot.
Global keys stand alone and are never mixed with shard keys in one
command. Keys are bytes: timer ids in keys are their 16 raw bytes, and
names are one letter, because every byte of a pending timer is paid for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wheel.core.buckets import Bucket
from wheel.storage.slots import spread_tags

GROUP = b"workers"
"""The consumer group of firing workers on every ready stream."""

SCHEMA = "2"
"""The key layout version, recorded in the deployment's meta key."""


@dataclass(frozen=True, slots=True)
class ShardKeys:
    """The keys of one shard of the wheel."""

    shard: int
    tag: str
    _base: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_base", self.tag.encode())

    def timer(self, timer_id: bytes) -> bytes:
        """Hash: a pending or firing timer's record."""
        return self._base + b":t:" + timer_id

    def finished(self, hour: int) -> bytes:
        """Hash: id -> packed record of timers that finished, grouped by
        the hour their id names (see :func:`wheel.core.ids.finished_hour`)."""
        return self._base + b":f:%d" % hour

    def bucket(self, bucket: Bucket) -> bytes:
        """A wheel bucket: sorted set (minute) or list (hour, day)."""
        return (
            self._base
            + b":"
            + bucket.level.value.encode()
            + b"%d" % (bucket.number)
        )

    def minute(self, number: int) -> bytes:
        """Sorted set: the minute bucket ``number``."""
        return self._base + b":m%d" % number

    def level_bucket(self, level: str, number: int) -> bytes:
        """A bucket by level letter and number (the hot path's form)."""
        return self._base + b":" + level.encode() + b"%d" % number

    @property
    def index(self) -> bytes:
        """Sorted set: every non-empty bucket, scored by when to act."""
        return self._base + b":i"

    @property
    def ready(self) -> bytes:
        """Stream: due timers for the workers (group :data:`GROUP`)."""
        return self._base + b":r"

    @property
    def count(self) -> bytes:
        """String: how many timers of the shard are not finished yet."""
        return self._base + b":n"

    @property
    def lease(self) -> bytes:
        """String: the ticker lease's owner token."""
        return self._base + b":l"

    @property
    def dead(self) -> bytes:
        """Stream: timers that failed (dead letters)."""
        return self._base + b":x"

    @property
    def tombstones(self) -> bytes:
        """Sorted set: ``id + due`` members of copies a reschedule left in
        an hour or day bucket, scored by that due: the cascade drops
        them. Empty unless a timer was moved."""
        return self._base + b":z"

    @property
    def finished_hours(self) -> bytes:
        """Sorted set: the hours that have a finished hash, scored by the
        hour (the listing of fired and cancelled timers walks it)."""
        return self._base + b":fi"

    @property
    def finished_expiry(self) -> bytes:
        """Sorted set: the same hours, scored by when their hash expires
        (so an expired hour leaves both sets)."""
        return self._base + b":fx"

    def schedule(self, schedule_id: bytes) -> bytes:
        """Hash: a schedule's record (its definition in chunks, version,
        paused, next occurrence, last occurrence, counts)."""
        return self._base + b":s:" + schedule_id

    @property
    def schedules_next(self) -> bytes:
        """Sorted set: the id of every live (unpaused, unended) schedule,
        scored by its next occurrence's instant: the one next occurrence
        each has on the wheel, which the roller hands over when due."""
        return self._base + b":S"

    @property
    def schedules(self) -> bytes:
        """Sorted set: the id of every schedule, all scored 0, so in id
        order (the listing of schedules walks it)."""
        return self._base + b":sa"

    def idempotency(self, digest: bytes) -> bytes:
        """String: the timer an ``Idempotency-Key`` created, for a day."""
        return self._base + b":k:" + digest


class Keys:
    """Key names for one key prefix and shard count."""

    def __init__(self, prefix: str, shards: int) -> None:
        self.prefix = prefix
        self.shards = shards
        self._prefix = prefix.encode()
        self._shards = tuple(
            ShardKeys(k, tag)
            for k, tag in enumerate(spread_tags(prefix, shards))
        )

    def shard(self, k: int) -> ShardKeys:
        """The keys of shard ``k``."""
        return self._shards[k]

    def all_shards(self) -> tuple[ShardKeys, ...]:
        """The keys of every shard, in shard order."""
        return self._shards

    def heartbeats(self, role: str) -> bytes:
        """Sorted set: live processes of ``role``, scored by last beat ms."""
        return self._prefix + b":hb:" + role.encode()

    @property
    def meta(self) -> bytes:
        """Hash: the deployment's identity (shard count, key layout)."""
        return self._prefix + b":meta"

    @property
    def doorbell(self) -> bytes:
        """Pub/sub channel: shards whose ready stream just got entries."""
        return self._prefix + b":ready"

    def stats(self, minute: int) -> bytes:
        """Hash: fleet-wide counters of one epoch minute (dashboard)."""
        return self._prefix + b":st:%d" % minute


class LegacyKeys:
    """Keys of the first key layout (schema 1), for ``timer-wheel
    migrate`` only: tags ``{<prefix>:<shard>}``, text ids."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def tag(self, shard: int) -> str:
        """The hash tag of shard ``shard``."""
        return f"{{{self.prefix}:{shard}}}"

    def records(self) -> str:
        """A SCAN pattern matching every timer record."""
        return f"{{{self.prefix}:*}}:t:*"

    def marker(self) -> bytes:
        """A key every deployment of the first layout had (shard 0's
        ready stream, created by the first worker)."""
        return f"{self.tag(0)}:ready".encode()

    def shard_keys(self, shard: int) -> list[str]:
        """The fixed keys of one shard (buckets aside)."""
        tag = self.tag(shard)
        return [f"{tag}:{name}" for name in ("slots", "ready", "lease")]

    def dead(self, shard: int) -> str:
        """Stream: the shard's dead letters."""
        return f"{self.tag(shard)}:dead"

    def dead_streams(self) -> str:
        """A SCAN pattern matching every shard's dead letters."""
        return f"{{{self.prefix}:*}}:dead"

    def buckets(self, shard: int) -> str:
        """A SCAN pattern matching the shard's minute buckets."""
        return f"{self.tag(shard)}:b:*"


DEPLOYMENTS = b"timer-wheel:deployments"
"""Hash: key prefix -> shard count of every deployment in this Redis."""
