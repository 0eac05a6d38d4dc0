"""Shared fixtures: a private redis-server per session, flushed per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

import api
from wheel.redis_server import RedisServer
from wheel.settings import Settings


@pytest.fixture(scope="session")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisServer]:
    """A real redis-server on a free port of 127.0.0.1, never 6379."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, with the database flushed."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """Settings pointing at the test server, with a few shards."""
    return Settings(redis_url=redis_url, shards=4)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """An asyncio client of the flushed test server."""
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def client(
    settings: Settings, redis: Redis
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client calling the API app (on the test Redis) in process."""
    app = api.create_app(settings, redis)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        yield http


@pytest.fixture
def project_root() -> Path:
    """The repository's top folder."""
    return Path(__file__).resolve().parent.parent
