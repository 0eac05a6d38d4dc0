"""The only place a Redis key is spelled.

Every key of shard ``k`` carries the hash tag ``{<prefix>:k}``, so a script
that touches one shard touches one Redis Cluster slot. Global keys stand
alone and are never mixed with shard keys in one command.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "workers"
"""The consumer group of firing workers on every ready stream."""


@dataclass(frozen=True, slots=True)
class ShardKeys:
    """The keys of one shard of the wheel."""

    shard: int
    tag: str

    def timer(self, timer_id: str) -> str:
        """Hash: one timer's record."""
        return f"{self.tag}:t:{timer_id}"

    def slot(self, minute: int) -> str:
        """Sorted set: ids due in ``minute``, scored by due ms."""
        return f"{self.tag}:b:{minute}"

    @property
    def slots(self) -> str:
        """Sorted set: the minutes of non-empty slots."""
        return f"{self.tag}:slots"

    @property
    def ready(self) -> str:
        """Stream: due timers for the workers."""
        return f"{self.tag}:ready"

    @property
    def lease(self) -> str:
        """String: the ticker lease's owner token."""
        return f"{self.tag}:lease"

    @property
    def dead(self) -> str:
        """Stream: timers that exhausted their attempts."""
        return f"{self.tag}:dead"


class Keys:
    """Key names for one key prefix and shard count."""

    def __init__(self, prefix: str, shards: int) -> None:
        self.prefix = prefix
        self.shards = shards
        self._shards = tuple(
            ShardKeys(k, hash_tag(prefix, k)) for k in range(shards)
        )

    def shard(self, k: int) -> ShardKeys:
        """The keys of shard ``k``."""
        return self._shards[k]

    def all_shards(self) -> tuple[ShardKeys, ...]:
        """The keys of every shard, in shard order."""
        return self._shards

    def heartbeats(self, role: str) -> str:
        """Sorted set: live processes of ``role``, scored by last beat ms."""
        return f"{self.prefix}:hb:{role}"


def hash_tag(prefix: str, shard: int) -> str:
    """The hash tag of shard ``shard``; the one function that picks it."""
    return f"{{{prefix}:{shard}}}"
