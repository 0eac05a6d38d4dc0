"""Ticker: shard leases, heartbeats, advancing and cascading, real Redis."""

from __future__ import annotations

import asyncio
from collections import Counter

import redis as sync_redis

from tests.support import LOADED_LATE_S, poll
from wheel.core import buckets
from wheel.core.buckets import Bucket, Level
from wheel.core.states import Code
from wheel.engine.ticker import ROLE, Ticker
from wheel.settings import Settings
from wheel.storage.keys import ShardKeys
from wheel.storage.registry import Registry
from wheel.storage.shards import ShardQueue

URL = "http://127.0.0.1:9/hook"


def ticker(queue: ShardQueue, settings: Settings, name: str) -> Ticker:
    """A ticker named ``name`` on the shared connection."""
    return Ticker(queue, Registry(queue.connection, settings), settings, name)


def stream_ids(raw: sync_redis.Redis, shard: ShardKeys) -> list[bytes]:
    """The timer ids in a shard's ready stream, in order."""
    return [fields[b"i"] for _, fields in raw.xrange(shard.ready)]


def evalsha_calls(raw: sync_redis.Redis) -> int:
    """How many scripts the server has run so far."""
    stats = raw.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def redis_now_ms(queue: ShardQueue) -> int:
    """Redis' clock in epoch ms."""
    return await Registry(queue.connection, queue.settings).now_ms(b"x")


async def test_lone_ticker_takes_every_shard(
    queue: ShardQueue, settings: Settings, raw: sync_redis.Redis
) -> None:
    """One live ticker holds the lease of every shard after a beat."""
    one = ticker(queue, settings, "t1")
    await one.beat()
    assert one.held == set(range(settings.shards))
    for shard in queue.keys.all_shards():
        assert raw.get(shard.lease) == b"t1"
        assert 0 < raw.pttl(shard.lease) <= settings.lease_ttl * 1000


async def test_two_tickers_split_the_shards(
    queue: ShardQueue, settings: Settings
) -> None:
    """Two live tickers hold disjoint shares that cover every shard."""
    settings = settings.replace(shards=32)
    queue = ShardQueue(queue.connection, settings)
    first, second = ticker(queue, settings, "a"), ticker(queue, settings, "b")
    await first.beat()
    await second.beat()
    await first.beat()  # gives up what rendezvous assigns to b
    await second.beat()
    assert first.held.isdisjoint(second.held)
    assert first.held | second.held == set(range(32))
    assert first.held and second.held


async def test_a_joining_ticker_moves_few_shards(
    queue: ShardQueue, settings: Settings
) -> None:
    """A third ticker takes about a third of the shards; the rest stay."""
    settings = settings.replace(shards=96)
    queue = ShardQueue(queue.connection, settings)
    tickers = [ticker(queue, settings, n) for n in ("a", "b")]
    for _ in range(2):
        for each in tickers:
            await each.beat()
    before = {k: t.name for t in tickers for k in t.held}
    tickers.append(ticker(queue, settings, "c"))
    for _ in range(2):
        for each in tickers:
            await each.beat()
    after = {k: t.name for t in tickers for k in t.held}
    assert set(after) == set(range(96))
    moved = [k for k in range(96) if before[k] != after[k]]
    assert sum(after[k] == "c" for k in moved) >= 0.85 * len(moved)
    assert 16 <= len(moved) <= 48


async def test_released_shards_go_to_the_other_ticker(
    queue: ShardQueue, settings: Settings, raw: sync_redis.Redis
) -> None:
    """After release_all, the remaining ticker takes every shard."""
    first, second = ticker(queue, settings, "a"), ticker(queue, settings, "b")
    await first.beat()
    await second.beat()
    await first.release_all()
    assert raw.zscore(queue.keys.heartbeats(ROLE), "a") is None
    await second.beat()
    assert second.held == set(range(settings.shards))


async def test_stolen_lease_is_dropped_and_moves_nothing(
    queue: ShardQueue, settings: Settings, raw: sync_redis.Redis
) -> None:
    """A ticker whose lease another took stops advancing that shard."""
    one = ticker(queue, settings, "t1")
    await one.beat()
    created = await queue.create(URL, 0)
    shard = queue.shard_of(created.timer_id)
    raw.set(shard.lease, b"thief")
    # Due at once: a wait on Redis' clock, as late as a loaded poll.
    await poll(
        lambda: _true_after(queue, created.due_ms),
        timeout_s=LOADED_LATE_S,
        what="the timer due",
    )
    await one.tick()
    assert shard.shard not in one.held
    assert stream_ids(raw, shard) == []


async def test_tick_moves_due_timers_of_every_shard(
    queue: ShardQueue, settings: Settings, raw: sync_redis.Redis
) -> None:
    """Due timers of every shard reach their ready stream once."""
    one = ticker(queue, settings, "t1")
    await one.beat()
    created = [await queue.create(URL, 0) for _ in range(40)]
    await one.tick()
    seen = Counter(
        timer_id
        for shard in queue.keys.all_shards()
        for timer_id in stream_ids(raw, shard)
    )
    assert seen == Counter(c.timer_id for c in created)
    assert one.moved_total == 40
    for shard in queue.keys.all_shards():
        assert raw.zcard(shard.index) == 0


async def test_tick_leaves_timers_that_are_not_due(
    queue: ShardQueue, settings: Settings, raw: sync_redis.Redis
) -> None:
    """A timer due in a minute stays on the wheel, and the tick says when
    to look again (no later than the tick interval)."""
    one = ticker(queue, settings, "t1")
    await one.beat()
    created = await queue.create(URL, 60_000)
    wait_s = await one.tick()
    assert 0 < wait_s <= settings.tick_interval
    shard = queue.shard_of(created.timer_id)
    assert stream_ids(raw, shard) == []
    assert raw.zcard(shard.index) == 1


async def test_nothing_due_costs_no_script_call(
    queue: ShardQueue, settings: Settings, raw: sync_redis.Redis
) -> None:
    """Ticks over shards whose earliest timer is far away run no script."""
    one = ticker(queue, settings, "t1")
    await one.beat()
    for delay_ms in (30_000, 3 * 3600_000, 3 * 86400_000):
        await queue.create(URL, delay_ms)
    before = evalsha_calls(raw)
    for _ in range(20):
        await one.tick()
    assert evalsha_calls(raw) == before


async def test_full_batches_are_advanced_without_waiting(
    queue: ShardQueue, settings: Settings
) -> None:
    """When a batch comes back full the next tick follows at once."""
    settings = settings.replace(shards=1, batch_size=10)
    queue = ShardQueue(queue.connection, settings)
    one = ticker(queue, settings, "t1")
    await one.beat()
    for _ in range(25):
        await queue.create(URL, 0)
    waits = [await one.tick() for _ in range(3)]
    assert waits[:2] == [0.0, 0.0]
    assert one.moved_total == 25


async def test_full_ready_stream_holds_timers_on_the_wheel(
    queue: ShardQueue, settings: Settings, raw: sync_redis.Redis
) -> None:
    """Past ready_max nothing moves; once drained, the oldest go next."""
    settings = settings.replace(shards=1, ready_max=5, batch_size=100)
    queue = ShardQueue(queue.connection, settings)
    one = ticker(queue, settings, "t1")
    await one.beat()
    created = [await queue.create(URL, i) for i in range(12)]
    # Due within 11 ms: a wait on Redis' clock, as late as a loaded poll.
    await poll(
        lambda: _true_after(queue, created[-1].due_ms),
        timeout_s=LOADED_LATE_S,
        what="all due",
    )
    shard = queue.keys.shard(0)
    await one.tick()
    assert len(stream_ids(raw, shard)) == 5
    one._paused_until.clear()
    await one.tick()
    assert len(stream_ids(raw, shard)) == 5
    for entry_id, _ in raw.xrange(shard.ready):
        raw.xdel(shard.ready, entry_id)
    one._paused_until.clear()
    await one.tick()
    by_due = sorted(created, key=lambda c: c.due_ms)
    assert stream_ids(raw, shard) == [c.timer_id for c in by_due[5:10]]


async def test_hour_bucket_is_cascaded_and_fired_on_time(
    queue: ShardQueue, settings: Settings, raw: sync_redis.Redis
) -> None:
    """A coarse bucket whose cascade time has come is moved into minute
    buckets, and its timer is moved to the ready stream when due."""
    one = ticker(queue, settings, "t1")
    await one.beat()
    shard = queue.keys.shard(0)
    timer_id = queue.ids.new(0, settings.shards, 0)
    now_ms = await redis_now_ms(queue)
    due_ms = now_ms + 300
    hour = Bucket(Level.HOUR, now_ms // buckets.HOUR_MS)
    raw.hset(shard.timer(timer_id), mapping={"u": URL, "d": due_ms, "s": "p"})
    raw.rpush(shard.bucket(hour), buckets.encode_member(timer_id, due_ms))
    raw.zadd(shard.index, {hour.member: hour.cascade_ms})
    await one.tick()
    assert raw.llen(shard.bucket(hour)) == 0
    assert raw.zscore(shard.index, hour.member) is None
    minute = buckets.minute_of(due_ms)
    assert raw.zscore(shard.bucket(minute), timer_id) == due_ms
    assert stream_ids(raw, shard) == []

    async def moved() -> bool:
        await one.tick()
        return stream_ids(raw, shard) == [timer_id]

    await poll(
        moved,
        timeout_s=0.3 + LOADED_LATE_S,
        what="the cascaded timer to be moved",
    )
    assert await redis_now_ms(queue) >= due_ms
    assert one.cascaded_total == 1


async def test_tickers_sharing_a_token_move_each_id_once(
    queue: ShardQueue, settings: Settings, raw: sync_redis.Redis
) -> None:
    """Two tickers ticking the same shards at once never duplicate."""
    first = ticker(queue, settings, "same")
    second = ticker(queue, settings, "same")
    await first.beat()
    second.held = set(first.held)
    created = [await queue.create(URL, 0) for _ in range(300)]
    for _ in range(3):
        await asyncio.gather(first.tick(), second.tick())
    seen = Counter(
        timer_id
        for shard in queue.keys.all_shards()
        for timer_id in stream_ids(raw, shard)
    )
    assert seen == Counter(c.timer_id for c in created)


async def test_ticker_without_leases_moves_nothing(
    queue: ShardQueue, settings: Settings, raw: sync_redis.Redis
) -> None:
    """A ticker that holds no lease moves nothing."""
    one = ticker(queue, settings, "t1")
    await queue.create(URL, 0)
    assert await one.tick() == settings.tick_interval
    for shard in queue.keys.all_shards():
        assert stream_ids(raw, shard) == []


async def test_advance_reports_a_lost_lease(
    queue: ShardQueue, settings: Settings
) -> None:
    """advance with a token that holds nothing answers NOT_OURS."""
    shard = queue.keys.shard(0)
    advanced = await queue.advance(shard, "nobody", [0])
    assert advanced.code is Code.NOT_OURS


async def _true_after(queue: ShardQueue, moment_ms: int) -> bool:
    return await redis_now_ms(queue) > moment_ms


async def test_a_host_clock_behind_redis_is_corrected_each_beat(
    queue: ShardQueue, settings: Settings, raw: sync_redis.Redis
) -> None:
    """A ticker whose clock estimate is 30 s behind Redis would think
    nothing is due; its beat reads every node's TIME, so the due timers
    move at the next tick."""
    created = await queue.create(URL, 0)
    for shard in queue.keys.all_shards():
        queue.clocks.observe(shard.shard, await redis_now_ms(queue) - 30_000)
    one = ticker(queue, settings, "t1")
    await one.beat()
    await one.tick()
    assert stream_ids(raw, queue.shard_of(created.timer_id)) == [
        created.timer_id
    ]


async def test_after_moving_a_bucket_the_tick_waits_for_its_next_timer(
    queue: ShardQueue, settings: Settings
) -> None:
    """One shard, a timer due now and one 300 ms later in the same
    minute bucket: after moving the first, the tick says to come back
    within about 300 ms, not after the tick interval (the peek before
    the move could not know the second)."""
    settings = settings.replace(shards=1, tick_interval=5.0)
    queue = ShardQueue(queue.connection, settings)
    one = ticker(queue, settings, "t1")
    await one.beat()
    first = await queue.create(URL, 0)
    second = await queue.create(URL, 300)
    assert (
        buckets.minute_of(first.due_ms) == buckets.minute_of(second.due_ms)
        or second.due_ms % buckets.MINUTE_MS < 300
    )
    wait_s = await one.tick()
    assert one.moved_total == 1
    assert 0 < wait_s <= 0.35
