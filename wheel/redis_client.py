"""Building the Redis client every role uses."""

from __future__ import annotations

from redis.asyncio import Redis

from wheel.settings import Settings


def connect(settings: Settings, max_connections: int | None = None) -> Redis:
    """A lazily connecting asyncio client for ``settings.redis_url``.

    Responses are decoded to ``str``; health checks and keepalive keep
    idle pooled connections from going stale behind load balancers.
    """
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        health_check_interval=30,
        socket_keepalive=True,
        max_connections=max_connections,
    )
