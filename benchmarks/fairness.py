"""Other receivers' lateness while one receiver times out.

Two receivers on 127.0.0.1, each its own host to the service (another
port): a slow one (``sink.py --delay-s 3600``: it never answers, so
every webhook to it runs into the service's timeout,
WHEEL_WEBHOOK_TIMEOUT, 10 s by default) and a fast recording one. With
an API, ``--tickers`` tickers and ``--workers`` workers of the code
under test running on their defaults, it creates ``--slow`` timers
(default 10,000) due at one second ``--lead`` s ahead for the slow
receiver, then from that second on a steady ``--rate`` (default 100/s)
of timers for the fast one, for ``--duration`` seconds, each created
``--fast-delay`` s before it is due. It reports the fast receiver's
lateness (arrival minus ``due_at``) p50/p99/max, lost fast timers, how
many webhooks the slow receiver had in flight at most, Redis' CPU
seconds and script calls from the flood's start to the fast receiver's
last timer, and the settings the roles ran with
(WHEEL_HOST_CONCURRENCY among them)::

    python benchmarks/fairness.py --runs 3
    python benchmarks/fairness.py --code /tmp/tw-old --runs 1
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

from _api import Creator, first_arrivals, lateness_ms, read_views
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


def run_once(
    args: argparse.Namespace, code: Code, workdir: Path
) -> dict[str, object]:
    with process_group(workdir) as group:
        redis = group.start_redis(args)
        inspect = redis.client()
        fast = start_sink(group, "fast-sink")
        slow = start_sink(group, "slow-sink", record=False, delay_s=3600)
        env = service_env(code, redis.url, args)
        service = Service(group, code, env)
        for _ in range(args.apis):
            service.start_api()
        roles = service.start_roles(args.tickers, args.workers)
        service.wait_beating(roles, inspect)
        inspect.close()
        canaries = service.canaries(fast, args.canaries)

        slow_due = time.time() + args.lead
        slow_creator = Creator(service.api_urls, lanes=args.lanes)
        asyncio.run(slow_creator.burst(slow.url(), args.slow, slow_due))
        if time.time() > slow_due - args.fast_delay:
            print("warning: the slow burst took longer than --lead allows")
        # The fast timers are created fast_delay s before they are due,
        # so the first is due when the slow burst is.
        time.sleep(max(0.0, slow_due - args.fast_delay - time.time()))
        pids = {p.name: p.pid for p in service.workers + service.tickers}
        meter = CpuMeter(pids)
        redis_cost = RedisCost(redis.node_urls)
        fast_creator = Creator(service.api_urls, lanes=args.lanes)
        peak = {"slow_in_flight": 0}
        stop = threading.Event()

        def watch_slow() -> None:
            while not stop.wait(0.5):
                state = slow.state()
                peak["slow_in_flight"] = max(
                    peak["slow_in_flight"], state["in_flight"]
                )
                peak["slow_arrivals"] = state["count"]

        watcher = threading.Thread(target=watch_slow, daemon=True)
        watcher.start()
        try:
            asyncio.run(
                fast_creator.at_rate(
                    fast.url(), args.rate, args.duration, args.fast_delay
                )
            )
            wanted = len(canaries) + len(fast_creator.ids)
            deadline = time.time() + args.fast_delay + args.drain_timeout
            while fast.count() < wanted and time.time() < deadline:
                group.check_alive()
                time.sleep(0.1)
        finally:
            stop.set()
            watcher.join(5)
        cpu = meter.shares()
        spent = redis_cost.per(1)
        dump = fast.dump()
        views = asyncio.run(read_views(service.api_urls[0], fast_creator.ids))
        service.stop_roles()
        logs = {p.name: log_summary(p.log_path) for p in roles}
    first, count = first_arrivals(dump)
    late = lateness_ms(views, first)
    made = set(fast_creator.ids)
    return {
        "slow_created": len(slow_creator.ids),
        "fast_created": len(made),
        "create_errors": dict(slow_creator.errors + fast_creator.errors),
        "fast_lost": len(made - set(first)),
        "fast_duplicated": sum(1 for i in made if count[i] > 1),
        "fast_lateness_ms": spread(late),
        "slow_max_in_flight": peak["slow_in_flight"],
        "slow_arrivals": peak.get("slow_arrivals", 0),
        "redis_cpu_s": round(spent["redis_cpu_us"] / 1e6, 2),
        "script_calls": int(spent.get("calls_evalsha", 0)),
        "cpu": cpu,
        "settings": code.effective(env),
        "logs": logs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--lead", type=float)
    parser.add_argument("--fast-delay", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tickers", type=int, default=1)
    parser.add_argument("--apis", type=int, default=1)
    parser.add_argument("--shards", type=int)
    parser.add_argument("--lanes", type=int, default=64)
    parser.add_argument("--canaries", type=int, default=64)
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    add_common_args(parser)
    args = parser.parse_args()
    if args.lead is None:
        args.lead = max(10.0, args.slow / 1000 + 5)
    code = Code(args.code)
    once = args.lead + args.duration + args.drain_timeout + 180
    deadline_alarm(args.runs * once + 60)
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-fair-") as tmp:
            result = run_once(args, code, Path(tmp))
        result["run"] = run + 1
        results.append(result)
        settings = result["settings"]
        print(
            f"run {run + 1}/{args.runs}: fast lateness ms "
            f"{result['fast_lateness_ms']}; lost {result['fast_lost']} of "
            f"{result['fast_created']}; slow receiver: "
            f"{result['slow_created']} created, at most "
            f"{result['slow_max_in_flight']} in flight, "
            f"{result['slow_arrivals']} arrivals; host_concurrency="
            f"{settings.get('host_concurrency', 'n/a')} "
            f"worker_concurrency={settings.get('worker_concurrency')} "
            f"webhook_timeout={settings.get('webhook_timeout')}",
            flush=True,
        )
    summary = {
        f"fast_lateness_{q}_ms": median(
            [
                r["fast_lateness_ms"][q]
                for r in results
                if r["fast_lateness_ms"]
            ]
        )
        for q in ("p50", "p99", "max")
    }
    summary["fast_lost_total"] = sum(r["fast_lost"] for r in results)
    summary["slow_max_in_flight"] = median(
        [r["slow_max_in_flight"] for r in results]
    )
    for key in ("redis_cpu_s", "script_calls"):
        summary[key] = median([r[key] for r in results])
    print(f"\nmedian of {args.runs} runs: {summary} (target max <= 1000 ms)")
    save_report("fairness", args, code, summary, results)


if __name__ == "__main__":
    main()
