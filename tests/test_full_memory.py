"""At maxmemory creates are refused whole and firing goes on (6.2, 7)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import redis as sync_redis
from redis.exceptions import OutOfMemoryError

from tests.conftest import redis7_binary
from wheel.core.schedules import Definition, occurrence_request, plan_roll
from wheel.core.states import Code, Outcome, TimerState, Verdict
from wheel.embedded.server import RedisServer, find_binary
from wheel.runtime.lifecycle import client_name
from wheel.settings import Settings
from wheel.storage.connection import Connection, connect
from wheel.storage.errors import StoreFull
from wheel.storage.keys import ShardKeys
from wheel.storage.registry import Registry
from wheel.storage.schedules import Edit, ScheduleStore
from wheel.storage.shards import (
    Attempt,
    Created,
    Deferral,
    Idempotency,
    ShardQueue,
)
from wheel.webhooks.sender import destination_prefix

URL = "http://127.0.0.1:9/hook"
MAXMEMORY = 4 * 1024 * 1024
SHARDS = 4
SHARD = 1
TOKEN = "ticker-a"
CONSUMER = "worker-a"
FILL_SIZES = (65536, 4096, 256, 16)
"""Filler value sizes, largest first, so the fill ends a few bytes short
of room for any write."""


@pytest.fixture(scope="module", params=["6.2", "7"])
def small_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisServer]:
    """A redis-server with a small maxmemory, per Redis version."""
    binary = find_binary() if request.param == "6.2" else redis7_binary()
    server = RedisServer(
        tmp_path_factory.mktemp(f"full-{request.param}"),
        appendonly=False,
        binary=binary,
        extra_args=["--maxmemory", str(MAXMEMORY)],
    )
    server.start()
    yield server
    server.stop()


@dataclass
class Full:
    """A queue on the small server, and a way to fill and free it."""

    raw: sync_redis.Redis
    connection: Connection
    queue: ShardQueue
    registry: Registry
    filler: list[str]

    @property
    def shard(self) -> ShardKeys:
        """The shard the tests put their timers on."""
        return self.queue.keys.shard(SHARD)

    def fill(self) -> None:
        """Write filler keys until even a tiny write is refused."""
        deadline = time.monotonic() + 10
        for size in FILL_SIZES:
            for _ in range(10_000):
                assert time.monotonic() < deadline, "never filled"
                key = f"filler:{len(self.filler)}"
                try:
                    self.raw.set(key, b"x" * size)
                except OutOfMemoryError:
                    break
                self.filler.append(key)
        # Just past the limit, a client buffer freed elsewhere could make
        # room for one write; set the limit a little under what is used.
        used = int(self.raw.info("memory")["used_memory"])
        self.raw.config_set("maxmemory", used - 65536)
        assert self.refused()

    def refused(self) -> bool:
        """Whether Redis refuses a write right now."""
        try:
            self.raw.set("probe", "x")
        except OutOfMemoryError:
            return True
        self.raw.delete("probe")
        return False

    def free(self) -> None:
        """Delete the filler."""
        for start in range(0, len(self.filler), 500):
            self.raw.delete(*self.filler[start : start + 500])
        self.filler.clear()

    async def create(self, delay_ms: int) -> Created:
        """A timer on :data:`SHARD`."""
        guess = self.queue.clocks.now_ms(SHARD) + delay_ms
        timer_id = self.queue.ids.new(guess, SHARDS, SHARD)
        return await self.queue.create(URL, delay_ms, timer_id=timer_id)


@pytest.fixture
async def full(small_server: RedisServer) -> AsyncIterator[Full]:
    """An empty small server with the production connection on it."""
    raw = sync_redis.Redis.from_url(small_server.url)
    raw.config_set("maxmemory", MAXMEMORY)
    raw.flushall()
    raw.script_flush()
    settings = Settings(redis_url=small_server.url, shards=SHARDS)
    connection = connect(settings, client_name("test"))
    queue = ShardQueue(connection, settings)
    yield Full(raw, connection, queue, Registry(connection, settings), [])
    await connection.aclose()
    raw.config_set("maxmemory", MAXMEMORY)
    raw.flushall()
    raw.close()


async def test_create_is_refused_whole_when_full(full: Full) -> None:
    """At maxmemory a create raises StoreFull and writes nothing."""
    before = await full.create(60_000)
    full.fill()
    keys = set(full.raw.keys("*"))

    with pytest.raises(StoreFull):
        await full.create(60_000)
    with pytest.raises(StoreFull):
        await full.queue.create(URL, 60_000, Idempotency(b"k" * 32, b"f"))

    assert set(full.raw.keys("*")) == keys
    got = await full.queue.get(before.timer_id)
    assert got is not None
    assert (got.state, got.due_ms) == (TimerState.PENDING, before.due_ms)


async def test_firing_goes_on_when_full(full: Full) -> None:
    """At maxmemory ticking, claiming, completing and cancelling go on."""
    ok, retry, fail = [await full.create(0) for _ in range(3)]
    later = await full.create(60_000)
    full.fill()
    queue, shard = full.queue, full.shard

    assert await full.registry.beat("ticker", "me", 10_000) == ["me"]
    assert await queue.acquire(shard, TOKEN, 30_000)
    peek = await queue.peek(shard, 8)
    advanced = await queue.advance(shard, TOKEN, [b.number for b, _ in peek])
    assert (advanced.code, advanced.moved) == (Code.DONE, 3)
    entries = await queue.read(shard, CONSUMER, 10)
    claims = await queue.claim(shard, CONSUMER, entries)
    assert [c.verdict for c in claims] == [Verdict.FIRE] * 3
    by_id = {e.timer_id: e for e in entries}
    outcomes = [(ok, Outcome.OK), (retry, Outcome.RETRY), (fail, Outcome.FAIL)]
    for created, outcome in outcomes:
        attempt = Attempt(by_id[created.timer_id], 1, outcome, "500", 60_000)
        code = (
            await queue.complete(shard, CONSUMER, attempt, deadline_s=2)
        ).code
        assert code is Code.DONE
    assert (await queue.cancel(later.timer_id))[0] is Code.DONE
    assert await queue.acquire(shard, TOKEN, 30_000)
    assert await queue.release(shard, TOKEN)
    assert full.refused()

    states = {}
    for created in (ok, retry, fail, later):
        got = await queue.get(created.timer_id)
        assert got is not None
        states[created.timer_id] = (got.state, got.attempts)
    assert states == {
        ok.timer_id: (TimerState.FIRED, 1),
        retry.timer_id: (TimerState.PENDING, 1),
        fail.timer_id: (TimerState.FAILED, 1),
        later.timer_id: (TimerState.CANCELLED, 0),
    }
    assert full.raw.xlen(shard.ready) == 0
    assert full.raw.xlen(shard.dead) == 1
    members = full.raw.zrange(shard.index, 0, -1)
    buckets = [shard.minute(int(member[1:])) for member in members]
    assert any(full.raw.zscore(b, retry.timer_id) for b in buckets)


async def test_a_saturated_destination_is_deferred_when_full(
    full: Full,
) -> None:
    """At maxmemory the claim still defers a saturated destination's
    timers back onto the wheel (its first write is the XACK)."""
    created = [await full.create(0) for _ in range(2)]
    full.fill()
    queue, shard = full.queue, full.shard
    assert await queue.acquire(shard, TOKEN, 30_000)
    peek = await queue.peek(shard, 8)
    await queue.advance(shard, TOKEN, [b.number for b, _ in peek])
    entries = await queue.read(shard, CONSUMER, 10)

    claims = await queue.claim(
        shard, CONSUMER, entries, [Deferral(destination_prefix(URL), 1, 1)]
    )

    assert [c.verdict for c in claims] == [Verdict.DEFERRED] * 2
    assert full.refused()
    assert full.raw.xlen(shard.ready) == 0
    for timer in created:
        got = await queue.get(timer.timer_id)
        assert got is not None
        assert (got.state, got.attempts) == (TimerState.PENDING, 0)
        assert got.next_ms > timer.due_ms


async def test_creates_work_again_once_memory_is_freed(full: Full) -> None:
    """After the filler is deleted, creates succeed again."""
    full.fill()
    with pytest.raises(StoreFull):
        await full.create(60_000)

    full.free()

    created = await full.create(60_000)
    assert created.code is Code.DONE
    got = await full.queue.get(created.timer_id)
    assert got is not None
    assert got.state is TimerState.PENDING


async def test_schedules_keep_firing_when_full(full: Full) -> None:
    """At maxmemory a new schedule is refused whole, while a due one is
    still handed over (its occurrence made, the next put on), paused,
    resumed and deleted."""
    store = ScheduleStore(full.queue)
    every_s = Definition("* * * * * *", "UTC", URL, None, None, None)
    now_ms = int(full.raw.time()[0]) * 1000
    due = full.queue.ids.new(now_ms, SHARDS, SHARD)
    other = full.queue.ids.new(now_ms, SHARDS, SHARD)
    for schedule_id in (due, other):
        await store.create(every_s, now_ms - 1000, schedule_id)
    full.fill()
    keys = set(full.raw.keys("*"))

    with pytest.raises(StoreFull):
        await store.create(every_s, now_ms + 1000)
    assert set(full.raw.keys("*")) == keys

    record = await store.get(due)
    assert record is not None
    plan = plan_roll(due, every_s, now_ms - 1000, now_ms, SHARDS, 60_000)
    requests = [
        occurrence_request(None, o.id, due, o.scheduled_ms) for o in plan.fire
    ]
    rolled = await store.roll(full.shard, record, plan, requests)
    assert (rolled.code, rolled.created) == (Code.DONE, 1)
    assert full.raw.xlen(full.shard.ready) == 1
    paused = await store.edit(other, lambda r: Edit(True, None))
    assert paused.code is Code.DONE
    resumed = await store.edit(other, lambda r: Edit(False, now_ms + 5000))
    assert resumed.code is Code.DONE
    assert await store.delete(other) is Code.DONE
    assert full.refused()
    after = await store.get(due)
    assert after is not None and after.next_ms == now_ms
