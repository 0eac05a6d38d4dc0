"""The roller against a real Redis: due occurrences handed over once,
by one roller or two at once, under each misfire policy and the grace,
more than a peek's worth at a time, only on the shards it is given."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest
import redis as sync_redis

from tests.test_schedule_scripts import (
    SHARD,
    SHARDS,
    definition,
    new_schedule,
    read,
)
from tests.test_scripts import redis_ms, stream
from wheel.core.occurrences import occurrence_id
from wheel.engine.roller import Roller
from wheel.settings import Settings
from wheel.storage.keys import ShardKeys
from wheel.storage.schedules import Edit, ScheduleStore
from wheel.storage.shards import ShardQueue

EVERY_S = "* * * * * *"


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """Four shards, a short tick, a small peek, no misfire grace."""
    return Settings(
        redis_url=redis_url,
        shards=SHARDS,
        tick_interval=0.05,
        batch_size=50,
        misfire_grace=0,
    )


@pytest.fixture
def store(queue: ShardQueue) -> ScheduleStore:
    """The schedules of the test deployment."""
    return ScheduleStore(queue)


@pytest.fixture
def shard(queue: ShardQueue) -> ShardKeys:
    """The shard the helpers put schedules on."""
    return queue.keys.shard(SHARD)


@pytest.fixture
def doorbell(raw: sync_redis.Redis) -> Iterator[sync_redis.client.PubSub]:
    """A subscriber of the workers' doorbell."""
    pubsub = raw.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(b"tw:ready")
    pubsub.get_message(timeout=1)
    yield pubsub
    pubsub.close()


def roller_of(queue: ShardQueue, *shards: ShardKeys) -> Roller:
    """A roller holding ``shards`` (all on the one node)."""
    return Roller(queue, queue.settings, lambda: {"node": list(shards)})


def occurrences(raw: sync_redis.Redis, shard: ShardKeys) -> list[int]:
    """The instants of the occurrences in the shard's ready stream."""
    if not raw.exists(shard.ready):
        return []
    return [int(fields["s"]) for _, fields in stream(raw, shard.ready)]


async def test_a_due_occurrence_is_handed_over_and_the_doorbell_rung(
    queue: ShardQueue,
    store: ScheduleStore,
    shard: ShardKeys,
    raw: sync_redis.Redis,
    doorbell: sync_redis.client.PubSub,
) -> None:
    """One step: the occurrence is in the ready stream, the workers are
    told, and the roller sleeps until the next one at most."""
    due_ms = redis_ms(raw) // 1000 * 1000
    schedule_id = await new_schedule(store, due_ms, definition(EVERY_S))
    roller = roller_of(queue, shard)
    await queue.sync_clocks()

    wait_s = await roller.roll_shards([shard])

    assert occurrences(raw, shard) == [due_ms]
    message = doorbell.get_message(timeout=2)
    assert message is not None and message["data"] == b"%d" % SHARD
    assert 0 < wait_s <= queue.settings.tick_interval
    assert (await read(store, schedule_id)).next_ms == due_ms + 1000


async def test_each_occurrence_once_over_three_seconds(
    queue: ShardQueue,
    store: ScheduleStore,
    shard: ShardKeys,
    raw: sync_redis.Redis,
) -> None:
    """Stepping as the ticker does for 3 s: one occurrence a second, each
    once, none before its instant by Redis' clock."""
    start_ms = (redis_ms(raw) // 1000 + 1) * 1000
    await new_schedule(store, start_ms, definition(EVERY_S))
    roller = roller_of(queue, shard)
    await queue.sync_clocks()
    for _ in range(400):
        wait_s = await roller.roll_shards([shard])
        if len(occurrences(raw, shard)) >= 3:
            break
        await asyncio.sleep(wait_s)

    handed = stream(raw, shard.ready)
    assert [int(f["s"]) for _, f in handed] == [
        start_ms + 1000 * i for i in range(3)
    ]
    for added_ms, fields in handed:
        # Added (by Redis' clock) at or after its instant, within a step.
        assert int(fields["s"]) <= added_ms < int(fields["s"]) + 500


async def test_two_rollers_on_one_shard_hand_each_occurrence_over_once(
    queue: ShardQueue,
    store: ScheduleStore,
    shard: ShardKeys,
    raw: sync_redis.Redis,
) -> None:
    """Two rollers (a lease moving) step at once over 120 due schedules:
    one occurrence each, none twice."""
    due_ms = redis_ms(raw) // 1000 * 1000 - 1000
    schedule_ids = [
        await new_schedule(store, due_ms, definition("* * * * *"))
        for _ in range(120)
    ]
    first, second = roller_of(queue, shard), roller_of(queue, shard)
    await queue.sync_clocks()

    for _ in range(6):
        await asyncio.gather(
            first.roll_shards([shard]), second.roll_shards([shard])
        )

    entries = [fields["i"] for _, fields in stream(raw, shard.ready)]
    expected = {occurrence_id(s, due_ms, SHARDS) for s in schedule_ids}
    assert Counter(entries) == Counter(expected)
    assert raw.get(shard.count) == b"120"


@pytest.mark.parametrize(
    ("misfire", "fired"), [("once", 1), ("skip", 0), ("all", 10)]
)
async def test_downtime_fires_as_the_policy_says(
    queue: ShardQueue,
    store: ScheduleStore,
    shard: ShardKeys,
    raw: sync_redis.Redis,
    misfire: str,
    fired: int,
) -> None:
    """Ten occurrences overdue past the grace (none here): once one,
    skip none, all each; the others are missed; then on schedule."""
    now_ms = redis_ms(raw)
    first_ms = (now_ms // 1000 - 9) * 1000
    schedule_id = await new_schedule(
        store, first_ms, definition(EVERY_S, misfire)
    )
    roller = roller_of(queue, shard)
    await queue.sync_clocks()

    await roller.roll_shards([shard])

    overdue = [first_ms + 1000 * i for i in range(10)]
    assert occurrences(raw, shard) == overdue[:fired]
    got = await read(store, schedule_id)
    assert got.missed == 10 - fired
    assert got.next_ms == overdue[-1] + 1000


async def test_lateness_within_the_grace_fires_every_occurrence(
    queue: ShardQueue,
    store: ScheduleStore,
    shard: ShardKeys,
    raw: sync_redis.Redis,
) -> None:
    """Five seconds late with a 30 s grace (a ticker crash, a failover):
    every occurrence fires, in order, none missed."""
    roller = Roller(
        queue, queue.settings.replace(misfire_grace=30.0), lambda: {}
    )
    first_ms = (redis_ms(raw) // 1000 - 4) * 1000
    schedule_id = await new_schedule(store, first_ms, definition(EVERY_S))
    await queue.sync_clocks()

    for _ in range(10):
        await roller.roll_shards([shard])

    assert occurrences(raw, shard)[:5] == [
        first_ms + 1000 * i for i in range(5)
    ]
    assert (await read(store, schedule_id)).missed == 0


async def test_more_due_than_one_peek_are_all_handed_over(
    queue: ShardQueue,
    store: ScheduleStore,
    shard: ShardKeys,
    raw: sync_redis.Redis,
) -> None:
    """Three peeks' worth due at once: all handed over, a step asking
    to be called again at once while more wait."""
    due_ms = redis_ms(raw) // 1000 * 1000 - 1000
    for _ in range(150):
        await new_schedule(store, due_ms, definition("* * * * *"))
    roller = roller_of(queue, shard)
    await queue.sync_clocks()

    waits = [await roller.roll_shards([shard]) for _ in range(4)]

    assert raw.xlen(shard.ready) == 150
    assert waits[0] <= 0.01


async def test_only_the_given_shards_and_live_schedules_roll(
    queue: ShardQueue,
    store: ScheduleStore,
    shard: ShardKeys,
    raw: sync_redis.Redis,
) -> None:
    """A paused schedule and another shard's schedule stay put."""
    due_ms = redis_ms(raw) // 1000 * 1000 - 1000
    paused = await new_schedule(store, due_ms, definition(EVERY_S))
    await store.edit(paused, lambda r: Edit(True, None))
    other = queue.keys.shard(SHARD + 1)
    elsewhere = queue.ids.new(due_ms, SHARDS, other.shard)
    await store.create(definition(EVERY_S), due_ms, elsewhere)
    roller = roller_of(queue, shard)
    await queue.sync_clocks()

    await roller.roll_shards([shard])

    assert not raw.exists(shard.ready)
    assert not raw.exists(other.ready)
    assert (await read(store, elsewhere)).next_ms == due_ms
