"""Redis memory per pending timer and per fired record kept for GET.

Both figures come from a real API process of the code under test
(``--code DIR``) and ``INFO memory`` ``used_memory`` of a fresh Redis,
read over a connection of its own while no role is connected (each open
connection holds buffers that ``used_memory`` counts)::

    # 100,000 timers due uniformly over [1, 7] days
    python benchmarks/memory.py --start-days 1 --spread-days 6 --runs 3

    # 20,000 timers due now, fired by a ticker and a worker
    python benchmarks/memory.py --fired --timers 20000 --runs 3

    # the same 100,000, each with its own request (REQUEST below)
    python benchmarks/memory.py --start-days 1 --spread-days 6 --runs 3 \
        --request

Pending: the API starts, creates one warm-up timer (loading its
scripts), stops; ``used_memory`` is read (before); the API starts again,
creates ``--timers`` timers through ``POST /timer`` with delays uniform
over ``--spread-days`` days from ``--start-days`` on, and stops; after -
before over the timers is the figure.

Fired: API, ticker and worker start and fire canary timers (scripts,
streams and consumer groups now exist), all stop; before is read; the
API creates ``--timers`` timers due in ``--lead`` seconds, a ticker and
a worker fire them to a local receiver, every timer is read back until
``GET`` says fired, all stop; after is read. The figure is (after -
before - growth of the stream keys) over the timers: a fired timer's
record as ``GET`` finds it, without the ready streams and their groups.

Both print ``MEMORY USAGE`` by kind of key, whatever the key layout:
keys are grouped by the text after their hash tag (``t:``, ``f:``,
``m``, ``h``, ``d``, ``i`` ... in one layout, ``t:``, ``b:``, ``slots``
in another), counted by SCAN and measured on a sample of at most
``--sample`` keys a kind (MEMORY USAGE ... SAMPLES 0), before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import tempfile
import time
from pathlib import Path

from _api import Creator, read_views
from _common import (
    Code,
    RedisDeployment,
    add_common_args,
    deadline_alarm,
    median,
    process_group,
    save_report,
)
from _service import Service, log_summary, service_env, start_sink

DAY_S = 86_400
HOOK_URL = "http://127.0.0.1:9/hook"
REQUEST = {
    "method": "PUT",
    "headers": {
        "Authorization": "Bearer " + "t" * 32,
        "Content-Type": "application/json",
    },
    "body": '{"order": 4711, "event": "reminder", "channel": "email"}',
}
"""The request of ``--request``: a PUT with an auth header and a small
JSON body, as a receiver that expects its own payload would get."""
_DIGITS = re.compile(rb"\d+")
_KIND = re.compile(rb"[A-Za-z_-]*:?")


def key_kind(key: bytes) -> str:
    """``t:``, ``m``, ``slots`` ...: the kind of a key, after its tag;
    a key without a hash tag is named with its digits as ``#``."""
    close = key.find(b"}")
    if key.startswith(b"{") and close > 0:
        rest = key[close + 1 :].lstrip(b":")
        found = _KIND.match(rest)
        return "{}" + (found.group(0) if found else b"").decode()
    return _DIGITS.sub(b"#", key).decode(errors="replace")


def used_memory(redis: RedisDeployment) -> int:
    """``used_memory`` summed over the masters."""
    total = 0
    for node in redis.nodes():
        client = _client(node.url)
        time.sleep(0.2)
        total += int(client.info("memory")["used_memory"])
        client.close()
    return total


def _client(url: str):
    import redis

    return redis.Redis.from_url(url)


def breakdown(redis: RedisDeployment, sample: int, seed: int) -> dict:
    """Per kind of key: count, type, encoding and estimated bytes."""
    kinds: dict[str, list[tuple[str, bytes]]] = {}
    for node in redis.nodes():
        client = _client(node.url)
        for key in client.scan_iter(count=1000):
            kinds.setdefault(key_kind(key), []).append((node.url, key))
        client.close()
    rng = random.Random(seed)
    out: dict[str, dict] = {}
    clients = {url: _client(url) for url in redis.node_urls}
    for kind, keys in sorted(kinds.items()):
        chosen = keys if len(keys) <= sample else rng.sample(keys, sample)
        sizes = []
        for url, key in chosen:
            size = clients[url].memory_usage(key, samples=0)
            sizes.append(size or 0)
        url, key = chosen[0]
        mean = sum(sizes) / len(sizes)
        out[kind] = {
            "keys": len(keys),
            "type": clients[url].type(key).decode(),
            "encoding": (clients[url].object("encoding", key) or b"").decode(),
            "sampled": len(sizes),
            "mean_bytes": round(mean, 1),
            "total_bytes": round(mean * len(keys)),
        }
    for client in clients.values():
        client.close()
    return out


def per_timer(before: dict, after: dict, timers: int) -> dict:
    """Growth of each kind's estimated bytes, per timer."""
    out = {}
    for kind in sorted(set(before) | set(after)):
        grown = after.get(kind, {}).get("total_bytes", 0) - before.get(
            kind, {}
        ).get("total_bytes", 0)
        keys = after.get(kind, {}).get("keys", 0) - before.get(kind, {}).get(
            "keys", 0
        )
        out[kind] = {
            "bytes_per_timer": round(grown / timers, 1),
            "new_keys": keys,
            "type": after.get(kind, before.get(kind, {})).get("type"),
            "encoding": after.get(kind, before.get(kind, {})).get("encoding"),
        }
    return out


def stream_growth(before: dict, after: dict) -> int:
    return sum(
        after[k]["total_bytes"] - before.get(k, {}).get("total_bytes", 0)
        for k in after
        if after[k]["type"] == "stream"
    )


def pending_run(
    args: argparse.Namespace, code: Code, workdir: Path, seed: int
) -> dict[str, object]:
    rng = random.Random(seed)
    low = int(args.start_days * DAY_S)
    high = int((args.start_days + args.spread_days) * DAY_S)
    with process_group(workdir) as group:
        redis = group.start_redis(args)
        env = service_env(code, redis.url, args)
        service = Service(group, code, env)
        service.start_api()
        asyncio.run(Creator(service.api_urls).delays(HOOK_URL, [low]))
        service.stop_apis()
        before = used_memory(redis)
        kinds_before = breakdown(redis, args.sample, seed)
        service.start_api()
        creator = Creator(
            service.api_urls,
            lanes=args.lanes,
            extra={"request": REQUEST} if args.request else {},
        )
        started = time.monotonic()
        delays = (rng.randint(low, high) for _ in range(args.timers))
        asyncio.run(creator.delays(HOOK_URL, delays))
        elapsed = time.monotonic() - started
        api_log = log_summary(service.apis[0].log_path)
        service.stop_apis()
        after = used_memory(redis)
        kinds_after = breakdown(redis, args.sample, seed)
    made = len(creator.ids)
    return {
        "timers": made,
        "create_errors": dict(creator.errors),
        "create_per_s": round(made / elapsed),
        "used_memory_before": before,
        "used_memory_after": after,
        "bytes_per_timer": round((after - before) / made, 1),
        "by_kind": per_timer(kinds_before, kinds_after, made),
        "api_log": api_log,
    }


def fired_run(
    args: argparse.Namespace, code: Code, workdir: Path, seed: int
) -> dict[str, object]:
    with process_group(workdir) as group:
        redis = group.start_redis(args)
        inspect = redis.client()
        sink = start_sink(group, record=False)
        env = service_env(code, redis.url, args)
        service = Service(group, code, env)
        service.start_api()
        roles = service.start_roles(1, 1)
        service.wait_beating(roles, inspect)
        service.canaries(sink, args.canaries)
        service.stop_roles()
        service.stop_apis()
        before = used_memory(redis)
        kinds_before = breakdown(redis, args.sample, seed)
        service.start_api()
        creator = Creator(service.api_urls, lanes=args.lanes)
        due = [max(1, int(args.lead))] * args.timers
        asyncio.run(creator.delays(sink.url(), due))
        fired_at_start = sink.count()
        roles = service.start_roles(1, 1)
        wanted = fired_at_start + len(creator.ids)
        deadline = time.monotonic() + args.drain_timeout
        while sink.count() < wanted and time.monotonic() < deadline:
            group.check_alive()
            time.sleep(0.2)
        states: dict[str, int] = {}
        while time.monotonic() < deadline:
            views = asyncio.run(read_views(service.api_urls[0], creator.ids))
            states = {}
            for view in views.values():
                states[view["status"]] = states.get(view["status"], 0) + 1
            if states.get("fired", 0) == len(creator.ids):
                break
            time.sleep(0.5)
        service.stop_roles()
        logs = {p.name: log_summary(p.log_path) for p in roles}
        service.stop_apis()
        inspect.close()
        after = used_memory(redis)
        kinds_after = breakdown(redis, args.sample, seed)
    made = len(creator.ids)
    streams = stream_growth(kinds_before, kinds_after)
    return {
        "timers": made,
        "create_errors": dict(creator.errors),
        "states": states,
        "used_memory_before": before,
        "used_memory_after": after,
        "bytes_per_timer_raw": round((after - before) / made, 1),
        "stream_growth_per_timer": round(streams / made, 1),
        "bytes_per_timer": round((after - before - streams) / made, 1),
        "by_kind": per_timer(kinds_before, kinds_after, made),
        "logs": logs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fired", action="store_true")
    parser.add_argument("--timers", type=int)
    parser.add_argument("--start-days", type=float, default=1.0)
    parser.add_argument("--spread-days", type=float, default=6.0)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--lanes", type=int, default=64)
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--canaries", type=int, default=64)
    parser.add_argument("--lead", type=float, default=2.0)
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument(
        "--request",
        action="store_true",
        help="give every timer its own request (REQUEST; pending only)",
    )
    add_common_args(parser, runs=3)
    args = parser.parse_args()
    if args.timers is None:
        args.timers = 20_000 if args.fired else 100_000
    code = Code(args.code)
    deadline_alarm(args.runs * (args.timers / 500 + 240) + 60)
    runner = fired_run if args.fired else pending_run
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
            result = runner(args, code, Path(tmp), seed=run)
        result["run"] = run + 1
        results.append(result)
        what = (
            "per fired record"
            if args.fired
            else f"per pending timer ({args.start_days:g} + "
            f"{args.spread_days:g} days"
            f"{', with a request' if args.request else ''})"
        )
        print(
            f"run {run + 1}/{args.runs}: {result['bytes_per_timer']} B "
            f"{what}, {result['timers']} timers",
            flush=True,
        )
    last = results[-1]
    summary = {
        "bytes_per_timer": median([r["bytes_per_timer"] for r in results]),
    }
    if args.fired:
        summary["bytes_per_timer_raw"] = median(
            [r["bytes_per_timer_raw"] for r in results]
        )
        summary["stream_growth_per_timer"] = median(
            [r["stream_growth_per_timer"] for r in results]
        )
    else:
        summary["create_per_s"] = median([r["create_per_s"] for r in results])
    print(f"\nmedian {summary} (code {code.commit})")
    print("MEMORY USAGE by kind of key (last run), bytes per timer:")
    for kind, row in last["by_kind"].items():
        print(
            f"  {kind:28s} {row['bytes_per_timer']:>8} B  "
            f"+{row['new_keys']} keys  {row['type']}/{row['encoding']}"
        )
    save_report(
        "memory-fired" if args.fired else "memory",
        args,
        code,
        summary,
        results,
    )


if __name__ == "__main__":
    main()
