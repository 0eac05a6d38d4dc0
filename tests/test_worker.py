"""Worker: webhooks fired to a real receiver on 127.0.0.1, real Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import redis as sync_redis
from aiohttp import web

from tests.proxy import TcpProxy
from tests.support import BACK_S, LOADED_LATE_S, SETTLE_S, poll
from wheel.core import ids
from wheel.core.states import TimerState
from wheel.embedded.server import RedisServer
from wheel.engine.ticker import Ticker
from wheel.engine.worker import Worker
from wheel.runtime import metrics
from wheel.runtime.lifecycle import client_name
from wheel.settings import Settings
from wheel.storage.connection import Connection, connect
from wheel.storage.keys import GROUP, Keys
from wheel.storage.registry import Registry
from wheel.storage.shards import ShardQueue
from wheel.webhooks.guard import TargetPolicy
from wheel.webhooks.host_limits import INITIAL_ATTEMPT_S, LOCAL_WAIT_S
from wheel.webhooks.sender import WebhookSender

LOOPBACK = TargetPolicy.build(False, "127.0.0.0/8")


@dataclass
class Arrival:
    """One webhook as the receiver saw it."""

    path: str
    body: bytes
    headers: dict[str, str]
    at: float


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that records every request.

    It answers with ``statuses`` in turn (then 200); paths starting with
    ``/slow`` are held until :meth:`release` (or the test ends).
    """

    statuses: list[int] = field(default_factory=list)
    arrivals: list[Arrival] = field(default_factory=list)
    base: str = ""
    open: int = 0
    most_open: int = 0
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        """The fast hook."""
        return f"{self.base}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        """Record the request, then answer as configured."""
        self.arrivals.append(
            Arrival(
                request.path,
                await request.read(),
                dict(request.headers),
                time.time(),
            )
        )
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            if request.path.startswith("/slow"):
                await self._released.wait()
        finally:
            self.open -= 1
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="planned")

    def release(self) -> None:
        """Answer every held request."""
        self._released.set()

    def ids(self, prefix: str = "/") -> list[str]:
        """Idempotency keys of the arrivals whose path starts so."""
        return [
            a.headers["Idempotency-Key"]
            for a in self.arrivals
            if a.path.startswith(prefix)
        ]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A running receiver on a free port of 127.0.0.1."""
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", hook.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield hook
    hook.release()
    await runner.cleanup()


@asynccontextmanager
async def worker_on(
    connection: Connection,
    settings: Settings,
    name: str = "w1",
    policy: TargetPolicy = LOOPBACK,
) -> AsyncIterator[Worker]:
    """A prepared worker with its own webhook sender."""
    queue = ShardQueue(connection, settings)
    registry = Registry(connection, settings)
    async with WebhookSender(
        settings.webhook_timeout, settings.worker_concurrency, policy
    ) as sender:
        worker = Worker(queue, registry, sender, settings, name=name)
        await worker.prepare()
        yield worker


async def tick_and_drain(
    queue: ShardQueue, settings: Settings, worker: Worker
) -> Callable[[], object]:
    """A step that ticks once (holding every lease) and drains once."""
    ticker = Ticker(queue, Registry(queue.connection, settings), settings)
    await ticker.beat()

    async def step() -> None:
        await ticker.tick()
        await worker.drain_once()

    return step


async def until_final(
    queue: ShardQueue,
    settings: Settings,
    worker: Worker,
    timer_id: bytes,
    attempts: int = 1,
    attempt_s: float = 0.0,
) -> TimerState:
    """Tick and drain until the timer is fired or failed; its state.

    Bounded by what the settings promise: the first attempt on time
    (late by LOADED_LATE_S at most), ``attempts`` attempts in all, each
    taking ``attempt_s`` beyond that (the receiver's own pace; a silent
    one costs ``settings.webhook_timeout``), and before each retry its
    backoff (at most the capped exponential of ``settings.retry_base``).
    """
    record = await queue.get(timer_id)
    assert record is not None
    bound_s = (
        max(0.0, (record.due_ms - record.now_ms) / 1000)
        + LOADED_LATE_S
        + attempts * attempt_s
        + sum(
            min(settings.retry_max, settings.retry_base * 2.0**retry)
            for retry in range(attempts - 1)
        )
    )
    step = await tick_and_drain(queue, settings, worker)

    async def final() -> TimerState | None:
        await step()  # type: ignore[misc]
        record = await queue.get(timer_id)
        assert record is not None
        if record.state in (TimerState.FIRED, TimerState.FAILED):
            return record.state
        return None

    return await poll(final, timeout_s=bound_s, what="the timer to finish")


async def test_due_timer_fires_webhook(
    queue: ShardQueue, settings: Settings, receiver: Receiver
) -> None:
    """A due timer is POSTed once with the id body and the right headers."""
    created = await queue.create(receiver.url, 0)
    async with worker_on(queue.connection, settings) as worker:
        state = await until_final(queue, settings, worker, created.timer_id)
    assert state is TimerState.FIRED
    text_id = ids.to_text(created.timer_id)
    [arrival] = receiver.arrivals
    assert json.loads(arrival.body) == {"id": text_id}
    assert arrival.headers["Idempotency-Key"] == text_id
    assert arrival.headers["Content-Type"] == "application/json"
    assert worker.counts["fired"] == 1


async def test_webhook_not_sent_before_due(
    queue: ShardQueue, settings: Settings, receiver: Receiver
) -> None:
    """A timer due in a second arrives no sooner than its due time."""
    created = await queue.create(receiver.url, 1000)
    async with worker_on(queue.connection, settings) as worker:
        await until_final(queue, settings, worker, created.timer_id)
    assert receiver.arrivals[0].at * 1000 >= created.due_ms - 5


async def test_failing_receiver_is_retried_then_dead_lettered(
    queue: ShardQueue,
    settings: Settings,
    receiver: Receiver,
    raw: sync_redis.Redis,
) -> None:
    """Every attempt fails: max_attempts calls, then failed + dead letter."""
    settings = settings.replace(max_attempts=3, retry_base=0.1, retry_max=0.2)
    queue = ShardQueue(queue.connection, settings)
    receiver.statuses = [500, 502, 503]
    created = await queue.create(receiver.url, 0)
    before = metrics.WEBHOOK_ATTEMPTS.labels("retry")._value.get()
    async with worker_on(queue.connection, settings) as worker:
        state = await until_final(
            queue,
            settings,
            worker,
            created.timer_id,
            attempts=settings.max_attempts,
        )
    assert state is TimerState.FAILED
    assert len(receiver.arrivals) == 3
    record = await queue.get(created.timer_id)
    assert record is not None
    assert (record.attempts, record.result) == (3, "503")
    shard = queue.shard_of(created.timer_id)
    [(_, dead)] = raw.xrange(shard.dead)
    assert dead[b"i"] == created.timer_id
    assert dead[b"a"] == b"3"
    assert dead[b"u"] == receiver.url.encode()
    assert worker.counts == {**worker.counts, "retried": 2, "failed": 1}
    after = metrics.WEBHOOK_ATTEMPTS.labels("retry")._value.get()
    assert after - before == 2


async def test_retry_waits_for_its_backoff(
    queue: ShardQueue, settings: Settings, receiver: Receiver
) -> None:
    """The second attempt comes no sooner than half the base backoff."""
    settings = settings.replace(retry_base=1.0, retry_max=1.0)
    queue = ShardQueue(queue.connection, settings)
    receiver.statuses = [500]
    created = await queue.create(receiver.url, 0)
    async with worker_on(queue.connection, settings) as worker:
        await until_final(
            queue, settings, worker, created.timer_id, attempts=2
        )
    first, second = (a.at for a in receiver.arrivals)
    assert second - first >= 0.5


async def test_guard_refusal_fails_at_once(
    queue: ShardQueue, settings: Settings, receiver: Receiver
) -> None:
    """A host resolving to loopback is refused at connect: one try, failed."""
    url = receiver.url.replace("127.0.0.1", "localhost")
    created = await queue.create(url, 0)
    guarded = TargetPolicy.build(False, "")
    async with worker_on(queue.connection, settings, policy=guarded) as w:
        state = await until_final(queue, settings, w, created.timer_id)
    assert state is TimerState.FAILED
    assert receiver.arrivals == []
    record = await queue.get(created.timer_id)
    assert record is not None
    assert record.attempts == 1
    assert "loopback" in record.result
    assert "127.0.0.1" in record.result or "::1" in record.result


async def test_silent_receiver_times_out_as_a_failed_attempt(
    queue: ShardQueue, settings: Settings, receiver: Receiver
) -> None:
    """A receiver that never answers costs an attempt after the timeout."""
    settings = settings.replace(
        webhook_timeout=0.3, max_attempts=1, reclaim_idle=5
    )
    queue = ShardQueue(queue.connection, settings)
    created = await queue.create(f"{receiver.base}/slow", 0)
    async with worker_on(queue.connection, settings) as worker:
        state = await until_final(
            queue,
            settings,
            worker,
            created.timer_id,
            attempt_s=settings.webhook_timeout,
        )
    assert state is TimerState.FAILED
    record = await queue.get(created.timer_id)
    assert record is not None
    assert "timeout" in record.result


async def test_never_more_entries_held_than_slots(
    queue: ShardQueue,
    settings: Settings,
    receiver: Receiver,
    raw: sync_redis.Redis,
) -> None:
    """With 5 slots and 40 due timers, at most 5 entries are pending."""
    settings = settings.replace(worker_concurrency=5, host_concurrency=5)
    queue = ShardQueue(queue.connection, settings)
    for _ in range(40):
        await queue.create(f"{receiver.base}/slow", 0)
    keys = Keys(settings.key_prefix, settings.shards)
    async with worker_on(queue.connection, settings) as worker:
        step = await tick_and_drain(queue, settings, worker)
        ticker_step = asyncio.create_task(step())  # type: ignore[arg-type]

        async def five_held() -> bool:
            return receiver.open == 5

        await poll(
            five_held, timeout_s=LOADED_LATE_S, what="5 webhooks in flight"
        )
        pending = sum(
            raw.xpending(shard.ready, GROUP)["pending"]
            for shard in keys.all_shards()
        )
        assert pending == 5
        receiver.release()
        # The rest, 5 at a time to a receiver answering at once.
        await asyncio.wait_for(ticker_step, LOADED_LATE_S)
        await poll(
            lambda: _all_fired(queue, 40),
            timeout_s=SETTLE_S,
            what="all fired",
        )
    assert receiver.most_open == 5


async def _all_fired(queue: ShardQueue, count: int) -> bool:
    fired = 0
    for shard in queue.keys.all_shards():
        fired += (
            await queue.connection.call(shard.ready, "XLEN", shard.ready) == 0
        )
    return fired == len(queue.keys.all_shards())


async def test_slow_host_does_not_hold_up_others(
    settings: Settings, receiver: Receiver
) -> None:
    """A host at its limit is deferred; another host's timers still fire.

    The slow and fast hooks differ in host (127.0.0.1 vs localhost), so
    each has its own limit of 2 in flight.
    """
    settings = settings.replace(
        worker_concurrency=10, host_concurrency=2, shutdown_grace=0.5
    )
    before = metrics.DEFERRED._value.get()
    async with running_roles(settings) as queue:
        slow = [
            (await queue.create(f"{receiver.base}/slow", 0)).timer_id
            for _ in range(6)
        ]
        fast_url = receiver.url.replace("127.0.0.1", "localhost")
        fast = [(await queue.create(fast_url, 0)).timer_id for _ in range(6)]
        await poll(
            lambda: _true(len(receiver.ids("/hook")) == 6),
            timeout_s=LOADED_LATE_S,
            what="the fast host's webhooks",
        )
        # Meanwhile the slow host never had more than 2 in flight.
        assert receiver.ids("/slow") == receiver.ids("/slow")[:2]
        assert receiver.open == 2
        for timer_id in slow:
            record = await queue.get(timer_id)
            assert record is not None
            assert record.attempts <= 1
        # A host that does not answer: its waiting timers go back on the
        # wheel once they have waited LOCAL_WAIT_S.
        await poll(
            lambda: _true(metrics.DEFERRED._value.get() > before),
            timeout_s=LOADED_LATE_S + LOCAL_WAIT_S,
            what="the slow host's timers to be deferred",
        )
        receiver.release()
        # The deferred ones are back on the wheel, spaced at the silent
        # host's pace (a new host's mean attempt over its share of
        # permits): the last is due within that many steps.
        deferred = len(slow) - settings.host_concurrency
        step_s = INITIAL_ATTEMPT_S / settings.host_concurrency
        await poll(
            lambda: _true(len(receiver.ids("/slow")) == 6),
            timeout_s=deferred * step_s + LOADED_LATE_S,
            what="the slow host's webhooks",
        )
    assert metrics.DEFERRED._value.get() > before
    assert set(receiver.ids("/hook")) == {ids.to_text(t) for t in fast}
    assert set(receiver.ids("/slow")) == {ids.to_text(t) for t in slow}
    assert receiver.most_open <= 4


@asynccontextmanager
async def running_roles(settings: Settings) -> AsyncIterator[ShardQueue]:
    """A ticker and a worker running their loops until the block ends."""
    stop = asyncio.Event()
    connection = connect(settings, client_name("roles"))
    queue = ShardQueue(connection, settings)
    registry = Registry(connection, settings)
    try:
        async with WebhookSender(
            settings.webhook_timeout, settings.worker_concurrency, LOOPBACK
        ) as sender:
            tasks = [
                asyncio.create_task(
                    Ticker(queue, registry, settings).run(stop)
                ),
                asyncio.create_task(
                    Worker(queue, registry, sender, settings).run(stop)
                ),
            ]
            try:
                yield queue
            finally:
                stop.set()
                await asyncio.wait(tasks, timeout=10)
    finally:
        await connection.aclose()


async def _true(value: bool) -> bool:
    return value


async def _true_after(registry: Registry, moment_ms: int) -> bool:
    return await registry.now_ms(b"any") > moment_ms


async def test_dead_consumers_entry_is_reclaimed_once(
    queue: ShardQueue,
    settings: Settings,
    receiver: Receiver,
) -> None:
    """An entry a dead worker read is fired once by another, after hold."""
    settings = settings.replace(reclaim_idle=4.0, webhook_timeout=0.5)
    queue = ShardQueue(queue.connection, settings)
    created = await queue.create(receiver.url, 0)
    shard = queue.shard_of(created.timer_id)
    step = None
    async with worker_on(queue.connection, settings, "dead") as dead:
        ticker = Ticker(queue, Registry(queue.connection, settings), settings)
        await ticker.beat()
        await ticker.tick()
        # The dead worker read the entry and claimed it, then vanished.
        [entry] = await queue.read(shard, dead.name, 10)
        await queue.claim(shard, dead.name, [entry])
    async with worker_on(queue.connection, settings, "alive") as alive:
        assert await alive.drain_once() == 0
        step = alive.reclaimer.sweep

        async def fired() -> bool:
            await step()
            await alive.firer.wait_idle(5)
            record = await queue.get(created.timer_id)
            return record is not None and record.state is TimerState.FIRED

        # Its entry is idle since the dead worker read it: each sweep
        # here takes it once it has been idle reclaim_idle.
        await poll(
            fired,
            timeout_s=settings.reclaim_idle + LOADED_LATE_S,
            what="the reclaimed timer",
        )
    assert len(receiver.arrivals) == 1
    record = await queue.get(created.timer_id)
    assert record is not None
    assert record.attempts == 2


async def test_backlog_fires_oldest_first(
    queue: ShardQueue, settings: Settings, receiver: Receiver
) -> None:
    """Overdue timers of one shard fire in due order, one at a time."""
    settings = settings.replace(
        shards=1, worker_concurrency=1, host_concurrency=1
    )
    queue = ShardQueue(queue.connection, settings)
    created = [
        await queue.create(receiver.url, 200 - i * 20) for i in range(8)
    ]
    await asyncio.sleep(0.25)
    async with worker_on(queue.connection, settings) as worker:
        step = await tick_and_drain(queue, settings, worker)

        async def all_fired() -> bool:
            await step()  # type: ignore[misc]
            return len(receiver.arrivals) == 8

        # Due while no worker ran: they fire once one is back.
        await poll(all_fired, timeout_s=BACK_S, what="the backlog to fire")
    by_due = [
        ids.to_text(c.timer_id)
        for c in sorted(created, key=lambda c: c.due_ms)
    ]
    assert receiver.ids() == by_due


async def test_run_loops_fire_and_stop_cleanly(
    settings: Settings, receiver: Receiver, raw: sync_redis.Redis
) -> None:
    """Ticker.run and Worker.run fire a timer, then stop and let go."""
    settings = settings.replace(shutdown_grace=1)
    async with running_roles(settings) as queue:
        created = await queue.create(receiver.url, 300)
        await poll(
            lambda: _true(len(receiver.arrivals) == 1),
            timeout_s=0.3 + LOADED_LATE_S,
            what="the webhook",
        )
    record = await queue_of(settings).get(created.timer_id)
    assert record is not None
    assert record.state is TimerState.FIRED
    keys = Keys(settings.key_prefix, settings.shards)
    for shard in keys.all_shards():
        assert not raw.exists(shard.lease)
    assert not raw.exists(keys.heartbeats("ticker"))
    assert not raw.exists(keys.heartbeats("worker"))


def queue_of(settings: Settings) -> ShardQueue:
    """A queue on a fresh connection (closed by the event loop's end)."""
    return ShardQueue(connect(settings, client_name("look")), settings)


async def test_worker_connections_do_not_grow_with_shards(
    settings: Settings, receiver: Receiver, raw: sync_redis.Redis
) -> None:
    """With 256 shards the roles fire on a handful of connections."""
    settings = settings.replace(shards=256, shutdown_grace=1)
    async with running_roles(settings) as queue:
        for _ in range(50):
            await queue.create(receiver.url, 0)
        await poll(
            lambda: _true(len(receiver.arrivals) == 50),
            timeout_s=LOADED_LATE_S,
            what="50 webhooks",
        )
        named = [
            c for c in raw.client_list() if c["name"].startswith("tw:roles:")
        ]
    assert len(set(receiver.ids())) == 50
    # One pool (8) plus the doorbell's subscription, for both roles.
    assert 0 < len(named) <= 9, named


async def test_a_burst_to_a_quick_host_waits_instead_of_deferring(
    settings: Settings, receiver: Receiver
) -> None:
    """30 timers due at once for one quick host with a limit of 2: they
    wait in the worker for the host's slots, none goes back to the wheel,
    and never more than 2 are in flight."""
    settings = settings.replace(worker_concurrency=10, host_concurrency=2)
    before = metrics.DEFERRED._value.get()
    async with running_roles(settings) as queue:
        for _ in range(30):
            await queue.create(receiver.url, 0)
        await poll(
            lambda: _true(len(receiver.arrivals) == 30),
            timeout_s=LOADED_LATE_S,
            what="30 webhooks",
        )
    assert metrics.DEFERRED._value.get() == before
    assert receiver.most_open <= 2


async def test_a_lost_read_reply_fires_at_the_next_read_not_the_reclaim(
    queue: ShardQueue,
    settings: Settings,
    receiver: Receiver,
    raw: sync_redis.Redis,
    redis_server: RedisServer,
) -> None:
    """A read whose reply is lost (the proxy drops it and cuts the
    connection, as a failover does) has taken its entries all the same:
    they are pending under the worker, and no read of new entries returns
    them. The worker's next read of those shards reads them back and
    fires each once; no reclaim runs here, so without the read back
    they would wait for WHEEL_RECLAIM_IDLE."""
    created = [await queue.create(receiver.url, 0) for _ in range(8)]
    ticker = Ticker(queue, Registry(queue.connection, settings), settings)
    await ticker.beat()
    await ticker.tick()
    keys = queue.keys.all_shards()
    assert sum(raw.xlen(shard.ready) for shard in keys) == len(created)
    with TcpProxy(redis_server.port) as proxy:
        through = settings.replace(redis_url=proxy.url)
        connection = connect(through, client_name("test"))
        try:
            async with worker_on(connection, through) as worker:
                dropped = proxy.drop_next_reply(b"XREADGROUP")
                await worker.drain_once()
                assert dropped.is_set()
                taken = sum(
                    raw.xpending(shard.ready, GROUP)["pending"]
                    for shard in keys
                )
                # The fault is real: the lost read took entries.
                assert taken >= 1
                assert taken + len(receiver.arrivals) == len(created)
                await worker.drain_once()
        finally:
            await connection.aclose()
    wanted = sorted(ids.to_text(c.timer_id) for c in created)
    assert sorted(receiver.ids()) == wanted
    assert all(raw.xpending(s.ready, GROUP)["pending"] == 0 for s in keys)
    for c in created:
        record = await queue.get(c.timer_id)
        assert record is not None
        assert record.state is TimerState.FIRED
