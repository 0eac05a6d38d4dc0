"""``timer-wheel check``: is a role alive on this host?

Tickers and workers keep a heartbeat in Redis (a sorted set per role,
scored by Redis' time of the last beat, members named ``host:pid:...``),
read from the node that holds that key. A container's health check runs
on the same host name as its role. The API is asked over HTTP (the
standard library's client: the image carries no other one for this).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

from wheel.runtime.lifecycle import client_name
from wheel.settings import Settings
from wheel.storage.connection import connect
from wheel.storage.registry import Registry

CHECK_TIMEOUT_S = 3.0
URL_FILE = "redis.url"
"""Where ``timer-wheel dev`` writes its Redis URL, in its data folder."""


def read_url(data_dir: Path) -> str | None:
    """The Redis URL a running ``dev`` wrote into ``data_dir``."""
    try:
        return (data_dir / URL_FILE).read_text().strip() or None
    except OSError:
        return None


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
        with urllib.request.urlopen(url, timeout=CHECK_TIMEOUT_S) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


async def _probe(settings: Settings, role: str) -> bool:
    connection = connect(settings, client_name("check"))
    try:
        return await role_alive(Registry(connection, settings), role)
    finally:
        await connection.aclose()


def main(settings: Settings, args: argparse.Namespace) -> int:
    """Check ``args.role``; the exit code (0: alive)."""
    if args.role == "api":
        alive = api_alive(args.url)
    else:
        if args.data_dir is not None:
            url = read_url(args.data_dir)
            if url is None:
                print(
                    f"{args.role}: no 'timer-wheel dev' runs on "
                    f"{args.data_dir}",
                    file=sys.stderr,
                )
                return 1
            settings = settings.replace(redis_url=url, redis_seeds="")
        try:
            alive = asyncio.run(_probe(settings, args.role))
        except Exception as exc:
            print(f"{args.role}: cannot ask Redis: {exc}", file=sys.stderr)
            return 1
    print(f"{args.role}: {'alive' if alive else 'not alive'}")
    return 0 if alive else 1
