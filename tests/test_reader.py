"""Reader: which shards it reads as ownership changes (no Redis: the
queue and the firer are stand-ins that record what they are asked)."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar, cast

import pytest

from wheel.engine.capacity import Capacity
from wheel.engine.firer import Firer
from wheel.engine.reader import Reader
from wheel.settings import Settings
from wheel.storage.errors import RedisUnavailable
from wheel.storage.keys import Keys, ShardKeys
from wheel.storage.shards import Entry, ShardQueue

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
        self.lost: set[int] = set()
        self.held: set[tuple[int, bytes]] = set()

    def holds(self, shard: int, entry_id: bytes) -> bool:
        return (shard, entry_id) in self.held

    async def dispatch(self, shard: ShardKeys, entries: list[Any]) -> None:
        self.capacity.give(len(entries))


F = TypeVar("F", bound=ReturningFirer)


def reader_on(
    queue: object, firer_of: Callable[[Capacity], F], batch_size: int = 10
) -> tuple[Reader, F]:
    """A reader of ``queue`` with 40 permits, and its stand-in firer."""
    capacity = Capacity(40)
    firer = firer_of(capacity)
    one = Reader(
        cast(ShardQueue, queue),
        capacity,
        cast(Firer, firer),
        Settings(shards=SHARDS, batch_size=batch_size),
        "w1",
    )
    return one, firer


def reader() -> tuple[Reader, BacklogQueue]:
    queue = BacklogQueue()
    one, _ = reader_on(queue, ReturningFirer)
    return one, queue


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


class FailingFirer(ReturningFirer):
    """Hands the slots back, then fails (a bug past the claim)."""

    async def dispatch(self, shard: ShardKeys, entries: list[Any]) -> None:
        self.capacity.give(len(entries))
        raise RuntimeError("dispatch broke")


class SlowFirer(ReturningFirer):
    """Takes a moment before handing the slots back."""

    def __init__(self, capacity: Capacity) -> None:
        super().__init__(capacity)
        self.dispatched = 0
        self.started = asyncio.Event()

    async def dispatch(self, shard: ShardKeys, entries: list[Any]) -> None:
        self.started.set()
        await asyncio.sleep(0.05)
        self.dispatched += 1
        self.capacity.give(len(entries))


async def test_what_escapes_a_read_is_logged_not_left_to_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An error past the read (the firer's dispatch) is the reader's to
    log: nothing is left for asyncio's "never retrieved"."""
    one, _ = reader_on(BacklogQueue(), FailingFirer)
    one.own(frozenset({0}))
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unretrieved.append(context))
    with caplog.at_level(logging.WARNING, logger="wheel.engine.reader"):
        tasks = await one._launch()
        await asyncio.wait(tasks)
        del tasks
        gc.collect()
    loop.set_exception_handler(None)
    assert unretrieved == []
    assert "dispatch broke" in caplog.text


async def test_run_returns_only_once_its_reads_are_done() -> None:
    """Stopping the reader waits for the reads under way, so the worker's
    wait for webhooks in flight sees what they claimed."""
    queue = BacklogQueue()
    one, firer = reader_on(queue, SlowFirer)
    one.own(frozenset(range(SHARDS)))
    stop = asyncio.Event()
    running = asyncio.create_task(one.run(stop))
    await asyncio.wait_for(firer.started.wait(), 2)
    stop.set()
    one.ring(None)
    await asyncio.wait_for(running, 2)
    assert firer.dispatched == len(queue.reads)


LOST = RedisUnavailable("reply lost", maybe_applied=True)
REFUSED = RedisUnavailable("not sent", maybe_applied=False)


class LosingQueue:
    """The first reads fail as ``failures`` say, then none finds a new
    entry. The lost one took two entries: they are pending under the
    reader, beside one in flight."""

    def __init__(self, failures: tuple[Exception, ...] = (LOST,)) -> None:
        self.keys = Keys("tw", SHARDS)
        self.pending = [Entry(b"1-0", b"t1", 0), Entry(b"2-0", b"t2", 0)]
        self.in_flight = Entry(b"0-5", b"t0", 0)
        self.failures = list(failures)
        self.reads_back: list[bytes] = []

    async def read(
        self, shard: ShardKeys, consumer: str, count: int
    ) -> list[Entry]:
        if self.failures:
            raise self.failures.pop(0)
        return []

    async def read_own(
        self, shard: ShardKeys, consumer: str, count: int, after: bytes
    ) -> tuple[list[Entry], bytes | None]:
        self.reads_back.append(after)
        every = [self.in_flight, *self.pending]
        page = [e for e in every if e.entry_id > after][:count]
        more = len(page) == count
        return page, page[-1].entry_id if more else None


class HoldingFirer(ReturningFirer):
    """Holds one entry in flight; records what it is handed."""

    def __init__(self, capacity: Capacity) -> None:
        super().__init__(capacity)
        self.held = {(0, b"0-5")}
        self.dispatched: list[bytes] = []

    async def dispatch(self, shard: ShardKeys, entries: list[Any]) -> None:
        self.dispatched += [entry.entry_id for entry in entries]
        self.held |= {(shard.shard, entry.entry_id) for entry in entries}
        self.capacity.give(len(entries))


async def test_a_lost_read_reply_is_read_back_at_the_next_read() -> None:
    """A read refused before it was sent took nothing: no read back. A
    read whose reply is lost may have taken entries: the next read of
    that shard reads back the worker's own pending entries and hands
    over those the firer does not hold, each once, then reads new ones
    again (not waiting for the reclaimer's hold)."""
    queue = LosingQueue((REFUSED, LOST))
    one, firer = reader_on(queue, HoldingFirer, batch_size=1)
    capacity = firer.capacity
    one.own(frozenset({0}))
    await one.step()
    assert firer.lost == set()
    one.ring([0])
    await one.step()
    assert queue.reads_back == []
    assert firer.lost == {0}
    assert firer.dispatched == []
    assert capacity.free == 40
    one.ring([0])
    for _ in range(4):
        await one.step()
    assert firer.dispatched == [b"1-0", b"2-0"]
    assert firer.lost == set()
    assert queue.reads_back[0] == b"0"
    assert capacity.free == 40


async def test_a_shard_given_away_is_still_read_back() -> None:
    """Entries a lost read left pending under this worker stay its own
    when the shard goes to another worker (whose reads of new entries
    never return them): the poll still reads them back here, and only
    them."""
    queue = LosingQueue()
    one, firer = reader_on(queue, HoldingFirer, batch_size=1)
    one.own(frozenset(range(SHARDS)))
    await one.step()
    assert firer.lost == {0}
    one.own(frozenset({1, 2, 3}))
    one.ring(None)
    for _ in range(4):
        await one.step()
    assert firer.dispatched == [b"1-0", b"2-0"]
    assert firer.lost == set()
    assert not one.has_work
