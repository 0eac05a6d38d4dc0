"""Redis' clock per shard, as this process estimates it."""

from __future__ import annotations

import time


class ShardClocks:
    """Redis' time per shard, estimated from the times Redis returns.

    Each shard lives on one node, so this is the clock of the node that
    holds the shard, kept as an offset from this host's monotonic clock
    (a step of the host's wall clock does not move it). Before any reply
    the host's wall clock stands in: the scripts never trust the
    estimate, it names bucket keys and tells the ticker when to look.
    """

    def __init__(self, shards: int) -> None:
        start = int((time.time() - time.monotonic()) * 1000)
        self._offset_ms = [start] * shards

    def observe(self, shard: int, redis_ms: int) -> None:
        """Record a time the shard's node reported."""
        self._offset_ms[shard] = redis_ms - int(time.monotonic() * 1000)

    def now_ms(self, shard: int) -> int:
        """The estimated Redis time of ``shard``'s node, epoch ms."""
        return int(time.monotonic() * 1000) + self._offset_ms[shard]
