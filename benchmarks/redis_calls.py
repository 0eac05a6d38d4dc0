"""Script calls per second: one EVALSHA per call vs the automatic pipelining
of ``wheel.batcher.Batcher``.

``--callers`` coroutines (default 64, like the API under wrk) each call the
``get`` script of ``wheel/lua`` in a loop for ``--duration`` seconds, on
the default asyncio loop, against a private Redis::

    uv run python benchmarks/redis_calls.py --runs 5

Each measurement runs in a fresh process of the code under test
(``--code DIR``: ``DIR/.venv/bin/python``, its ``wheel/lua/get.lua`` and
``Batcher``), against Debian's Redis 7 with ``appendfsync always`` unless
``--redis`` / ``--appendfsync`` say otherwise (a read-only script, so
the fsync policy hardly matters).

Modes:
  evalsha  ``redis.evalsha(...)`` per call: a pooled connection each
  batcher  ``Batcher.execute("EVALSHA", ...)``: calls issued in one loop
           turn share one pipeline
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path

from _common import (
    REPO_DIR,
    Code,
    RedisDeployment,
    deadline_alarm,
    machine,
    median,
    process_group,
    redis_binary,
    save,
)

MODES = ("evalsha", "batcher")
TAG = "{tw:0}"
TIMER_ID = bytes(range(16))


async def _script(redis) -> tuple[bytes | str, list]:
    """The ``get`` script of the code under test and its keys and args,
    with a pending record to read (both key layouts)."""
    try:
        from wheel.storage.scripts import SCRIPTS
    except ImportError:  # the flat layout, before wheel/storage/
        try:
            from wheel.scripts import SCRIPTS
        except ImportError:  # the layout of b6bf812 and before
            from wheel.scripts import SOURCES

        key = f"{TAG}:t:00000000-0000-4000-8000-000000000000"
        await redis.hset(key, mapping={"due": 1, "state": "pending"})
        return SOURCES["get"], [1, key]
    record = TAG.encode() + b":t:" + TIMER_ID
    await redis.hset(record, mapping={"s": 1, "d": 1})
    return SCRIPTS["get"].source, [2, record, TAG.encode() + b":f:0", TIMER_ID]


async def measure(url: str, mode: str, callers: int, duration_s: float):
    from redis.asyncio import Redis

    redis = Redis.from_url(url, max_connections=1000)
    try:
        source, call_args = await _script(redis)
        sha = await redis.script_load(source)
        if mode == "batcher":
            try:
                from wheel.storage.batcher import Batcher
            except ImportError:  # the flat layout
                from wheel.batcher import Batcher

            batcher = Batcher(redis)

            async def call() -> object:
                return await batcher.execute("EVALSHA", sha, *call_args)

        else:

            async def call() -> object:
                return await redis.evalsha(sha, *call_args)

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


def child(code: Code, url: str, mode: str, args: argparse.Namespace):
    """One measurement in a process of the code under test."""
    done = subprocess.run(
        [
            str(code.python),
            __file__,
            "--child",
            mode,
            "--url",
            url,
            "--callers",
            str(args.callers),
            "--duration",
            str(args.duration),
        ],
        cwd=code.root,
        capture_output=True,
        text=True,
        timeout=args.duration + 60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--code", type=Path, default=REPO_DIR)
    parser.add_argument("--redis", default="7")
    parser.add_argument(
        "--appendfsync",
        choices=["always", "everysec", "no", "off"],
        default="always",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        rate, cpu = asyncio.run(
            measure(args.url, args.child, args.callers, args.duration)
        )
        print(json.dumps({"rate": rate, "cpu": cpu}))
        return
    code = Code(args.code)
    deadline_alarm(args.runs * len(MODES) * (args.duration + 30) + 60)
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    runs = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp,
        process_group(Path(tmp)) as group,
    ):
        redis = RedisDeployment(
            Path(tmp), redis_binary(args.redis), args.appendfsync
        ).start()
        group.redis = redis
        for run in range(args.runs):
            for mode in MODES if run % 2 == 0 else MODES[::-1]:
                got = child(code, redis.url, mode, args)
                rate, cpu = got["rate"], got["cpu"]
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
            "code": code.describe(),
            "redis": {
                "binary": redis_binary(args.redis),
                "appendfsync": args.appendfsync,
            },
            "args": vars(args),
            "summary": summary,
            "runs": runs,
        },
        args.out,
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
