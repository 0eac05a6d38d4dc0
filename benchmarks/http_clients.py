"""Webhook client throughput: httpx, httpx over aiohttp, and aiohttp.

Each client POSTs webhooks (the body, headers and response handling of
``wheel.webhooks.sender``) to a local sink (``sink.py``) that runs in
its own process, keeping ``--inflight`` requests in flight for ``--duration``
seconds. Every (client, run) is a fresh child process; the order of the
clients rotates from run to run so that a noisy neighbour does not
favour one. Prints the median requests/s over ``--runs`` and the ratios
to plain httpx::

    uv run --group bench python benchmarks/http_clients.py --runs 5

``--code DIR`` runs the clients with ``DIR/.venv/bin/python`` (that
checkout's ``wheel.webhooks.sender``; its venv needs the bench group).

Clients:
  httpx          httpx.AsyncClient with its own pool (httpcore)
  httpx-aiohttp  httpx.AsyncClient over httpx_aiohttp.AiohttpTransport
  aiohttp        wheel.webhooks.sender.WebhookSender itself (aiohttp)

The clients use the default asyncio event loop; ``--uvloop`` runs them
on uvloop, as ``timer-wheel worker`` does. With two or more
CPUs the sink and the client are pinned to different cores (``--no-pin``
turns that off).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from _common import (
    REPO_DIR,
    Code,
    cpu_count,
    deadline_alarm,
    free_port,
    machine,
    median,
    pinned,
    process_group,
    save,
    wait_port,
)

CLIENTS = ("httpx", "httpx-aiohttp", "aiohttp")
TIMEOUT_S = 10.0

Send = Callable[[str, str], Awaitable[bool]]


async def _drive(
    send: Send, url: str, inflight: int, duration_s: float
) -> tuple[int, int, float, float]:
    """Keep ``inflight`` sends going for ``duration_s``.

    Returns (ok, errors, elapsed s, CPU share of this process).
    """
    ok = errors = 0
    counter = 0
    deadline = 0.0

    async def lane(lane_no: int) -> None:
        nonlocal ok, errors, counter
        while time.monotonic() < deadline:
            counter += 1
            if await send(url, f"00000000-0000-4000-8000-{counter:012d}"):
                ok += 1
            else:
                errors += 1

    deadline = time.monotonic() + duration_s
    started = time.monotonic()
    cpu_started = time.process_time()
    await asyncio.gather(*(lane(i) for i in range(inflight)))
    elapsed = time.monotonic() - started
    cpu_share = (time.process_time() - cpu_started) / elapsed
    return ok, errors, elapsed, cpu_share


async def _run_child(
    client: str, url: str, inflight: int, duration_s: float, warmup_s: float
) -> dict[str, object]:
    import httpx

    try:
        from wheel.webhooks.sender import USER_AGENT, WebhookSender
    except ImportError:  # the flat layout, before wheel/webhooks/
        from wheel.webhook import USER_AGENT, WebhookSender

    def headers(timer_id: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Idempotency-Key": timer_id,
        }

    limits = httpx.Limits(
        max_connections=inflight, max_keepalive_connections=inflight
    )
    if client == "aiohttp":
        try:
            try:
                from wheel.webhooks.guard import TargetPolicy
            except ImportError:  # the flat layout
                from wheel.targets import TargetPolicy
        except ImportError:  # before the SSRF guard
            sender = WebhookSender(TIMEOUT_S, inflight)
        else:
            policy = TargetPolicy.build(True, "")
            sender = WebhookSender(TIMEOUT_S, inflight, policy)
        async with sender:

            async def send(url: str, timer_id: str) -> bool:
                return (await sender.send(url, timer_id)).ok

            await _drive(send, url, inflight, warmup_s)
            ok, errors, elapsed, cpu = await _drive(
                send, url, inflight, duration_s
            )
    else:
        if client == "httpx":
            http = httpx.AsyncClient(limits=limits, timeout=TIMEOUT_S)
        else:
            from httpx_aiohttp import HttpxAiohttpClient

            http = HttpxAiohttpClient(limits=limits, timeout=TIMEOUT_S)
        http.headers["User-Agent"] = USER_AGENT
        async with http:

            async def send(url: str, timer_id: str) -> bool:
                try:
                    response = await http.post(
                        url,
                        content=b'{"id":"%s"}' % timer_id.encode(),
                        headers=headers(timer_id),
                        follow_redirects=False,
                    )
                except httpx.HTTPError:
                    return False
                return 200 <= response.status_code < 300

            await _drive(send, url, inflight, warmup_s)
            ok, errors, elapsed, cpu = await _drive(
                send, url, inflight, duration_s
            )
    return {
        "client": client,
        "ok": ok,
        "errors": errors,
        "elapsed_s": round(elapsed, 3),
        "rps": round(ok / elapsed, 1),
        "cpu": round(cpu, 2),
        # Requests per second of client CPU: robust to noisy neighbours.
        "per_core": round(ok / elapsed / cpu) if cpu else 0,
    }


def child_main(args: argparse.Namespace) -> None:
    coro = _run_child(
        args.child,
        f"http://127.0.0.1:{args.port}/hook",
        args.inflight,
        args.duration,
        args.warmup,
    )
    if args.uvloop:
        import uvloop

        result = uvloop.run(coro)
    else:
        result = asyncio.run(coro)
    print(json.dumps(result), flush=True)


def parent_main(args: argparse.Namespace) -> None:
    import subprocess

    code = Code(args.code)
    per_child = args.warmup + args.duration + 15
    deadline_alarm(len(CLIENTS) * args.runs * per_child + 60)
    pin = cpu_count() >= 2 and not args.no_pin
    rps: dict[str, list[float]] = {c: [] for c in args.clients}
    per_core: dict[str, list[float]] = {c: [] for c in args.clients}
    runs: list[dict[str, object]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-http-") as tmp,
        process_group(Path(tmp)) as group,
    ):
        port = free_port()
        sink_args = [str(Path(__file__).with_name("sink.py")), "--port"]
        sink_args.append(str(port))
        if args.sink_uvloop:
            sink_args.append("--uvloop")
        group.script("sink", sink_args, cpus="1" if pin else None)
        wait_port(port)
        for run in range(args.runs):
            shift = run % len(args.clients)
            order = args.clients[shift:] + args.clients[:shift]
            for client in order:
                group.check_alive()
                cmd = [
                    str(code.python),
                    __file__,
                    "--child",
                    client,
                    "--port",
                    str(port),
                    "--inflight",
                    str(args.inflight),
                    "--duration",
                    str(args.duration),
                    "--warmup",
                    str(args.warmup),
                ]
                if args.uvloop:
                    cmd.append("--uvloop")
                out = subprocess.run(
                    pinned(cmd, "0" if pin else None),
                    capture_output=True,
                    text=True,
                    timeout=per_child,
                    check=True,
                    cwd=code.root,
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                result["run"] = run + 1
                runs.append(result)
                rps[client].append(float(result["rps"]))
                per_core[client].append(float(result["per_core"]))
                print(
                    f"run {run + 1}/{args.runs} {client:14s} "
                    f"{result['rps']:>9.0f} req/s  errors {result['errors']}"
                    f"  client cpu {result['cpu']:.2f}"
                    f"  {result['per_core']:>6}/s per client core",
                    flush=True,
                )
    base = median(rps["httpx"]) if "httpx" in rps else None
    summary = {}
    print(
        f"\nmedian of {args.runs} runs, {args.inflight} in flight, "
        f"{args.duration:g}s each, pinned={pin}, "
        f"loop={'uvloop' if args.uvloop else 'asyncio'}"
    )
    base_core = median(per_core["httpx"]) if "httpx" in rps else None
    for client in args.clients:
        med = median(rps[client])
        core = median(per_core[client])
        ratio = med / base if base else float("nan")
        core_ratio = core / base_core if base_core else float("nan")
        summary[client] = {
            "median_rps": round(med),
            "vs_httpx": round(ratio, 2),
            "median_per_core": round(core),
            "per_core_vs_httpx": round(core_ratio, 2),
        }
        line = f"  {client:14s} {med:>9.0f} req/s  {core:>7.0f}/s per core"
        if base:
            line += f"  x{ratio:5.2f} vs httpx (per core x{core_ratio:5.2f})"
        print(line)
    path = save(
        "http_clients",
        {
            "machine": machine(),
            "code": code.describe(),
            "args": vars(args),
            "pinned": pin,
            "summary": {
                f"{client}_{key}": value
                for client, row in summary.items()
                for key, value in row.items()
            },
            "runs": runs,
        },
        args.out,
    )
    print(f"saved {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--inflight", type=int, default=100)
    parser.add_argument(
        "--clients", nargs="+", choices=CLIENTS, default=list(CLIENTS)
    )
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument(
        "--sink-uvloop", action="store_true", help="run the sink on uvloop"
    )
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--code", type=Path, default=REPO_DIR)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
