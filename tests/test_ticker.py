"""Ticker: shard leases, heartbeats and advancing, on a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

from redis.asyncio import Redis

from wheel.clock import redis_time_ms
from wheel.keys import Keys, ShardKeys
from wheel.settings import Settings
from wheel.ticker import ROLE, Ticker
from wheel.wheelmath import shard_of, slot_of

URL = "http://127.0.0.1:9/hook"


async def now_ms(redis: Redis) -> int:
    """Redis' own clock in epoch ms."""
    return redis_time_ms(await redis.time())


def new_id(shard: ShardKeys, shards: int) -> str:
    """A fresh timer id that belongs to ``shard``."""
    while True:
        timer_id = uuid.uuid4()
        if shard_of(timer_id, shards) == shard.shard:
            return str(timer_id)


async def put_due(
    redis: Redis, shard: ShardKeys, shards: int, due_ms: int
) -> str:
    """Write a timer on the wheel with the shape create.lua writes."""
    timer_id = new_id(shard, shards)
    minute = slot_of(due_ms)
    await redis.hset(
        shard.timer(timer_id),
        mapping={
            "url": URL,
            "due": due_ms,
            "state": "pending",
            "attempts": 0,
            "created": due_ms - 1000,
        },
    )
    await redis.zadd(shard.slot(minute), {timer_id: due_ms})
    await redis.zadd(shard.slots, {str(minute): minute})
    return timer_id


async def stream_ids(redis: Redis, shard: ShardKeys) -> list[str]:
    """The timer ids in a shard's ready stream, in order."""
    return [fields["id"] for _, fields in await redis.xrange(shard.ready)]


async def test_lone_ticker_takes_every_shard(
    redis: Redis, settings: Settings
) -> None:
    """A ticker alone in the registry leases every shard."""
    ticker = Ticker(redis, settings, name="a")

    await ticker.beat()

    assert ticker.held == set(range(settings.shards))
    keys = Keys(settings.key_prefix, settings.shards)
    for shard in keys.all_shards():
        assert await redis.get(shard.lease) == "a"
        assert 0 < await redis.pttl(shard.lease) <= settings.lease_ttl * 1000
    assert await redis.zrange(keys.heartbeats(ROLE), 0, -1) == ["a"]


async def test_two_tickers_split_the_shards(
    redis: Redis, settings: Settings
) -> None:
    """After both beat twice, two tickers hold disjoint halves of shards."""
    a = Ticker(redis, settings, name="a")
    b = Ticker(redis, settings, name="b")

    for ticker in (a, b, a, b):
        await ticker.beat()

    half = settings.shards // 2
    assert len(a.held) == len(b.held) == half
    assert not a.held & b.held
    assert a.held | b.held == set(range(settings.shards))
    keys = Keys(settings.key_prefix, settings.shards)
    for k in range(settings.shards):
        owner = "a" if k in a.held else "b"
        assert await redis.get(keys.shard(k).lease) == owner


async def test_released_shards_go_to_the_other_ticker(
    redis: Redis, settings: Settings
) -> None:
    """After one ticker releases all, the other takes every shard."""
    a = Ticker(redis, settings, name="a")
    b = Ticker(redis, settings, name="b")
    for ticker in (a, b, a, b):
        await ticker.beat()

    await a.release_all()
    await b.beat()

    assert a.held == set()
    assert b.held == set(range(settings.shards))
    keys = Keys(settings.key_prefix, settings.shards)
    assert await redis.zrange(keys.heartbeats(ROLE), 0, -1) == ["b"]
    for shard in keys.all_shards():
        assert await redis.get(shard.lease) == "b"


async def test_release_all_keeps_leases_of_others(
    redis: Redis, settings: Settings
) -> None:
    """release_all drops only the leases whose token is still ours."""
    ticker = Ticker(redis, settings, name="a")
    await ticker.beat()
    keys = Keys(settings.key_prefix, settings.shards)
    await redis.set(keys.shard(0).lease, "thief")

    await ticker.release_all()

    assert await redis.get(keys.shard(0).lease) == "thief"
    for k in range(1, settings.shards):
        assert not await redis.exists(keys.shard(k).lease)


async def test_stolen_lease_is_dropped_and_moves_nothing(
    redis: Redis, settings: Settings
) -> None:
    """A ticker whose lease was overwritten loses the shard, moves nothing."""
    ticker = Ticker(redis, settings, name="a")
    await ticker.beat()
    keys = Keys(settings.key_prefix, settings.shards)
    stolen, kept = keys.shard(1), keys.shard(2)
    due = await now_ms(redis) - 1_000
    lost_id = await put_due(redis, stolen, settings.shards, due)
    kept_id = await put_due(redis, kept, settings.shards, due)
    await redis.set(stolen.lease, "thief", px=60_000)

    await ticker.advance()

    assert ticker.held == set(range(settings.shards)) - {1}
    assert await redis.xlen(stolen.ready) == 0
    assert await redis.zrange(stolen.slot(slot_of(due)), 0, -1) == [lost_id]
    assert await redis.get(stolen.lease) == "thief"
    assert await stream_ids(redis, kept) == [kept_id]
    assert ticker.moved_total == 1


async def test_step_moves_due_timers_of_every_shard(
    redis: Redis, settings: Settings
) -> None:
    """One step beats, then moves each due timer of each shard once."""
    keys = Keys(settings.key_prefix, settings.shards)
    now = await now_ms(redis)
    due = {
        shard.shard: [
            await put_due(redis, shard, settings.shards, now - 70_000 + i)
            for i in range(3)
        ]
        for shard in keys.all_shards()
    }
    future = await put_due(redis, keys.shard(0), settings.shards, now + 90_000)
    ticker = Ticker(redis, settings, name="a")

    await ticker.step()
    await ticker.step()

    assert ticker.moved_total == 3 * settings.shards
    for shard in keys.all_shards():
        assert await stream_ids(redis, shard) == due[shard.shard]
        assert not await redis.exists(shard.slot(slot_of(now - 70_000)))
    assert await redis.zrange(keys.shard(0).slots, 0, -1) == [
        str(slot_of(now + 90_000))
    ]
    assert await redis.zscore(
        keys.shard(0).slot(slot_of(now + 90_000)), future
    )
    for shard in keys.all_shards()[1:]:
        assert not await redis.exists(shard.slots)


async def test_full_batches_are_advanced_without_waiting(
    redis: Redis, settings: Settings
) -> None:
    """With 25 due and batch 10, advance asks to go again until drained."""
    settings = settings.replace(batch_size=10, shards=1)
    shard = Keys(settings.key_prefix, 1).shard(0)
    now = await now_ms(redis)
    ids = [await put_due(redis, shard, 1, now - 1_000 - i) for i in range(25)]
    ticker = Ticker(redis, settings, name="a")
    await ticker.beat()

    waits, moved = [], []
    for _ in range(3):
        before = ticker.moved_total
        waits.append(await ticker.advance())
        moved.append(ticker.moved_total - before)

    assert moved == [10, 10, 5]
    assert waits[:2] == [0.0, 0.0]
    assert waits[2] == settings.tick_interval
    assert sorted(await stream_ids(redis, shard)) == sorted(ids)
    # Oldest first.
    assert await stream_ids(redis, shard) == ids[::-1]


async def test_advance_waits_until_next_due(
    redis: Redis, settings: Settings
) -> None:
    """Advance returns the time to the next due timer, if sooner."""
    settings = settings.replace(tick_interval=30.0, shards=1)
    shard = Keys(settings.key_prefix, 1).shard(0)
    await put_due(redis, shard, 1, await now_ms(redis) + 2_000)
    ticker = Ticker(redis, settings, name="a")
    await ticker.beat()

    wait_s = await ticker.advance()

    assert 1.0 < wait_s <= 2.0
    assert ticker.moved_total == 0


async def test_tickers_sharing_a_token_move_each_id_once(
    redis: Redis, settings: Settings
) -> None:
    """Two tickers advancing the same shards at once never duplicate."""
    settings = settings.replace(batch_size=7)
    keys = Keys(settings.key_prefix, settings.shards)
    now = await now_ms(redis)
    ids = []
    for shard in keys.all_shards():
        for i in range(60):
            due = now - 65_000 * (1 + i % 3) + i
            ids.append(await put_due(redis, shard, settings.shards, due))
    # The same name is the same lease token: both hold every shard.
    one = Ticker(redis, settings, name="same")
    two = Ticker(redis, settings, name="same")
    await one.beat()
    await two.beat()
    assert one.held == two.held == set(range(settings.shards))

    for _ in range(50):
        await asyncio.gather(
            one.advance(), two.advance(), one.advance(), two.advance()
        )
        if one.moved_total + two.moved_total >= len(ids):
            break

    assert one.moved_total + two.moved_total == len(ids)
    assert one.moved_total > 0
    assert two.moved_total > 0
    counts: Counter[str] = Counter()
    for shard in keys.all_shards():
        counts.update(await stream_ids(redis, shard))
        assert not await redis.exists(shard.slots)
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1


async def test_ticker_without_leases_moves_nothing(
    redis: Redis, settings: Settings
) -> None:
    """A ticker that could not take a lease leaves due timers alone."""
    keys = Keys(settings.key_prefix, settings.shards)
    for shard in keys.all_shards():
        await redis.set(shard.lease, "other", px=60_000)
    due = await now_ms(redis) - 1_000
    timer_id = await put_due(redis, keys.shard(3), settings.shards, due)
    ticker = Ticker(redis, settings, name="a")

    await ticker.step()

    assert ticker.held == set()
    assert ticker.moved_total == 0
    assert await redis.xlen(keys.shard(3).ready) == 0
    assert await redis.zrange(keys.shard(3).slot(slot_of(due)), 0, -1) == [
        timer_id
    ]
