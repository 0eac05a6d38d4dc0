"""Catching up after downtime: a million overdue timers, oldest first?

With no ticker or worker running, ``--apis`` API processes of the code
under test take ``--timers`` timers (default 1,000,000) through ``POST
/timer``, ``--lanes`` requests in flight, each due ``--delay`` s (1) after
its creation, so they fall due over the whole creation time, and all are
overdue by its end. ``GET /timer/{id}`` reads the due time of a random
``--sample`` of them. Then the APIs stop and ``--tickers`` tickers and
``--workers`` workers (2 and 2) start against a fast local receiver;
the harness waits until every timer has arrived (or ``--drain-timeout``)
and reports::

    python benchmarks/catchup.py                 # 1,000,000 timers
    python benchmarks/catchup.py --timers 20000  # a smoke run

* drain time: last arrival minus the start of the roles (target: all
  fired within 240 s), first arrival after the start, webhooks/s;
* lost and duplicated timers;
* order (on the sample): the fraction of pairs that arrived in the
  opposite order of their due times (0 = strictly oldest first, 0.5 =
  no order at all), over the whole drain and within each of
  ``--windows`` consecutive windows of arrivals, and the median due
  time of each window (seconds after the oldest due time), which rises
  window after window when the oldest go first;
* lateness (arrival minus due) of the sample, and the drain's progress
  every 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import tempfile
import threading
import time
from pathlib import Path

from _api import Creator, first_arrivals, read_views
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
from _service import Service, log_summary, service_env, start_sink
from memory import used_memory


def inversions(values: list[int]) -> int:
    """Pairs i < j with values[i] > values[j] (merge sort, O(n log n))."""
    work = list(values)
    count = 0
    width = 1
    n = len(work)
    while width < n:
        merged = []
        for lo in range(0, n, 2 * width):
            left = work[lo : lo + width]
            right = work[lo + width : lo + 2 * width]
            i = j = 0
            while i < len(left) and j < len(right):
                if right[j] < left[i]:
                    merged.append(right[j])
                    count += len(left) - i
                    j += 1
                else:
                    merged.append(left[i])
                    i += 1
            merged.extend(left[i:])
            merged.extend(right[j:])
        work = merged
        width *= 2
    return count


def inversion_fraction(values: list[int]) -> float:
    pairs = len(values) * (len(values) - 1) // 2
    return round(inversions(values) / pairs, 4) if pairs else 0.0


def order_report(
    dues: dict[str, int], first: dict[str, float], windows: int
) -> dict[str, object]:
    """How far arrival order follows due order, on the sampled ids."""
    arrived = sorted((first[i], due) for i, due in dues.items() if i in first)
    seq = [due for _, due in arrived]
    if len(seq) < 2:
        return {}
    oldest = min(seq)
    size = max(2, len(seq) // windows)
    parts = [seq[k : k + size] for k in range(0, len(seq), size)]
    fractions = [inversion_fraction(part) for part in parts if len(part) > 1]
    medians = [round((median(part) - oldest) / 1000, 1) for part in parts]
    rising = sum(1 for a, b in itertools.pairwise(medians) if b >= a)
    return {
        "sampled_arrivals": len(seq),
        "inversion_fraction": inversion_fraction(seq),
        "window_inversion_median": median(fractions),
        "window_inversion_max": max(fractions),
        "window_due_median_s": medians,
        "windows_rising": f"{rising}/{len(medians) - 1}",
    }


def run_once(
    args: argparse.Namespace, code: Code, workdir: Path, seed: int
) -> dict[str, object]:
    with process_group(workdir) as group:
        redis = group.start_redis(args)
        inspect = redis.client()
        sink = start_sink(group)
        env = service_env(code, redis.url, args)
        service = Service(group, code, env)
        for _ in range(args.apis):
            service.start_api()
        creator = Creator(service.api_urls, lanes=args.lanes)
        done = threading.Event()

        def progress() -> None:
            while not done.wait(15):
                print(f"  created {len(creator.ids)}", flush=True)

        ticker = threading.Thread(target=progress, daemon=True)
        ticker.start()
        started = time.monotonic()
        try:
            asyncio.run(creator.delays(sink.url(), [args.delay] * args.timers))
        finally:
            done.set()
        create_s = time.monotonic() - started
        print(
            f"  created {len(creator.ids)} in {create_s:.0f}s "
            f"({len(creator.ids) / create_s:.0f}/s)",
            flush=True,
        )
        rng = random.Random(seed)
        sample = rng.sample(creator.ids, min(args.sample, len(creator.ids)))
        views = asyncio.run(read_views(service.api_urls[0], sample))
        dues = {i: v["due_ms"] for i, v in views.items()}
        for proc in service.apis:
            group.stop(proc)
        time.sleep(max(0.0, args.delay + 0.5 - (time.monotonic() - started)))
        memory_pending = used_memory(redis)

        roles_started = time.time()
        roles = service.start_roles(args.tickers, args.workers)
        meter = CpuMeter({p.name: p.pid for p in roles})
        curve = []
        deadline = time.monotonic() + args.drain_timeout
        arrived = 0
        while time.monotonic() < deadline:
            arrived = sink.count()
            curve.append((round(time.time() - roles_started, 1), arrived))
            if arrived >= len(creator.ids):
                break
            group.check_alive()
            time.sleep(5 if len(curve) > 2 else 1)
        cpu = meter.shares()
        time.sleep(1.0)
        dump = sink.dump()
        service.stop_roles()
        logs = {p.name: log_summary(p.log_path) for p in roles}
        inspect.close()
    first, count = first_arrivals(dump)
    made = set(creator.ids)
    times = [first[i] for i in made if i in first]
    result: dict[str, object] = {
        "timers": len(made),
        "create_errors": dict(creator.errors),
        "create_s": round(create_s, 1),
        "create_per_s": round(len(made) / create_s),
        "used_memory_pending": memory_pending,
        "delivered": len(times),
        "lost": len(made - set(first)),
        "duplicated": sum(1 for i in made if count[i] > 1),
        "cpu": cpu,
        "progress": curve,
        "settings": code.effective(env),
        "logs": logs,
    }
    if times:
        result["drain_s"] = round(max(times) - roles_started, 2)
        result["first_arrival_s"] = round(min(times) - roles_started, 2)
        span = max(times) - min(times)
        result["webhooks_per_s"] = round(len(times) / span) if span else None
        result["all_within_240_s"] = (
            result["lost"] == 0 and result["drain_s"] <= 240
        )
        result["order"] = order_report(dues, first, args.windows)
        result["sample_lateness_ms"] = spread(
            [first[i] * 1000 - d for i, d in dues.items() if i in first]
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timers", type=int, default=1_000_000)
    parser.add_argument("--delay", type=int, default=1)
    parser.add_argument("--apis", type=int, default=2)
    parser.add_argument("--lanes", type=int, default=128)
    parser.add_argument("--tickers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--drain-timeout", type=float, default=900.0)
    add_common_args(parser)
    args = parser.parse_args()
    code = Code(args.code)
    once = args.timers / 1000 + args.drain_timeout + 300
    deadline_alarm(args.runs * once + 60)
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-catchup-") as tmp:
            result = run_once(args, code, Path(tmp), seed=run)
        result["run"] = run + 1
        results.append(result)
        order = result.get("order", {})
        print(
            f"run {run + 1}/{args.runs}: {result['timers']} overdue timers "
            f"(created at {result['create_per_s']}/s) drained in "
            f"{result.get('drain_s')}s, first after "
            f"{result.get('first_arrival_s')}s, "
            f"{result.get('webhooks_per_s')} webhooks/s, lost "
            f"{result['lost']}, duplicated {result['duplicated']}\n"
            f"  order: inversions {order.get('inversion_fraction')} overall, "
            f"median {order.get('window_inversion_median')} / max "
            f"{order.get('window_inversion_max')} within windows; window "
            f"due medians (s) {order.get('window_due_median_s')}\n"
            f"  cpu {result['cpu']}",
            flush=True,
        )
    summary = {
        key: median([r[key] for r in results if r.get(key) is not None])
        for key in ("drain_s", "webhooks_per_s", "create_per_s")
    }
    summary["inversion_fraction"] = median(
        [r["order"]["inversion_fraction"] for r in results if r.get("order")]
    )
    summary["lost_total"] = sum(r["lost"] for r in results)
    summary["duplicated_total"] = sum(r["duplicated"] for r in results)
    print(f"\nmedian of {args.runs} runs: {summary} (target drain <= 240 s)")
    save_report("catchup", args, code, summary, results)


if __name__ == "__main__":
    main()
