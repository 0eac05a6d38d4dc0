"""Redis memory per pending timer.

Starts a fresh private Redis, reads ``INFO memory`` ``used_memory``,
creates ``--timers`` timers (default 100,000) due at random times over
``--spread-days`` days through ``wheel.store.Store`` (the code the API
runs, without HTTP: ``asyncio.gather`` over chunks of ``--chunk``), reads
``used_memory`` again and reports (after - before) / N, plus ``MEMORY
USAGE`` of one timer record, one wheel slot and the slot index::

    uv run python benchmarks/memory.py --runs 3

``--spread-days`` matters: every shard has one slot key per minute that
holds a timer, so timers spread thinly over days pay for many small slot
keys, while timers bunched into a few minutes share them.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from pathlib import Path

from _common import cluster, deadline_alarm, machine, median, save
from redis.asyncio import Redis

from wheel.redis_client import connect
from wheel.settings import Settings
from wheel.store import Store
from wheel.wheelmath import shard_of, slot_of

HOOK_URL = "http://127.0.0.1:9000/hook"


async def used_memory(redis_url: str) -> int:
    """``used_memory`` read over a connection of its own.

    The creating client's pool is closed first: each open connection
    holds a query buffer that ``used_memory`` counts, which with a pool of
    a thousand connections would pass for megabytes of timer data.
    """
    redis = Redis.from_url(redis_url)
    try:
        await asyncio.sleep(0.2)
        return int((await redis.info("memory"))["used_memory"])
    finally:
        await redis.aclose()


async def breakdown(redis_url: str, prefix: str) -> dict[str, int]:
    """``MEMORY USAGE`` summed over every key, by kind of key."""
    redis = Redis.from_url(redis_url, decode_responses=True)
    sums = {"record": 0, "slot": 0, "slot_index": 0, "other": 0}
    try:
        keys = [key async for key in redis.scan_iter(count=1000)]
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            pipe = redis.pipeline(transaction=False)
            for key in batch:
                pipe.memory_usage(key, samples=0)
            for key, size in zip(batch, await pipe.execute(), strict=True):
                kind = key.split("}:", 1)[-1].split(":", 1)[0]
                name = {"t": "record", "b": "slot", "slots": "slot_index"}
                sums[name.get(kind, "other")] += size or 0
    finally:
        await redis.aclose()
    return sums


async def create(
    redis_url: str, args: argparse.Namespace, seed: int
) -> dict[str, object]:
    settings = Settings(redis_url=redis_url, shards=args.shards)
    redis = connect(settings, max_connections=args.chunk + 8)
    rng = random.Random(seed)
    try:
        store = Store(redis, settings)
        await store.sync_clock()
        # Load the scripts before the first reading so that the script
        # cache is not counted as timer data.
        await store.create(HOOK_URL, 1000)
        await redis.flushall()
        before = await used_memory(redis_url)
        max_delay_ms = int(args.spread_days * 86_400_000)
        started = time.monotonic()
        for offset in range(0, args.timers, args.chunk):
            size = min(args.chunk, args.timers - offset)
            timers = await asyncio.gather(
                *(
                    store.create(HOOK_URL, rng.randint(60_000, max_delay_ms))
                    for _ in range(size)
                )
            )
        elapsed = time.monotonic() - started
        sample = timers[-1]
        keys = store.keys.shard(shard_of(uuid.UUID(sample.id), args.shards))
        slot = keys.slot(slot_of(sample.due_ms))
    finally:
        await redis.aclose()
    after = await used_memory(redis_url)
    redis = connect(settings)
    try:
        dbsize = await redis.dbsize()
        result = {
            "timers": args.timers,
            "spread_days": args.spread_days,
            "create_per_s": round(args.timers / elapsed),
            "used_memory_before": before,
            "used_memory_after": after,
            "bytes_per_timer": round((after - before) / args.timers, 1),
            "keys": dbsize,
            "slot_keys": dbsize - args.timers - args.shards,
            "record_key": keys.timer(sample.id),
            "record_bytes": await redis.memory_usage(
                keys.timer(sample.id), samples=0
            ),
            "slot_key": slot,
            "slot_members": await redis.zcard(slot),
            "slot_bytes": await redis.memory_usage(slot, samples=0),
            "slot_index_bytes": await redis.memory_usage(
                keys.slots, samples=0
            ),
            "slot_index_members": await redis.zcard(keys.slots),
            "slot_index_encoding": await redis.object("encoding", keys.slots),
        }
    finally:
        await redis.aclose()
    sums = await breakdown(redis_url, settings.key_prefix)
    result["memory_usage_per_timer"] = {
        kind: round(total / args.timers, 1) for kind, total in sums.items()
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--spread-days", type=float, default=3.0)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    deadline_alarm(args.runs * 300 + 60)
    results = []
    for run in range(args.runs):
        with (
            tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp,
            cluster(Path(tmp)) as group,
        ):
            redis = group.start_redis(appendonly=False)
            result = asyncio.run(create(redis.url, args, seed=run))
        results.append(result)
        print(
            f"run {run + 1}/{args.runs}: {result['bytes_per_timer']} B/timer "
            f"({result['timers']} timers over {args.spread_days:g} days, "
            f"{result['slot_keys']} slot keys, created at "
            f"{result['create_per_s']}/s)",
            flush=True,
        )
    last = results[-1]
    per_timer = median([r["bytes_per_timer"] for r in results])
    print(
        f"\nmedian {per_timer:.0f} bytes per pending timer (target <= 400)\n"
        f"MEMORY USAGE {last['record_key']}: {last['record_bytes']} B\n"
        f"MEMORY USAGE {last['slot_key']}: {last['slot_bytes']} B "
        f"({last['slot_members']} members)\n"
        f"MEMORY USAGE slot index: {last['slot_index_bytes']} B "
        f"({last['slot_index_members']} members, "
        f"{last['slot_index_encoding']})\n"
        f"MEMORY USAGE summed by kind, per timer: "
        f"{last['memory_usage_per_timer']}"
    )
    path = save(
        "memory",
        {
            "machine": machine(),
            "args": vars(args),
            "median_bytes_per_timer": per_timer,
            "runs": results,
        },
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
