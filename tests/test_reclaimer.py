"""Reclaimer: what a failed sweep leaves for the reader (no Redis: the
queue and the firer are stand-ins)."""

from __future__ import annotations

from typing import Any, cast

from wheel.engine.capacity import Capacity
from wheel.engine.firer import Firer
from wheel.engine.reclaimer import Reclaimer
from wheel.settings import Settings
from wheel.storage.errors import RedisUnavailable
from wheel.storage.keys import Keys, ShardKeys
from wheel.storage.shards import ShardQueue

SHARDS = 4


class OneNode:
    def node_of(self, key: bytes) -> str:
        return "node"


class LosingReclaims:
    """Every XAUTOCLAIM loses its reply."""

    def __init__(self) -> None:
        self.keys = Keys("tw", SHARDS)
        self.connection = OneNode()
        self.swept: list[int] = []

    async def reclaim(
        self, shard: ShardKeys, consumer: str, cursor: bytes, count: int
    ) -> tuple[bytes, list[Any]]:
        self.swept.append(shard.shard)
        raise RedisUnavailable("reply lost", maybe_applied=True)


class Marks:
    """The firer's bookkeeping, nothing fired."""

    def __init__(self) -> None:
        self.lost: set[int] = set()


async def test_a_failed_reclaim_marks_its_shard_for_a_read_back() -> None:
    """An XAUTOCLAIM whose reply is lost may have moved entries to this
    worker: its shard is marked for the reader to read them back, the
    permits go back, and the node's other shards wait for the next
    sweep (as the module says)."""
    queue = LosingReclaims()
    capacity = Capacity(40)
    firer = Marks()
    reclaimer = Reclaimer(
        cast(ShardQueue, queue),
        capacity,
        cast(Firer, firer),
        Settings(shards=SHARDS),
        "w1",
    )
    await reclaimer.sweep()
    assert queue.swept == [0]
    assert firer.lost == {0}
    assert capacity.free == 40
