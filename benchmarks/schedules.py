"""Schedules: Redis bytes per schedule and per occurrence record, and
the fire rate of many schedules firing every minute.

Real processes of the code under test (``--code DIR``), a private Redis
(Debian's 7.0, ``appendfsync always`` unless told otherwise) and a
recording receiver (``benchmarks/sink.py``). Two modes::

    # 20,000 schedules "* * * * *": bytes per schedule, per occurrence
    # record pending in a ready stream, per fired occurrence record
    python benchmarks/schedules.py --memory --schedules 20000 --runs 3

    # 20,000 schedules "* * * * *" firing at second 0 of each minute for
    # 2 minutes, 1 ticker and 2 workers: occurrences/s, lateness, CPU
    python benchmarks/schedules.py --schedules 20000 --runs 3

Memory: an API creates one warm-up schedule (loading the scripts) and
stops; ``used_memory`` is read (before); the API creates
``--schedules`` schedules and stops (idle schedules: record, member of
the schedules set, member of the listing's set); a ticker alone starts,
hands every schedule's occurrence of the next minute over (occurrence
timers pending in the ready streams) and stops; two workers alone fire
them all and stop (with ``WHEEL_HOST_CONCURRENCY`` as wide as a
worker's 200 slots: with no ticker running, a webhook deferred back
onto the wheel would never come back). ``used_memory`` and ``MEMORY
USAGE`` by kind of key (``benchmarks/memory.py``'s breakdown) are read
after each phase with no role connected. A schedule that has rolled
once keeps its last occurrence and the roll's marker too: "per
schedule" is read after the roll.

Rate: API, ``--tickers`` tickers and ``--workers`` workers start and
fire canary timers; the API creates the schedules (``--spread``: each at
its own second of the minute, ``i % 60``, instead of all at second 0);
then each of ``--minutes`` minutes is measured from its first second:
occurrences delivered, lost, duplicated and early (an occurrence's id
carries its instant, so lateness is arrival minus that instant), the
rate (all at second 0: occurrences over the time from the minute to the
last arrival), and the CPU of each process, Redis' own CPU and commands
per occurrence.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from _common import (
    Code,
    CpuMeter,
    add_common_args,
    deadline_alarm,
    median,
    process_group,
    save_report,
    spread,
)
from _redis import RedisCost
from _service import Service, log_summary, service_env, start_sink
from memory import breakdown, used_memory

MINUTE_S = 60
EVERY_MINUTE = "* * * * *"
YEARLY = "0 0 1 1 *"
DRAIN_S = 50.0
"""Longest a minute's occurrences may take to arrive in the rate mode."""


async def create_schedules(
    api_urls: Sequence[str],
    url: str,
    crons: Sequence[str],
    lanes: int = 64,
) -> tuple[list[str], collections.Counter[str]]:
    """POST /schedules for each cron, round robin over the APIs; the ids
    made and the errors by kind."""
    made: list[str] = []
    errors: collections.Counter[str] = collections.Counter()
    source = enumerate(crons)
    connector = aiohttp.TCPConnector(limit=lanes)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout
    ) as http:

        async def lane() -> None:
            for n, cron in source:
                base = api_urls[n % len(api_urls)]
                body = {"cron": cron, "url": url}
                try:
                    async with http.post(
                        f"{base}/schedules", json=body
                    ) as reply:
                        if reply.status != 201:
                            errors[f"HTTP {reply.status}"] += 1
                            await reply.read()
                            continue
                        made.append((await reply.json())["id"])
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    errors[type(exc).__name__] += 1

        await asyncio.gather(*(lane() for _ in range(lanes)))
    return made, errors


def instant_ms(occurrence_id: str) -> int:
    """The instant an occurrence's id was derived from (its first 48
    bits, as for any timer id: the due time)."""
    return int(occurrence_id.replace("-", "")[:12], 16)


def ready_entries(redis_client, prefix: str = "tw") -> int:
    """Entries in every ready stream (a single Redis)."""
    total = 0
    for key in redis_client.scan_iter(match=f"{{{prefix}#*}}:r", count=1000):
        total += redis_client.xlen(key)
    return total


def kind_bytes(kinds: dict, *names: str) -> int:
    """Estimated bytes of the given kinds of keys."""
    return sum(kinds.get(name, {}).get("total_bytes", 0) for name in names)


def memory_run(
    args: argparse.Namespace, code: Code, workdir: Path, seed: int
) -> dict[str, object]:
    n = args.schedules
    with process_group(workdir) as group:
        redis = group.start_redis(args)
        inspect = redis.client()
        sink = start_sink(group, record=False)
        # No ticker runs while the workers fire: nothing may go back on
        # the wheel, so no deferral (a host limit as wide as a worker).
        env = service_env(
            code,
            redis.url,
            args,
            ready_max=max(2000, n),
            host_concurrency=200,
            worker_concurrency=200,
        )
        service = Service(group, code, env)
        service.start_api()
        asyncio.run(create_schedules(service.api_urls, sink.url(), [YEARLY]))
        service.stop_apis()
        before = used_memory(redis)
        kinds0 = breakdown(redis, args.sample, seed)

        service.start_api()
        started = time.monotonic()
        ids, errors = asyncio.run(
            create_schedules(
                service.api_urls, sink.url(), [EVERY_MINUTE] * n, args.lanes
            )
        )
        create_s = time.monotonic() - started
        service.stop_apis()
        idle = used_memory(redis)
        kinds_idle = breakdown(redis, args.sample, seed)

        tickers = service.start_roles(1, 0)
        service.wait_beating(tickers, inspect)
        deadline = time.monotonic() + MINUTE_S + 60
        while ready_entries(inspect) < len(ids):
            group.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("the occurrences were not handed over")
            time.sleep(0.2)
        service.stop_roles()
        service.tickers.clear()
        handed = used_memory(redis)
        kinds_handed = breakdown(redis, args.sample, seed)

        workers = service.start_roles(0, 2)
        service.wait_beating(workers, inspect)
        deadline = time.monotonic() + 120
        while ready_entries(inspect) or sink.count() < len(ids):
            group.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("the occurrences did not fire")
            time.sleep(0.2)
        service.stop_roles()
        inspect.close()
        fired = used_memory(redis)
        kinds_fired = breakdown(redis, args.sample, seed)
    made = len(ids)
    schedule_kinds = ("{}s:", "{}S", "{}sa")
    return {
        "schedules": made,
        "create_errors": dict(errors),
        "create_per_s": round(made / create_s),
        "used_memory": {
            "before": before,
            "idle": idle,
            "handed": handed,
            "fired": fired,
        },
        # Idle: created, never rolled (used_memory, all kinds).
        "bytes_per_idle_schedule": round((idle - before) / made, 1),
        # After a roll: + last occurrence and the roll's marker.
        "bytes_per_schedule": round(
            (
                kind_bytes(kinds_handed, *schedule_kinds)
                - kind_bytes(kinds0, *schedule_kinds)
            )
            / made,
            1,
        ),
        "bytes_per_pending_occurrence": round(
            (kind_bytes(kinds_handed, "{}t:") - kind_bytes(kinds0, "{}t:"))
            / made,
            1,
        ),
        "stream_bytes_per_occurrence": round(
            (kind_bytes(kinds_handed, "{}r") - kind_bytes(kinds0, "{}r"))
            / made,
            1,
        ),
        "bytes_per_fired_occurrence": round(
            (kind_bytes(kinds_fired, "{}f:") - kind_bytes(kinds0, "{}f:"))
            / made,
            1,
        ),
        "kinds": {
            "before": kinds0,
            "idle": kinds_idle,
            "handed": kinds_handed,
            "fired": kinds_fired,
        },
    }


def rate_run(
    args: argparse.Namespace, code: Code, workdir: Path
) -> dict[str, object]:
    n = args.schedules
    crons = (
        [f"{i % 60} * * * * *" for i in range(n)]
        if args.spread
        else [EVERY_MINUTE] * n
    )
    with process_group(workdir) as group:
        redis = group.start_redis(args)
        inspect = redis.client()
        sink = start_sink(group)
        env = service_env(code, redis.url, args)
        service = Service(group, code, env)
        service.start_api()
        roles = service.start_roles(args.tickers, args.workers)
        service.wait_beating(roles, inspect)
        service.canaries(sink, args.canaries)
        started = time.monotonic()
        ids, errors = asyncio.run(
            create_schedules(service.api_urls, sink.url(), crons, args.lanes)
        )
        create_s = time.monotonic() - started
        pids = {f"redis{i}": pid for i, pid in enumerate(redis.pids)}
        pids["sink"] = sink.proc.pid
        pids |= {p.name: p.pid for p in service.apis + roles}
        # The first whole minute that starts a second after creation.
        first = (math.floor(time.time() + 1) // MINUTE_S + 1) * MINUTE_S
        rounds = []
        for minute in range(args.minutes):
            start = first + minute * MINUTE_S
            time.sleep(max(0.0, start - 1.0 - time.time()))
            meter = CpuMeter(pids)
            cost = RedisCost(redis.node_urls)
            count_before = sink.count()
            end = start + (MINUTE_S if args.spread else DRAIN_S)
            while time.time() < end and sink.count() - count_before < n:
                group.check_alive()
                time.sleep(0.05)
            if args.spread:
                # The last second's occurrences arrive after the minute
                # (and the count began with the minute before's last).
                time.sleep(max(0.0, end + 3 - time.time()))
            seconds = meter.seconds()
            rounds.append(
                {
                    "start": start,
                    "cpu": meter.shares(),
                    "cpu_s": seconds,
                    "per_occurrence": cost.per(n),
                }
            )
        dump = sink.dump()
        service.stop_roles()
        logs = {p.name: log_summary(p.log_path) for p in roles}
        inspect.close()
    return {
        "schedules": len(ids),
        "create_errors": dict(errors),
        "create_per_s": round(len(ids) / create_s),
        "rounds": [analyse(r, dump, n, args) for r in rounds],
        "logs": logs,
        "settings": code.effective(env),
    }


def analyse(
    measured: dict, dump: dict[str, list], n: int, args: argparse.Namespace
) -> dict[str, object]:
    """One minute's figures from the receiver's record."""
    start_ms = measured["start"] * 1000
    arrivals: collections.Counter[str] = collections.Counter()
    first: dict[str, float] = {}
    for key, at in zip(dump["ids"], dump["times"], strict=True):
        if not key or len(key) != 36:
            continue
        if not start_ms <= instant_ms(key) < start_ms + MINUTE_S * 1000:
            continue
        arrivals[key] += 1
        first.setdefault(key, at)
    late = [first[k] * 1000 - instant_ms(k) for k in first]
    times = sorted(first.values())
    cpu_s = measured["cpu_s"]
    out: dict[str, object] = {
        "delivered": len(first),
        "lost": n - len(first),
        "duplicated": sum(1 for c in arrivals.values() if c > 1),
        "early": sum(1 for v in late if v < 0),
        "lateness_ms": spread(late),
        "cpu": measured["cpu"],
        "per_occurrence": measured["per_occurrence"],
    }
    per = max(1, len(first))
    for role in ("ticker", "worker", "api", "redis", "sink"):
        used = sum(s for name, s in cpu_s.items() if name.startswith(role))
        out[f"{role}_cpu_us_per_occurrence"] = round(used * 1e6 / per, 1)
    if times and not args.spread:
        took_s = times[-1] - measured["start"]
        out["drain_s"] = round(took_s, 2)
        out["occurrences_per_s"] = round(len(first) / took_s)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--schedules", type=int, default=20_000)
    parser.add_argument("--spread", action="store_true")
    parser.add_argument("--minutes", type=int, default=2)
    parser.add_argument("--tickers", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--lanes", type=int, default=64)
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--canaries", type=int, default=64)
    add_common_args(parser, runs=3)
    args = parser.parse_args()
    code = Code(args.code)
    deadline_alarm(
        args.runs * (args.schedules / 300 + 90 * (args.minutes + 3)) + 120
    )
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-sched-") as tmp:
            if args.memory:
                result = memory_run(args, code, Path(tmp), seed=run)
            else:
                result = rate_run(args, code, Path(tmp))
        result["run"] = run + 1
        results.append(result)
        shown = {
            k: v
            for k, v in result.items()
            if k not in ("kinds", "logs", "settings", "used_memory")
        }
        print(f"run {run + 1}/{args.runs}: {shown}", flush=True)
    if args.memory:
        keys = (
            "bytes_per_idle_schedule",
            "bytes_per_schedule",
            "bytes_per_pending_occurrence",
            "stream_bytes_per_occurrence",
            "bytes_per_fired_occurrence",
            "create_per_s",
        )
        summary = {k: median([r[k] for r in results]) for k in keys}
    else:
        rounds = [r for result in results for r in result["rounds"]]
        summary = {
            "create_per_s": median([r["create_per_s"] for r in results]),
            "lost_total": sum(r["lost"] for r in rounds),
            "duplicated_total": sum(r["duplicated"] for r in rounds),
            "early_total": sum(r["early"] for r in rounds),
        }
        for key in (
            "occurrences_per_s",
            "drain_s",
            "ticker_cpu_us_per_occurrence",
            "worker_cpu_us_per_occurrence",
            "redis_cpu_us_per_occurrence",
        ):
            values = [r[key] for r in rounds if key in r]
            if values:
                summary[key] = median(values)
        for q in ("p50", "p99", "max"):
            summary[f"lateness_{q}_ms"] = median(
                [r["lateness_ms"][q] for r in rounds if r["lateness_ms"]]
            )
        summary["redis_own_cpu_us_per_occurrence"] = median(
            [r["per_occurrence"]["redis_cpu_us"] for r in rounds]
        )
    print(f"\nmedian of {args.runs} runs: {summary} (code {code.commit})")
    name = "schedules-memory" if args.memory else "schedules-rate"
    if args.spread:
        name += "-spread"
    save_report(name, args, code, summary, results)


if __name__ == "__main__":
    main()
