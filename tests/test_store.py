"""The store on a real Redis: shard routing, wheel slots, key hygiene."""

from __future__ import annotations

import uuid
from collections import Counter

import httpx
import pytest
from redis.asyncio import Redis

from wheel.clock import RedisClock, redis_time_ms
from wheel.keys import Keys, ShardKeys
from wheel.settings import Settings
from wheel.store import Store, Timer
from wheel.wheelmath import ceil_seconds, shard_of, slot_of

URL = "http://example.com/hook"


@pytest.fixture
def store(settings: Settings, redis: Redis) -> Store:
    """A store on the flushed test Redis, 4 shards."""
    return Store(redis, settings)


@pytest.fixture
def keys(settings: Settings) -> Keys:
    """The key names of the test settings."""
    return Keys(settings.key_prefix, settings.shards)


def shard_keys(keys: Keys, timer_id: str) -> ShardKeys:
    """The keys of the shard that owns ``timer_id``."""
    return keys.shard(shard_of(uuid.UUID(timer_id), keys.shards))


async def redis_now_ms(redis: Redis) -> int:
    """Redis' own clock in epoch ms."""
    return redis_time_ms(await redis.time())


async def all_keys(redis: Redis) -> set[str]:
    """Every key in the test database."""
    return set(await redis.keys("*"))


@pytest.mark.parametrize(
    ("due_ms", "now_ms", "left_ms", "seconds"),
    [
        (10_000, 0, 10_000, 10),
        (10_001, 0, 10_001, 11),
        (10_000, 9_001, 999, 1),
        (10_000, 10_000, 0, 0),
        (10_000, 25_000, 0, 0),
    ],
)
def test_timer_left_ms(
    due_ms: int, now_ms: int, left_ms: int, seconds: int
) -> None:
    """A timer's ms left are due minus now, floored at 0, ceil'd to s."""
    timer = Timer("x", due_ms, now_ms, "pending", 0)
    assert timer.left_ms == left_ms
    assert ceil_seconds(timer.left_ms) == seconds


async def test_create_reports_the_full_delay(
    store: Store, redis: Redis
) -> None:
    """A new timer is due exactly its delay after Redis' now."""
    before_ms = await redis_now_ms(redis)
    timer = await store.create(URL, 14_401_000)
    after_ms = await redis_now_ms(redis)
    assert timer.left_ms == 14_401_000
    assert timer.due_ms - timer.now_ms == 14_401_000
    assert before_ms <= timer.now_ms <= after_ms
    assert timer.status == "pending"
    assert timer.attempts == 0
    assert uuid.UUID(timer.id).version == 4


async def test_get_rounds_time_left_up(store: Store, redis: Redis) -> None:
    """A read a few ms after create still rounds up to the full second."""
    created = await store.create(URL, 5_000)
    read = await store.get(uuid.UUID(created.id))
    assert read is not None
    assert read.due_ms == created.due_ms
    assert 0 < read.left_ms <= 5_000
    assert read.now_ms <= await redis_now_ms(redis)
    if read.left_ms > 4_000:
        assert ceil_seconds(read.left_ms) == 5


async def test_get_unknown_is_none(store: Store) -> None:
    """Reading an id that was never created gives None."""
    assert await store.get(uuid.uuid4()) is None


async def test_record_fields(store: Store, keys: Keys, redis: Redis) -> None:
    """A new record holds only url, due and state; it reads 0 attempts."""
    timer = await store.create(URL, 90_000)
    record = await redis.hgetall(shard_keys(keys, timer.id).timer(timer.id))
    assert record == {
        "url": URL,
        "due": str(timer.due_ms),
        "state": "pending",
    }
    read = await store.get(uuid.UUID(timer.id))
    assert read is not None
    assert read.attempts == 0


async def test_record_lives_in_the_shard_of_its_id(
    client: httpx.AsyncClient, keys: Keys, redis: Redis
) -> None:
    """A timer created by the API is stored in shard uuid.int % shards."""
    reply = await client.post("/timer", json={"url": URL, "minutes": 2})
    timer_id = reply.json()["id"]
    shard = uuid.UUID(timer_id).int % keys.shards
    assert await redis.exists(keys.shard(shard).timer(timer_id)) == 1
    for other in keys.all_shards():
        if other.shard != shard:
            assert await redis.exists(other.timer(timer_id)) == 0
            assert await redis.exists(other.slots) == 0


async def test_many_timers_spread_over_every_shard(
    store: Store, keys: Keys, redis: Redis
) -> None:
    """Many timers land each in its id's shard and fill every shard."""
    timers = [await store.create(URL, 60_000) for _ in range(64)]
    per_shard: Counter[int] = Counter()
    for timer in timers:
        shard = uuid.UUID(timer.id).int % keys.shards
        assert await redis.exists(keys.shard(shard).timer(timer.id)) == 1
        per_shard[shard] += 1
    assert set(per_shard) == set(range(keys.shards))
    for shard in keys.all_shards():
        records = await redis.keys(f"{shard.tag}:t:*")
        assert len(records) == per_shard[shard.shard]


async def test_zero_delay_goes_to_the_ready_stream(
    store: Store, keys: Keys, redis: Redis
) -> None:
    """A timer due now is added to its shard's ready stream, not a slot."""
    timer = await store.create(URL, 0)
    shard = shard_keys(keys, timer.id)
    assert await redis.xlen(shard.ready) == 1
    [(_, fields)] = await redis.xrange(shard.ready)
    assert fields == {"id": timer.id}
    assert await redis.keys(f"{shard.tag}:b:*") == []
    assert await redis.exists(shard.slots) == 0
    assert await all_keys(redis) == {shard.timer(timer.id), shard.ready}


async def test_delayed_timer_goes_to_its_minute_slot(
    store: Store, keys: Keys, redis: Redis
) -> None:
    """A delayed timer sits in slot floor(due/60000) or the one before."""
    timer = await store.create(URL, 3 * 60_000 + 30_000)
    shard = shard_keys(keys, timer.id)
    [slot_key] = await redis.keys(f"{shard.tag}:b:*")
    minute = int(slot_key.rsplit(":", 1)[1])
    assert minute in (slot_of(timer.due_ms) - 1, slot_of(timer.due_ms))
    assert slot_key == shard.slot(minute)
    assert await redis.zscore(slot_key, timer.id) == timer.due_ms
    assert await redis.zrange(shard.slots, 0, -1, withscores=True) == [
        (str(minute), minute)
    ]
    assert await redis.exists(shard.ready) == 0


async def test_slot_index_lists_each_minute_once(
    store: Store, keys: Keys, redis: Redis
) -> None:
    """Timers of the same and of later minutes share the slot index."""
    timers = [
        await store.create(URL, delay)
        for delay in (120_000, 120_000, 600_000, 3_600_000)
        for _ in range(8)
    ]
    for shard in keys.all_shards():
        minutes = [int(m) for m in await redis.zrange(shard.slots, 0, -1)]
        assert len(minutes) == len(set(minutes))
        slots = {
            int(k.rsplit(":", 1)[1])
            for k in await redis.keys(f"{shard.tag}:b:*")
        }
        assert set(minutes) == slots
    for timer in timers:
        shard = shard_keys(keys, timer.id)
        minute = slot_of(timer.due_ms)
        found = [
            m
            for m in (minute - 1, minute)
            if await redis.zscore(shard.slot(m), timer.id) is not None
        ]
        assert len(found) == 1


async def test_key_hygiene_after_one_delayed_timer(
    client: httpx.AsyncClient, keys: Keys, redis: Redis
) -> None:
    """One delayed timer leaves exactly its record, slot and slot index."""
    reply = await client.post("/timer", json={"url": URL, "hours": 1})
    timer_id = reply.json()["id"]
    shard = shard_keys(keys, timer_id)
    due_ms = int(await redis.hget(shard.timer(timer_id), "due"))
    minute = slot_of(due_ms)
    expected = [
        {shard.timer(timer_id), shard.slot(m), shard.slots}
        for m in (minute - 1, minute)
    ]
    assert await all_keys(redis) in expected
    assert await redis.ttl(shard.timer(timer_id)) == -1


async def test_key_hygiene_after_one_due_timer(
    client: httpx.AsyncClient, keys: Keys, redis: Redis
) -> None:
    """One due timer leaves exactly its record and its ready stream."""
    reply = await client.post("/timer", json={"url": URL})
    timer_id = reply.json()["id"]
    shard = shard_keys(keys, timer_id)
    assert await all_keys(redis) == {shard.timer(timer_id), shard.ready}


async def test_key_prefix_is_honoured(
    settings: Settings, redis: Redis
) -> None:
    """Every key carries the configured prefix in its shard hash tag."""
    custom = settings.replace(key_prefix="app.tw")
    store = Store(redis, custom)
    timer = await store.create(URL, 60_000)
    shard = shard_of(uuid.UUID(timer.id), custom.shards)
    for key in await all_keys(redis):
        assert key.startswith(f"{{app.tw:{shard}}}:")


@pytest.mark.parametrize("offset_ms", [-600_000, -120_000, 120_000, 600_000])
async def test_create_corrects_a_wrong_clock_estimate(
    store: Store, keys: Keys, redis: Redis, offset_ms: int
) -> None:
    """A clock estimate minutes off is corrected by one retry."""
    store.clock = RedisClock(lambda: 0.0)
    store.clock.observe(await redis_now_ms(redis) + offset_ms)
    timer = await store.create(URL, 300_000)
    shard = shard_keys(keys, timer.id)
    minute = slot_of(timer.due_ms)
    in_slot = [
        m
        for m in (minute - 1, minute)
        if await redis.zscore(shard.slot(m), timer.id) == timer.due_ms
    ]
    assert len(in_slot) == 1
    assert abs(store.clock.now_ms() - timer.now_ms) < 1000


async def test_create_gives_up_on_a_runaway_clock(
    store: Store, redis: Redis
) -> None:
    """A clock that keeps jumping ahead is refused, storing nothing."""
    ticks = [0.0]

    def runaway_ms() -> float:
        ticks[0] += 3_600_000.0
        return ticks[0]

    store.clock = RedisClock(runaway_ms)
    store.clock.observe(await redis_now_ms(redis))
    with pytest.raises(RuntimeError, match="clock"):
        await store.create(URL, 120_000)
    assert await redis.dbsize() == 0


async def test_create_never_overwrites_an_existing_id(
    store: Store, keys: Keys, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An id collision raises and leaves the first timer untouched."""
    fixed = uuid.uuid4()
    monkeypatch.setattr("wheel.store.uuid.uuid4", lambda: fixed)
    first = await store.create(URL, 60_000)
    record_key = shard_keys(keys, first.id).timer(first.id)
    before = await redis.hgetall(record_key)
    with pytest.raises(RuntimeError, match="collision"):
        await store.create("http://other.example/", 0)
    assert await redis.hgetall(record_key) == before
    assert await redis.exists(shard_keys(keys, first.id).ready) == 0


async def test_store_syncs_its_clock_lazily(
    store: Store, redis: Redis
) -> None:
    """A fresh store learns Redis' time on its first call."""
    assert not store.clock.synced
    await store.get(uuid.uuid4())
    assert store.clock.synced
    assert abs(store.clock.now_ms() - await redis_now_ms(redis)) < 1000
