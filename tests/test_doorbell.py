"""The workers' doorbell: shard numbers from the tickers' channel, and
a listener that outlives what it cannot read."""

from __future__ import annotations

import asyncio

import redis as sync_redis

from tests.support import SIGNAL_S, poll
from wheel.settings import Settings
from wheel.storage.connection import Connection
from wheel.storage.doorbell import RECONNECT_S, Doorbell
from wheel.storage.keys import Keys

WAIT_S = RECONNECT_S + SIGNAL_S
"""A ring, or a listen again after the doorbell's pause, takes this."""


async def test_the_listener_outlives_a_bad_message_and_a_failing_ring(
    connection: Connection, raw: sync_redis.Redis, settings: Settings
) -> None:
    """Parts that are not shard numbers are ignored; a ring that raises
    is reported and the doorbell listens again (a resubscribe rings
    ``None``: anything may have been missed)."""
    keys = Keys(settings.key_prefix, settings.shards)
    rings: list[list[int] | None] = []
    errors: list[tuple[str, Exception]] = []

    def on_ring(shards: list[int] | None) -> None:
        rings.append(shards)
        if shards == [13]:
            raise RuntimeError("a bug in the ring")

    stop = asyncio.Event()
    doorbell = Doorbell(connection, keys, on_ring, lambda *e: errors.append(e))
    listening = asyncio.create_task(doorbell.listen(stop))
    try:
        await poll(lambda: bool(rings), timeout_s=WAIT_S, what="subscribe")
        for payload in (b"3,x,4", b"garbage", b"13"):
            raw.publish(keys.doorbell, payload)
        await poll(
            lambda: rings[-2:] == [[13], None],
            timeout_s=WAIT_S,
            what="the doorbell to listen again",
        )
        raw.publish(keys.doorbell, b"5")
        await poll(
            lambda: rings[-1:] == [[5]],
            timeout_s=WAIT_S,
            what="the last ring",
        )
    finally:
        stop.set()
        await asyncio.wait_for(listening, WAIT_S)
    assert rings == [None, [3, 4], [13], None, [5]]
    assert [(where, str(exc)) for where, exc in errors] == [
        ("doorbell", "a bug in the ring")
    ]
