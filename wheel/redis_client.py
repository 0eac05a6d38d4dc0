"""Building the Redis client every role uses."""

from __future__ import annotations

from redis.asyncio import Redis

from wheel.settings import Settings

SPARE_CONNECTIONS = 100
"""Pool room beyond the one blocking read per shard a worker keeps."""

SOCKET_TIMEOUT_S = 10.0
"""Longest wait for a reply: a stalled Redis becomes an error (a 503 from
the API, a logged and retried step in the loops), never a hang. Far above
the workers' one-second blocking reads."""


def pool_size(settings: Settings) -> int:
    """Connections a process may open: a worker blocks one per shard."""
    return settings.shards + SPARE_CONNECTIONS


def connect(settings: Settings) -> Redis:
    """A lazily connecting asyncio client for ``settings.redis_url``.

    Responses are decoded to ``str``; health checks and keepalive keep
    idle pooled connections from going stale behind load balancers. The
    pool is sized from the shard count: redis-py's default cap (100)
    would starve a worker with many shards.
    """
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        health_check_interval=30,
        socket_keepalive=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        max_connections=pool_size(settings),
    )
