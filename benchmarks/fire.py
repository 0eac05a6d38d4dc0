"""End to end: timers created through the API, fired by real processes.

Starts a private Redis, ``--apis`` API processes, ``--tickers`` tickers
and ``--workers`` workers (``timer-wheel api|ticker|worker``) and a
receiver (``benchmarks/sink.py --record``, its own process, recording
``time.time()`` and the ``Idempotency-Key`` of every arrival). Creates
timers, waits for their webhooks and reports creation rate, webhooks/s,
lateness (arrival minus the due time Redis stored in the record) p50, p95,
p99 and max, and lost and duplicated ids. Two modes::

    # 20,000 timers due at one instant ~10 s ahead, 2 workers
    uv run python benchmarks/fire.py --burst 20000 --workers 2

    # timers due at 1,000/s for 30 s
    uv run python benchmarks/fire.py --rate 1000 --duration 30

Through the API (``--create api``, the default) a delay is whole seconds,
so a burst's due times span up to one second (a request sent at t asks
for ceil(T - t) seconds); at a rate, timers are created at that rate
while earlier ones fire, each due ``--lead`` seconds after its creation.
``--create store`` calls ``wheel.store.Store`` directly with millisecond
delays: a burst is then due at one instant, and a rate's timers are all
created beforehand and due at exact even spacing.

Settings of the roles: ``--shards``, ``--concurrency``
(WHEEL_WORKER_CONCURRENCY), ``--batch-size``, ``--tick-interval``; other
``WHEEL_*`` variables of the harness' environment are passed on.
``--profile worker|ticker|api|sink`` attaches py-spy to the first process
of that role while timers fire. ``--pause-redis-ms`` stalls Redis (``CLIENT
PAUSE``) once a quarter of the webhooks have arrived, as a failover or a
slow disk would. ``--keep`` keeps the processes' logs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import random
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import aiohttp
from _common import (
    BENCH_DIR,
    BIN_DIR,
    Cluster,
    CpuMeter,
    child_env,
    cluster,
    deadline_alarm,
    free_port,
    machine,
    median,
    percentile,
    save,
    wait_http,
    wait_port,
)
from redis import Redis

from wheel.keys import Keys
from wheel.redis_client import connect
from wheel.settings import Settings
from wheel.store import Store
from wheel.wheelmath import shard_of

CREATE_LANES = 64
READY_TIMEOUT_S = 30.0


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


class Creator:
    """Creates timers through the API (round robin) or the store."""

    def __init__(self, args: argparse.Namespace, api_urls: list[str]):
        self.args = args
        self.api_urls = api_urls
        self.ids: list[str] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self._n = 0

    async def _post(self, http: aiohttp.ClientSession, seconds: int) -> None:
        self._n += 1
        base = self.api_urls[self._n % len(self.api_urls)]
        body = {"url": self.args.hook_url, "seconds": seconds}
        try:
            async with http.post(f"{base}/timer", json=body) as reply:
                if reply.status != 201:
                    self.errors[f"HTTP {reply.status}"] += 1
                    await reply.read()
                    return
                self.ids.append((await reply.json())["id"])
        except (aiohttp.ClientError, OSError) as exc:
            self.errors[type(exc).__name__] += 1

    async def burst_api(self, count: int, due_at: float) -> None:
        connector = aiohttp.TCPConnector(limit=CREATE_LANES)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def lane(n: int) -> None:
                for _ in range(n):
                    left = math.ceil(due_at - time.time())
                    await self._post(http, max(1, left))

            shares = [count // CREATE_LANES] * CREATE_LANES
            shares[0] += count % CREATE_LANES
            await asyncio.gather(*(lane(n) for n in shares))

    async def rate_api(self, rate: float, duration_s: float) -> None:
        """Create at ``rate``/s for ``duration_s``, each due in lead s."""
        total = int(rate * duration_s)
        connector = aiohttp.TCPConnector(limit=4 * CREATE_LANES)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector) as http:
            started = time.monotonic()
            sent = 0
            while sent < total:
                due = min(total, int((time.monotonic() - started) * rate))
                while sent < due:
                    task = asyncio.create_task(
                        self._post(http, int(self.args.lead))
                    )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    sent += 1
                await asyncio.sleep(0.005)
            if tasks:
                await asyncio.wait(tasks)

    async def store(self, redis_url: str, due_ms: list[int]) -> None:
        """Create one timer per due time (epoch ms) through the store."""
        settings = Settings(redis_url=redis_url, shards=self.args.shards)
        redis = connect(settings, max_connections=CREATE_LANES + 4)
        try:
            store = Store(redis, settings)
            await store.sync_clock()

            async def one(at_ms: int) -> None:
                delay = max(0, at_ms - store.clock.now_ms())
                timer = await store.create(self.args.hook_url, delay)
                self.ids.append(timer.id)

            for start in range(0, len(due_ms), CREATE_LANES):
                chunk = due_ms[start : start + CREATE_LANES]
                await asyncio.gather(*(one(at) for at in chunk))
        finally:
            await redis.aclose()


def wait_ready(redis: Redis, args: argparse.Namespace, group: Cluster):
    """Wait until every worker and ticker beat and all leases are held."""
    keys = Keys("tw", args.shards)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        group.check_alive()
        workers = redis.zcard(keys.heartbeats("worker"))
        tickers = redis.zcard(keys.heartbeats("ticker"))
        leases = sum(
            redis.exists(s.lease) for s in keys.all_shards()
        )  # one call per shard: a lease key is in its shard's slot
        if (
            workers >= args.workers
            and tickers >= args.tickers
            and leases == args.shards
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(
        f"roles not ready after {READY_TIMEOUT_S:g}s: {workers} workers, "
        f"{tickers} tickers beating, {leases}/{args.shards} leases held"
    )


def records(redis: Redis, shards: int, ids: list[str]) -> list[list]:
    """``[due, state, attempts]`` of each id's record."""
    keys = Keys("tw", shards)
    out: list[list] = []
    for start in range(0, len(ids), 2000):
        pipe = redis.pipeline(transaction=False)
        for timer_id in ids[start : start + 2000]:
            shard = keys.shard(shard_of(uuid.UUID(timer_id), shards))
            pipe.hmget(shard.timer(timer_id), "due", "state", "attempts")
        out.extend(pipe.execute())
    return out


def start_profile(group: Cluster, pid: int, seconds: float, out: Path) -> None:
    group.spawn(
        "py-spy",
        [
            str(BIN_DIR / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(seconds))),
            "--rate",
            "200",
            "--format",
            "raw",
            "-o",
            str(out),
        ],
        may_exit=True,
    )


def log_summary(proc_log: Path) -> dict[str, object]:
    """The 'stopped' line and the count of warnings/errors of a role."""
    levels: collections.Counter[str] = collections.Counter()
    messages: collections.Counter[str] = collections.Counter()
    stopped = None
    gc_spent = None
    for line in proc_log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if "gc_seconds" in entry:
            gc_spent = entry
        level = entry.get("level", "")
        if level in ("warning", "error", "critical"):
            levels[level] += 1
            messages[f"{level}: {entry.get('msg')}"] += 1
        if entry.get("msg") in ("worker stopped", "ticker stopped"):
            stopped = {
                k: v
                for k, v in entry.items()
                if k not in ("ts", "level", "logger", "msg")
            }
    summary = {
        "stopped": stopped,
        "levels": dict(levels),
        "top": dict(messages),
    }
    if gc_spent:
        summary["gc"] = gc_spent
    return summary


def run_once(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    with cluster(workdir) as group:
        redis_server = group.start_redis(appendonly=args.aof)
        redis = Redis.from_url(redis_server.url, decode_responses=True)
        sink_port = free_port()
        sink = group.script(
            "sink",
            [
                str(BENCH_DIR / "sink.py"),
                "--port",
                str(sink_port),
                "--record",
                "--uvloop",
            ],
        )
        wait_port(sink_port)
        args.hook_url = f"http://127.0.0.1:{sink_port}/hook"
        env = child_env(
            redis_url=redis_server.url,
            shards=args.shards,
            worker_concurrency=args.concurrency,
            batch_size=args.batch_size,
            tick_interval=args.tick_interval,
            log_format="json",
        )
        for name, value in os.environ.items():
            if name.startswith("WHEEL_") and name != "WHEEL_REDIS_URL":
                env.setdefault(name, value)
        api_urls = []
        apis = []
        for i in range(args.apis):
            port = free_port()
            apis.append(
                group.role(f"api{i}", ["api", "--port", str(port)], env)
            )
            api_urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(api_urls, apis, strict=True):
            wait_http(f"{url}/readyz", proc=proc)
        tickers = [
            group.role(f"ticker{i}", ["ticker"], env)
            for i in range(args.tickers)
        ]
        if args.worker_gc:
            gc_role = [
                sys.executable,
                str(BENCH_DIR / "gc_role.py"),
                args.worker_gc,
                "worker",
            ]
            workers = [
                group.spawn(f"worker{i}", gc_role, env)
                for i in range(args.workers)
            ]
        else:
            workers = [
                group.role(f"worker{i}", ["worker"], env)
                for i in range(args.workers)
            ]
        wait_ready(redis, args, group)

        creator = Creator(args, api_urls)
        pids = {"redis": redis_server.process.pid, "sink": sink.pid}
        pids |= {p.name: p.pid for p in apis + tickers + workers}
        roles = {
            "worker": workers,
            "ticker": tickers,
            "api": apis,
            "sink": [sink],
        }
        started = time.time()
        create_meter = CpuMeter(pids)
        if args.burst:
            count = args.burst
            first_due = started + args.lead
            if args.create == "api":
                asyncio.run(creator.burst_api(count, first_due))
            else:
                due_ms = [int(first_due * 1000)] * count
                asyncio.run(creator.store(redis_server.url, due_ms))
            fire_window = (first_due, first_due + args.drain_timeout)
        else:
            count = int(args.rate * args.duration)
            if args.create == "api":
                first_due = started + args.lead
                fire_window = (first_due, first_due + args.duration)
                # Created while earlier timers fire: the meter and the
                # profile cover creation and firing together.
                meter = CpuMeter(pids)
                if args.profile:
                    start_profile(
                        group,
                        roles[args.profile][0].pid,
                        args.duration,
                        workdir / "profile.txt",
                    )
                asyncio.run(creator.rate_api(args.rate, args.duration))
            else:
                first_due = started + args.lead
                step_ms = 1000.0 / args.rate
                due_ms = [
                    int(first_due * 1000 + i * step_ms) for i in range(count)
                ]
                random.Random(1).shuffle(due_ms)
                asyncio.run(creator.store(redis_server.url, due_ms))
                fire_window = (first_due, first_due + args.duration)
        create_s = time.time() - started
        create_cpu = create_meter.shares()
        created = len(creator.ids)
        live_create = bool(args.rate) and args.create == "api"
        if time.time() > first_due and not live_create:
            print(
                f"warning: creation took {create_s:.1f}s, longer than the "
                f"lead of {args.lead:g}s; raise --lead",
                file=sys.stderr,
            )
        if not live_create:
            time.sleep(max(0.0, first_due - time.time() - 0.5))
            meter = CpuMeter(pids)
            if args.profile:
                window = (
                    min(args.drain_timeout, 15)
                    if args.burst
                    else args.duration
                )
                start_profile(
                    group,
                    roles[args.profile][0].pid,
                    window,
                    workdir / "profile.txt",
                )
        # Wait for every webhook (or the drain timeout).
        deadline = fire_window[1] + (args.drain_timeout if args.rate else 0)
        count_url = f"http://127.0.0.1:{sink_port}/_count"
        arrived = 0
        paused = not args.pause_redis_ms
        while time.time() < deadline:
            arrived = _get_json(count_url)["count"]
            if arrived >= created:
                break
            if not paused and arrived >= created // 4:
                # A Redis stall mid-burst (failover, slow disk, a busy
                # script): every in-flight call waits at once.
                redis.execute_command(
                    "CLIENT", "PAUSE", str(args.pause_redis_ms), "ALL"
                )
                paused = True
            group.check_alive()
            time.sleep(0.1)
        cpu = meter.shares()
        time.sleep(1.0)  # late duplicates
        dump = _get_json(f"http://127.0.0.1:{sink_port}/_dump")
        stored = records(redis, args.shards, creator.ids)
        # Connections stay open in the roles' pools: this is how many each
        # needed at once at most (redis-py's pools cap at 100 each).
        redis_clients = len(redis.client_list())
        redis.close()
        for proc in workers + tickers:
            group.stop(proc)
        logs = {p.name: log_summary(p.log_path) for p in workers + tickers}
        profile = workdir / "profile.txt"
        profile_text = profile.read_text() if profile.exists() else None

    return analyse(
        args,
        creator,
        create_s,
        dump,
        stored,
        cpu,
        create_cpu,
        logs,
        profile_text,
        redis_clients,
    )


def analyse(
    args: argparse.Namespace,
    creator: Creator,
    create_s: float,
    dump: dict[str, list],
    stored: list[list],
    cpu: dict[str, float],
    create_cpu: dict[str, float],
    logs: dict[str, object],
    profile_text: str | None,
    redis_clients: int = 0,
) -> dict[str, object]:
    due_ms = {}
    states: collections.Counter[str] = collections.Counter()
    for timer_id, (due, state, _attempts) in zip(
        creator.ids, stored, strict=True
    ):
        states[str(state)] += 1
        if due is not None:
            due_ms[timer_id] = int(due)
    first_arrival: dict[str, float] = {}
    arrivals: collections.Counter[str] = collections.Counter()
    for timer_id, at in zip(dump["ids"], dump["times"], strict=True):
        arrivals[timer_id] += 1
        if timer_id not in first_arrival:
            first_arrival[timer_id] = at
    created = set(creator.ids)
    delivered = created & set(first_arrival)
    lateness_ms = [
        first_arrival[i] * 1000 - due_ms[i] for i in delivered if i in due_ms
    ]
    times = [first_arrival[i] for i in delivered]
    dues = list(due_ms.values())
    result: dict[str, object] = {
        "mode": f"burst {args.burst}"
        if args.burst
        else f"rate {args.rate:g}/s x {args.duration:g}s",
        "create": args.create,
        "workers": args.workers,
        "tickers": args.tickers,
        "apis": args.apis,
        "created": len(creator.ids),
        "create_errors": dict(creator.errors),
        "create_s": round(create_s, 2),
        "create_per_s": round(len(creator.ids) / create_s),
        "due_span_s": round((max(dues) - min(dues)) / 1000, 3)
        if dues
        else None,
        "delivered": len(delivered),
        "lost": len(created - delivered),
        "duplicated_ids": sum(1 for i in delivered if arrivals[i] > 1),
        "extra_arrivals": sum(arrivals[i] - 1 for i in delivered),
        "unknown_arrivals": sum(
            n for i, n in arrivals.items() if i not in created
        ),
        "early": sum(1 for v in lateness_ms if v < 0),
        "states": dict(states),
        "cpu_firing": cpu,
        "cpu_creating": create_cpu,
        "logs": logs,
        "redis_clients": redis_clients,
    }
    if lateness_ms:
        result["lateness_ms"] = {
            "min": round(min(lateness_ms), 1),
            "p50": round(percentile(lateness_ms, 50), 1),
            "p95": round(percentile(lateness_ms, 95), 1),
            "p99": round(percentile(lateness_ms, 99), 1),
            "max": round(max(lateness_ms), 1),
        }
        span = max(times) - min(times)
        result["webhooks_per_s"] = round(len(times) / span) if span else None
        result["makespan_s"] = round(max(times) - min(dues) / 1000, 2)
        result["first_arrival_after_due_ms"] = round(
            (min(times) - min(dues) / 1000) * 1000, 1
        )
        worker_cpu = sum(v for k, v in cpu.items() if k.startswith("worker"))
        if worker_cpu and result["webhooks_per_s"]:
            # Firing window CPU shares cover the wait for the first due
            # time too, so this underestimates webhooks per worker core.
            result["worker_cpu"] = round(worker_cpu, 2)
    if profile_text:
        result["profile"] = profile_text
    return result


def report(result: dict[str, object]) -> None:
    late = result.get("lateness_ms", {})
    print(
        f"{result['mode']} via {result['create']}: created "
        f"{result['created']} at {result['create_per_s']}/s "
        f"(errors {result['create_errors'] or 0}, due span "
        f"{result['due_span_s']}s); delivered {result['delivered']} "
        f"lost {result['lost']} duplicated {result['duplicated_ids']} "
        f"early {result['early']}\n"
        f"  webhooks/s {result.get('webhooks_per_s')} "
        f"(per worker {_per(result)}), makespan "
        f"{result.get('makespan_s')}s, lateness ms {late}\n"
        f"  cpu while firing {result['cpu_firing']}, redis clients "
        f"{result['redis_clients']}\n"
        f"  states {result['states']}",
        flush=True,
    )
    for name, summary in result["logs"].items():
        if summary["levels"] or name.startswith("worker"):
            print(f"  {name}: {summary['stopped']} {summary['top']}")
            if "gc" in summary:
                print(f"  {name} gc: {summary['gc']}")


def _per(result: dict[str, object]) -> object:
    rate = result.get("webhooks_per_s")
    return round(rate / result["workers"]) if rate else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--burst", type=int, help="timers due at one instant")
    mode.add_argument("--rate", type=float, help="timers due per second")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--lead", type=float, help="seconds to first due")
    parser.add_argument("--create", choices=["api", "store"], default="api")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tickers", type=int, default=1)
    parser.add_argument("--apis", type=int, default=1)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--tick-interval", type=float)
    parser.add_argument("--aof", action="store_true", help="Redis AOF on")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--keep", action="store_true", help="keep the logs")
    parser.add_argument(
        "--worker-gc",
        metavar="THRESHOLD",
        help="run workers via gc_role.py: 'default' or a gen0 threshold; "
        "reports the time the cyclic GC took",
    )
    parser.add_argument(
        "--pause-redis-ms",
        type=int,
        default=0,
        help="CLIENT PAUSE Redis this long once a quarter has arrived",
    )
    parser.add_argument(
        "--profile", choices=["worker", "ticker", "api", "sink"]
    )
    args = parser.parse_args()
    if args.lead is None:
        if args.burst:
            # ~10 s, or longer when creating the burst takes that long.
            args.lead = max(10.0, args.burst / 1500)
        elif args.create == "api":
            args.lead = 5.0
        else:
            args.lead = 5.0 + args.rate * args.duration / 2000
    span = args.lead + args.drain_timeout + (args.duration if args.rate else 0)
    deadline_alarm(args.runs * (span + 120) + 60)
    results = []
    for run in range(args.runs):
        if args.keep:
            tmp = tempfile.mkdtemp(prefix="bench-fire-")
            print(f"logs kept in {tmp}")
            result = run_once(args, Path(tmp))
        else:
            with tempfile.TemporaryDirectory(prefix="bench-fire-") as tmp:
                result = run_once(args, Path(tmp))
        result["run"] = run + 1
        results.append(result)
        print(f"run {run + 1}/{args.runs}: ", end="")
        report({k: v for k, v in result.items() if k != "profile"})
    summary = {
        key: median(
            [r[key] for r in results if r.get(key) is not None] or [math.nan]
        )
        for key in ("create_per_s", "webhooks_per_s", "makespan_s")
    }
    for q in ("p50", "p95", "p99", "max"):
        summary[f"lateness_{q}_ms"] = median(
            [r["lateness_ms"][q] for r in results if "lateness_ms" in r]
            or [math.nan]
        )
    summary["lost_total"] = sum(r["lost"] for r in results)
    summary["duplicated_total"] = sum(r["duplicated_ids"] for r in results)
    print(f"\nmedian of {args.runs} runs: {summary}")
    profile = next((r.pop("profile") for r in results if "profile" in r), None)
    name = f"fire-{'burst' if args.burst else 'rate'}"
    if profile:
        path = BENCH_DIR / "results" / f"{name}-{args.profile}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(profile)
        print(f"py-spy profile of {args.profile}: {path}")
    saved = save(
        name,
        {
            "machine": machine(),
            "args": {k: v for k, v in vars(args).items()},
            "summary": summary,
            "runs": results,
        },
    )
    print(f"saved {saved}")


if __name__ == "__main__":
    main()
