"""Reader: which shards it reads as ownership changes (no Redis: the
queue and the firer are stand-ins that record what they are asked)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from wheel.engine.capacity import Capacity
from wheel.engine.firer import Firer
from wheel.engine.reader import Reader
from wheel.settings import Settings
from wheel.storage.keys import Keys, ShardKeys
from wheel.storage.shards import ShardQueue

SHARDS = 4


class BacklogQueue:
    """Every shard has more entries than any read asks for."""

    def __init__(self) -> None:
        self.keys = Keys("tw", SHARDS)
        self.reads: list[int] = []

    async def read(
        self, shard: ShardKeys, consumer: str, count: int
    ) -> list[Any]:
        self.reads.append(shard.shard)
        return [object()] * count


class ReturningFirer:
    """Fires nothing: hands every slot straight back."""

    def __init__(self, capacity: Capacity) -> None:
        self.capacity = capacity
        self.stuck: Counter[str] = Counter()
        self.on_unstuck: Callable[[], None] = lambda: None

    async def dispatch(self, shard: ShardKeys, entries: list[Any]) -> None:
        self.capacity.give(len(entries))


def reader() -> tuple[Reader, BacklogQueue]:
    queue = BacklogQueue()
    capacity = Capacity(40)
    settings = Settings(shards=SHARDS, batch_size=10)
    return (
        Reader(
            cast(ShardQueue, queue),
            capacity,
            cast(Firer, ReturningFirer(capacity)),
            settings,
            "w1",
        ),
        queue,
    )


async def test_a_shard_given_away_is_read_no_more_though_it_has_backlog() -> (
    None
):
    """A full read keeps a shard hot; once it belongs to another worker
    it must drop out at once, not be read by both for as long as its
    backlog lasts."""
    one, queue = reader()
    one.own(frozenset(range(SHARDS)))
    await one.step()
    assert sorted(queue.reads) == [0, 1, 2, 3]
    one.own(frozenset({0, 1}))
    queue.reads.clear()
    for _ in range(3):
        await one.step()
    assert queue.reads and set(queue.reads) == {0, 1}


async def test_a_shard_gained_is_read_at_once() -> None:
    one, queue = reader()
    one.own(frozenset({0}))
    await one.step()
    one.own(frozenset({0, 3}))
    queue.reads.clear()
    await one.step()
    assert sorted(queue.reads) == [0, 3]
