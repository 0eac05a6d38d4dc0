"""``timer-wheel check``: is a role alive on this host?

Tickers and workers keep a heartbeat in Redis (a sorted set per role,
scored by Redis' time of the last beat, members named ``host:pid:...``).
A container's health check runs on the same host name as its role.
"""

from __future__ import annotations

import socket

import httpx
from redis.asyncio import Redis

from wheel.clock import redis_time_ms
from wheel.keys import Keys
from wheel.settings import Settings

CHECK_TIMEOUT_S = 3.0


def freshness_ms(settings: Settings, role: str) -> int:
    """How old a beat of ``role`` may be and still count as alive."""
    if role == "ticker":
        return int(settings.lease_ttl * 1000)
    return int(settings.heartbeat_ttl * 1000)


async def role_alive(
    redis: Redis, settings: Settings, role: str, host: str | None = None
) -> bool:
    """Whether a process of ``role`` on ``host`` beat recently."""
    host = host or socket.gethostname()
    key = Keys(settings.key_prefix, settings.shards).heartbeats(role)
    pipe = redis.pipeline(transaction=False)
    pipe.time()
    pipe.zrange(key, 0, -1, withscores=True)
    now_reply, members = await pipe.execute()
    oldest_ms = redis_time_ms(now_reply) - freshness_ms(settings, role)
    return any(
        member.startswith(f"{host}:") and score >= oldest_ms
        for member, score in members
    )


def api_alive(url: str) -> bool:
    """Whether the API at ``url`` answers its liveness probe with 200."""
    try:
        response = httpx.get(url, timeout=CHECK_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return response.status_code == 200
