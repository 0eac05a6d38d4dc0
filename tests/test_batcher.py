"""The Batcher on a real Redis: shared pipelines, errors, bounds, acks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis as sync_redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from tests.proxy import TcpProxy
from tests.support import REPLICA_SYNC_S
from wheel.embedded.server import RedisServer
from wheel.storage.batcher import MAX_BATCH, pack
from wheel.storage.connection import Connection
from wheel.storage.errors import NotReplicated, Overloaded, RedisUnavailable
from wheel.storage.node import Limits, Node


@pytest.fixture
def raw(any_redis_url: str) -> Iterator[sync_redis.Redis]:
    """A plain client of the server under test."""
    client = sync_redis.Redis.from_url(any_redis_url)
    yield client
    client.close()


def node(url: str, limits: Limits | None = None) -> Node:
    """The one node of a single Redis, built as production builds it."""
    connection = Connection(url, "tw:test-batcher", limits)
    (link,) = connection.primaries()
    return link


@pytest.fixture
async def link(any_redis_url: str) -> AsyncIterator[Node]:
    """The production pool and batcher of the server under test."""
    link = node(any_redis_url)
    yield link
    await link.aclose()


class Pipelines:
    """Counts a batcher's pipelines, their sizes and how many are out."""

    def __init__(self, batcher: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0
        send = batcher._roundtrip

        async def roundtrip(batch: list[Any], wait: bool) -> Any:
            self.sizes.append(len(batch) + wait)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                return await send(batch, wait)
            finally:
                self.in_flight -= 1

        monkeypatch.setattr(batcher, "_roundtrip", roundtrip)


def calls(raw: sync_redis.Redis, command: str) -> int:
    """How many times the server ran ``command`` since the last reset."""
    stats = raw.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_commands_of_one_loop_turn_share_one_pipeline(
    link: Node, raw: sync_redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commands queued in one loop turn share one pipeline."""
    pipelines = Pipelines(link.batcher, monkeypatch)
    raw.config_resetstat()

    replies = await asyncio.gather(
        *(link.batcher.execute("SET", f"k{i}", i) for i in range(50)),
        *(link.batcher.execute("GET", f"k{i}") for i in range(50)),
    )

    assert replies[50:] == [str(i).encode() for i in range(50)]
    assert pipelines.sizes == [100]
    assert (calls(raw, "set"), calls(raw, "get")) == (50, 50)
    for i in range(3):
        assert await link.batcher.execute("GET", f"k{i}") == str(i).encode()
    assert pipelines.sizes == [100, 1, 1, 1]


async def test_errors_reach_only_their_own_command(
    link: Node, raw: sync_redis.Redis
) -> None:
    """A failing command fails alone; its neighbours get their replies."""
    raw.set("text", "x")

    ok, bad, also_ok = await asyncio.gather(
        link.batcher.execute("SET", "a", 1),
        link.batcher.execute("INCR", "text"),
        link.batcher.execute("GET", "a"),
        return_exceptions=True,
    )

    assert ok == b"OK"
    assert isinstance(bad, ResponseError)
    assert also_ok == b"1"


async def test_long_queue_is_split_into_bounded_pipelines(
    link: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queue longer than MAX_BATCH leaves in bounded pipelines."""
    pipelines = Pipelines(link.batcher, monkeypatch)
    count = MAX_BATCH * 2 + 7

    replies = await asyncio.gather(
        *(link.batcher.execute("INCR", "counter") for _ in range(count))
    )

    assert sorted(replies) == list(range(1, count + 1))
    assert sorted(pipelines.sizes) == [7, MAX_BATCH, MAX_BATCH]


async def test_connection_error_fails_every_command_of_its_pipeline(
    proxy: TcpProxy, redis_url: str
) -> None:
    """A connection error fails every command of its pipeline."""
    link = node(proxy.url)
    try:
        assert await link.batcher.execute("PING") == b"PONG"
        dropped = proxy.drop_next_reply(b"marker")
        lost = await asyncio.gather(
            link.batcher.execute("SET", "marker", 1),
            *(link.batcher.execute("INCR", "n") for _ in range(4)),
            return_exceptions=True,
        )
        assert dropped.is_set()
        after = await asyncio.gather(
            link.batcher.execute("GET", "marker"),
            link.batcher.execute("GET", "n"),
        )
    finally:
        await link.aclose()

    assert all(isinstance(r, RedisConnectionError) for r in lost), lost
    assert after == [b"1", b"4"]
    assert proxy.connections_accepted == 2


async def test_pipelines_in_flight_stay_bounded_while_redis_pauses(
    link: Node, raw: sync_redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During CLIENT PAUSE no more than max_in_flight pipelines are sent."""
    pipelines = Pipelines(link.batcher, monkeypatch)
    bound = link.batcher.max_in_flight
    raw.execute_command("CLIENT", "PAUSE", 300, "ALL")
    paused_at = time.monotonic()
    arrivals: list[float] = []

    async def one(i: int) -> Any:
        reply = await link.batcher.execute("INCR", f"c{i % 10}")
        arrivals.append(time.monotonic())
        return reply

    tasks = []
    for turn in range(60):
        tasks += [asyncio.create_task(one(turn * 10 + i)) for i in range(10)]
        await asyncio.sleep(0)
    replies = await asyncio.gather(*tasks)

    assert sorted(replies) == sorted(list(range(1, 61)) * 10)
    assert pipelines.most_in_flight == bound
    assert sum(pipelines.sizes) == 600
    assert len(pipelines.sizes) < 60
    assert min(arrivals) >= paused_at + 0.25


@pytest.mark.parametrize(
    ("replica_acks", "ack", "waits"),
    [(0, True, 0), (1, False, 0), (1, True, 1)],
)
async def test_wait_only_when_a_command_needs_acks(
    any_redis_url: str,
    raw: sync_redis.Redis,
    replica_acks: int,
    ack: bool,
    waits: int,
) -> None:
    """WAIT ends only pipelines needing acks; unmet acks: NotReplicated."""
    link = node(
        any_redis_url, Limits(replica_acks=replica_acks, ack_timeout_ms=50)
    )
    raw.config_resetstat()
    try:
        acked, plain, acked_too = await asyncio.gather(
            link.batcher.execute("SET", "a", 1, ack=ack),
            link.batcher.execute("SET", "b", 2),
            link.batcher.execute("SET", "c", 3, ack=ack),
            return_exceptions=True,
        )
    finally:
        await link.aclose()

    assert calls(raw, "wait") == waits
    assert plain == b"OK"
    if waits:
        for failed in (acked, acked_too):
            assert isinstance(failed, NotReplicated)
            assert (failed.confirmed, failed.wanted) == (0, 1)
    else:
        assert acked == acked_too == b"OK"
    assert raw.mget("a", "b", "c") == [b"1", b"2", b"3"]


@pytest.fixture(scope="module")
def replicated(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisServer]:
    """A master with one connected replica."""
    master = RedisServer(tmp_path_factory.mktemp("master"), appendonly=False)
    master.start()
    replica = RedisServer(
        tmp_path_factory.mktemp("replica"),
        appendonly=False,
        extra_args=["--replicaof", "127.0.0.1", str(master.port)],
    )
    replica.start()
    client = sync_redis.Redis.from_url(master.url)
    try:
        deadline = time.monotonic() + REPLICA_SYNC_S
        for _ in range(1000):
            info = client.info("replication")
            if info.get("slave0", {}).get("state") == "online":
                break
            assert time.monotonic() < deadline, "the replica never synced"
            time.sleep(0.01)
        yield master
    finally:
        client.close()
        replica.stop()
        master.stop()


async def test_acked_write_succeeds_when_the_replica_confirms(
    replicated: RedisServer,
) -> None:
    """With a live replica, a write needing one ack gets its reply."""
    link = node(replicated.url, Limits(replica_acks=1))
    try:
        assert await link.batcher.execute("SET", "k", 1, ack=True) == b"OK"
    finally:
        await link.aclose()


async def test_acked_calls_never_share_a_pipeline_with_others(
    any_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call waiting for replicas goes on a pipeline of its own kind: a
    WAIT never holds a read, claim or ticker call up."""
    link = node(any_redis_url, Limits(replica_acks=1, ack_timeout_ms=50))
    seen: list[tuple[bool, list[bool]]] = []
    send = link.batcher._roundtrip

    async def roundtrip(batch: list[Any], wait: bool) -> Any:
        seen.append((wait, [call.ack for call in batch]))
        return await send(batch, wait)

    monkeypatch.setattr(link.batcher, "_roundtrip", roundtrip)
    try:
        await asyncio.gather(
            link.batcher.execute("SET", "a", 1, ack=True),
            link.batcher.execute("GET", "a"),
            link.batcher.execute("SET", "b", 2, ack=True),
            link.batcher.execute("GET", "b"),
            return_exceptions=True,
        )
    finally:
        await link.aclose()
    assert sorted(seen) == [(False, [False, False]), (True, [True, True])]


async def test_a_call_past_its_deadline_is_never_sent(
    any_redis_url: str, raw: sync_redis.Redis
) -> None:
    """A call that waited in the queue past its deadline (the node was
    paused) fails as not sent, and Redis never runs it; a live call
    queued with it is sent."""
    link = node(any_redis_url, Limits(in_flight=1))
    raw.config_resetstat()
    try:
        # The one pipeline allowed is stuck behind a pause.
        raw.execute_command("CLIENT", "PAUSE", 300, "ALL")
        stuck = link.batcher.execute("PING")
        await asyncio.sleep(0.05)
        late = link.batcher.submit(
            ("SET", "late", 1), deadline=time.monotonic() + 0.1
        )
        live = link.batcher.submit(("SET", "live", 1))
        assert await stuck == b"PONG"
        with pytest.raises(RedisUnavailable, match="not sent"):
            await late.future
        assert await live.future == b"OK"
        assert not late.sent
    finally:
        await link.aclose()
    assert raw.get("late") is None
    assert raw.get("live") == b"1"


async def test_a_call_given_up_while_waiting_is_never_sent(
    any_redis_url: str, raw: sync_redis.Redis
) -> None:
    """A call whose caller stopped waiting (its future cancelled) before
    its pipeline left is dropped, not sent."""
    link = node(any_redis_url, Limits(in_flight=1))
    try:
        raw.execute_command("CLIENT", "PAUSE", 300, "ALL")
        stuck = link.batcher.execute("PING")
        await asyncio.sleep(0.05)
        gone = link.batcher.submit(("SET", "gone", 1))
        gone.future.cancel()
        assert await stuck == b"PONG"
        assert await link.batcher.execute("PING") == b"PONG"
    finally:
        await link.aclose()
    assert not gone.sent
    assert raw.get("gone") is None


async def test_a_full_queue_refuses_at_once(any_redis_url: str) -> None:
    """Past its bound the queue refuses a call at once, unsent, instead of
    growing."""
    link = node(any_redis_url)
    link.batcher.max_queued = 3
    try:
        futures = [link.batcher.execute("PING") for _ in range(3)]
        with pytest.raises(Overloaded):
            link.batcher.execute("PING")
        assert await asyncio.gather(*futures) == [b"PONG"] * 3
    finally:
        await link.aclose()


@pytest.mark.parametrize("value", [True, None, b"x".decode, object()])
def test_pack_refuses_what_redis_would_store_wrong(value: object) -> None:
    """A bool, None or an object is refused, never sent as its repr."""
    with pytest.raises(TypeError):
        pack(("SET", "k", value))


def test_pack_sends_bytes_text_and_numbers_as_redis_reads_them() -> None:
    """bytes, str, int and float are packed as RESP bulk strings."""
    assert pack(("SET", b"k", 12, 1.5, "é")) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$3\r\n1.5\r\n"
        b"$2\r\n\xc3\xa9\r\n"
    )
