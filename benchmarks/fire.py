"""End to end: timers created through the API, fired by real processes.

Starts a private Redis (Debian's 7.0 with ``appendfsync always`` unless
told otherwise), ``--apis`` API processes, ``--tickers`` tickers and
``--workers`` workers of the code under test (``--code DIR`` runs
``DIR/.venv/bin/timer-wheel``) and a receiver (``benchmarks/sink.py
--record``, its own process, recording ``time.time()`` and the
``Idempotency-Key`` of every arrival). Once every role beats and a few
canary timers have fired, it creates timers through ``POST /timer``,
waits for their webhooks, reads every timer back with ``GET
/timer/{id}`` and reports creation rate, webhooks/s, lateness (arrival
minus ``due_at``) p50, p95, p99 and max, and lost, duplicated and early
ids. Two modes::

    # 20,000 timers due at one whole second ~10 s ahead, 2 workers
    python benchmarks/fire.py --burst 20000 --workers 2

    # timers due at 1,000/s for 30 s (created at that rate, each due 5 s
    # after its creation, so creating and firing overlap)
    python benchmarks/fire.py --rate 1000 --duration 30

A delay is whole seconds, so a burst's due times span up to one second
(a request sent at t asks for ceil(T - t) seconds).

``--cluster-masters 3`` runs the same against a local 3-master Redis
Cluster. Settings of the roles: ``--shards``, ``--concurrency``
(WHEEL_WORKER_CONCURRENCY), ``--batch-size``, ``--tick-interval``; other
``WHEEL_*`` variables of the harness' environment are passed on when the
code under test knows them. ``--profile worker|ticker|api|sink``
attaches py-spy to the first process of that role while timers fire;
``--pause-redis-ms`` stalls Redis (``CLIENT PAUSE``) once a quarter of
the webhooks have arrived; ``--worker-gc`` runs the workers through
``gc_role.py``; ``--keep`` keeps the processes' logs. ``--receivers N``
spreads the timers over N ports of the receiver, each a host of its own
to the service (its per-host limit, WHEEL_HOST_CONCURRENCY, then applies
to each).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import sys
import tempfile
import time
from pathlib import Path

from _api import (
    Creator,
    epoch_ms,
    first_arrivals,
    lateness_ms,
    read_views,
)
from _common import (
    BENCH_DIR,
    Code,
    CpuMeter,
    Group,
    add_common_args,
    deadline_alarm,
    machine_cpus,
    median,
    process_group,
    py_spy_record,
    save_report,
    spread,
)
from _redis import ReadyBacklog, RedisCost
from _service import Service, log_summary, service_env, start_sink


def start_profile(group: Group, pid: int, seconds: float, out: Path) -> None:
    group.spawn(
        "py-spy",
        py_spy_record(pid, seconds, 200, out),
        may_exit=True,
    )


def run_once(
    args: argparse.Namespace, code: Code, workdir: Path
) -> dict[str, object]:
    with process_group(workdir) as group:
        redis = group.start_redis(args)
        inspect = redis.client()
        sink = start_sink(group, ports=args.receivers, script=args.sink)
        env = service_env(
            code,
            redis.url,
            args,
            worker_concurrency=args.concurrency,
            batch_size=args.batch_size,
            tick_interval=args.tick_interval,
        )
        service = Service(group, code, env, worker_gc=args.worker_gc)
        for _ in range(args.apis):
            service.start_api()
        roles = service.start_roles(args.tickers, args.workers)
        service.wait_beating(roles, inspect)
        canaries = service.canaries(sink, args.canaries)
        hook = sink.urls()

        creator = Creator(service.api_urls, lanes=args.lanes)
        pids = {f"redis{i}": pid for i, pid in enumerate(redis.pids)}
        pids["sink"] = sink.proc.pid
        procs = service.apis + service.tickers + service.workers
        pids |= {p.name: p.pid for p in procs}
        by_role = {
            "worker": service.workers,
            "ticker": service.tickers,
            "api": service.apis,
            "sink": [sink.proc],
        }
        profile_out = workdir / "profile.txt"
        started = time.time()
        create_meter = CpuMeter(pids)
        create_cost = RedisCost(redis.node_urls)
        first_due = started + args.lead
        if args.burst:
            asyncio.run(creator.burst(hook, args.burst, first_due))
            window_end = first_due + args.drain_timeout
        else:
            # Created while earlier timers fire: the meter and the
            # profile cover creation and firing together.
            meter = CpuMeter(pids)
            fire_cost = create_cost
            if args.profile:
                start_profile(
                    group,
                    by_role[args.profile][0].pid,
                    args.duration,
                    profile_out,
                )
            asyncio.run(
                creator.at_rate(hook, args.rate, args.duration, int(args.lead))
            )
            window_end = time.time() + args.lead + args.drain_timeout
        create_s = time.time() - started
        create_cpu = create_meter.shares()
        per_create = create_cost.per(len(creator.ids))
        if args.burst:
            if time.time() > first_due:
                print(
                    f"warning: creation took {create_s:.1f}s, longer than "
                    f"the lead of {args.lead:g}s; raise --lead",
                    file=sys.stderr,
                )
            time.sleep(max(0.0, first_due - time.time() - 0.5))
            meter = CpuMeter(pids)
            fire_cost = RedisCost(redis.node_urls)
            if args.profile:
                start_profile(
                    group,
                    by_role[args.profile][0].pid,
                    min(args.drain_timeout, 15),
                    profile_out,
                )
        wanted = len(canaries) + len(creator.ids)
        paused = not args.pause_redis_ms
        arrived = 0
        # A burst from its first timer's arrival to its last: the firing
        # itself, without the wait for the first due time that ``meter``
        # covers. (At a rate, creating and firing overlap: ``meter``
        # covers both, and nothing is left to drain here.)
        drain: tuple[CpuMeter, int] | None = None
        backlog = ReadyBacklog(redis.node_urls)
        while time.time() < window_end:
            arrived = sink.count()
            if args.burst and drain is None and arrived > len(canaries):
                drain = CpuMeter(pids), arrived
            if arrived > len(canaries):
                backlog.sample()
            if arrived >= wanted:
                break
            if not paused and arrived - len(canaries) >= wanted // 4:
                # A Redis stall mid-burst (failover, slow disk, a busy
                # script): every in-flight call waits at once.
                for node in redis.nodes():
                    client = node_client(node.url)
                    client.execute_command(
                        "CLIENT", "PAUSE", str(args.pause_redis_ms), "ALL"
                    )
                    client.close()
                paused = True
            group.check_alive()
            time.sleep(0.1)
        cpu = meter.shares()
        fired = max(1, arrived - len(canaries))
        per_fired = fire_cost.per(fired)
        worker_s = sum(
            s for n, s in meter.seconds().items() if n.startswith("worker")
        )
        per_fired["worker_cpu_us"] = round(worker_s * 1e6 / fired, 1)
        if drain is not None:
            per_fired |= drain_cost(*drain, arrived)
        per_fired |= backlog.summary()
        backlog.close()
        time.sleep(1.0)  # late duplicates
        dump = sink.dump()
        views = asyncio.run(read_views(service.api_urls[0], creator.ids))
        redis_clients = 0
        for url in redis.node_urls:
            client = node_client(url)
            redis_clients += len(client.client_list())
            client.close()
        inspect.close()
        service.stop_roles()
        logs = {
            p.name: log_summary(p.log_path)
            for p in service.workers + service.tickers + service.apis
        }
        profile_text = (
            profile_out.read_text() if profile_out.exists() else None
        )
    result = analyse(args, creator, create_s, dump, views)
    result |= {
        # Creation and firing overlap at a rate: then both are per fired.
        "per_create": per_create if args.burst else {},
        "per_fired": per_fired,
        "cpu_firing": cpu,
        "cpu_creating": create_cpu,
        "logs": logs,
        "redis_clients": redis_clients,
        "settings": code.effective(env),
    }
    if profile_text:
        result["profile"] = profile_text
    return result


def drain_cost(
    meter: CpuMeter, arrived_at_start: int, arrived: int
) -> dict[str, float]:
    """The machine while timers arrived: the share of all its CPUs that
    was busy (1.0: every core, all the time) and the CPU it spent per
    webhook, every process and the kernel's own work included."""
    busy_s, elapsed_s = meter.machine()
    fired = max(1, arrived - arrived_at_start)
    cpus = machine_cpus()
    return {
        "machine_busy": round(busy_s / max(1e-6, elapsed_s) / cpus, 3),
        "machine_cpu_us": round(busy_s * 1e6 / fired, 1),
    }


def node_client(url: str):
    import redis

    return redis.Redis.from_url(url)


def late_windows(
    views: dict[str, dict], first: dict[str, float], over_ms: float = 50
) -> dict[str, int]:
    """Arrivals later than ``over_ms``, by the second (from the first due
    time) they were due in: tells steady lateness from stalls."""
    start = min(v["due_ms"] for v in views.values()) / 1000
    windows: collections.Counter[str] = collections.Counter()
    for i, view in views.items():
        if i in first and first[i] * 1000 - view["due_ms"] > over_ms:
            windows[f"{view['due_ms'] / 1000 - start:.1f}"] += 1
    return dict(sorted(windows.items(), key=lambda kv: float(kv[0])))


LATE_EDGES_MS = (2, 5, 10, 20, 50, 100, 200, 500)
"""Upper edges of the lateness histograms' bins (the last is open)."""


def histogram(values: list[float]) -> dict[str, int]:
    """How many ``values`` fall in each bin of :data:`LATE_EDGES_MS`."""
    bins: dict[str, int] = {}
    low = None
    for edge in LATE_EDGES_MS:
        name = f"<{edge}" if low is None else f"{low}-{edge}"
        bins[name] = sum(
            1 for v in values if (low is None or v >= low) and v < edge
        )
        low = edge
    bins[f">={low}"] = sum(1 for v in values if v >= LATE_EDGES_MS[-1])
    return bins


def stages(
    views: dict[str, dict], first: dict[str, float]
) -> dict[str, object]:
    """Where the lateness of first attempts went, from each fired timer's
    history (when its webhook was sent, by Redis' clock) and its arrival:
    ``to_sent`` = due to sent (the ticker's move, the doorbell, the read,
    the claim), ``sent_to_arrival`` = sent to received (the worker's HTTP
    client and the receiver). Each with its spread and a histogram; the
    total's histogram beside them. Empty for a code without history."""
    to_sent: list[float] = []
    in_flight: list[float] = []
    total: list[float] = []
    for timer_id, view in views.items():
        history = view.get("history") or []
        if timer_id not in first or len(history) != 1:
            continue
        sent_ms = epoch_ms(history[0]["at"])
        to_sent.append(sent_ms - view["due_ms"])
        in_flight.append(first[timer_id] * 1000 - sent_ms)
        total.append(first[timer_id] * 1000 - view["due_ms"])
    if not total:
        return {}
    return {
        "timers": len(total),
        "to_sent_ms": spread(to_sent),
        "sent_to_arrival_ms": spread(in_flight),
        "histogram_total": histogram(total),
        "histogram_to_sent": histogram(to_sent),
        "histogram_sent_to_arrival": histogram(in_flight),
    }


def analyse(
    args: argparse.Namespace,
    creator: Creator,
    create_s: float,
    dump: dict[str, list],
    views: dict[str, dict],
) -> dict[str, object]:
    first, arrivals = first_arrivals(dump)
    created = set(creator.ids)
    delivered = created & set(first)
    late = lateness_ms(views, first)
    times = [first[i] for i in delivered]
    dues = [v["due_ms"] for v in views.values()]
    states = collections.Counter(v["status"] for v in views.values())
    result: dict[str, object] = {
        "mode": f"burst {args.burst}"
        if args.burst
        else f"rate {args.rate:g}/s x {args.duration:g}s",
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
        "unread": len(created - set(views)),
        "duplicated_ids": sum(1 for i in delivered if arrivals[i] > 1),
        "extra_arrivals": sum(arrivals[i] - 1 for i in delivered),
        "early": sum(1 for v in late if v < 0),
        "states": dict(states),
    }
    if late:
        result["lateness_ms"] = spread(late)
        result["late_windows"] = late_windows(views, first)
        result["stages"] = stages(views, first)
        span = max(times) - min(times)
        result["webhooks_per_s"] = round(len(times) / span) if span else None
        result["makespan_s"] = round(max(times) - min(dues) / 1000, 2)
        result["first_arrival_after_due_ms"] = round(
            (min(times) - min(dues) / 1000) * 1000, 1
        )
        if args.burst:
            result["timeline"] = timeline(
                [d / 1000 for d in dues], times, min(dues) / 1000
            )
    return result


TIMELINE_STEP_S = 0.1


def timeline(
    dues: list[float], arrivals: list[float], start: float
) -> dict[str, list[int]]:
    """Timers that came due and webhooks that arrived in each
    :data:`TIMELINE_STEP_S` from ``start`` (epoch seconds): a burst that
    drains at an even pace is held back by a steady cost, one with gaps
    by stalls."""
    steps = 1 + int((max(dues + arrivals) - start) / TIMELINE_STEP_S)

    def counts(times: list[float]) -> list[int]:
        out = [0] * steps
        for t in times:
            out[max(0, int((t - start) / TIMELINE_STEP_S))] += 1
        return out

    return {"due": counts(dues), "arrived": counts(arrivals)}


def report(result: dict[str, object]) -> None:
    late = result.get("lateness_ms", {})
    rate = result.get("webhooks_per_s")
    per_worker = round(rate / result["workers"]) if rate else None
    print(
        f"{result['mode']}: created {result['created']} at "
        f"{result['create_per_s']}/s (errors {result['create_errors'] or 0}"
        f", due span {result['due_span_s']}s); delivered "
        f"{result['delivered']} lost {result['lost']} duplicated "
        f"{result['duplicated_ids']} early {result['early']}\n"
        f"  webhooks/s {rate} (per worker {per_worker}), makespan "
        f"{result.get('makespan_s')}s, lateness ms {late}\n"
        f"  redis per create {result.get('per_create')}\n"
        f"  redis per fired {result.get('per_fired')}\n"
        f"  cpu while firing {result['cpu_firing']}, redis clients "
        f"{result['redis_clients']}\n"
        f"  states {result['states']}\n"
        + (
            f"  per {TIMELINE_STEP_S:g}s from the first due time "
            f"{result['timeline']}\n"
            if "timeline" in result
            else ""
        )
        + f"  stages {result.get('stages')}",
        flush=True,
    )
    for name, summary in result["logs"].items():
        if summary["levels"] or name.startswith("worker"):
            print(f"  {name}: {summary['stopped']} {summary['top']}")
            if "gc" in summary:
                print(f"  {name} gc: {summary['gc']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--burst", type=int, help="timers due at one second")
    mode.add_argument("--rate", type=float, help="timers due per second")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--lead", type=float, help="seconds to first due")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tickers", type=int, default=1)
    parser.add_argument("--apis", type=int, default=1)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--tick-interval", type=float)
    parser.add_argument("--lanes", type=int, default=64)
    parser.add_argument(
        "--receivers",
        type=int,
        default=1,
        help="receiver hosts (ports of the sink) the timers go to in turn",
    )
    parser.add_argument("--canaries", type=int, default=64)
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
        "--sink",
        # Resolved here: the receiver runs from the repository root.
        type=lambda text: Path(text).resolve(),
        help="another receiver script with sink.py's command line",
    )
    parser.add_argument(
        "--profile", choices=["worker", "ticker", "api", "sink"]
    )
    add_common_args(parser)
    args = parser.parse_args()
    code = Code(args.code)
    if args.lead is None:
        # ~10 s, or longer when creating the burst takes that long.
        args.lead = max(10.0, args.burst / 1500) if args.burst else 5.0
    span = args.lead + args.drain_timeout + (args.duration if args.rate else 0)
    deadline_alarm(args.runs * (span + 180) + 60)
    results = []
    for run in range(args.runs):
        if args.keep:
            tmp = tempfile.mkdtemp(prefix="bench-fire-")
            print(f"logs kept in {tmp}")
            result = run_once(args, code, Path(tmp))
        else:
            with tempfile.TemporaryDirectory(prefix="bench-fire-") as tmp:
                result = run_once(args, code, Path(tmp))
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
    for stage in ("to_sent_ms", "sent_to_arrival_ms"):
        for q in ("p50", "p99"):
            found = [
                r["stages"][stage][q]
                for r in results
                if stage in r.get("stages", {})
            ]
            if found:
                summary[f"{stage.removesuffix('_ms')}_{q}_ms"] = median(found)
    for phase in ("per_create", "per_fired"):
        keys = sorted({k for r in results for k in r.get(phase, {})})
        for key in keys:
            summary[f"{phase}_{key}"] = median(
                [r[phase][key] for r in results if key in r.get(phase, {})]
            )
    summary["lost_total"] = sum(r["lost"] for r in results)
    summary["duplicated_total"] = sum(r["duplicated_ids"] for r in results)
    summary["early_total"] = sum(r["early"] for r in results)
    print(f"\nmedian of {args.runs} runs: {summary}")
    profile = next((r.pop("profile") for r in results if "profile" in r), None)
    name = f"fire-{'burst' if args.burst else 'rate'}"
    if profile:
        path = BENCH_DIR / "results" / f"{name}-{args.profile}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(profile)
        print(f"py-spy profile of {args.profile}: {path}")
    save_report(name, args, code, summary, results)


if __name__ == "__main__":
    main()
