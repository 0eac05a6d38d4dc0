"""End-to-end: the real api, ticker and worker processes, a real Redis
and a real webhook receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pytest
import redis as sync_redis

from tests.support import (
    BACK_S,
    DEV_START_S,
    FAST_ENV,
    HEARTBEAT_TTL_S,
    LEASE_TTL_S,
    LOADED_LATE_S,
    REDIS_STOP_S,
    REFIRE_S,
    RETRIES_S,
    SETTLE_S,
    SHARDS,
    START_S,
    STOP_S,
    TAKEOVER_S,
    TIMER_WHEEL,
    Behaviour,
    Procs,
    Receiver,
    create_timer,
    inspector,
    wait_until,
)
from wheel.commands.dev import WATCH_S
from wheel.core import ids
from wheel.embedded.server import RedisServer, free_port
from wheel.runtime.lifecycle import SAME_INTERRUPT_S
from wheel.storage.keys import Keys


@pytest.fixture
def deployment(request: pytest.FixtureRequest) -> str:
    """The Redis URL of the deployment under test: the session's single
    Redis, or (for tests marked ``both``) also the session's cluster."""
    kind = getattr(request, "param", "single")
    if kind == "cluster":
        return str(request.getfixturevalue("cluster_url"))
    return str(request.getfixturevalue("redis_url"))


both = pytest.mark.parametrize(
    "deployment", ["single", "cluster"], indirect=True
)
"""Run a test on a single Redis and on a 3 + 3 Redis Cluster."""


@pytest.fixture
def procs(deployment: str, tmp_path: Path) -> Iterator[Procs]:
    """Starts service processes against the test Redis; kills leftovers."""
    running = Procs({**FAST_ENV, "WHEEL_REDIS_URL": deployment}, tmp_path)
    yield running
    running.stop_all()


@pytest.fixture
def sync_client(deployment: str) -> Iterator[sync_redis.Redis]:
    """A synchronous client of the deployment's Redis."""
    client = inspector(deployment)
    yield client
    client.close()


KEYS = Keys("tw", SHARDS)


def due_ms(base: str, timer_id: str) -> int:
    """The due time the service gave a timer, from its due_at."""
    view = httpx.get(f"{base}/timer/{timer_id}").json()
    moment = datetime.fromisoformat(view["due_at"])
    return round(moment.timestamp() * 1000)


def settled(client: sync_redis.Redis) -> bool:
    """No bucket is left on the wheel and no ready entry is unacked."""
    for shard in KEYS.all_shards():
        if client.zcard(shard.index):
            return False
        if client.exists(shard.ready) and client.xlen(shard.ready):
            return False
    return True


def status(base: str, timer_id: str) -> str:
    """The status the API reports for a timer."""
    return str(httpx.get(f"{base}/timer/{timer_id}").json()["status"])


def create_many(bases: list[str], url: str, delays: list[int]) -> list[str]:
    """Create timers through the given APIs, 32 requests at a time."""

    async def go() -> list[str]:
        limit = asyncio.Semaphore(32)
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(i: int, seconds: int) -> str:
                async with limit:
                    response = await client.post(
                        f"{bases[i % len(bases)]}/timer",
                        json={"seconds": seconds, "url": url},
                    )
                assert response.status_code == 201, response.text
                return str(response.json()["id"])

            return await asyncio.gather(
                *(one(i, s) for i, s in enumerate(delays))
            )

    return asyncio.run(go())


@both
def test_timer_fires_on_time_with_exact_body_and_headers(
    procs: Procs, receiver: Receiver
) -> None:
    """A timer fires at or after its due time, within 0.5 s, as specified."""
    base = procs.api()
    procs.role("ticker")
    procs.role("worker")
    with httpx.Client(base_url=base) as client:
        ids = [
            str(create_timer(client, receiver.url, seconds=s)["id"])
            for s in (1, 2)
        ]
    last_due = time.monotonic() + 2
    wait_until(
        lambda: len(receiver.ids()) == 2,
        timeout_s=last_due + LOADED_LATE_S - time.monotonic(),
        what="both webhooks",
    )
    arrivals = {a.timer_id: a for a in receiver.arrivals}
    for timer_id in ids:
        arrival = arrivals[timer_id]
        due_s = due_ms(base, timer_id) / 1000
        assert due_s <= arrival.at <= due_s + 0.5
        assert json.loads(arrival.body) == {"id": timer_id}
        assert (
            arrival.body
            == json.dumps({"id": timer_id}, separators=(",", ":")).encode()
        )
        assert arrival.headers["Content-Type"] == "application/json"
        assert arrival.headers["Idempotency-Key"] == timer_id
        assert arrival.headers["User-Agent"].startswith("timer-wheel/")
    view = httpx.get(f"{base}/timer/{ids[0]}").json()
    wait_until(
        lambda: (
            httpx.get(f"{base}/timer/{ids[0]}").json()["status"] == "fired"
        ),
        timeout_s=SETTLE_S,
        what="status fired",
    )
    assert view["time_left"] == 0


@both
def test_many_processes_fire_every_timer_exactly_once(
    procs: Procs, receiver: Receiver, sync_client: sync_redis.Redis
) -> None:
    """2 APIs, 2 tickers, 3 workers: thousands of timers, each once."""
    bases = [procs.api(), procs.api()]
    for role in ("ticker", "ticker", "worker", "worker", "worker"):
        procs.role(role)
    rng = random.Random(7)
    ids = create_many(
        bases, receiver.url, [rng.randint(1, 3) for _ in range(3000)]
    )
    last_due = time.monotonic() + 3
    assert len(set(ids)) == 3000
    wait_until(
        lambda: len(receiver.ids()) == 3000,
        timeout_s=last_due + LOADED_LATE_S - time.monotonic(),
        what="3000 webhooks on time",
    )
    wait_until(
        lambda: settled(sync_client),
        timeout_s=SETTLE_S,
        what="the wheel to settle",
    )
    counts = receiver.ids()
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1


@both
def test_timers_due_during_downtime_fire_once_on_start(
    procs: Procs, receiver: Receiver, sync_client: sync_redis.Redis
) -> None:
    """Timers that came due while no ticker or worker ran fire on start."""
    base = procs.api()
    ids = create_many([base], receiver.url, [1] * 200)
    last_due_ms = max(due_ms(base, i) for i in ids[-5:])

    def redis_now_ms() -> int:
        seconds, micros = sync_client.time()
        return seconds * 1000 + micros // 1000

    # A wait on Redis' clock: its length, and the poll may be late.
    wait_until(
        lambda: redis_now_ms() > last_due_ms + 500,
        timeout_s=(last_due_ms + 500 - redis_now_ms()) / 1000 + LOADED_LATE_S,
        what="due",
    )
    assert receiver.ids() == {}
    procs.role("ticker")
    procs.role("worker")
    wait_until(
        lambda: len(receiver.ids()) == 200,
        timeout_s=BACK_S,
        what="200 webhooks once the roles are up",
    )
    wait_until(
        lambda: settled(sync_client),
        timeout_s=SETTLE_S,
        what="the wheel to settle",
    )
    assert set(receiver.ids()) == set(ids)
    assert max(receiver.ids().values()) == 1


@both
def test_worker_sigkill_in_flight_loses_nothing(
    procs: Procs, slow: Receiver, sync_client: sync_redis.Redis
) -> None:
    """A worker killed mid-webhook: every id arrives, those in flight
    within a reclaim of the kill and those it never read within a
    takeover of its shards; repeats share a key."""
    procs.env["WHEEL_HEARTBEAT_TTL"] = str(HEARTBEAT_TTL_S)
    base = procs.api()
    procs.role("ticker")
    doomed = procs.role("worker")
    timer_ids = create_many([base], slow.url, [0] * 50)
    wait_until(
        lambda: len(slow.arrivals) >= 10,
        timeout_s=LOADED_LATE_S,
        what="in-flight hooks",
    )
    procs.kill(doomed)
    killed = time.monotonic()
    procs.role("worker")
    # The slow receiver holds each webhook a second.
    wait_until(
        lambda: set(slow.ids()) == set(timer_ids),
        timeout_s=killed + max(REFIRE_S, TAKEOVER_S) + 1 - time.monotonic(),
        what="every id within a reclaim or a takeover of the kill",
    )
    # The hooks in flight at the kill arrived already; their second
    # firing (a reclaim, a second at the receiver) completes last.
    wait_until(
        lambda: settled(sync_client),
        timeout_s=killed + REFIRE_S + 1 + SETTLE_S - time.monotonic(),
        what="the wheel to settle",
    )
    # The hooks in flight at the kill were fired again by the new
    # worker: the one documented duplicate, with the same key.
    assert any(count > 1 for count in slow.ids().values())
    for arrival in slow.arrivals:
        assert json.loads(arrival.body) == {"id": arrival.timer_id}
    for timer_id in timer_ids:
        assert status(base, timer_id) == "fired"


def _lease_owners(client: sync_redis.Redis) -> list[str | None]:
    owners = [client.get(shard.lease) for shard in KEYS.all_shards()]
    return [o.decode() if o else None for o in owners]


@both
def test_ticker_sigkill_leases_taken_over_within_ttl(
    procs: Procs, receiver: Receiver, sync_client: sync_redis.Redis
) -> None:
    """The survivor takes a killed ticker's shards within about a TTL."""
    first = procs.role("ticker")
    second = procs.role("ticker")
    wait_until(
        lambda: (
            None not in _lease_owners(sync_client)
            and len(set(_lease_owners(sync_client))) == 2
        ),
        # The first sees the second at its next beat and lets go, the
        # second takes them at its next: two beats, within a TTL.
        timeout_s=LEASE_TTL_S,
        what="two tickers sharing the leases",
    )
    owners = _lease_owners(sync_client)
    victim = first if any(f":{first.pid}:" in o for o in owners) else second
    survivor = second if victim is first else first
    procs.kill(victim)
    killed_at = time.monotonic()
    wait_until(
        lambda: all(
            o and f":{survivor.pid}:" in o for o in _lease_owners(sync_client)
        ),
        timeout_s=LEASE_TTL_S * 3,
        what="the survivor to hold every lease",
    )
    took_s = time.monotonic() - killed_at
    # Leases expire a TTL after the last renewal at the latest; the
    # survivor notices on its next beat (a third of the TTL).
    assert took_s <= LEASE_TTL_S * 4 / 3 + 0.5
    base = procs.api()
    procs.role("worker")
    with httpx.Client(base_url=base) as client:
        timer_id = str(create_timer(client, receiver.url, seconds=1)["id"])
    wait_until(
        lambda: timer_id in receiver.ids(),
        timeout_s=1 + LOADED_LATE_S,
        what="a webhook",
    )


def test_ticker_sigterm_releases_leases_at_once(
    procs: Procs, sync_client: sync_redis.Redis
) -> None:
    """SIGTERM: the ticker's leases are gone when it exits, not at expiry."""
    ticker = procs.role("ticker")
    wait_until(
        lambda: None not in _lease_owners(sync_client),
        timeout_s=LEASE_TTL_S,
        what="all leases",
    )
    assert procs.terminate(ticker, timeout_s=STOP_S) == 0
    assert _lease_owners(sync_client) == [None] * SHARDS
    assert sync_client.zcard(KEYS.heartbeats("ticker")) == 0


@both
@pytest.mark.parametrize(
    ("behaviour", "calls", "final"),
    [
        (Behaviour(fail_first=2), 3, "fired"),
        (Behaviour(always_fail=True), 3, "failed"),
    ],
    ids=["fails-twice-then-ok", "always-fails"],
)
def test_retries_until_success_or_dead_letter(
    procs: Procs,
    sync_client: sync_redis.Redis,
    behaviour: Behaviour,
    calls: int,
    final: str,
) -> None:
    """Failed webhooks are retried; WHEEL_MAX_ATTEMPTS=3 calls at most."""
    hooks = Receiver(behaviour)
    hooks.start()
    try:
        base = procs.api()
        procs.role("ticker")
        procs.role("worker")
        with httpx.Client(base_url=base) as client:
            timer_id = str(create_timer(client, hooks.url)["id"])
            wait_until(
                lambda: (
                    client.get(f"/timer/{timer_id}").json()["status"] == final
                ),
                timeout_s=RETRIES_S + SETTLE_S,
                what=f"status {final}",
            )
            view = client.get(f"/timer/{timer_id}").json()
        wait_until(
            lambda: settled(sync_client),
            timeout_s=SETTLE_S,
            what="the wheel to settle",
        )
        assert hooks.ids()[timer_id] == calls
        assert view["attempts"] == calls
        raw_id = ids.parse(timer_id)
        assert raw_id is not None
        shard = KEYS.shard(ids.shard_of(raw_id, SHARDS))
        dead = sync_client.xrange(shard.dead)
        if final == "failed":
            assert [entry[b"i"] for _, entry in dead] == [raw_id]
            assert dead[0][1][b"e"] == b"500"
            assert view["last_status"] == 500
        else:
            assert dead == []
            assert view["last_status"] == 200
    finally:
        hooks.stop()


def test_redis_restart_with_aof_loses_no_acknowledged_timer(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Timers acknowledged before Redis is SIGKILLed fire after restart."""
    server = RedisServer(tmp_path / "redis", appendfsync="always")
    server.start()
    procs = Procs({**FAST_ENV, "WHEEL_REDIS_URL": server.url}, tmp_path)
    try:
        base = procs.api()
        procs.role("ticker")
        procs.role("worker")
        ids = create_many([base], receiver.url, [3] * 100)
        last_due = time.monotonic() + 3
        server.stop(kill=True)
        server.start()
        wait_until(
            lambda: len(receiver.ids()) == 100,
            timeout_s=max(last_due, time.monotonic())
            + BACK_S
            - time.monotonic(),
            what="100 webhooks once Redis is back",
        )
        client = inspector(server.url)
        try:
            wait_until(
                lambda: settled(client),
                timeout_s=SETTLE_S,
                what="the wheel to settle",
            )
        finally:
            client.close()
        assert set(receiver.ids()) == set(ids)
        assert max(receiver.ids().values()) == 1
    finally:
        procs.stop_all()
        server.stop()


def test_dev_keeps_pending_timers_across_a_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    """`timer-wheel dev` finds every pending timer again after a restart."""
    data_dir = tmp_path / "data"
    port = free_port()
    procs = Procs(FAST_ENV, tmp_path)
    base = f"http://127.0.0.1:{port}"

    def start_dev() -> subprocess.Popen[bytes]:
        process = procs.start(
            "dev", "--port", str(port), "--data-dir", str(data_dir)
        )

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(procs.output(process))
            try:
                return httpx.get(f"{base}/readyz", timeout=1).is_success
            except httpx.HTTPError:
                return False

        wait_until(up, timeout_s=DEV_START_S, what="dev to answer")
        return process

    try:
        dev = start_dev()
        with httpx.Client(base_url=base) as client:
            soon = [
                str(create_timer(client, receiver.url, seconds=4)["id"])
                for _ in range(20)
            ]
            last_due = time.monotonic() + 4
            later = str(create_timer(client, receiver.url, hours=1)["id"])
        assert procs.terminate(dev, timeout_s=STOP_S) == 0
        assert receiver.ids() == {}
        dev = start_dev()
        with httpx.Client(base_url=base) as client:
            view = client.get(f"/timer/{later}").json()
            assert view["status"] == "pending"
            assert 3590 < view["time_left"] <= 3600
        wait_until(
            lambda: set(receiver.ids()) == set(soon),
            timeout_s=max(last_due, time.monotonic())
            + BACK_S
            - time.monotonic(),
            what="the 20 timers once dev is back",
        )
        assert max(receiver.ids().values()) == 1
        assert procs.terminate(dev, timeout_s=STOP_S) == 0
    finally:
        procs.stop_all()


def test_dev_lets_webhooks_reach_loopback_unless_told_otherwise(
    tmp_path: Path, receiver: Receiver
) -> None:
    """`dev` serves its own machine: with no target setting at all a
    timer for a receiver on 127.0.0.1 is accepted and fires; with
    WHEEL_ALLOW_PRIVATE_TARGETS=0 the guard is on, as in every other
    role, and the same create is refused."""
    plain = {k: v for k, v in FAST_ENV.items() if k != "WHEEL_ALLOWED_TARGETS"}
    port, data_dir = free_port(), tmp_path / "d"
    base = f"http://127.0.0.1:{port}"
    procs = Procs(plain, tmp_path)
    try:
        dev = start_dev_in_terminal(procs, port, data_dir)
        with httpx.Client(base_url=base) as client:
            timer_id = str(create_timer(client, receiver.url)["id"])
        wait_until(
            lambda: receiver.ids() == {timer_id: 1},
            timeout_s=LOADED_LATE_S,
            what="the webhook to the loopback receiver",
        )
        assert procs.terminate(dev, timeout_s=STOP_S) == 0
    finally:
        procs.stop_all()
    procs = Procs({**plain, "WHEEL_ALLOW_PRIVATE_TARGETS": "0"}, tmp_path)
    try:
        dev = start_dev_in_terminal(procs, port, data_dir)
        answer = httpx.post(
            f"{base}/timer", json={"seconds": 0, "url": receiver.url}
        )
        assert answer.status_code == 422
        assert "loopback" in answer.json()["detail"]
        assert procs.terminate(dev, timeout_s=STOP_S) == 0
    finally:
        procs.stop_all()


def test_worker_sigterm_finishes_in_flight_webhooks(
    procs: Procs, slow: Receiver, sync_client: sync_redis.Redis
) -> None:
    """SIGTERM: a worker completes the webhooks in flight, then exits 0."""
    base = procs.api()
    procs.role("ticker")
    worker = procs.role("worker")
    timer_ids = create_many([base], slow.url, [0] * 20)
    wait_until(
        lambda: len(slow.arrivals) == 20,
        timeout_s=LOADED_LATE_S,
        what="hooks in flight",
    )
    assert procs.terminate(worker, timeout_s=STOP_S) == 0
    for timer_id in timer_ids:
        assert status(base, timer_id) == "fired"
    assert settled(sync_client)
    assert "worker stopped" in procs.output(worker)


def test_dev_sigkill_takes_its_embedded_redis_down(tmp_path: Path) -> None:
    """A SIGKILLed `timer-wheel dev` leaves no orphan redis-server."""
    procs = Procs(FAST_ENV, tmp_path)
    port = free_port()
    try:
        dev = procs.start(
            "dev", "--port", str(port), "--data-dir", str(tmp_path / "d")
        )

        def child_redis() -> list[psutil.Process]:
            return [
                child
                for child in psutil.Process(dev.pid).children()
                if "redis-server" in child.name()
            ]

        wait_until(
            child_redis,
            timeout_s=START_S,
            what="the embedded redis-server",
        )
        server = child_redis()[0]
        procs.kill(dev)
        wait_until(
            lambda: (
                not server.is_running()
                or server.status() == psutil.STATUS_ZOMBIE
            ),
            timeout_s=REDIS_STOP_S,
            what="the embedded redis-server to exit",
        )
    finally:
        procs.stop_all()


def test_repeated_sigterm_still_stops_gracefully(
    procs: Procs, sync_client: sync_redis.Redis
) -> None:
    """Two SIGTERMs (a wrapper forwarding one) still release the leases."""
    ticker = procs.role("ticker")
    wait_until(
        lambda: None not in _lease_owners(sync_client),
        timeout_s=LEASE_TTL_S,
        what="all leases",
    )
    ticker.send_signal(signal.SIGTERM)
    ticker.send_signal(signal.SIGTERM)
    assert ticker.wait(STOP_S) == 0
    assert _lease_owners(sync_client) == [None] * SHARDS
    assert "ticker stopped" in procs.output(ticker)


def start_dev_in_terminal(
    procs: Procs, port: int, data_dir: Path, slow_url: str | None = None
) -> subprocess.Popen[bytes]:
    """`timer-wheel dev` as a terminal runs it: in a process group of its
    own, so the test can send the group a Ctrl-C (SIGINT)."""
    log = procs.log_dir / f"dev-{len(procs.running)}.log"
    process = subprocess.Popen(
        [TIMER_WHEEL, "dev", "--port", str(port), "--data-dir", str(data_dir)],
        env=procs.env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs.logs[process.pid] = log
    procs.running.append(process)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(procs.output(process))
        try:
            return httpx.get(
                f"http://127.0.0.1:{port}/readyz", timeout=1
            ).is_success
        except httpx.HTTPError:
            return False

    wait_until(up, timeout_s=DEV_START_S, what="dev to be ready")
    return process


def test_dev_ctrl_c_stops_cleanly_and_fires_nothing_twice(
    tmp_path: Path, slow: Receiver
) -> None:
    """Ctrl-C to dev's whole process group: in-flight webhooks finish and
    are recorded, dev stops its Redis itself, no traceback; after a start
    again nothing is delivered a second time."""
    procs = Procs(FAST_ENV, tmp_path)
    port, data = free_port(), tmp_path / "data"
    base = f"http://127.0.0.1:{port}"
    try:
        dev = start_dev_in_terminal(procs, port, data)
        timer_ids = create_many([base], slow.url, [0] * 5)
        wait_until(
            lambda: len(slow.arrivals) == 5,
            timeout_s=LOADED_LATE_S,
            what="5 in flight",
        )
        os.killpg(dev.pid, signal.SIGINT)
        assert dev.wait(STOP_S) == 0
        output = procs.output(dev)
        assert "Traceback" not in output
        redis_log = (data / "redis" / "redis.log").read_text()
        assert "SIGINT" not in redis_log
        dev = start_dev_in_terminal(procs, port, data)
        for timer_id in timer_ids:
            assert status(base, timer_id) == "fired"
        assert sorted(slow.ids().values()) == [1] * 5
        os.killpg(dev.pid, signal.SIGINT)
        assert dev.wait(STOP_S) == 0
    finally:
        procs.stop_all()


def test_dev_ctrl_c_delivered_twice_still_stops_gracefully(
    tmp_path: Path, slow: Receiver
) -> None:
    """`make dev` runs dev under `uv run`, which forwards the Ctrl-C that
    the terminal also sent dev itself: two SIGINTs back to back are one
    interrupt, so the webhooks in flight still finish and dev exits 0."""
    procs = Procs(FAST_ENV, tmp_path)
    port = free_port()
    try:
        dev = start_dev_in_terminal(procs, port, tmp_path / "data")
        create_many([f"http://127.0.0.1:{port}"], slow.url, [0] * 3)
        wait_until(
            lambda: len(slow.arrivals) == 3,
            timeout_s=LOADED_LATE_S,
            what="3 in flight",
        )
        os.killpg(dev.pid, signal.SIGINT)
        # The forwarded copy comes once the first is handled (two at the
        # same instant would merge into one pending signal).
        wait_until(
            lambda: "stop signal" in procs.output(dev),
            timeout_s=SAME_INTERRUPT_S,
            interval_s=0.01,
            what="the first SIGINT handled",
        )
        os.kill(dev.pid, signal.SIGINT)
        assert dev.wait(STOP_S) == 0
        output = procs.output(dev)
        assert "exiting now" not in output
        assert "stop already under way" in output
    finally:
        procs.stop_all()


def test_dev_restarts_its_redis_and_check_finds_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A dead embedded Redis is started again on the same data, timers
    still fire; `check --data-dir` asks dev's Redis."""
    procs = Procs(FAST_ENV, tmp_path)
    port, data = free_port(), tmp_path / "data"
    base = f"http://127.0.0.1:{port}"
    try:
        dev = start_dev_in_terminal(procs, port, data)
        check = [TIMER_WHEEL, "check", "worker", "--data-dir", str(data)]
        wait_until(
            lambda: (
                subprocess.run(check, env=procs.env, timeout=30).returncode
                == 0
            ),
            # Dev's worker beats (a start), a check process runs (one).
            timeout_s=2 * START_S,
            what="check to find dev's worker",
        )
        with httpx.Client(base_url=base) as client:
            later = str(create_timer(client, receiver.url, seconds=3)["id"])
        later_due = time.monotonic() + 3
        [server] = [
            child
            for child in psutil.Process(dev.pid).children()
            if "redis-server" in child.name()
        ]
        server.kill()
        wait_until(
            lambda: "embedded redis died" in procs.output(dev),
            timeout_s=WATCH_S + LOADED_LATE_S,
            what="dev to notice",
        )
        wait_until(
            lambda: later in receiver.ids(),
            # Dev starts its Redis again, then the roles are back.
            timeout_s=max(later_due, time.monotonic() + START_S)
            + BACK_S
            - time.monotonic(),
            what="the timer after the restart",
        )
        assert dev.poll() is None
        os.killpg(dev.pid, signal.SIGINT)
        assert dev.wait(STOP_S) == 0
        assert subprocess.run(check, env=procs.env, timeout=30).returncode
    finally:
        procs.stop_all()
