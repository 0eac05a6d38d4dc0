"""The fault-injecting TCP proxy, in front of a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.proxy import TcpProxy
from tests.support import wait_until
from wheel.embedded.server import RedisServer

SOCKET_TIMEOUT_S = 5.0
"""The test clients' read timeout: a call through the proxy has ended,
answered or failed, this long after it was sent."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the proxy to front."""
    server = RedisServer(tmp_path_factory.mktemp("proxied"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def direct(server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the server itself, bypassing the proxy; flushed."""
    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def proxy(server: RedisServer) -> Iterator[TcpProxy]:
    """A proxy in front of the server."""
    with TcpProxy(server.port) as proxy:
        yield proxy


def _client(proxy: TcpProxy, single: bool = False) -> redis.Redis:
    """A client through the proxy that never retries: faults surface."""
    return redis.Redis.from_url(
        proxy.url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=single,
    )


def test_commands_pass_through(proxy: TcpProxy, direct: redis.Redis) -> None:
    """A write through the proxy lands on the server and reads back."""
    client = _client(proxy)
    try:
        assert client.set("through", "1")
        assert client.get("through") == "1"
    finally:
        client.close()
    assert direct.get("through") == "1"
    assert proxy.connections_accepted == 1


def test_dropped_reply_fails_the_call_but_the_write_happened(
    proxy: TcpProxy, direct: redis.Redis
) -> None:
    """SET runs on the server, its reply is lost, the client sees a
    ConnectionError, and a fresh connection works."""
    client = _client(proxy)
    try:
        # Connect first: the handshake's CLIENT SETINFO also holds "SET".
        assert client.ping()
        dropped = proxy.drop_next_reply(b"SET")
        with pytest.raises(redis.ConnectionError):
            client.set("lost-reply", "written")
        assert dropped.is_set()
        assert proxy.replies_dropped == 1
        assert direct.get("lost-reply") == "written"
        assert client.get("lost-reply") == "written"
        assert client.set("again", "fine")
        assert proxy.connections_accepted == 2
    finally:
        client.close()


def test_a_held_reply_never_comes_and_the_write_happened(
    proxy: TcpProxy, direct: redis.Redis
) -> None:
    """After a held chunk its connection answers nothing and stays open
    (the client times out); other connections are served."""
    client = redis.Redis.from_url(
        proxy.url,
        decode_responses=True,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=True,
    )
    other = _client(proxy, single=True)
    try:
        assert client.ping()
        assert other.ping()
        proxy.hold_next_reply(b"held-key")
        with pytest.raises(redis.TimeoutError):
            client.set("held-key", "written")
        assert direct.get("held-key") == "written"
        assert other.echo("served") == "served"
    finally:
        client.close()
        other.close()


def test_pause_holds_a_reply_until_resume(proxy: TcpProxy) -> None:
    """While paused no reply arrives; on resume it does."""
    client = _client(proxy)
    try:
        assert client.ping()
        proxy.pause()
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.echo, "held")
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                assert not pending.done()
                time.sleep(0.02)
            proxy.resume()
            wait_until(
                pending.done,
                timeout_s=SOCKET_TIMEOUT_S,
                what="the held reply",
            )
            assert pending.result() == "held"
    finally:
        proxy.resume()
        client.close()


def test_cut_breaks_open_connections(proxy: TcpProxy) -> None:
    """After cut() the next command on an old connection fails."""
    client = _client(proxy, single=True)
    try:
        assert client.ping()
        proxy.cut()
        with pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        client.close()
    fresh = _client(proxy)
    try:
        assert fresh.ping()
    finally:
        fresh.close()


def test_stop_closes_the_listener(server: RedisServer) -> None:
    """A stopped proxy refuses new connections."""
    proxy = TcpProxy(server.port)
    proxy.start()
    client = _client(proxy)
    assert client.ping()
    proxy.stop()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    client.close()
