"""Automatic pipelining and the script cache, against a real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError

from wheel.batcher import MAX_BATCH, Batcher
from wheel.redis_server import free_port
from wheel.settings import Settings
from wheel.store import Store
from wheel.wheelmath import shard_of


async def test_concurrent_commands_share_one_round_trip(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commands queued in one loop turn go out as one pipeline."""
    pipelines = []
    make_pipeline = redis.pipeline

    def counting_pipeline(**kwargs: bool):
        pipelines.append(kwargs)
        return make_pipeline(**kwargs)

    monkeypatch.setattr(redis, "pipeline", counting_pipeline)
    batcher = Batcher(redis)
    before = (await redis.info("stats"))["total_commands_processed"]
    replies = await asyncio.gather(
        *(batcher.execute("SET", f"k{i}", i) for i in range(50)),
        *(batcher.execute("GET", f"k{i}") for i in range(50)),
    )
    assert replies[50:] == [str(i) for i in range(50)]
    after = (await redis.info("stats"))["total_commands_processed"]
    # 100 commands plus the INFO call itself, no more: nothing was
    # sent twice and no extra round trip (SCRIPT EXISTS, say) was added.
    assert after - before == 101
    assert len(pipelines) == 1


async def test_errors_reach_only_their_own_command(redis: Redis) -> None:
    """One failing command fails alone; its neighbours get their replies."""
    batcher = Batcher(redis)
    await redis.set("text", "x")
    ok, bad, also_ok = await asyncio.gather(
        batcher.execute("SET", "a", 1),
        batcher.execute("INCR", "text"),
        batcher.execute("GET", "a"),
        return_exceptions=True,
    )
    assert ok is True
    assert isinstance(bad, ResponseError)
    assert also_ok == "1"


async def test_long_queue_is_split_into_bounded_pipelines(
    redis: Redis,
) -> None:
    """More than MAX_BATCH queued commands all get their replies."""
    batcher = Batcher(redis)
    count = MAX_BATCH * 2 + 7
    replies = await asyncio.gather(
        *(batcher.execute("INCR", "counter") for _ in range(count))
    )
    assert sorted(replies) == list(range(1, count + 1))


async def test_connection_error_fails_every_command_of_the_batch() -> None:
    """With Redis unreachable, each queued command raises."""
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        batcher = Batcher(client)
        results = await asyncio.gather(
            *(batcher.execute("PING") for _ in range(3)),
            return_exceptions=True,
        )
    finally:
        await client.aclose()
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_scripts_reload_after_redis_forgets_them(
    redis: Redis, settings: Settings
) -> None:
    """After SCRIPT FLUSH (as after a restart) creating still works."""
    store = Store(redis, settings)
    await store.create("http://127.0.0.1:9/hook", 1000)
    await redis.script_flush()
    timer = await store.create("http://127.0.0.1:9/hook", 1000)
    assert (await redis.hget(_record_key(store, timer.id), "state")) == (
        "pending"
    )


def _record_key(store: Store, timer_id: str) -> str:
    shard = shard_of(uuid.UUID(timer_id), store.settings.shards)
    return store.keys.shard(shard).timer(timer_id)


@pytest.mark.parametrize("concurrency", [1, 64])
async def test_store_calls_work_alone_and_concurrently(
    redis: Redis, settings: Settings, concurrency: int
) -> None:
    """A lone call and many concurrent calls both complete."""
    store = Store(redis, settings)
    timers = await asyncio.gather(
        *(
            store.create("http://127.0.0.1:9/hook", 5000)
            for _ in range(concurrency)
        )
    )
    views = await asyncio.gather(*(store.get(uuid.UUID(t.id)) for t in timers))
    assert [v.id for v in views if v] == [t.id for t in timers]
