"""Script calls per second: one EVALSHA per call vs the automatic pipelining
of ``wheel.batcher.Batcher``.

``--callers`` coroutines (default 64, like the API under wrk) each call the
``get`` script of ``wheel/lua`` in a loop for ``--duration`` seconds, on
the default asyncio loop, against a private Redis::

    uv run python benchmarks/redis_calls.py --runs 5

Modes:
  evalsha  ``redis.evalsha(...)`` per call: a pooled connection each
  batcher  ``Batcher.execute("EVALSHA", ...)``: calls issued in one loop
           turn share one pipeline
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from _common import cluster, deadline_alarm, machine, median, save
from redis.asyncio import Redis

from wheel.scripts import SOURCES

MODES = ("evalsha", "batcher")
KEY = "{tw:0}:t:00000000-0000-4000-8000-000000000000"


async def measure(url: str, mode: str, callers: int, duration_s: float):
    redis = Redis.from_url(url, decode_responses=True, max_connections=1000)
    try:
        sha = await redis.script_load(SOURCES["get"])
        await redis.hset(KEY, mapping={"due": 1, "state": "pending"})
        if mode == "batcher":
            from wheel.batcher import Batcher

            batcher = Batcher(redis)

            async def call() -> object:
                return await batcher.execute("EVALSHA", sha, 1, KEY)

        else:

            async def call() -> object:
                return await redis.evalsha(sha, 1, KEY)

        calls = 0
        deadline = 0.0

        async def caller() -> None:
            nonlocal calls
            while time.monotonic() < deadline:
                await call()
                calls += 1

        deadline = time.monotonic() + 0.5  # warm-up: pools, connections
        await asyncio.gather(*(caller() for _ in range(callers)))
        calls = 0
        started = time.monotonic()
        cpu_started = time.process_time()
        deadline = started + duration_s
        await asyncio.gather(*(caller() for _ in range(callers)))
        elapsed = time.monotonic() - started
        cpu = (time.process_time() - cpu_started) / elapsed
        return calls / elapsed, cpu
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--callers", type=int, default=64)
    args = parser.parse_args()
    deadline_alarm(args.runs * len(MODES) * (args.duration + 5) + 60)
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    runs = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp,
        cluster(Path(tmp)) as group,
    ):
        url = group.start_redis(appendonly=False).url
        for run in range(args.runs):
            for mode in MODES if run % 2 == 0 else MODES[::-1]:
                rate, cpu = asyncio.run(
                    measure(url, mode, args.callers, args.duration)
                )
                rates[mode].append(rate)
                runs.append({"run": run + 1, "mode": mode, "rate": rate})
                print(
                    f"run {run + 1}/{args.runs} {mode:8s} {rate:>8.0f} "
                    f"calls/s  client cpu {cpu:.2f}",
                    flush=True,
                )
    base = median(rates["evalsha"])
    summary = {m: round(median(r)) for m, r in rates.items()}
    print(f"\nmedian of {args.runs} runs, {args.callers} callers:")
    for mode in MODES:
        print(
            f"  {mode:8s} {summary[mode]:>8} calls/s  "
            f"x{summary[mode] / base:.2f} vs evalsha"
        )
    path = save(
        "redis_calls",
        {
            "machine": machine(),
            "args": vars(args),
            "summary": summary,
            "runs": runs,
        },
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
