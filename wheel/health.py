"""``timer-wheel check``: is a role alive on this host?

Tickers and workers keep a heartbeat in Redis (a sorted set per role,
scored by Redis' time of the last beat, members named ``host:pid:...``),
read from the node that holds that key. A container's health check runs
on the same host name as its role.
"""

from __future__ import annotations

import socket

import httpx

from wheel.registry import Registry
from wheel.settings import Settings

CHECK_TIMEOUT_S = 3.0


def freshness_ms(settings: Settings, role: str) -> int:
    """How old a beat of ``role`` may be and still count as alive."""
    if role == "ticker":
        return int(settings.lease_ttl * 1000)
    return int(settings.heartbeat_ttl * 1000)


async def role_alive(
    registry: Registry, role: str, host: str | None = None
) -> bool:
    """Whether a process of ``role`` on ``host`` beat recently."""
    host = host or socket.gethostname()
    now_ms = await registry.now_ms(registry.keys.heartbeats(role))
    oldest_ms = now_ms - freshness_ms(registry.settings, role)
    return any(
        member.startswith(f"{host}:") and beat_ms >= oldest_ms
        for member, beat_ms in await registry.members(role)
    )


def api_alive(url: str) -> bool:
    """Whether the API at ``url`` answers its liveness probe with 200."""
    try:
        response = httpx.get(url, timeout=CHECK_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return response.status_code == 200
