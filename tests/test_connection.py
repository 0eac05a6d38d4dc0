"""The connection layer against real Redis faults, each made for real."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.conftest import redis7_binary
from tests.proxy import TcpProxy
from tests.support import SIGNAL_S
from wheel.core.states import Code
from wheel.embedded.server import RedisServer, find_binary, free_port
from wheel.settings import Settings, SettingsError
from wheel.storage.connection import SCRIPT_LOAD_WAIT_S, Connection, connect
from wheel.storage.errors import RedisUnavailable
from wheel.storage.keys import GROUP
from wheel.storage.node import Limits
from wheel.storage.scripts import SCRIPTS
from wheel.storage.shards import ShardQueue

URL = "http://127.0.0.1:9/hook"


def production(settings: Settings, name: str = "tw:test") -> Connection:
    """A connection as the roles build it (pool, limits, retries)."""
    return Connection(settings.redis_url, name, Limits.from_settings(settings))


async def until(
    check: Callable[[], Awaitable[object] | object],
    timeout_s: float = 10.0,
    what: str = "the condition",
) -> None:
    """Wait until ``check()`` is truthy; bounded in tries and in time."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / 0.005) + 1):
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def clients_named(raw: sync_redis.Redis, name: str) -> int:
    """How many client connections announce ``name``."""
    listing = raw.execute_command("CLIENT", "LIST").decode()
    return sum(f" name={name} " in f" {line} " for line in listing.split("\n"))


async def mixed_calls(
    connection: Connection, queue: ShardQueue, count: int, turns: int = 1
) -> list[Any]:
    """The results of ``count`` concurrent calls of three kinds.

    Creates, reads and plain commands, started over ``turns`` loop turns.
    """

    async def one(i: int) -> Any:
        for _ in range(i % turns):
            await asyncio.sleep(0)
        kind = i % 3
        if kind == 0:
            return (await queue.create(URL, 60_000)).code
        if kind == 1:
            return await queue.get(queue.ids.new(0))
        return await connection.call(b"n", "INCR", b"n")

    return await asyncio.gather(*(one(i) for i in range(count)))


def check_mixed(results: list[Any]) -> None:
    """Every result of :func:`mixed_calls` is what that call answers."""
    creates, gets, incrs = results[0::3], results[1::3], results[2::3]
    assert creates == [Code.DONE] * len(creates)
    assert gets == [None] * len(gets)
    assert sorted(incrs) == list(range(1, len(incrs) + 1))


# -- bursts and script flushes ------------------------------------------------


async def test_burst_on_a_fresh_connection_waits_within_its_pool(
    settings: Settings, raw: sync_redis.Redis
) -> None:
    """300 calls at once on a fresh connection succeed within its pool."""
    name = f"tw:burst:{uuid.uuid4().hex[:8]}"
    fresh = production(settings, name)
    queue = ShardQueue(fresh, settings)
    try:
        check_mixed(await mixed_calls(fresh, queue, 300))

        assert 1 <= clients_named(raw, name) <= fresh.limits.pool_size
    finally:
        await fresh.aclose()


def script_loads(raw: sync_redis.Redis) -> int:
    """SCRIPT LOAD calls since the last reset (named so on 6.2 and 7)."""
    stats = raw.info("commandstats")
    calls = [
        entry["calls"]
        for name, entry in stats.items()
        if name in ("cmdstat_script", "cmdstat_script|load")
    ]
    return sum(calls)


async def test_script_flush_under_load_reloads_each_script_once(
    any_redis_url: str,
) -> None:
    """After SCRIPT FLUSH under load each script is loaded once."""
    settings = Settings(redis_url=any_redis_url, shards=4)
    connection = production(settings)
    queue = ShardQueue(connection, settings)
    raw = sync_redis.Redis.from_url(any_redis_url)
    try:
        await queue.create(URL, 60_000)
        raw.script_flush()
        raw.config_resetstat()

        check_mixed(await mixed_calls(connection, queue, 300, turns=100))

        assert script_loads(raw) == len(SCRIPTS)
    finally:
        raw.close()
        await connection.aclose()


# -- restarts -----------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, with an append-only file."""
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def on_server(
    server: RedisServer,
) -> AsyncIterator[tuple[Connection, ShardQueue]]:
    """A production connection and queue on :func:`server`."""
    settings = Settings(redis_url=server.url, shards=4)
    connection = production(settings)
    yield connection, ShardQueue(connection, settings)
    await connection.aclose()


async def test_calls_after_a_restart_all_succeed(
    server: RedisServer, on_server: tuple[Connection, ShardQueue]
) -> None:
    """After a Redis restart every call on the old connection succeeds."""
    connection, queue = on_server
    check_mixed(await mixed_calls(connection, queue, 90))
    created = await queue.create(URL, 60_000)

    await asyncio.to_thread(server.restart)

    for i in range(50):
        assert await connection.call(b"after", "INCR", b"after") == i + 1
    got = await queue.get(created.timer_id)
    assert got is not None
    assert got.due_ms == created.due_ms


async def test_calls_during_an_outage_wait_and_succeed(
    server: RedisServer,
    on_server: tuple[Connection, ShardQueue],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Calls wait out an outage, logged once going down and once back."""
    connection, _ = on_server
    await connection.call(b"n", "SET", b"n", 0)
    caplog.set_level(logging.INFO, logger="wheel.storage.connection")
    await asyncio.to_thread(server.stop)

    calls = [
        asyncio.create_task(
            connection.call(b"n", "INCR", b"n", deadline_s=15.0)
        )
        for _ in range(50)
    ]
    await until(
        lambda: connection.outage.failures >= 100, what="calls to fail"
    )
    assert not any(call.done() for call in calls)
    await asyncio.to_thread(server.start)
    replies = await asyncio.gather(*calls)

    assert sorted(replies) == list(range(1, 51))
    lines = [r for r in caplog.records if r.name == "wheel.storage.connection"]
    down = [r for r in lines if r.getMessage() == "Redis unreachable"]
    back = [r for r in lines if r.getMessage() == "Redis back"]
    assert (len(down), len(back)) == (1, 1)
    assert back[0].failed_calls >= 100


@pytest.mark.parametrize("kind", ["call", "script"])
async def test_call_past_its_deadline_raises_redis_unavailable(
    server: RedisServer, on_server: tuple[Connection, ShardQueue], kind: str
) -> None:
    """With Redis down, a call past its deadline raises RedisUnavailable."""
    connection, queue = on_server
    await connection.call(b"n", "PING")
    server.stop()
    started = time.monotonic()

    with pytest.raises(RedisUnavailable) as raised:
        if kind == "call":
            await connection.call(b"n", "INCR", b"n", deadline_s=0.4)
        else:
            lease = queue.keys.shard(0).lease
            await connection.script(
                SCRIPTS["acquire"], [lease], ["token", 1000], deadline_s=0.4
            )

    assert time.monotonic() - started < 1.0
    # The last try failed connecting, or ran out of the time left.
    cause = raised.value.__cause__
    assert isinstance(cause, (RedisConnectionError, TimeoutError)), cause


# -- pauses and lost replies ------------------------------------------------


@pytest.mark.parametrize("mode", ["ALL", "WRITE"])
async def test_calls_during_a_client_pause_all_succeed(
    connection: Connection,
    queue: ShardQueue,
    raw: sync_redis.Redis,
    mode: str,
) -> None:
    """600 calls through a 500 ms CLIENT PAUSE all succeed."""
    await connection.call(b"n", "PING")
    raw.execute_command("CLIENT", "PAUSE", 500, mode)
    paused_at = time.monotonic()

    check_mixed(await mixed_calls(connection, queue, 600, turns=20))

    assert time.monotonic() - paused_at >= 0.45
    assert connection.outage.failures == 0


async def test_a_deadline_timer_that_runs_early_ends_the_call(
    connection: Connection,
    raw: sync_redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loop may run a call's deadline timer a little early (uvloop
    rounds to milliseconds): the call still ends there as maybe applied,
    once (queued once, not again for the rest of its deadline), and is
    neither counted as a lost connection nor sent again."""
    await connection.call(b"n", "PING")
    (node,) = connection.primaries()
    submitted: list[Any] = []
    submit = node.batcher.submit

    def counting(*args: Any, **kwargs: Any) -> Any:
        submitted.append(args)
        return submit(*args, **kwargs)

    monkeypatch.setattr(node.batcher, "submit", counting)
    loop = asyncio.get_running_loop()
    on_time = loop.call_later

    def early(delay: float, callback: Any, *args: Any) -> Any:
        return on_time(max(0.0, delay - 0.05), callback, *args)

    monkeypatch.setattr(loop, "call_later", early)
    raw.execute_command("CLIENT", "PAUSE", 1000, "ALL")

    with pytest.raises(RedisUnavailable) as raised:
        await connection.call(b"n", "INCR", b"n", deadline_s=0.4)

    monkeypatch.undo()
    assert raised.value.maybe_applied
    assert len(submitted) == 1
    assert connection.outage.failures == 0
    # One INCR ran once the pause ended.
    assert await connection.call(b"n", "INCR", b"n", deadline_s=5.0) == 2


async def test_a_call_sent_into_a_pause_ends_at_its_deadline(
    connection: Connection, raw: sync_redis.Redis
) -> None:
    """A call written to a paused Redis ends at its deadline as maybe
    applied, and the reply that comes later harms nothing: the next call
    gets its own reply."""
    await connection.call(b"n", "PING")
    raw.execute_command("CLIENT", "PAUSE", 1500, "ALL")
    started = time.monotonic()

    with pytest.raises(RedisUnavailable) as raised:
        await connection.call(b"n", "INCR", b"n", deadline_s=0.4)

    took = time.monotonic() - started
    assert 0.39 <= took < 0.6, took
    assert raised.value.maybe_applied
    assert isinstance(raised.value.__cause__, TimeoutError)
    # The INCR ran once the pause ended; the next call reads its result.
    assert await connection.call(b"n", "INCR", b"n", deadline_s=5.0) == 2


async def test_lost_create_reply_makes_exactly_one_timer(
    proxy: TcpProxy, settings: Settings, raw: sync_redis.Redis
) -> None:
    """A create whose reply is lost is retried into exactly one timer."""
    through = settings.replace(redis_url=proxy.url)
    connection = production(through)
    queue = ShardQueue(connection, through)
    try:
        await connection.start()
        dropped = proxy.drop_next_reply(b"EVALSHA")

        created = await queue.create(URL, 60_000)

        assert dropped.is_set()
        assert created.code in (Code.EXISTS, Code.DONE)
        got = await queue.get(created.timer_id)
    finally:
        await connection.aclose()
    assert got is not None
    assert got.due_ms == created.due_ms
    shard = queue.shard_of(created.timer_id)
    (member,) = raw.zrange(shard.index, 0, -1)
    bucket = shard.minute(int(member[1:]))
    assert set(raw.keys("*")) == {
        shard.timer(created.timer_id),
        shard.index,
        bucket,
        shard.count,
    }
    assert raw.zcard(bucket) == 1
    assert raw.get(shard.count) == b"1"


@pytest.mark.parametrize("resend", [True, False])
async def test_a_lost_reply_is_sent_again_only_when_allowed(
    proxy: TcpProxy, settings: Settings, raw: sync_redis.Redis, resend: bool
) -> None:
    """A command whose reply is lost after Redis ran it (the proxy drops
    the reply and cuts the connection) is sent again on a fresh one by
    default; with ``resend=False`` the call says at once that it may
    have run, so a caller whose command moves data (a read of new
    entries) can look for what it did."""
    through = settings.replace(redis_url=proxy.url)
    connection = production(through)
    try:
        await connection.start()
        dropped = proxy.drop_next_reply(b"\r\nINCR\r\n")
        call = connection.call(b"n", "INCR", b"n", resend=resend)
        if resend:
            assert await call == 2
        else:
            with pytest.raises(RedisUnavailable) as caught:
                await call
            assert caught.value.maybe_applied
        assert dropped.is_set()
    finally:
        await connection.aclose()
    assert raw.get(b"n") == (b"2" if resend else b"1")


async def test_a_failed_script_load_is_tried_again_within_the_deadline(
    proxy: TcpProxy, settings: Settings, raw: sync_redis.Redis
) -> None:
    """A node that lost its scripts (a restart, a promoted replica) and
    whose reload's reply is lost (the proxy cuts it): the failed reload
    is an error of the call, which is tried again within its deadline
    and succeeds, never raising the client's own error."""
    through = settings.replace(redis_url=proxy.url)
    connection = production(through)
    queue = ShardQueue(connection, through)
    try:
        await connection.start()
        raw.script_flush()
        dropped = proxy.drop_next_reply(b"SCRIPT")

        created = await queue.create(URL, 60_000)

        assert dropped.is_set()
        assert created.code is Code.DONE
    finally:
        await connection.aclose()


async def test_a_node_that_never_answers_a_script_load_does_not_hold_the_start(
    proxy: TcpProxy, settings: Settings
) -> None:
    """A node stopped under the scripts' load (its answer never comes)
    holds up the start for SCRIPT_LOAD_WAIT_S only, not its socket
    timeout; the load goes on in the background, and plain calls are
    served meanwhile."""
    through = settings.replace(redis_url=proxy.url)
    connection = production(through)
    proxy.hold_next_reply(b"SCRIPT")
    try:
        await asyncio.wait_for(
            connection.start(), SCRIPT_LOAD_WAIT_S + SIGNAL_S
        )
        assert await connection.call(b"n", "INCR", b"n", deadline_s=1.0) == 1
    finally:
        await connection.aclose()


async def test_a_lost_reclaim_reply_is_not_sent_again(
    proxy: TcpProxy, settings: Settings, raw: sync_redis.Redis
) -> None:
    """An XAUTOCLAIM whose reply is lost has taken the idle entries all
    the same (and restarted their idle time): sent again it would find
    none and hide them for another hold, so the call says it may have
    run, and the worker reads its own pending entries back."""
    through = settings.replace(redis_url=proxy.url)
    connection = production(through)
    queue = ShardQueue(connection, through)
    shard = queue.keys.shard(0)
    raw.xgroup_create(shard.ready, GROUP, id="0", mkstream=True)
    entry_id = raw.xadd(shard.ready, {"i": bytes(16), "s": 1})
    raw.xreadgroup(GROUP, "gone", {shard.ready: ">"})
    # Idle for longer than the hold: a crashed worker's entry.
    idle_ms = queue.hold_ms + 60_000
    raw.execute_command(
        "XCLAIM", shard.ready, GROUP, "gone", 0, entry_id, "IDLE", idle_ms
    )
    try:
        await connection.start()
        dropped = proxy.drop_next_reply(b"XAUTOCLAIM")
        with pytest.raises(RedisUnavailable) as caught:
            await queue.reclaim(shard, "w1", b"0-0", 10)
        assert caught.value.maybe_applied
        assert dropped.is_set()
    finally:
        await connection.aclose()
    (pending,) = raw.xpending_range(shard.ready, GROUP, "-", "+", 10)
    assert pending["consumer"] == b"w1"


# -- loading and demotion ---------------------------------------------------


def probe(port: int) -> bytes:
    """The first line a server answers to PING right now (b"" if none)."""
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(256)
    except OSError:
        return b""


@pytest.mark.parametrize("version", ["6.2", "7"])
async def test_loading_redis_is_waited_for(
    tmp_path: Path, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call waits out LOADING if its deadline allows, else fails quietly."""
    binary = find_binary() if version == "6.2" else redis7_binary()
    server = RedisServer(
        tmp_path,
        appendonly=False,
        binary=binary,
        # 0.2 s per key: six 1 MB keys load for about 1.2 s.
        extra_args=["--key-load-delay", "200000"],
    )
    server.start()
    connection = production(Settings(redis_url=server.url))
    seen: list[type[BaseException]] = []
    noted = connection.outage.failed

    def failed(node: str, exc: BaseException) -> None:
        seen.append(type(exc))
        noted(node, exc)

    monkeypatch.setattr(connection.outage, "failed", failed)
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    monkeypatch.setattr(
        loop,
        "call_exception_handler",
        lambda context: unhandled.append(context),
    )
    try:
        await connection.call(b"k", "SET", b"k", b"kept")
        raw = sync_redis.Redis.from_url(server.url)
        for i in range(6):
            raw.set(f"big{i}", os.urandom(1 << 20))
        raw.save()
        raw.close()
        server.stop()
        server.spawn()
        await until(
            lambda: probe(server.port).startswith(b"-LOADING"),
            what="Redis to answer LOADING",
        )

        with pytest.raises(RedisUnavailable):
            await connection.call(b"k", "GET", b"k", deadline_s=0.1)
        assert await connection.call(b"k", "GET", b"k", deadline_s=10) == (
            b"kept"
        )
    finally:
        await connection.aclose()
        server.stop()
    assert BusyLoadingError in seen
    # The short call's reply (LOADING) came after it gave up: no error of
    # it may be left for asyncio to log as never retrieved.
    gc.collect()
    assert [c["message"] for c in unhandled] == []


async def test_demoted_master_readonly_is_retried(
    tmp_path: Path,
) -> None:
    """READONLY from a demoted master is retried until it is promoted."""
    node = RedisServer(tmp_path / "node", appendonly=False)
    other = RedisServer(tmp_path / "other", appendonly=False)
    node.start()
    other.start()
    connection = production(Settings(redis_url=node.url))
    raw = sync_redis.Redis.from_url(node.url)
    try:
        await connection.call(b"k", "SET", b"k", b"1")
        raw.replicaof("127.0.0.1", other.port)
        write = asyncio.create_task(
            connection.call(b"k", "SET", b"k", b"2", deadline_s=10)
        )
        await until(
            lambda: connection.outage.failures >= 1 or write.done(),
            what="the write to be refused",
        )
        assert not write.done(), write
        raw.replicaof("NO", "ONE")

        assert await write == b"OK"
        assert raw.get("k") == b"2"
    finally:
        raw.close()
        await connection.aclose()
        node.stop()
        other.stop()


async def test_seeds_beside_a_single_redis_are_refused(
    settings: Settings,
) -> None:
    """WHEEL_REDIS_SEEDS is set but the URL's node is a single Redis: the
    start says so (a mistake of the settings), instead of waiting for a
    cluster as for an outage."""
    unused = free_port()
    seeded = settings.replace(redis_seeds=f"127.0.0.1:{unused}")
    connection = connect(seeded, "tw:test-seeds")
    try:
        with pytest.raises(SettingsError, match="single Redis"):
            await connection.start()
    finally:
        await connection.aclose()
