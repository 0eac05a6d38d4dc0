"""Worker: webhooks fired to a real receiver on 127.0.0.1, real Redis."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from redis.asyncio import Redis

from tests.support import poll
from wheel.clock import redis_time_ms
from wheel.keys import GROUP, Keys, ShardKeys
from wheel.redis_client import connect
from wheel.redis_server import free_port
from wheel.scripts import Scripts
from wheel.settings import Settings
from wheel.store import Store
from wheel.ticker import ROLE as TICKER_ROLE
from wheel.ticker import Ticker
from wheel.webhook import WebhookSender
from wheel.wheelmath import shard_of, slot_of
from wheel.worker import ROLE as WORKER_ROLE
from wheel.worker import Worker


@dataclass
class Arrival:
    """One webhook as the receiver saw it."""

    body: bytes
    headers: dict[str, str]
    at: float


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that records every request.

    It answers with ``statuses`` in turn (then 200); with ``hang`` it never
    answers until the test ends.
    """

    statuses: list[int] = field(default_factory=list)
    hang: bool = False
    arrivals: list[Arrival] = field(default_factory=list)
    url: str = ""
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        """Record the request, then answer as configured."""
        self.arrivals.append(
            Arrival(await request.read(), dict(request.headers), time.time())
        )
        if self.hang:
            await self._released.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="planned")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A running receiver on a free port of 127.0.0.1."""
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    hook.url = f"http://127.0.0.1:{port}/hook"
    yield hook
    hook._released.set()
    await runner.cleanup()


@asynccontextmanager
async def running_worker(
    redis: Redis, settings: Settings, name: str = "w1"
) -> AsyncIterator[Worker]:
    """A prepared worker with its own webhook sender."""
    async with WebhookSender(settings.webhook_timeout, 10) as sender:
        worker = Worker(redis, settings, sender, name=name)
        await worker.prepare()
        yield worker


def shard_keys(settings: Settings, timer_id: str) -> ShardKeys:
    """The keys of the shard that owns ``timer_id``."""
    keys = Keys(settings.key_prefix, settings.shards)
    return keys.shard(shard_of(uuid.UUID(timer_id), settings.shards))


async def record(redis: Redis, settings: Settings, timer_id: str) -> dict:
    """A timer's record hash."""
    return await redis.hgetall(shard_keys(settings, timer_id).timer(timer_id))


async def run_until_final(
    redis: Redis, settings: Settings, worker: Worker, timer_id: str
) -> dict:
    """Tick and drain until the timer is fired or failed; its record."""
    ticker = Ticker(redis, settings, name="t1")

    async def final() -> dict:
        await ticker.step()
        await worker.drain_once()
        rec = await record(redis, settings, timer_id)
        return rec if rec["state"] in ("fired", "failed") else {}

    return await poll(final, what=f"{timer_id} to finish")


async def test_due_timer_fires_webhook(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """A due entry is POSTed once with the id body and the right headers."""
    store = Store(redis, settings)
    timer = await store.create(receiver.url, 0)
    async with running_worker(redis, settings) as worker:
        read = await worker.drain_once()

    assert read == 1
    assert len(receiver.arrivals) == 1
    arrival = receiver.arrivals[0]
    assert json.loads(arrival.body) == {"id": timer.id}
    assert arrival.headers["Content-Type"] == "application/json"
    assert arrival.headers["Idempotency-Key"] == timer.id
    assert arrival.headers["User-Agent"].startswith("timer-wheel/")
    rec = await record(redis, settings, timer.id)
    assert rec["state"] == "fired"
    assert rec["attempts"] == "1"
    assert rec["result"] == "HTTP 200"
    assert worker.counts["fired"] == 1


async def test_webhook_not_sent_before_due(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """The webhook arrives no earlier than the due time, by Redis' clock."""
    store = Store(redis, settings)
    timer = await store.create(receiver.url, 300)
    async with running_worker(redis, settings) as worker:
        rec = await run_until_final(redis, settings, worker, timer.id)
        fired_at_ms = int(rec["finished"])

    assert rec["state"] == "fired"
    assert len(receiver.arrivals) == 1
    assert fired_at_ms >= timer.due_ms
    # Redis runs on this host, so its clock is the receiver's clock.
    assert receiver.arrivals[0].at * 1000 >= timer.due_ms - 1


async def test_failing_receiver_is_retried_then_dead_lettered(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """Always 500 with 3 attempts: 3 calls, failed, one dead letter."""
    settings = settings.replace(max_attempts=3, retry_base=0.05)
    receiver.statuses = [500] * 10
    timer = await Store(redis, settings).create(receiver.url, 0)
    shard = shard_keys(settings, timer.id)
    async with running_worker(redis, settings) as worker:
        await worker.drain_once()
        rec = await record(redis, settings, timer.id)
        assert rec["state"] == "pending"
        assert rec["attempts"] == "1"
        assert rec["result"] == "HTTP 500"
        assert int(rec["due"]) > timer.due_ms
        assert await redis.zcard(shard.slots) == 1
        assert await redis.xlen(shard.ready) == 0

        rec = await run_until_final(redis, settings, worker, timer.id)

    assert len(receiver.arrivals) == 3
    assert rec["state"] == "failed"
    assert rec["attempts"] == "3"
    dead = await redis.xrange(shard.dead)
    assert [fields["id"] for _, fields in dead] == [timer.id]
    assert dead[0][1]["error"] == "HTTP 500"
    assert await redis.pttl(shard.timer(timer.id)) > 0
    assert worker.counts == {
        "fired": 0,
        "retried": 2,
        "failed": 1,
        "stale": 0,
    }


async def test_receiver_recovering_gets_the_timer_fired(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """Two 500s then 200: exactly 3 calls and the timer is fired."""
    settings = settings.replace(max_attempts=3, retry_base=0.05)
    receiver.statuses = [500, 500]
    timer = await Store(redis, settings).create(receiver.url, 0)
    async with running_worker(redis, settings) as worker:
        rec = await run_until_final(redis, settings, worker, timer.id)

    assert len(receiver.arrivals) == 3
    assert {a.headers["Idempotency-Key"] for a in receiver.arrivals} == {
        timer.id
    }
    assert rec["state"] == "fired"
    assert rec["attempts"] == "3"
    assert not await redis.exists(shard_keys(settings, timer.id).dead)


async def test_retries_back_off(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """Each retry waits at least half its nominal exponential delay."""
    settings = settings.replace(max_attempts=3, retry_base=0.2)
    receiver.statuses = [500, 500]
    timer = await Store(redis, settings).create(receiver.url, 0)
    async with running_worker(redis, settings) as worker:
        await run_until_final(redis, settings, worker, timer.id)

    first, second, third = (a.at for a in receiver.arrivals)
    assert second - first >= 0.1 - 0.01
    assert third - second >= 0.2 - 0.01


async def test_silent_receiver_times_out_as_failed_attempt(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """No answer within webhook_timeout: a failed attempt, retried later."""
    settings = settings.replace(webhook_timeout=0.3, reclaim_idle=5)
    receiver.hang = True
    timer = await Store(redis, settings).create(receiver.url, 0)
    started = time.monotonic()
    async with running_worker(redis, settings) as worker:
        await worker.drain_once()
    took_s = time.monotonic() - started

    assert len(receiver.arrivals) == 1
    assert took_s < 3
    rec = await record(redis, settings, timer.id)
    assert rec["state"] == "pending"
    assert rec["attempts"] == "1"
    assert "timeout" in rec["result"]
    assert worker.counts["retried"] == 1


async def test_silent_receiver_on_last_attempt_dead_letters(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """A timeout on the last attempt fails the timer with a timeout error."""
    settings = settings.replace(
        webhook_timeout=0.3, reclaim_idle=5, max_attempts=1
    )
    receiver.hang = True
    timer = await Store(redis, settings).create(receiver.url, 0)
    async with running_worker(redis, settings) as worker:
        await worker.drain_once()

    rec = await record(redis, settings, timer.id)
    assert rec["state"] == "failed"
    dead = await redis.xrange(shard_keys(settings, timer.id).dead)
    assert len(dead) == 1
    assert "timeout" in dead[0][1]["error"]


async def test_unreachable_receiver_is_a_failed_attempt(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """A refused connection counts as a failed attempt, not a crash."""
    settings = settings.replace(max_attempts=1)
    closed = f"http://127.0.0.1:{free_port()}/hook"
    timer = await Store(redis, settings).create(closed, 0)
    async with running_worker(redis, settings) as worker:
        await worker.drain_once()

    rec = await record(redis, settings, timer.id)
    assert rec["state"] == "failed"
    assert rec["result"]
    assert not receiver.arrivals


async def test_group_from_zero_delivers_earlier_entries(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """Entries added before any worker created the group are delivered."""
    timer = await Store(redis, settings).create(receiver.url, 0)
    shard = shard_keys(settings, timer.id)
    assert await redis.xlen(shard.ready) == 1
    assert await redis.xinfo_groups(shard.ready) == []

    async with running_worker(redis, settings) as worker:
        await worker.drain_once()

    assert len(receiver.arrivals) == 1
    assert (await record(redis, settings, timer.id))["state"] == "fired"


async def test_prepare_twice_keeps_the_group(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """A second worker's prepare neither fails nor resets the group."""
    async with running_worker(redis, settings, "w1") as first:
        timer = await Store(redis, settings).create(receiver.url, 0)
        await first.drain_once()
        async with running_worker(redis, settings, "w2") as second:
            assert await second.drain_once() == 0

    assert len(receiver.arrivals) == 1
    assert (await record(redis, settings, timer.id))["state"] == "fired"


async def test_dead_consumers_entry_is_reclaimed_once(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """An entry a dead worker sent but never completed fires once more."""
    settings = settings.replace(webhook_timeout=0.1, reclaim_idle=0.3)
    timer = await Store(redis, settings).create(receiver.url, 0)
    shard = shard_keys(settings, timer.id)
    async with running_worker(redis, settings) as worker:
        # The dead worker: reads, claims, sends, then dies before completing.
        reply = await redis.xreadgroup(GROUP, "dead-one", {shard.ready: ">"})
        entry_id = reply[0][1][0][0]
        (claim,) = await Scripts(redis).claim(
            shard, [(entry_id, timer.id)], 5, 300, 60_000
        )
        assert claim.verdict == "fire"
        await worker.sender.send(claim.url, timer.id)
        assert await worker.drain_once() == 0
        assert await worker.reclaim(shard) == 0

        async def refired() -> bool:
            await worker.reclaim(shard)
            await worker.wait_inflight(None)
            return len(receiver.arrivals) >= 2

        await poll(refired, what="the entry to be reclaimed")
        # Nothing is left to reclaim, however long we wait.
        pending = await redis.xpending(shard.ready, GROUP)
        assert pending["pending"] == 0
        assert await worker.reclaim(shard) == 0

    assert len(receiver.arrivals) == 2
    keys = {a.headers["Idempotency-Key"] for a in receiver.arrivals}
    assert keys == {timer.id}
    rec = await record(redis, settings, timer.id)
    assert rec["state"] == "fired"
    assert rec["attempts"] == "2"


async def test_stale_worker_completion_is_ignored(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """A worker completing after its entry was reclaimed changes nothing."""
    settings = settings.replace(webhook_timeout=0.1, reclaim_idle=0.3)
    timer = await Store(redis, settings).create(receiver.url, 0)
    shard = shard_keys(settings, timer.id)
    scripts = Scripts(redis)
    async with running_worker(redis, settings) as worker:
        reply = await redis.xreadgroup(GROUP, "slow-one", {shard.ready: ">"})
        entry_id = reply[0][1][0][0]
        (claim,) = await scripts.claim(
            shard, [(entry_id, timer.id)], 5, 300, 60_000
        )

        async def refired() -> bool:
            await worker.reclaim(shard)
            await worker.wait_inflight(None)
            return bool(receiver.arrivals)

        await poll(refired, what="the entry to be reclaimed")
        code, _ = await scripts.complete(
            shard, entry_id, timer.id, claim.attempt, "fail", "late", 60_000
        )

    assert code == 0
    rec = await record(redis, settings, timer.id)
    assert rec["state"] == "fired"
    assert rec["result"] == "HTTP 200"
    assert not await redis.exists(shard.dead)


async def test_reclaim_more_entries_than_concurrency(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """Reclaiming more idle entries than worker_concurrency does not hang."""
    settings = settings.replace(
        webhook_timeout=0.1,
        reclaim_idle=0.3,
        worker_concurrency=2,
        batch_size=10,
        shards=1,
    )
    store = Store(redis, settings)
    ids = [(await store.create(receiver.url, 0)).id for _ in range(5)]
    shard = Keys(settings.key_prefix, 1).shard(0)
    async with running_worker(redis, settings) as worker:
        await redis.xreadgroup(GROUP, "dead-one", {shard.ready: ">"})

        async def drained() -> bool:
            await asyncio.wait_for(worker.reclaim(shard), 5)
            await worker.wait_inflight(None)
            return len(receiver.arrivals) >= len(ids)

        await poll(drained, what="the entries to be reclaimed")

    assert len(receiver.arrivals) == len(ids)
    for timer_id in ids:
        assert (await record(redis, settings, timer_id))["state"] == "fired"


async def test_reclaim_acks_pending_entry_deleted_from_stream(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """A pending entry no longer in the stream is acked, others still fire."""
    settings = settings.replace(
        webhook_timeout=0.1, reclaim_idle=0.3, shards=1
    )
    store = Store(redis, settings)
    gone = await store.create(receiver.url, 0)
    kept = await store.create(receiver.url, 0)
    shard = Keys(settings.key_prefix, 1).shard(0)
    async with running_worker(redis, settings) as worker:
        reply = await redis.xreadgroup(GROUP, "dead-one", {shard.ready: ">"})
        await redis.xdel(shard.ready, reply[0][1][0][0])

        async def drained() -> bool:
            await worker.reclaim(shard)
            await worker.wait_inflight(None)
            pending = await redis.xpending(shard.ready, GROUP)
            return pending["pending"] == 0

        await poll(drained, 5, what="the pending entries to be settled")

    assert [a.headers["Idempotency-Key"] for a in receiver.arrivals] == [
        kept.id
    ]
    assert (await record(redis, settings, gone.id))["state"] == "pending"


async def test_only_expected_keys_remain_after_firing(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """After a timer fired: its record, empty ready streams, leases, hb."""
    timer = await Store(redis, settings).create(receiver.url, 200)
    async with running_worker(redis, settings) as worker:
        rec = await run_until_final(redis, settings, worker, timer.id)
    assert rec["state"] == "fired"

    keys = Keys(settings.key_prefix, settings.shards)
    shard = shard_keys(settings, timer.id)
    expected = {shard.timer(timer.id), keys.heartbeats(TICKER_ROLE)}
    for each in keys.all_shards():
        expected |= {each.ready, each.lease}
    assert set(await redis.keys("*")) == expected

    ttl_ms = await redis.pttl(shard.timer(timer.id))
    assert 0 < ttl_ms <= settings.retention * 1000
    for each in keys.all_shards():
        assert await redis.xlen(each.ready) == 0
        groups = await redis.xinfo_groups(each.ready)
        assert [(g["name"], g["pending"]) for g in groups] == [(GROUP, 0)]


async def test_backlog_fires_oldest_first(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """Timers that came due while nothing ran fire in due order."""
    settings = settings.replace(shards=1, worker_concurrency=1)
    shard = Keys(settings.key_prefix, 1).shard(0)
    now = redis_time_ms(await redis.time())
    dues = [now - 200_000, now - 5_000, now - 130_000, now - 70_000, now - 1]
    ids = []
    for due in dues:
        timer_id = str(uuid.uuid4())
        ids.append(timer_id)
        await redis.hset(
            shard.timer(timer_id),
            mapping={
                "url": receiver.url,
                "due": due,
                "state": "pending",
                "attempts": 0,
                "created": due - 1_000,
            },
        )
        await redis.zadd(shard.slot(slot_of(due)), {timer_id: due})
        await redis.zadd(shard.slots, {str(slot_of(due)): slot_of(due)})
    ticker = Ticker(redis, settings, name="t1")
    async with running_worker(redis, settings) as worker:
        await ticker.step()

        async def all_fired() -> bool:
            await worker.drain_once()
            return len(receiver.arrivals) >= len(ids)

        await poll(all_fired, what="the backlog to fire")

    fired = [a.headers["Idempotency-Key"] for a in receiver.arrivals]
    by_due = [timer_id for _, timer_id in sorted(zip(dues, ids, strict=True))]
    assert fired == by_due


async def fire_one_with_running_roles(
    redis: Redis, settings: Settings, receiver: Receiver
) -> tuple[list[asyncio.Task[None]], Worker]:
    """Run Ticker.run and Worker.run until one timer fired, then stop."""
    stop = asyncio.Event()
    async with WebhookSender(settings.webhook_timeout, 10) as sender:
        ticker = Ticker(redis, settings, name="t1")
        worker = Worker(redis, settings, sender, name="w1")
        tasks = [
            asyncio.create_task(ticker.run(stop)),
            asyncio.create_task(worker.run(stop)),
        ]
        timer = await Store(redis, settings).create(receiver.url, 300)

        async def fired() -> bool:
            rec = await record(redis, settings, timer.id)
            return rec["state"] == "fired"

        await poll(fired, what="the timer to fire")
        stop.set()
        await asyncio.wait(tasks, timeout=10)
    return tasks, worker


async def test_run_loops_fire_and_stop_cleanly(
    redis: Redis, settings: Settings, receiver: Receiver
) -> None:
    """Ticker.run and Worker.run fire a timer, then stop and let go."""
    settings = settings.replace(shutdown_grace=1)
    keys = Keys(settings.key_prefix, settings.shards)
    tasks, _ = await fire_one_with_running_roles(redis, settings, receiver)

    for task in tasks:
        assert task.done()
        assert task.exception() is None
    assert len(receiver.arrivals) == 1
    for shard in keys.all_shards():
        assert not await redis.exists(shard.lease)
    assert not await redis.exists(keys.heartbeats(TICKER_ROLE))
    assert not await redis.exists(keys.heartbeats(WORKER_ROLE))


async def test_worker_with_many_shards_keeps_every_read_open(
    settings: Settings, receiver: Receiver
) -> None:
    """With 256 shards (a blocking read each) the worker still fires."""
    settings = settings.replace(shards=256, shutdown_grace=1)
    redis = connect(settings)
    try:
        _, worker = await fire_one_with_running_roles(
            redis, settings, receiver
        )
    finally:
        await redis.aclose()
    assert worker.counts["fired"] == 1
