"""Guarantees under real faults: slow receivers, bursts, Redis restarts,
pauses, script flushes, full memory, lost replies and mismatched settings.

Every fault happens for real (a SIGTERMed or paused Redis, ``maxmemory``,
a proxy that drops a reply); the service runs as its real processes.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from tests.proxy import TcpProxy
from tests.support import (
    BACK_S,
    FAST_ENV,
    LOADED_LATE_S,
    SETTLE_S,
    START_S,
    TIMER_WHEEL,
    Behaviour,
    Procs,
    Receiver,
    inspector,
    wait_until,
)
from tests.test_e2e import KEYS, create_many, settled, status
from wheel.embedded.server import RedisServer


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis with an append-only file, to stop and restart."""
    server = RedisServer(tmp_path / "redis", appendfsync="always")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def procs_on(tmp_path: Path) -> Iterator[list[Procs]]:
    """Process sets made by the test; all killed at the end."""
    made: list[Procs] = []
    yield made
    for procs in made:
        procs.stop_all()


def service(
    made: list[Procs], tmp_path: Path, redis_url: str, **env: str
) -> Procs:
    """A set of service processes on ``redis_url`` with FAST_ENV + env."""
    folder = tmp_path / f"procs-{len(made)}"
    folder.mkdir()
    procs = Procs({**FAST_ENV, "WHEEL_REDIS_URL": redis_url, **env}, folder)
    made.append(procs)
    return procs


def statuses(base: str, requests: list[tuple[str, str, dict | None]]) -> list:
    """Send requests 32 at a time; the status codes (or the errors)."""

    async def go() -> list[int | str]:
        limit = asyncio.Semaphore(32)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:

            async def one(method: str, path: str, body: dict | None) -> int:
                async with limit:
                    reply = await client.request(method, path, json=body)
                return reply.status_code

            return await asyncio.gather(
                *(one(*request) for request in requests)
            )

    return asyncio.run(go())


def test_slow_receivers_never_early_never_twice_at_once(
    procs_on: list[Procs], tmp_path: Path, redis_url: str
) -> None:
    """Every attempt times out: each id gets exactly max_attempts attempts,
    each retry after its backoff, and never two attempts at once."""
    hooks = Receiver(Behaviour(delay_s=1.5))
    hooks.start()
    try:
        procs = service(
            procs_on,
            tmp_path,
            redis_url,
            WHEEL_WEBHOOK_TIMEOUT="0.5",
            WHEEL_RECLAIM_IDLE="4",
            WHEEL_RETRY_BASE="1",
            WHEEL_RETRY_MAX="2",
            WHEEL_MAX_ATTEMPTS="3",
            WHEEL_WORKER_CONCURRENCY="8",
            WHEEL_HOST_CONCURRENCY="8",
        )
        base = procs.api()
        procs.role("ticker")
        procs.role("worker")
        timer_ids = create_many([base], hooks.url, [0] * 24)
        # Three waves of 8 (the worker's slots), each attempt a 0.5 s
        # timeout and a retry at most 2 s after it.
        wait_until(
            lambda: all(status(base, t) == "failed" for t in timer_ids),
            timeout_s=START_S + 3 * 3 * (0.5 + 2),
            what="every timer to fail",
        )
        counts = hooks.ids()
        assert {counts[t] for t in timer_ids} == {3}
        for timer_id in timer_ids:
            first, second, third = hooks.times(timer_id)
            # Retry n waits at least half of base * 2^(n-1) after the
            # attempt's timeout.
            assert second - first >= 0.5 + 0.5 - 0.05
            assert third - second >= 0.5 + 1.0 - 0.05
        assert hooks.overlaps == []
    finally:
        hooks.stop()


def test_a_stopped_worker_reads_its_answers_and_sends_nothing_twice(
    procs_on: list[Procs], tmp_path: Path, redis_url: str
) -> None:
    """A worker SIGSTOPped with webhooks in flight, for longer than the
    webhook timeout (its machine paused, say): the receiver answers
    meanwhile, and on SIGCONT the worker reads those answers instead of
    timing the attempts out and retrying them: every timer fired once,
    at its first attempt."""
    hooks = Receiver(Behaviour(delay_s=0.3))
    hooks.start()
    try:
        procs = service(
            procs_on,
            tmp_path,
            redis_url,
            WHEEL_WEBHOOK_TIMEOUT="1",
            WHEEL_RECLAIM_IDLE="10",
        )
        base = procs.api()
        procs.role("ticker")
        worker = procs.role("worker")
        timer_ids = create_many([base], hooks.url, [0] * 20)
        wait_until(
            lambda: len(hooks.arrivals) == 20,
            timeout_s=LOADED_LATE_S,
            what="20 webhooks in flight",
        )
        worker.send_signal(signal.SIGSTOP)
        try:
            # Past the timeout, well inside the claim's hold.
            time.sleep(2.5)
        finally:
            worker.send_signal(signal.SIGCONT)
        wait_until(
            lambda: all(status(base, t) == "fired" for t in timer_ids),
            # The answers wait for it: it only has to record them.
            timeout_s=SETTLE_S,
            what="every timer recorded as fired",
        )
        assert {hooks.ids()[t] for t in timer_ids} == {1}
        with httpx.Client(base_url=base) as client:
            attempts = {
                client.get(f"/timer/{t}").json()["attempts"] for t in timer_ids
            }
        assert attempts == {1}
    finally:
        hooks.stop()


def test_burst_of_creates_right_after_start(
    procs_on: list[Procs], tmp_path: Path, redis_url: str
) -> None:
    """300 concurrent creates on a freshly started API all answer 201."""
    procs = service(procs_on, tmp_path, redis_url)
    base = procs.api()
    body = {"seconds": 600, "url": "http://127.0.0.1:9/hook"}
    codes = statuses(base, [("POST", "/timer", body)] * 300)
    assert codes == [201] * 300


def test_redis_restart_keeps_completions_and_answers_no_5xx(
    procs_on: list[Procs], tmp_path: Path, aof_redis: RedisServer
) -> None:
    """Webhooks answered while Redis is down are recorded when it is back
    (not fired again), and no request fails once /readyz is 200."""
    slow = Receiver(Behaviour(delay_s=1.0))
    slow.start()
    try:
        procs = service(
            procs_on, tmp_path, aof_redis.url, WHEEL_RECLAIM_IDLE="20"
        )
        base = procs.api()
        procs.role("ticker")
        procs.role("worker")
        timer_ids = create_many([base], slow.url, [0] * 20)
        wait_until(
            lambda: len(slow.arrivals) == 20,
            timeout_s=LOADED_LATE_S,
            what="20 in flight",
        )
        aof_redis.stop()
        # Redis stays down for 5 s: the webhooks finish meanwhile.
        time.sleep(5)  # the outage under test, not a synchronisation
        aof_redis.start()
        wait_until(
            lambda: httpx.get(f"{base}/readyz").status_code == 200,
            timeout_s=BACK_S,
            what="ready again once Redis is back",
        )
        codes = [
            httpx.get(f"{base}/timer/{t}").status_code for t in timer_ids * 3
        ]
        assert codes == [200] * 60
        client = inspector(aof_redis.url)
        # The completions kept while Redis was away are written at once.
        wait_until(lambda: settled(client), timeout_s=BACK_S, what="settled")
        client.close()
        assert all(status(base, t) == "fired" for t in timer_ids)
        assert max(slow.ids().values()) == 1
        assert set(slow.ids()) == set(timer_ids)
    finally:
        slow.stop()


def test_pause_and_script_flush_under_load_answer_no_5xx(
    procs_on: list[Procs], tmp_path: Path, redis_url: str
) -> None:
    """A 500 ms CLIENT PAUSE and a SCRIPT FLUSH during load: no 5xx."""
    procs = service(procs_on, tmp_path, redis_url)
    base = procs.api()
    body = {"seconds": 600, "url": "http://127.0.0.1:9/hook"}
    created = statuses(base, [("POST", "/timer", body)] * 10)
    assert created == [201] * 10
    client = sync_redis.Redis.from_url(redis_url)

    async def load_with_faults() -> list[int]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            limit = asyncio.Semaphore(32)

            async def one(i: int) -> int:
                async with limit:
                    if i % 2:
                        reply = await http.post("/timer", json=body)
                    else:
                        reply = await http.get("/healthz")
                return reply.status_code

            async def faults() -> None:
                await asyncio.sleep(0.2)
                await asyncio.to_thread(client.client_pause, 500)
                await asyncio.sleep(0.8)
                await asyncio.to_thread(client.script_flush)

            results = await asyncio.gather(
                faults(), *(one(i) for i in range(1200))
            )
            return [code for code in results if code is not None]

    codes = asyncio.run(load_with_faults())
    client.close()
    assert sorted(set(codes)) == [200, 201]


def test_full_memory_refuses_creates_and_keeps_firing(
    procs_on: list[Procs], tmp_path: Path, receiver: Receiver
) -> None:
    """At maxmemory: creates answer 507, timers created before still fire
    once and are recorded; once memory frees, creates work again."""
    server = RedisServer(
        tmp_path / "full",
        appendonly=False,
        extra_args=["--maxmemory", "8mb", "--maxmemory-policy", "noeviction"],
    )
    server.start()
    try:
        procs = service(procs_on, tmp_path, server.url)
        base = procs.api()
        timer_ids = create_many([base], receiver.url, [2] * 50)
        client = sync_redis.Redis.from_url(server.url)
        fill_until_full(client)
        body = {"seconds": 1, "url": receiver.url}
        refused = httpx.post(f"{base}/timer", json=body)
        assert refused.status_code == 507, refused.text
        assert "full" in refused.json()["detail"]
        procs.role("ticker")
        procs.role("worker")
        # Due already: they fire as soon as the roles are up.
        wait_until(
            lambda: all(status(base, t) == "fired" for t in timer_ids),
            timeout_s=START_S + BACK_S,
            what="the earlier timers to fire",
        )
        assert sorted(receiver.ids().values()) == [1] * 50
        for key in client.scan_iter("filler:*"):
            client.delete(key)
        client.config_set("maxmemory", "8mb")
        again = httpx.post(f"{base}/timer", json=body)
        assert again.status_code == 201, again.text
        client.close()
    finally:
        server.stop()


def fill_until_full(client: sync_redis.Redis) -> None:
    """Write filler keys until Redis refuses writes for want of memory."""
    for size in (100_000, 1_000, 10):
        for n in range(20_000):
            try:
                client.set(f"filler:{size}:{n}", b"x" * size)
            except sync_redis.exceptions.OutOfMemoryError:
                break
        else:
            raise AssertionError("Redis never filled up")
    # Memory hovers at the limit as buffers come and go; pin the limit a
    # little below what is used so the test does not depend on the hover.
    used = client.info("memory")["used_memory"]
    client.config_set("maxmemory", used - 256 * 1024)


def test_mismatched_shard_count_is_refused_at_start(
    procs_on: list[Procs], tmp_path: Path, redis_url: str
) -> None:
    """A role with another WHEEL_SHARDS than the deployment's won't start."""
    procs = service(procs_on, tmp_path, redis_url)
    procs.role("ticker")
    for role in ("ticker", "worker", "api"):
        result = subprocess.run(
            [TIMER_WHEEL, role, "--port", "0"]
            if role == "api"
            else [TIMER_WHEEL, role],
            env={**procs.env, "WHEEL_SHARDS": "8"},
            capture_output=True,
            timeout=30,
        )
        assert result.returncode != 0, role
        output = (result.stdout + result.stderr).decode()
        assert "WHEEL_SHARDS is 8" in output, output
        assert "has 4 shards" in output


def test_dropped_create_reply_is_201_or_never_fires(
    procs_on: list[Procs],
    tmp_path: Path,
    redis_server: RedisServer,
    redis_url: str,
    receiver: Receiver,
) -> None:
    """A create whose reply from Redis is lost: the API answers 201 (the
    retry finds the timer) and that timer fires exactly once."""
    with TcpProxy(redis_server.port) as proxy:
        through_proxy = service(procs_on, tmp_path, proxy.url)
        direct = service(procs_on, tmp_path, redis_url)
        base = through_proxy.api()
        direct.role("ticker")
        direct.role("worker")
        dropped = proxy.drop_next_reply(b"EVALSHA")
        reply = httpx.post(
            f"{base}/timer",
            json={"seconds": 1, "url": receiver.url},
            timeout=30,
        )
        assert dropped.is_set()
        assert proxy.replies_dropped == 1
    if reply.status_code == 201:
        timer_id = reply.json()["id"]
        wait_until(
            lambda: timer_id in receiver.ids(),
            timeout_s=1 + LOADED_LATE_S,
            what="the webhook",
        )
        # The first look starts an API on the direct connection.
        wait_until(
            lambda: status(base_direct(direct), timer_id) == "fired",
            timeout_s=START_S + SETTLE_S,
            what="fired",
        )
        assert receiver.ids() == {timer_id: 1}
    else:
        client = inspector(redis_url)
        assert all(
            client.zcard(shard.index) == 0 for shard in KEYS.all_shards()
        )
        client.close()
        assert receiver.ids() == {}


def base_direct(procs: Procs) -> str:
    """An API of ``procs`` (started on first use)."""
    if not hasattr(procs, "_base"):
        procs._base = procs.api()  # type: ignore[attr-defined]
    return procs._base  # type: ignore[attr-defined]


def test_timer_wheel_processes_log_quietly_during_an_outage(
    procs_on: list[Procs], tmp_path: Path, aof_redis: RedisServer
) -> None:
    """With Redis down for 4 s, a worker and ticker log a handful of lines
    and no traceback; "Redis unreachable" and "Redis back" once each."""
    procs = service(procs_on, tmp_path, aof_redis.url)
    ticker = procs.role("ticker")
    worker = procs.role("worker")
    mark = {p.pid: len(procs.output(p).splitlines()) for p in (ticker, worker)}
    aof_redis.stop()
    time.sleep(4)  # the outage under test, not a synchronisation
    aof_redis.start()
    for process in (ticker, worker):
        wait_until(
            lambda p=process: "Redis back" in procs.output(p),
            timeout_s=BACK_S,
            what="the back line",
        )
        lines = procs.output(process).splitlines()[mark[process.pid] :]
        text = "\n".join(lines)
        assert "Traceback" not in text
        assert text.count("Redis unreachable") == 1, text
        assert text.count("Redis back") == 1, text
        assert len(lines) <= 20, text
