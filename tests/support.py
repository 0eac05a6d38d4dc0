"""Helpers of the end-to-end tests: a real webhook receiver on 127.0.0.1,
the service's real processes, and bounded polling."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import redis as sync_redis
from aiohttp import web

from wheel.embedded.cluster import EmbeddedCluster
from wheel.embedded.server import free_port

T = TypeVar("T")

SHARDS = 4
LEASE_TTL_S = 2.0
FAST_ENV = {
    "WHEEL_SHARDS": str(SHARDS),
    "WHEEL_TICK_INTERVAL": "0.05",
    "WHEEL_LEASE_TTL": str(LEASE_TTL_S),
    "WHEEL_WEBHOOK_TIMEOUT": "1.5",
    "WHEEL_RECLAIM_IDLE": "5",
    "WHEEL_RETRY_BASE": "0.2",
    "WHEEL_RETRY_MAX": "0.5",
    "WHEEL_MAX_ATTEMPTS": "3",
    "WHEEL_SHUTDOWN_GRACE": "5",
    "WHEEL_LOG_FORMAT": "json",
    "WHEEL_ALLOWED_TARGETS": "127.0.0.0/8",
}
"""Settings of the end-to-end tests: quick leases, retries and timeouts,
and loopback receivers allowed past the SSRF guard."""

# What the README promises, in these settings: the bounds of the waits.
RECLAIM_S = float(FAST_ENV["WHEEL_RECLAIM_IDLE"])
START_S = 3.0
"""A role process started by a test: import, connect, first beat (on a
loaded 2-core CI machine)."""
REFIRE_S = RECLAIM_S + RECLAIM_S / 4 + START_S
"""A webhook in flight when its worker died is fired again after
WHEEL_RECLAIM_IDLE (its entry idle that long), by the next reclaim sweep
(one every WHEEL_RECLAIM_IDLE / 4) of a worker that may have to start."""
HEARTBEAT_TTL_S = 3.0
"""WHEEL_HEARTBEAT_TTL of the tests that kill a worker: its shards go to
the others within about this."""


def takeover_s(heartbeat_ttl_s: float) -> float:
    """The most a timer on a killed role's shards may be late (its own
    reading never started), with WHEEL_HEARTBEAT_TTL ``heartbeat_ttl_s``:
    the heartbeat lapses, the survivors see it at their next beat (a
    third of the TTL), and a tick and a read follow; a ticker's lease
    (LEASE_TTL_S) lapses sooner."""
    return heartbeat_ttl_s + heartbeat_ttl_s / 3 + 1.0


TAKEOVER_S = takeover_s(HEARTBEAT_TTL_S)
"""The takeover of a killed role's shards at HEARTBEAT_TTL_S."""
BACK_S = 3.0
"""Timers due while Redis or the roles were away fire "as soon as one
comes back": the reconnect backoff (at most 1 s), a tick, a read, a claim
and the webhook."""
LOADED_LATE_S = 5.0
"""How late a timer may fire while the machine's two cores also run
every role, the receiver and the load (the README's figures are tens of
ms at 1,000 timers a second): room for a slower CI machine, not for a
stall."""
SETTLE_S = 2.0
"""The wheel settles once the webhooks arrived: each completion (status,
ack and delete of its entry) is written right after its webhook answers,
one script call; a couple of seconds covers a loaded 2-core machine."""


def retries_s(max_attempts: int) -> float:
    """A timer due now has made all its attempts, with the end-to-end
    settings but WHEEL_MAX_ATTEMPTS ``max_attempts``: each attempt at
    most WHEEL_WEBHOOK_TIMEOUT and a backoff of at most WHEEL_RETRY_MAX,
    the first late by at most LOADED_LATE_S."""
    return (
        max_attempts
        * (
            float(FAST_ENV["WHEEL_WEBHOOK_TIMEOUT"])
            + float(FAST_ENV["WHEEL_RETRY_MAX"])
        )
        + LOADED_LATE_S
    )


RETRIES_S = retries_s(int(FAST_ENV["WHEEL_MAX_ATTEMPTS"]))
"""A timer due now has made all its attempts (WHEEL_MAX_ATTEMPTS of the
end-to-end settings)."""
DEV_START_S = 2 * START_S
"""`timer-wheel dev` answers: two starts in sequence, its embedded Redis
and then its roles."""
STOP_S = float(FAST_ENV["WHEEL_SHUTDOWN_GRACE"]) + START_S
"""A process sent SIGTERM (or dev a Ctrl-C) has exited: its webhooks in
flight get WHEEL_SHUTDOWN_GRACE, then it releases its leases, leaves the
registry and closes (dev also stops its Redis): no longer than a start."""
REDIS_STOP_S = START_S
"""An embedded redis-server told to stop (SIGTERM, which it also gets
when its owner dies) has exited: no longer than it takes to start."""
AOF_REWRITE_S = START_S
"""Redis rewrites the append-only file of a test's few thousand keys in
a forked child: well under a second, no longer than a start."""
SNAPSHOT_S = AOF_REWRITE_S
"""Redis writes (or fails to write) an RDB snapshot (BGSAVE) of a
test's few thousand keys in a forked child, as for an AOF rewrite."""
REPLICA_SYNC_S = 1.0 + SNAPSHOT_S
"""A redis-server started with --replicaof has linked to its primary:
its replication cron dials the primary within a second, then a full
sync of a near-empty dataset (a snapshot in a forked child)."""
SIGNAL_S = 1.0
"""A Python process has run its handler of a signal sent to it: at once
(a blocked read is interrupted for it); a second covers a loaded 2-core
machine."""
CLUSTER_NODE_TIMEOUT_S = (
    inspect.signature(EmbeddedCluster).parameters["node_timeout_ms"].default
    / 1000
)
"""--cluster-node-timeout of the tests' embedded clusters (2 s)."""
PROMOTION_S = 2 * CLUSTER_NODE_TIMEOUT_S + 2.0
"""A SIGKILLed master of a test cluster has been replaced by its replica
(README, Runbook: "within a few seconds (node timeout plus election)"):
its peers flag it after the node timeout (plus up to half of it before
the ping that times out is sent) and gossip their reports to a majority
(about another half); the replica's election waits 0.5-1 s, and the
votes take a round trip. Measured 3.6-4.7 s (5 kills on the 2-core
machine, one with both cores busy)."""
CLUSTER_START_S = 7.0
"""`timer-wheel dev --cluster` answers: its embedded 3-master cluster
forms (or, on a formed folder, rejoins) and its roles start; not a
README promise but the time a local cluster takes on a loaded 2-core
machine: measured 2.5-3.5 s (3 fresh starts and 3 restarts, idle, and
again with both cores busy), with about twice that as headroom."""

TIMER_WHEEL = shutil.which("timer-wheel") or str(
    Path(sys.executable).with_name("timer-wheel")
)


def wait_until(
    condition: Callable[[], object],
    *,
    timeout_s: float,
    interval_s: float = 0.02,
    what: str = "condition",
) -> None:
    """Poll ``condition`` until truthy; fail after ``timeout_s`` (looked
    at once even when the bound has already passed)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s:.3g}s waiting for {what}"
            )
        time.sleep(interval_s)


async def poll(
    condition: Callable[[], Awaitable[T] | T],
    *,
    timeout_s: float,
    what: str = "it",
) -> T:
    """Await ``condition()`` (or call it, when it is plain) until truthy,
    without blocking the loop; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {what}"
            )
        await asyncio.sleep(0.01)


@dataclass
class Arrival:
    """One webhook as the receiver saw it."""

    timer_id: str
    at: float
    body: bytes
    headers: dict[str, str]
    path: str = "/hook"
    method: str = "POST"


@dataclass
class Behaviour:
    """How the receiver answers: a delay, and failures per id.

    ``answers`` are the status and headers of each id's first calls, in
    order (then 200).
    """

    delay_s: float = 0.0
    fail_first: int = 0
    always_fail: bool = False
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)


@dataclass
class Receiver:
    """An aiohttp webhook receiver on 127.0.0.1 in a thread of its own."""

    behaviour: Behaviour = field(default_factory=Behaviour)
    port: int = field(default_factory=free_port)
    arrivals: list[Arrival] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _calls: Counter[str] = field(default_factory=Counter)
    _open: Counter[str] = field(default_factory=Counter)
    overlaps: list[str] = field(default_factory=list)
    """Ids that had two requests in flight at once."""

    @property
    def url(self) -> str:
        """The hook URL to give timers."""
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        at = time.time()
        body = await request.read()
        timer_id = request.headers.get("Idempotency-Key", "")
        with self._lock:
            self.arrivals.append(
                Arrival(
                    timer_id,
                    at,
                    body,
                    dict(request.headers),
                    request.path,
                    request.method,
                )
            )
            self._calls[timer_id] += 1
            calls = self._calls[timer_id]
            self._open[timer_id] += 1
            if self._open[timer_id] > 1:
                self.overlaps.append(timer_id)
        try:
            if self.behaviour.delay_s:
                await asyncio.sleep(self.behaviour.delay_s)
        finally:
            with self._lock:
                self._open[timer_id] -= 1
        if self.behaviour.always_fail or calls <= self.behaviour.fail_first:
            return web.Response(status=500, text="planned failure")
        if calls <= len(self.behaviour.answers):
            status, headers = self.behaviour.answers[calls - 1]
            return web.Response(status=status, headers=headers)
        return web.Response(text="ok")

    def start(self) -> None:
        """Serve in a background thread until :meth:`stop`."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._hook)
            # Cancel a handler when its client hangs up, so "in flight"
            # ends when the sender gave up (a timed-out attempt).
            self._runner = web.AppRunner(
                app, access_log=None, handler_cancellation=True
            )
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            await site.start()
            ready.set()

        def main() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("receiver did not start")

    def stop(self) -> None:
        """Stop serving and join the thread."""
        future = asyncio.run_coroutine_threadsafe(
            self._runner.cleanup(), self._loop
        )
        future.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def ids(self) -> Counter[str]:
        """How many times each id arrived."""
        with self._lock:
            return Counter(a.timer_id for a in self.arrivals)

    def times(self, timer_id: str) -> list[float]:
        """When each request for ``timer_id`` arrived, in order."""
        with self._lock:
            return [a.at for a in self.arrivals if a.timer_id == timer_id]

    def first_arrival(self) -> dict[str, float]:
        """The first arrival time of each id."""
        with self._lock:
            firsts: dict[str, float] = {}
            for arrival in self.arrivals:
                firsts.setdefault(arrival.timer_id, arrival.at)
            return firsts


class Procs:
    """The service's real processes, started with one environment."""

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_dir = log_dir
        self.running: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """Start ``timer-wheel <args>``; its output goes to a log file."""
        log = self.log_dir / f"{len(self.running):02d}-{args[0]}.log"
        process = subprocess.Popen(
            [TIMER_WHEEL, *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.logs[process.pid] = log
        self.running.append(process)
        return process

    def api(self, port: int | None = None) -> str:
        """Start an API process; its base URL once it is ready."""
        port = port or free_port()
        process = self.start("api", "--port", str(port))
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"api exited: {self.output(process)}")
            try:
                return httpx.get(f"{base}/readyz", timeout=1).is_success
            except httpx.HTTPError:
                return False

        wait_until(up, timeout_s=START_S, what="the api to be ready")
        return base

    def role(self, name: str) -> subprocess.Popen[bytes]:
        """Start a ticker or worker; return once its heartbeat is in Redis."""
        process = self.start(name)
        prefix = self.env.get("WHEEL_KEY_PREFIX", "tw")
        client = inspector(self.env["WHEEL_REDIS_URL"])

        def beating() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited: {self.output(process)}")
            members = client.zrange(f"{prefix}:hb:{name}", 0, -1)
            return any(f":{process.pid}:".encode() in m for m in members)

        try:
            wait_until(beating, timeout_s=START_S, what=f"the {name} to beat")
        finally:
            client.close()
        return process

    def output(self, process: subprocess.Popen[bytes]) -> str:
        """What a process has logged so far."""
        return self.logs[process.pid].read_text(errors="replace")

    def terminate(
        self, process: subprocess.Popen[bytes], *, timeout_s: float
    ) -> int:
        """SIGTERM ``process``; its exit code."""
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout_s)

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL ``process`` and reap it."""
        process.kill()
        process.wait(10)

    def stop_all(self) -> None:
        """Kill whatever is still running."""
        for process in self.running:
            if process.poll() is None:
                process.kill()
                process.wait(10)


def inspector(url: str) -> sync_redis.Redis:
    """A synchronous client of a deployment's Redis, single or cluster.

    Bytes in, bytes out; in a cluster each single-key command goes to the
    node of its key.
    """
    client = sync_redis.Redis.from_url(url)
    try:
        enabled = client.info("cluster").get("cluster_enabled") == 1
    except sync_redis.RedisError:
        enabled = False
    if not enabled:
        return client
    client.close()
    return sync_redis.RedisCluster.from_url(url)  # type: ignore[return-value]


def create_timer(
    client: httpx.Client, url: str, seconds: int = 0, **parts: int
) -> dict[str, object]:
    """POST /timer and return the reply, asserting 201."""
    response = client.post(
        "/timer", json={"seconds": seconds, "url": url, **parts}
    )
    assert response.status_code == 201, response.text
    return response.json()
